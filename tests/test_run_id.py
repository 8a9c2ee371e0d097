"""run_id_for: a golden table pins the rule forever; properties show Airflow accepts every id."""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.contract import is_idempotency_key
from consumer.run_id import (
    MAX_RUN_ID_CHARS,
    RESERVED_RUN_ID_PREFIXES,
    RUN_ID_PATTERN,
    run_id_for,
)
from devstack.airflow import AirflowServer

FAST = settings(max_examples=300, deadline=None, database=None)
# Airflow's own rule for a manually triggered run id (airflow-api-facts.md §7.3)
AIRFLOW_RUN_ID = re.compile(r"[A-Za-z0-9_.~:+-]{1,248}")
PAUSED_DAG = "devstack_paused"

# idempotency keys: the characters the contract allows (no control chars, no surrogates)
keys = st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=256)
ascii_keys = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1)

# Never edit an expected value: a changed run id breaks dedup of keys in flight (spec §3).
GOLDEN = [
    ("a", "kafka__a"),
    ("order-42", "kafka__order-42"),
    ("ORDER_42", "kafka__ORDER_42"),
    ("evt.2025.01.01", "kafka__evt.2025.01.01"),
    ("a:b+c-d_e.f", "kafka__a:b+c-d_e.f"),
    ("0", "kafka__0"),
    ("-", "kafka__-"),
    (".", "kafka__."),
    ("..", "kafka__.."),
    ("+", "kafka__+"),
    (":", "kafka__:"),
    ("2025-01-01T00:00:00+00:00", "kafka__2025-01-01T00:00:00+00:00"),
    ("scheduled__2025-01-01T00:00:00+00:00", "kafka__scheduled__2025-01-01T00:00:00+00:00"),
    ("manual__2024-05-05T00:00:00+00:00", "kafka__manual__2024-05-05T00:00:00+00:00"),
    ("backfill__x", "kafka__backfill__x"),
    ("asset_triggered__x", "kafka__asset_triggered__x"),
    ("dataset_triggered__x", "kafka__dataset_triggered__x"),
    ("kafka__already-prefixed", "kafka__kafka__already-prefixed"),
    ("order 42", "kafka__order_42~59096d5ad4f7817d"),
    ("order  42", "kafka__order_42~8692bb2159e4cdd8"),
    ("order/42", "kafka__order_42~12e4be1bb177a39c"),
    ("order\\42", "kafka__order_42~eacee3b1e3905e78"),
    ("s3://bucket/key/file.csv", "kafka__s3:_bucket_key_file.csv~03facc7247de4a07"),
    ("a@b.com", "kafka__a_b.com~fb98d44ad7501a95"),
    ("100%", "kafka__100_~32e48995f98ce3b7"),
    ("a#b?c=d&e", "kafka__a_b_c_d_e~2d7bc54400117645"),
    ("x~y", "kafka__x_y~9d6c12fa26ba32bd"),
    ("~", "kafka___~7ace431cb61584cb"),
    ("~~", "kafka___~4970013df10508ef"),
    ("café", "kafka__caf_~850f7dc43910ff89"),
    ("cafe\u0301", "kafka__cafe_~81ef060bcd98adc7"),
    ("Ωmega", "kafka___mega~57b72b920d43b183"),
    ("日本語キー", "kafka___~1c574e677bde99fe"),
    ("🎉", "kafka___~6146299cd54818a0"),
    ("🎉🎉", "kafka___~9bbfb34258a51fc6"),
    ("party 🎉 time", "kafka__party_time~35506abcfa4a37ce"),
    ("tab\u00a0nbsp", "kafka__tab_nbsp~9fae345f2fe30c43"),
    ("\u200bzero-width", "kafka___zero-width~68d2483ca942b35a"),
    ("a" * 241, "kafka__" + "a" * 241),
    ("a" * 242, "kafka__" + "a" * 224 + "~8fded59c427b2e68"),
    ("a" * 256, "kafka__" + "a" * 224 + "~02d7160d77e18c64"),
    ("é" * 256, "kafka___~57ed0ef12199207a"),
    ("🎉" * 256, "kafka___~d47e16ce2807ffd5"),
    ("a" * 224 + "/" + "b" * 31, "kafka__" + "a" * 224 + "~286ebe68c006b355"),
    ("a" * 224 + "/" + "c" * 31, "kafka__" + "a" * 224 + "~c4db52d4718b4989"),
    ("a b", "kafka__a_b~c8687a08aa5d6ed2"),
    ("a_b", "kafka__a_b"),
    ("a  b", "kafka__a_b~6e12db73209a66d1"),
    ("a\u3000b", "kafka__a_b~a59e41483057a662"),
    ('"quoted"', "kafka___quoted_~272fca25899893ee"),
    ("'single'", "kafka___single_~5ec9691b431e2996"),
    ("{json}", "kafka___json_~92466cd310f31d4f"),
    ("[1,2]", "kafka___1_2_~49a64717d5d4cb19"),
]


