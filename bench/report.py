"""The report: Markdown tables with the machine it ran on, and PNG plots (matplotlib).

The main table has every contender but the store-latency operations, which get a table
of their own (sub-millisecond figures), and completion tracking (``bench.tracked``'s
table); the steady loads get a table pairing the worker with direct POSTs at each rate.
Plots: throughput vs concurrency, the burst latency CDF, and the knee (the adaptive
limiter's limit over time beside the fixed limits).
"""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import flood_report, steady, tracked
from bench.result import Result

MIB = 1024 * 1024
OWN_TABLES = frozenset(
    {"store-latency", tracked.FAMILY, flood_report.FAMILY}
)  # reported apart from the main table
KNEE_TICKS = (1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
# not in the burst latency CDF
BURSTS_ONLY = frozenset(
    {"store-latency", "steady", "steady-direct", tracked.FAMILY, flood_report.FAMILY}
)


@dataclass(frozen=True)
class Context:
    """Where and how the run happened: printed above the table."""

    date: str
    airflow: str
    n: int
    partitions: int
    ceiling_seconds: float
    load_before: str
    load_after: str
    remark: str


def machine() -> str:
    """CPU model, cores, memory, kernel and Python of this host."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = int(line.split()[1]) // 1024 // 1024
    return (
        f"{socket.gethostname()}: {model}, {os.cpu_count()} cores, {memory} GiB RAM, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def load_average() -> str:
    """The 1/5/15-minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{1000 * value:.0f}"


def table(results: list[Result]) -> list[str]:
    """The Markdown table, one row per result."""
    lines = [
        "| contender | done/N | runs/s | p50 ms | p95 ms | p99 ms | Airflow calls | errors "
        "| CPU s / 1,000 | peak RSS MiB | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.family in OWN_TABLES:
            continue
        cpu = "-" if r.cpu_per_1000 is None else f"{r.cpu_per_1000:.2f}"
        rss = "-" if r.usage is None else f"{r.usage.peak_rss_bytes / MIB:.0f}"
        calls = "-" if r.airflow_calls is None else str(r.airflow_calls)
        lines.append(
            f"| {r.name} | {r.done}/{r.n} | {r.rate:.1f} | {_ms(r.percentile(0.5))} "
            f"| {_ms(r.percentile(0.95))} | {_ms(r.percentile(0.99))} | {calls} | {r.errors} "
            f"| {cpu} | {rss} | {r.note} |"
        )
    return lines


def ratios(results: list[Result]) -> list[str]:
    """The comparisons the issue asks for, each with its two figures."""
    by_name = {r.name: r for r in results}
    ceiling = [r for r in results if r.family == "ceiling"]
    best = max(ceiling, key=lambda r: r.rate) if ceiling else None
    lines = []

    def compare(label: str, a: Result | None, b: Result | None, what: str = "rate") -> None:
        if a is None or b is None:
            return
        x, y = (a.rate, b.rate) if what == "rate" else (a.cpu_per_1000, b.cpu_per_1000)
        if x and y:
            unit = "/s" if what == "rate" else " CPU s per 1,000"
            lines.append(f"- {label}: {x:.2f}{unit} vs {y:.2f}{unit} = **{x / y:.2f}x**")

    worker = by_name.get("worker, adaptive (default)")
    passthrough_small = by_name.get("raw passthrough")
    compare(f"worker (adaptive) vs API ceiling ({best.name if best else '-'})", worker, best)
    compare("worker (adaptive) vs naive consumer", worker, by_name.get("naive consumer"))
    for floor in (r for r in results if r.family == "floor"):
        compare(f"worker (adaptive) vs {floor.name}, CPU", worker, floor, what="cpu")
    for size, suffix in (("", ""), ("large ", ", large")):
        replay = by_name.get(f"duplicate replay{suffix}")
        for kind in ("raw", "acked"):
            passthrough = by_name.get(f"{kind} passthrough{suffix}")
            label = f"{size}duplicate replay vs {kind} passthrough"
            compare(f"{label}, throughput", replay, passthrough)
            compare(f"{label}, CPU", replay, passthrough, what="cpu")
    duplicate_floor = by_name.get("duplicate floor, large")
    for kind in ("raw", "acked"):
        passthrough = by_name.get(f"{kind} passthrough, large")
        compare(
            f"duplicate floor vs {kind} passthrough, large, CPU",
            duplicate_floor,
            passthrough,
            "cpu",
        )
    compare(
        "large duplicate replay vs duplicate floor, CPU",
        by_name.get("duplicate replay, large"),
        duplicate_floor,
        "cpu",
    )
    backlog = by_name.get("worker, backlog, MAX_IN_FLIGHT=256")
    compare(
        f"backlog, MAX_IN_FLIGHT=256 vs API ceiling ({best.name if best else '-'})", backlog, best
    )
    sqlite_new, sqlite_replay = worker, by_name.get("duplicate replay")
    for suffix in ("PostgreSQL store", "PostgreSQL store, 2 replicas"):
        new, replay = (
            by_name.get(f"worker, adaptive, {suffix}"),
            by_name.get(f"duplicate replay, {suffix}"),
        )
        compare(f"new runs, {suffix} vs SQLite store (1 replica)", new, sqlite_new)
        compare(f"new runs, {suffix} vs API ceiling ({best.name if best else '-'})", new, best)
        compare(f"duplicate replay, {suffix} vs SQLite store", replay, sqlite_replay)
        compare(f"duplicate replay, {suffix} vs SQLite store, CPU", replay, sqlite_replay, "cpu")
        compare(f"duplicate replay, {suffix} vs raw passthrough", replay, passthrough_small)
    compare(
        "large duplicate replay, PostgreSQL vs SQLite store",
        by_name.get("duplicate replay, large, PostgreSQL"),
        by_name.get("duplicate replay, large"),
    )
    routed, routed_replay = by_name.get("routed events"), by_name.get("routed events, replayed")
    compare("routed events vs plain requests, new runs, CPU", routed, worker, what="cpu")
    compare(
        "routed events vs plain requests, replay, CPU",
        routed_replay,
        by_name.get("duplicate replay"),
        what="cpu",
    )
    compare(
        "routed events vs plain requests, replay, throughput",
        routed_replay,
        by_name.get("duplicate replay"),
    )
    lines += steady_ratios(results)
    return lines


def steady_pairs(results: list[Result]) -> list[tuple[Result, Result | None]]:
    """Each steady worker result with the direct POSTs at the same share, if they ran."""
    direct = {r.load_share: r for r in results if r.family == "steady-direct"}
    return [(r, direct.get(r.load_share)) for r in results if r.family == "steady"]


def steady_ratios(results: list[Result]) -> list[str]:
    """Worker p99 vs direct POST p99 at each steady share; the goal at half the ceiling."""
    lines = []
    for worker, direct in steady_pairs(results):
        w99, d99 = worker.percentile(0.99), direct.percentile(0.99) if direct else None
        if w99 is None or d99 is None or not d99:
            continue
        share = worker.load_share or 0.0
        goal = ""
        if abs(share - steady.GOAL_SHARE) < 1e-9:
            met = w99 <= d99 + steady.GOAL_MARGIN
            goal = f" (goal ≤ +{1000 * steady.GOAL_MARGIN:.0f} ms: {'met' if met else 'not met'})"
        lines.append(
            f"- steady {share:.0%} of ceiling, worker p99 vs direct POST p99: "
            f"{1000 * w99:.0f} ms vs {1000 * d99:.0f} ms = **{w99 / d99:.2f}x**, "
            f"{1000 * (w99 - d99):+.0f} ms{goal}"
        )
    return lines


def steady_table(results: list[Result]) -> list[str]:
    """The steady loads: worker and direct POSTs side by side, per share of the ceiling."""
    pairs = steady_pairs(results)
    if not pairs:
        return []
    lines = [
        "## Steady load (open loop)",
        "",
        "Requests due at a fixed rate; latency from each one's due time to its answer "
        "(worker: reply acked; direct: POST answered).",
        "",
        "| load | offered /s | worker done/N | worker p50 / p95 / p99 ms "
        "| direct done/N | direct p50 / p95 / p99 ms | p99 worker - direct ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for worker, direct in pairs:
        gap = "-"
        w99 = worker.percentile(0.99)
        d99 = direct.percentile(0.99) if direct else None
        if w99 is not None and d99 is not None:
            gap = f"{1000 * (w99 - d99):+.0f}"
        lines.append(
            f"| {worker.load_share or 0:.0%} | {worker.offered_rate or 0:.1f} "
            f"| {worker.done}/{worker.n} | {_triple(worker)} "
            f"| {f'{direct.done}/{direct.n}' if direct else '-'} "
            f"| {_triple(direct) if direct else '-'} | {gap} |"
        )
    return [*lines, ""]


def store_table(results: list[Result]) -> list[str]:
    """Per-operation latency of the stores, measured in process, with PostgreSQL vs SQLite."""
    rows = [r for r in results if r.family == "store-latency"]
    if not rows:
        return []
    lines = [
        "## Store latency per operation (in process, one call at a time)",
        "",
        "| store | operation | calls | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        store, _, operation = r.name.partition(", ")
        lines.append(
            f"| {store} | {operation} | {r.done} | {_ms2(r.percentile(0.5))} "
            f"| {_ms2(r.percentile(0.95))} | {_ms2(r.percentile(0.99))} |"
        )
    by_name = {r.name: r for r in rows}
    lines.append("")
    for r in rows:
        store, _, operation = r.name.partition(", ")
        base = by_name.get(f"SQLite, {operation}")
        p50, b50 = r.percentile(0.5), base.percentile(0.5) if base else None
        if store == "PostgreSQL" and p50 and b50:
            lines.append(
                f"- {operation}, PostgreSQL vs SQLite p50: {_ms2(p50)} ms vs {_ms2(b50)} ms "
                f"= **{p50 / b50:.2f}x**"
            )
    return [*lines, ""]


def _triple(r: Result) -> str:
    return " / ".join(_ms(r.percentile(q)) for q in (0.5, 0.95, 0.99))


def _ms2(value: float | None) -> str:
    return "-" if value is None else f"{1000 * value:.2f}"


def plot(results: list[Result], out: Path, stem: str) -> list[Path]:
    """Throughput vs concurrency, the burst latency CDF and the knee; returns the files."""
    import matplotlib  # noqa: PLC0415 -- the `bench` extra; imported only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 -- after choosing the headless backend

    if all(r.family in OWN_TABLES for r in results):  # only floods, tracking: nothing to sweep
        return flood_report.plot(plt, results, out, stem)
    files = [out / f"{stem}-throughput.png", out / f"{stem}-latency.png"]
    ceiling = [r for r in results if r.family == "ceiling"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if ceiling:
        ax.plot(
            [r.concurrency or 0.0 for r in ceiling],
            [r.rate for r in ceiling],
            "o-",
            label="API ceiling",
        )
    for r in results:
        if r.family == "worker" and r.concurrency is not None and r.done:
            adaptive = "adaptive" in r.name
            ax.plot(
                r.concurrency,
                r.rate,
                "*" if adaptive else "s",
                markersize=14 if adaptive else 8,
                label=r.name,
            )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent Airflow calls (clients; worker: limit, adaptive: mean limit)")
    ax.set_ylabel("runs/s")
    ax.set_title("Trigger throughput vs concurrency")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(files[0], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        if r.family != "ceiling" and r.family not in BURSTS_ONLY and r.latencies:
            ordered = sorted(r.latencies)
            ax.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=r.name)
    ax.set_xscale("log")
    ax.set_xlabel("end-to-end latency, produce → reply acked (s, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("Latency CDF (a burst of N requests at t=0)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(files[1], dpi=110)
    plt.close(fig)
    knee = out / f"{stem}-knee.png"
    if plot_knee(plt, results, knee):
        files.append(knee)
    return files + flood_report.plot(plt, results, out, stem)


def plot_knee(plt: Any, results: list[Result], path: Path) -> bool:
    """The adaptive limiter's limit over time, the fixed limits as lines; False: no data.

    The adaptive default is drawn bold; other adaptive workers (PostgreSQL stores, the
    unpaused DAG, steady loads) thin. Each label carries the contender's runs/s, so the
    limit it settled on can be read against what the fixed limits achieved.
    """
    adaptive = [r for r in results if r.limit_series and r.family not in {"replay"}]
    fixed = [r for r in results if r.family == "worker" and "fixed" in r.name and r.concurrency]
    if not adaptive:
        return False
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in adaptive:
        default = r.name == "worker, adaptive (default)"
        times, limits = zip(*r.limit_series, strict=True)
        ax.step(
            times,
            limits,
            where="post",
            linewidth=2.2 if default else 0.9,
            alpha=1.0 if default else 0.7,
            label=f"{r.name} ({r.rate:.1f}/s)",
        )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, r in enumerate(fixed):
        ax.axhline(
            r.concurrency,
            linestyle="--",
            color=colors[(len(adaptive) + i) % len(colors)],
            label=f"{r.name} ({r.rate:.1f}/s)",
        )
    ax.set_yscale("log", base=2)
    values = [v for r in adaptive for _, v in r.limit_series]
    values += [r.concurrency for r in fixed if r.concurrency is not None]
    low, high = max(1.0, min(values)), max(values)
    ticks: list[float] = [t for t in KNEE_TICKS if low / 1.3 <= t <= high * 1.3]
    ax.set_yticks(ticks or [low])
    ax.yaxis.set_major_formatter(plt.matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(plt.matplotlib.ticker.NullFormatter())
    ax.set_xlabel("seconds since the load began")
    ax.set_ylabel("concurrency limit (log 2)")
    ax.set_title("The knee: adaptive limit over time, fixed limits beside it")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(results: list[Result], context: Context, out: Path) -> Path:
    """Write ``<date>-<host>.md`` and its plots into ``out``; return the Markdown file."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{context.date}-{socket.gethostname()}"
    images = plot(results, out, stem)
    lines = [
        f"# Benchmark {context.date} on {socket.gethostname()}",
        "",
        f"- Machine: {machine()}",
        f"- Load average before / after: {context.load_before} / {context.load_after}",
        f"- Airflow {context.airflow} (devstack, PostgreSQL metadata DB), N = {context.n} "
        f"requests per contender, {context.partitions} partitions, ceiling points of "
        f"{context.ceiling_seconds:.0f} s (or N requests, whichever ends first)",
        *([f"- {context.remark}"] if context.remark else []),
        "",
        *table(results),
        "",
        "## Ratios",
        "",
        *ratios(results),
        "",
        *steady_table(results),
        *store_table(results),
        *tracked.table(results),
        *flood_report.table(results),
        "## Plots",
        "",
        *(f"![{p.stem}]({p.name})" for p in images),
        "",
    ]
    path = out / f"{stem}.md"
    path.write_text("\n".join(lines))
    return path
