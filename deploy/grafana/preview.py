r"""Render trigger-consumer.json's panels from a Prometheus to a PNG, without Grafana.

Each panel's queries run as range queries against ``--prometheus``, with ``$job``,
``$instance`` (all) and ``$__rate_interval`` filled in as ``tests/deploy/monitoring.py``
does; the lines are drawn as SVG into one static HTML page, which headless Chromium
(Debian's ``chromium``) screenshots. The README's screenshot was made this way from the
Prometheus data of ``tests/scenarios/test_monitoring.py``.

    python deploy/grafana/preview.py --prometheus http://127.0.0.1:9090 \\
        --start 2026-12-07T15:33:30Z --end 2026-12-07T15:35:30Z --out dashboard.png
"""

from __future__ import annotations

import argparse
import html
import json
import math
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import requests

DASHBOARD = Path(__file__).with_name("trigger-consumer.json")
COLUMN_PX = 56  # one of Grafana's 24 grid columns
ROW_PX = 34  # one grid row
COLOURS = ("#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0")


def fill(expr: str, job: str, rate_interval: str) -> str:
    """The query Grafana would send with ``job`` and every replica chosen."""
    return (
        expr.replace("$__rate_interval", rate_interval)
        .replace("$instance", ".*")
        .replace("$job", job)
    )


def legend(template: str, labels: dict[str, str]) -> str:
    """Fill a Grafana legend template ``{{label}}`` from a series' labels."""
    for name, value in labels.items():
        template = template.replace("{{" + name + "}}", value)
    return template


def series(prom: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    """One range query's result."""
    answer = requests.get(
        f"{prom}/api/v1/query_range",
        params={"query": expr, "start": str(start), "end": str(end), "step": str(step)},
        timeout=30,
    )
    answer.raise_for_status()
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


def svg(lines: list[tuple[str, list[tuple[float, float]]]], width: int, height: int) -> str:
    """A small line chart with a y axis label and a legend."""
    points = [(t, v) for _, values in lines for t, v in values if math.isfinite(v)]
    if not points:
        return '<div class="empty">no data</div>'
    t0, t1 = min(t for t, _ in points), max(t for t, _ in points)
    top = max(v for _, v in points) or 1.0
    plot_h = height - 18 * min(len(lines), 4) - 10
    parts = [f'<svg width="{width}" height="{height}">']
    parts.append(f'<text x="2" y="10" class="axis">{top:.3g}</text>')
    for i, (name, values) in enumerate(lines):
        colour = COLOURS[i % len(COLOURS)]
        xy = [
            f"{40 + (t - t0) / max(t1 - t0, 1) * (width - 50):.1f},"
            f"{5 + plot_h - v / top * plot_h:.1f}"
            for t, v in values
            if math.isfinite(v)
        ]
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(xy)}"/>'
        )
        if i < 4:  # noqa: PLR2004 -- legend lines that fit
            y = plot_h + 22 + 18 * i
            parts.append(f'<rect x="40" y="{y - 9}" width="10" height="10" fill="{colour}"/>')
            parts.append(f'<text x="55" y="{y}" class="legend">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def page(prom: str, job: str, start: float, end: float) -> str:
    """The whole dashboard as one HTML page of absolutely placed panels."""
    dashboard = json.loads(DASHBOARD.read_text())
    step = max((end - start) / 200, 1.0)
    boxes = []
    bottom = 0
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        left, top = grid["x"] * COLUMN_PX, grid["y"] * ROW_PX
        width, height = grid["w"] * COLUMN_PX - 6, grid["h"] * ROW_PX - 6
        bottom = max(bottom, top + height + 6)
        title = html.escape(panel["title"].replace("$job", job).replace("$instance", "All"))
        if panel["type"] == "row":
            boxes.append(f'<div class="row" style="left:{left}px;top:{top}px">{title}</div>')
            continue
        if panel["type"] == "text":
            body = html.escape(panel["options"]["content"].replace("**", ""))
        else:
            lines = []
            for target in panel["targets"]:
                for found in series(prom, fill(target["expr"], job, "1m"), start, end, step):
                    values = [(float(t), float(v)) for t, v in found["values"]]
                    lines.append((legend(target["legendFormat"], found["metric"]), values))
            if panel["type"] == "stat":
                last = [v[-1][1] for _, v in lines if v]
                body = f'<div class="stat">{sum(last):.3g}</div>' if last else "no data"
            else:
                body = svg(lines, width - 10, height - 30)
        boxes.append(
            f'<div class="panel" style="left:{left}px;top:{top}px;width:{width}px;'
            f'height:{height}px"><div class="title">{title}</div>{body}</div>'
        )
    style = (
        "body{background:#111217;color:#ccccdc;font:12px sans-serif;margin:0}"
        ".panel{position:absolute;background:#181b1f;border:1px solid #2c3235;padding:4px}"
        ".title{font-weight:bold;margin-bottom:4px}.row{position:absolute;font-size:15px}"
        ".stat{font-size:40px;color:#73bf69;text-align:center}.axis,.legend{fill:#ccccdc;font-size:11px}"
    )
    return (
        f'<html><head><meta charset="utf-8"><style>{style}</style></head>'
        f'<body><div style="position:relative;height:{bottom}px">{"".join(boxes)}</div>'
        "</body></html>"
    )


def main() -> None:
    """Parse the arguments, build the page and screenshot it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--job", default="trigger-consumer")
    parser.add_argument("--start", required=True, help="RFC 3339 or Unix time")
    parser.add_argument("--end", required=True, help="RFC 3339 or Unix time")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    start, end = (_unix(args.prometheus, t) for t in (args.start, args.end))
    chromium = shutil.which("chromium") or "chromium"
    with tempfile.TemporaryDirectory() as folder:
        html_file = Path(folder) / "dashboard.html"
        html_file.write_text(page(args.prometheus, args.job, start, end))
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--screenshot={args.out.resolve()}",
                "--window-size=1344,2100",
                html_file.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def _unix(prom: str, moment: str) -> float:
    answer = requests.get(
        f"{prom}/api/v1/query", params={"query": "time()", "time": moment}, timeout=30
    )
    answer.raise_for_status()
    return float(answer.json()["data"]["result"][1])


if __name__ == "__main__":
    main()