@pytest.mark.parametrize(("key", "expected"), GOLDEN)
def test_golden_run_ids(key: str, expected: str) -> None:
    """Each key of the golden table maps to exactly the run id pinned for it."""
    assert run_id_for(key) == expected


def test_golden_table_is_large_and_its_ids_distinct() -> None:
    """The golden table has at least 40 distinct keys and they map to distinct run ids."""
    assert len(GOLDEN) >= 40
    assert len({key for key, _ in GOLDEN}) == len(GOLDEN)
    assert len({expected for _, expected in GOLDEN}) == len(GOLDEN)


def test_empty_key_is_refused() -> None:
    """An empty key has no run id: the contract never lets one through."""
    with pytest.raises(ValueError, match="never empty"):
        run_id_for("")


def _assert_airflow_accepts(run_id: str) -> None:
    assert AIRFLOW_RUN_ID.fullmatch(run_id), run_id
    assert re.fullmatch(RUN_ID_PATTERN.removeprefix("^").removesuffix("$"), run_id)
    assert len(run_id) <= MAX_RUN_ID_CHARS
    assert not run_id.startswith(RESERVED_RUN_ID_PREFIXES)


@FAST
@given(keys)
def test_every_run_id_is_one_airflow_accepts(key: str) -> None:
    """Any valid key gives a run id in Airflow's charset, 1-248 chars, no reserved prefix."""
    assert is_idempotency_key(key)
    _assert_airflow_accepts(run_id_for(key))


@FAST
@given(ascii_keys)
def test_printable_ascii_keys_give_acceptable_ids(key: str) -> None:
    """Keys from printable ASCII (slashes, spaces, quotes) also give acceptable run ids."""
    _assert_airflow_accepts(run_id_for(key))


@FAST
@given(keys, keys)
def test_distinct_keys_give_distinct_run_ids(first: str, second: str) -> None:
    """Two different keys never share a run id, and one key always gets the same one."""
    if first == second:
        assert run_id_for(first) == run_id_for(second)
    else:
        assert run_id_for(first) != run_id_for(second)


@FAST
@given(st.text(alphabet="ab ~/é", min_size=1, max_size=6), st.text(alphabet="ab ~/é", max_size=6))
def test_keys_differing_only_in_removed_characters_stay_apart(stem: str, tail: str) -> None:
    """Keys that sanitise to the same text (spaces, '~', '/', 'é') still get distinct ids."""
    first, second = stem + tail, stem + tail + " "
    assert run_id_for(first) != run_id_for(second)


@FAST
@given(st.lists(keys, min_size=2, max_size=30, unique=True))
def test_a_batch_of_distinct_keys_gives_as_many_run_ids(batch: list[str]) -> None:
    """A batch of distinct keys maps to exactly as many distinct run ids."""
    assert len({run_id_for(key) for key in batch}) == len(batch)


def _sample_keys() -> list[str]:
    unique = uuid.uuid4().hex
    return [
        f"plain-{unique}",
        f"order {unique}/42",
        f"café-{unique}",
        f"🎉 {unique}",
        f"scheduled__{unique}",
        f"manual__{unique}",
        f"backfill__{unique}",
        f"asset_triggered__{unique}",
        f"dataset_triggered__{unique}",
        f"{unique}:+.-_",
        f"{unique}~tilde",
        f"s3://bucket/{unique}?x=1&y=%20",
        unique + "k" * (241 - len(unique)),  # the longest plain key: a 248-char run id
        unique + "é" * (256 - len(unique)),  # the longest key: hashed, 248 chars
    ]


def test_real_airflow_accepts_derived_run_ids(airflow: AirflowServer) -> None:
    """A real Airflow (3 and 2) creates a run under each derived id and finds it by that id."""
    session = airflow.session()
    runs = f"{airflow.url}/api/{airflow.api_version}/dags/{PAUSED_DAG}/dagRuns"
    for key in _sample_keys():
        run_id = run_id_for(key)
        body: dict[str, object] = {"dag_run_id": run_id}
        if airflow.api_version == "v2":
            body["logical_date"] = None  # required by Airflow 3; Airflow 2 refuses null
        created = session.post(runs, json=body, timeout=30)
        assert created.status_code == 200, (run_id, created.status_code, created.text[:300])
        assert created.json()["dag_run_id"] == run_id
        found = session.get(f"{runs}/{quote(run_id, safe='')}", timeout=30)
        assert found.status_code == 200, (run_id, found.status_code, found.text[:300])
        assert found.json()["dag_run_id"] == run_id
