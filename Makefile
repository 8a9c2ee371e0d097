# One command per job (STYLE §15): demo, test, check, format, bench.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check format bench chaos stack-up stack-down clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[test,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m devstack demo

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy consumer

test: check
	$(BIN)/python -m devstack prepare
	$(BIN)/python -m pytest

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# the nemesis of issue 28 alone: make chaos SEED=42 MINUTES=10 repeats or lengthens a run
SEED ?= 20261207
MINUTES ?= 2
chaos: $(STAMP)
	CHAOS_SEED=$(SEED) CHAOS_MINUTES=$(MINUTES) $(BIN)/python -m pytest tests/chaos -p no:randomly

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m bench

stack-up: $(STAMP)
	$(BIN)/python -m devstack up --airflow both

stack-down: $(STAMP)
	$(BIN)/python -m devstack down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
