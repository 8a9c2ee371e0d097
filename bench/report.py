"""The report: a Markdown table with the machine it ran on, and two PNG plots (matplotlib)."""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass
from pathlib import Path

from bench.result import Result

MIB = 1024 * 1024


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
    compare(f"worker (adaptive) vs API ceiling ({best.name if best else '-'})", worker, best)
    compare("worker (adaptive) vs naive consumer", worker, by_name.get("naive consumer"))
    replay, passthrough = by_name.get("duplicate replay"), by_name.get("raw passthrough")
    compare("duplicate replay vs raw passthrough, throughput", replay, passthrough)
    compare("duplicate replay vs raw passthrough, CPU", replay, passthrough, what="cpu")
    replay, passthrough = (
        by_name.get("duplicate replay, large"),
        by_name.get("raw passthrough, large"),
    )
    compare("large duplicate replay vs raw passthrough, throughput", replay, passthrough)
    compare("large duplicate replay vs raw passthrough, CPU", replay, passthrough, what="cpu")
    backlog = by_name.get("worker, backlog, MAX_IN_FLIGHT=256")
    compare(
        f"backlog, MAX_IN_FLIGHT=256 vs API ceiling ({best.name if best else '-'})", backlog, best
    )
    return lines


def plot(results: list[Result], out: Path, stem: str) -> list[Path]:
    """Throughput vs concurrency (worker points marked) and the latency CDF; returns the files."""
    import matplotlib  # noqa: PLC0415 -- the `bench` extra; imported only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 -- after choosing the headless backend

    files = [out / f"{stem}-throughput.png", out / f"{stem}-latency.png"]
    ceiling = [r for r in results if r.family == "ceiling"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if ceiling:
        ax.plot(
            [r.concurrency for r in ceiling], [r.rate for r in ceiling], "o-", label="API ceiling"
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
        if r.family != "ceiling" and r.latencies:
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
    return files


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
        "## Plots",
        "",
        *(f"![{p.stem}]({p.name})" for p in images),
        "",
    ]
    path = out / f"{stem}.md"
    path.write_text("\n".join(lines))
    return path
