"""A flood's figures (``bench.flood``): its result, console line, report section and plot."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.flood_watch import FLOOD_DAG, OTHER_DAG, STEADY_RATE, Sample
from bench.result import Result

FAMILY = "flood"
LIMIT = 20  # issue 30: max_queued_runs of the flooded DAG


@dataclass
class FloodResult(Result):
    """The figures of one flood (``latencies``: the other DAG's, during the flood).

    Attributes:
        replicas: worker processes in one group.
        store: ``SQLite`` or ``PostgreSQL``.
        drain_rate: flood runs the bench ends per second.
        baseline_latencies: the other DAG's latencies before the flood, same rate.
        samples: (seconds since the baseline began, queued flood runs, deferred rows,
            store bytes); a value that could not be read is None.
        flood_began: when the flood was produced, in seconds since the baseline began.
        triggered: how many ``triggered`` replies each flood key got.
        refused: flood keys whose reply was something else (status by key).
        runs_made: the flooded DAG's runs in Airflow at the end.
        foreign_runs: of those, runs that are not this flood's (a test using the DAG).
        ended: flood runs the bench ended.
        cpu_baseline: worker CPU seconds during the baseline (the steady load alone).
        cpu_span: seconds over which ``usage`` was read (the flood's produce to its end).
        baseline_seconds: how long the baseline ran.
    """

    replicas: int = 1
    store: str = "SQLite"
    drain_rate: float = 0.0
    baseline_latencies: list[float] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    flood_began: float = 0.0
    triggered: Counter[str] = field(default_factory=Counter)
    refused: dict[str, str] = field(default_factory=dict)
    runs_made: int = 0
    foreign_runs: int = 0
    ended: int = 0
    cpu_baseline: float = 0.0
    cpu_span: float = 0.0
    baseline_seconds: float = 0.0

    @property
    def max_queued(self) -> int | None:
        """The most queued runs of the flooded DAG at any sample."""
        counts = [s[1] for s in self.samples if s[1] is not None]
        return max(counts) if counts else None

    @property
    def limit_held(self) -> bool:
        """Every sample at or under the limit (and some samples read)."""
        peak = self.max_queued
        return peak is not None and peak <= LIMIT

    @property
    def once(self) -> int:
        """Flood keys answered ``triggered`` exactly once."""
        return sum(1 for count in self.triggered.values() if count == 1)

    @property
    def cpu_net_ms(self) -> float | None:
        """Worker CPU ms per deferred request, less the steady load's CPU rate meanwhile."""
        if self.usage is None or not self.n or self.baseline_seconds <= 0:
            return None
        steady = self.cpu_baseline / self.baseline_seconds * self.cpu_span
        return 1000 * (self.usage.cpu_seconds - steady) / self.n

    def store_bytes(self) -> tuple[int | None, int | None]:
        """The store's size at its peak and at the last sample."""
        sizes = [s[3] for s in self.samples if s[3] is not None]
        return (max(sizes), sizes[-1]) if sizes else (None, None)


def quantile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0-1), nearest rank, as ``Result.percentile``."""
    return Result("", "", 0, 0, 0.0, latencies=values).percentile(q)


def note(r: FloodResult, steady_missing: int) -> str:
    """The result's remark: the limit, exactly once, the runs, the PATCHes, any trouble."""
    twice = sum(1 for count in r.triggered.values() if count > 1)
    parts = [
        f"queued max {r.max_queued} (limit {LIMIT}: {'held' if r.limit_held else 'EXCEEDED'})",
        f"triggered once {r.once}/{r.n}, more than once {twice}",
        f"runs {r.runs_made}",
        f"ended by PATCH {r.ended}",
    ]
    if r.refused:
        parts.append(f"refused {len(r.refused)}: {sorted(set(r.refused.values()))}")
    if r.foreign_runs:
        parts.append(f"{r.foreign_runs} runs not the flood's appeared in {FLOOD_DAG}")
    if steady_missing:
        parts.append(f"{steady_missing} steady requests unanswered")
    return "; ".join(parts)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{1000 * value:.0f}"


def _latency(values: list[float]) -> str:
    return " / ".join(_ms(quantile(values, q)) for q in (0.5, 0.99))


def _kib(value: int | None) -> str:
    return "-" if value is None else f"{value / 1024:,.0f}"


def describe(result: Result) -> str:
    """A one-line summary for the console."""
    if not isinstance(result, FloodResult):
        return f"{result.done}/{result.n} answered ({result.note})"
    peak, after = result.store_bytes()
    cpu = result.cpu_net_ms
    return (
        f"{result.done}/{result.n} flood requests answered in {result.seconds:.0f} s; "
        f"{OTHER_DAG} p50/p99 {_latency(result.baseline_latencies)} ms alone, "
        f"{_latency(result.latencies)} ms beside the flood; CPU per deferred request "
        f"{'-' if cpu is None else f'{cpu:.2f}'} ms net; store {_kib(peak)} KiB at peak, "
        f"{_kib(after)} KiB after ({result.note})"
    )


def table(results: list[Result]) -> list[str]:
    """The report's section on floods (issue 30); none if no flood ran."""
    rows = [r for r in results if isinstance(r, FloodResult)]
    if not rows:
        return []
    lines = [
        "## Flood of one limited DAG (flow control, issue 30)",
        "",
        f"N requests for `{FLOOD_DAG}` (paused, `max_queued_runs` {LIMIT}) produced at once, "
        f"its queued runs ended by the bench at a fixed pace (PATCH to `success`), beside "
        f"{STEADY_RATE:.0f} requests/s for `{OTHER_DAG}` (open loop, due time to reply): "
        "alone first (baseline), then until every flood request is answered. Queued runs: "
        f"Airflow's count every 0.5 s. CPU per deferred request: the workers' CPU during the "
        "flood less the baseline's CPU rate over as long, per flood request.",
        "",
        "| store | replicas | N | drain runs/s | answered | triggered once | runs "
        "| queued max (limit) | flood s | other DAG p50 / p99 ms, alone | beside the flood "
        "| CPU ms / deferred, net (gross) | store KiB peak / after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        peak, after = r.store_bytes()
        net = "-" if r.cpu_net_ms is None else f"{r.cpu_net_ms:.2f}"
        gross = f"{1000 * r.usage.cpu_seconds / r.n:.2f}" if r.usage and r.n else "-"
        held = "held" if r.limit_held else "**EXCEEDED**"
        lines.append(
            f"| {r.store} | {r.replicas} | {r.n} | {r.drain_rate:g} | {r.done}/{r.n} "
            f"| {r.once}/{r.n} | {r.runs_made - r.foreign_runs} | {r.max_queued} ({LIMIT}, {held}) "
            f"| {r.seconds:.0f} | {_latency(r.baseline_latencies)} | {_latency(r.latencies)} "
            f"| {net} ({gross}) "
            f"| {_kib(peak)} / {_kib(after)} |"
        )
    lines.append("")
    lines += [f"- {r.name}: {r.note}" for r in rows]
    return [*lines, ""]


def plot(plt: Any, results: list[Result], out: Path, stem: str) -> list[Path]:
    """Each flood's queued count over time, the limit and the deferred rows; the files."""
    files = []
    for r in (r for r in results if isinstance(r, FloodResult) and r.samples):
        suffix = "flood" if r.replicas == 1 else f"flood-pg{r.replicas}"
        path = out / f"{stem}-{suffix}.png"
        fig, ax = plt.subplots(figsize=(8, 4.5))
        times = [s[0] for s in r.samples]
        ax.step(times, [s[1] for s in r.samples], where="post", label="queued runs (Airflow)")
        ax.axhline(LIMIT, linestyle="--", color="red", label=f"max_queued_runs {LIMIT}")
        ax.axvline(r.flood_began, linestyle=":", color="gray", label=f"{r.n} requests produced")
        ax.set_xlabel("seconds since the baseline began")
        ax.set_ylabel(f"queued runs of {FLOOD_DAG}")
        ax.set_ylim(0, LIMIT * 1.5)
        deferred = ax.twinx()
        deferred.plot(times, [s[2] for s in r.samples], color="green", alpha=0.6)
        deferred.set_ylabel("deferred requests in the store", color="green")
        deferred.set_ylim(bottom=0)
        ax.set_title(f"Flood: {r.name}, drained at {r.drain_rate:g} runs/s")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    return files
