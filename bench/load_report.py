"""Figures for the load harness (bench/load.py): percentiles, the processes' CPU and memory (psutil), the
printed table and the SVG chart that docs/benchmarks.md embeds (written by hand: no plotting dependency)."""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass, field
from typing import Any

import psutil

PERCENTILES = {"p50": 0.50, "p90": 0.90, "p99": 0.99, "p99.9": 0.999}


def percentiles(values: list[float]) -> dict[str, float | None]:
    """Milliseconds, nearest-rank; None when there is nothing to rank."""
    ordered = sorted(values)
    if not ordered:
        return dict.fromkeys(PERCENTILES)
    return {
        name: round(1000 * ordered[min(len(ordered) - 1, math.ceil(len(ordered) * p) - 1)], 2)
        for name, p in PERCENTILES.items()
    }


@dataclass
class ProcessGroup:
    """Processes measured together: a process and its children, or PostgreSQL's backends of one database."""

    name: str
    root_pid: int | None = None
    database: str | None = None
    children: bool = True
    _cpu: dict[int, float] = field(default_factory=dict)

    def processes(self) -> list[psutil.Process]:
        try:
            if self.root_pid is not None:
                root = psutil.Process(self.root_pid)
                return [root, *root.children(recursive=True)] if self.children else [root]
            return [
                p
                for p in psutil.process_iter(["cmdline"])
                if p.info["cmdline"] and f" {self.database} " in f" {p.info['cmdline'][0]} "
            ]
        except psutil.Error:
            return []

    def cpu_seconds(self) -> float:
        """CPU time used so far; a process that ended keeps its last reading."""
        for p in self.processes():
            try:
                t = p.cpu_times()
                self._cpu[p.pid] = t.user + t.system
            except psutil.Error:
                pass
        return sum(self._cpu.values())

    def rss_bytes(self) -> int:
        total = 0
        for p in self.processes():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total


def this_process() -> ProcessGroup:
    """The harness itself, without the stack's processes it started."""
    return ProcessGroup("load clients", root_pid=os.getpid(), children=False)


class Usage:
    """CPU (percent of one core) and RSS of each group between start() and stop()."""

    def __init__(self, groups: list[ProcessGroup]) -> None:
        self.groups = groups
        self._start: dict[str, float] = {}
        self._at = 0.0

    def start(self, now: float) -> None:
        self._at = now
        self._start = {g.name: g.cpu_seconds() for g in self.groups}

    def stop(self, now: float) -> dict[str, dict[str, float]]:
        elapsed = max(now - self._at, 1e-9)
        return {
            g.name: {
                "cpu_percent": round(100 * (g.cpu_seconds() - self._start[g.name]) / elapsed, 1),
                "rss_mib": round(g.rss_bytes() / 2**20, 1),
            }
            for g in self.groups
        }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(steps: list[dict[str, Any]]) -> str:
    """One line per step of offered load: rates, the four latencies' p50/p99, errors, CPU."""
    head = (
        f"{'offered/s':>9} {'acked/s':>8} {'ack p50':>8} {'p90':>7} {'p99':>7} {'p99.9':>7} "
        f"{'seen p50':>8} {'p99':>7} {'reply p50':>9} {'p99':>7} {'errors':>6}  CPU % of a core"
    )
    lines = [head, "-" * len(head)]
    for s in steps:
        ack, seen, reply = s["ack_ms"], s["seen_ms"], s["reply_seen_ms"]
        cpu = ", ".join(f"{k} {v['cpu_percent']:.0f}" for k, v in s["usage"].items())
        lines.append(
            f"{s['offered_per_s']:>9.0f} {s['acked_per_s']:>8.1f} {_ms(ack['p50']):>8} {_ms(ack['p90']):>7} "
            f"{_ms(ack['p99']):>7} {_ms(ack['p99.9']):>7} {_ms(seen['p50']):>8} {_ms(seen['p99']):>7} "
            f"{_ms(reply['p50']):>9} {_ms(reply['p99']):>7} {sum(s['errors'].values()):>6}  {cpu}"
        )
    return "\n".join(lines)


COLOURS = {"p50": "#2956d6", "p90": "#2a9d8f", "p99": "#e76f51", "p99.9": "#9b2226"}


def svg_chart(
    steps: list[dict[str, Any]], title: str, key: str = "ack_ms", compare: list[dict[str, Any]] | None = None
) -> str:
    """Latency percentiles (log scale, ms) against offered load (messages/s): one line per percentile; the
    `compare` steps (the peer's) dashed."""
    width, height, left, right, top, bottom = 640, 360, 60, 110, 40, 50
    points = [(s["offered_per_s"], s[key]) for s in steps]
    others = [(s["offered_per_s"], s[key]) for s in compare or []]
    xs = [x for x, _ in points + others] or [1]
    values = [v for _, lat in points + others for v in lat.values() if v]
    lo = 10 ** math.floor(math.log10(min(values))) if values else 1
    hi = 10 ** math.ceil(math.log10(max(values))) if values else 1000
    hi = max(hi, lo * 10)
    x_max = max(xs) * 1.05

    def px(x: float) -> float:
        return left + (width - left - right) * x / x_max

    def py(v: float) -> float:
        return top + (height - top - bottom) * (1 - (math.log10(v) - math.log10(lo)) / (math.log10(hi / lo)))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="20" font-size="14">{html.escape(title)}</text>',
    ]
    decade = lo
    while decade <= hi:
        y = py(decade)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{decade:g} ms</text>')
        decade *= 10
    for x in xs:
        out.append(f'<text x="{px(x):.1f}" y="{height - bottom + 18}" text-anchor="middle">{x:g}</text>')
    out.append(
        f'<text x="{(left + width - right) / 2}" y="{height - 10}" text-anchor="middle">'
        "offered load, messages per second</text>"
    )
    out.append(
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{height - bottom}" stroke="black"/>'
        f'<line x1="{left}" x2="{width - right}" y1="{height - bottom}" y2="{height - bottom}" stroke="black"/>'
    )
    for i, (name, colour) in enumerate(COLOURS.items()):
        for series, dash in ((points, ""), (others, ' stroke-dasharray="5,4"')):
            line = [(px(x), py(lat[name])) for x, lat in series if lat.get(name)]
            if line:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in line)
                out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
                out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in line]
        ly = top + 16 * i
        out.append(f'<line x1="{width - right + 10}" x2="{width - right + 30}" y1="{ly}" y2="{ly}" '
                   f'stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{width - right + 36}" y="{ly + 4}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out)
