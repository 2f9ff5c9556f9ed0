"""Summaries of the runs: a Markdown table (medians, min–max, the ratio
gateway/peer of wall time and of server CPU per operation, peak server
memory, whether the gateway meets the issue's target) and the JSON document
of everything measured. The CPU ratio of the gateway's row is taken against
the peer that spent the least CPU per operation ("least"), which need not
be the fastest one ("best")."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from bare import LIBRARIES

__all__ = ["Cell", "summarise", "markdown", "misses"]

MEMORY_TARGET = 150 << 20
#: The gateway's own libraries serving a folder bare (``bare.py``): shown with
#: the ratio gateway/library, never the peer a target is measured against.
BASELINES = frozenset(LIBRARIES.values())
#: reply time a backgrounded operation must stay under
REPLY_TARGET_S = 0.2
#: the gateway's CPU seconds per operation, where the issue (#28) sets one
CPU_TARGETS = {("upload_small", "webdav"): 400e-6}


@dataclass
class Cell:
    """All runs of one workload on one endpoint."""

    workload: str
    title: str
    protocol: str
    server: str
    target: float | None
    kind: str
    note: str = ""                       # set when the endpoint could not run it at all
    runs: list[dict] = field(default_factory=list)
    unit: str = ""                       # what one operation is (file, entry, MiB)

    def ok(self) -> list[dict]:
        return [r for r in self.runs if "done_s" in r]

    def status(self) -> str:
        """'' when there are timings, else why not."""
        if self.note:
            return self.note
        if self.ok():
            return ""
        unsupported = next((r["unsupported"] for r in self.runs if "unsupported" in r), None)
        if unsupported:
            return "not supported: " + unsupported[:120]
        errors = [r["error"] for r in self.runs if "error" in r]
        return ("error: " + errors[0][:160]) if errors else "not run"

    def stat(self, key: str) -> tuple[float, float, float] | None:
        values = [r[key] for r in self.ok() if key in r]
        return (statistics.median(values), min(values), max(values)) if values else None

    def peak_rss(self) -> int:
        return max((r["rss"] for r in self.ok()), default=0)

    def cpu_per_op(self) -> float | None:
        """Median server CPU seconds per operation (runs of older JSON files have none)."""
        values = [r["cpu_s"] / r["ops"] for r in self.ok() if "cpu_s" in r and r.get("ops")]
        return statistics.median(values) if values else None


def summarise(cells: list[Cell]) -> list[dict[str, Any]]:
    out = []
    for c in cells:
        d = {"workload": c.workload, "title": c.title, "protocol": c.protocol, "server": c.server,
             "status": c.status() or "ok", "runs": c.runs}
        for key in ("done_s", "reply_s", "cpu_s"):
            s = c.stat(key)
            if s:
                d[key] = {"median": s[0], "min": s[1], "max": s[2]}
        if c.ok():
            d["peak_rss_bytes"] = c.peak_rss()
        if c.cpu_per_op() is not None:
            d["cpu_per_op_s"] = c.cpu_per_op()
        out.append(d)
    return out


def _groups(cells: list[Cell]) -> dict[tuple[str, str], list[Cell]]:
    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.workload, c.protocol), []).append(c)
    return groups


def _fmt_s(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _fmt_cpu_op(seconds: float, unit: str) -> str:
    return f"{seconds * 1e6:,.0f} µs/{unit}" if seconds < 1 else f"{seconds:.2f} s/{unit}"


def _fmt_ratio(x: float) -> str:
    return f"{x:.2f}×" if x >= 0.1 else f"{x:.3f}×"


def _rows(group: list[Cell], key: str, label_suffix: str, target: float | None) -> list[list[str]]:
    gw = next((c for c in group if c.server == "gateway"), None)
    gw_s = gw.stat(key) if gw else None
    peers = [c for c in group if c.server != "gateway" and c.server not in BASELINES and c.stat(key)]
    best = min((c.stat(key)[0] for c in peers), default=None)
    gw_cpu = gw.cpu_per_op() if gw and key == "done_s" else None
    least = min((x for c in peers if (x := c.cpu_per_op())), default=None)
    rows = []
    for c in group:
        s = c.stat(key)
        ratio = verdict = ""
        if s and gw_s:
            if c.server == "gateway" and best:
                ratio = f"{_fmt_ratio(gw_s[0] / best)} best"
            elif c.server != "gateway":
                ratio = _fmt_ratio(gw_s[0] / s[0]) + (" library" if c.server in BASELINES else "")
        if c.server == "gateway" and s:
            verdict = _verdict(c, key, s[0], best, target)
        cpu = c.stat("cpu_s") if key == "done_s" else None
        per_op = c.cpu_per_op() if cpu else None
        cpu_ratio = ""
        if gw_cpu and per_op:
            if c.server == "gateway" and least:
                cpu_ratio = f"{_fmt_ratio(gw_cpu / least)} least"
            elif c.server != "gateway":
                cpu_ratio = _fmt_ratio(gw_cpu / per_op) + (" library" if c.server in BASELINES else "")
        note = c.status()
        if s and key == "done_s":
            reply = c.stat("reply_s")
            if reply and reply[0] < 0.8 * s[0]:
                note = f"reply after {_fmt_s(reply[0])} s (backgrounded)"
        rss = f"{c.peak_rss() / 2**20:.0f}" if s else ""
        rows.append([c.title + label_suffix, c.protocol, c.server,
                     _fmt_s(s[0]) if s else "n/a", f"{_fmt_s(s[1])}–{_fmt_s(s[2])}" if s else "",
                     f"{cpu[0]:.2f}" if cpu else "", _fmt_cpu_op(per_op, c.unit) if per_op is not None else "",
                     ratio, cpu_ratio, rss, verdict, note])
    return rows


def _verdict(c: Cell, key: str, median: float, best: float | None, target: float | None) -> str:
    marks = []
    if key == "reply_s":
        marks.append(("✔" if median < REPLY_TARGET_S else "✘") + f" reply < {REPLY_TARGET_S} s")
    elif target is not None and best:
        marks.append(("✔" if median <= target * best else "✘") + f" ≤ {target}×")
    if key == "done_s":
        marks.append(("✔" if c.peak_rss() < MEMORY_TARGET else "✘") + " < 150 MiB")
        cpu_target, per_op = CPU_TARGETS.get((c.workload, c.protocol)), c.cpu_per_op()
        if cpu_target is not None and per_op is not None:
            marks.append(("✔" if per_op <= cpu_target else "✘") + f" ≤ {cpu_target * 1e6:.0f} µs CPU/{c.unit}")
    return ", ".join(marks)


def _table_rows(cells: list[Cell]) -> list[list[str]]:
    rows = []
    for group in _groups(cells).values():
        first = group[0]
        if first.kind == "remote":
            rows += _rows(group, "reply_s", " — reply", None)
            rows += _rows(group, "done_s", " — done", first.target)
        else:
            rows += _rows(group, "done_s", "", first.target)
    return rows


def markdown(cells: list[Cell]) -> str:
    head = ["workload", "protocol", "server", "median s", "min–max s", "server CPU s", "CPU per op",
            "gateway/peer", "gateway/peer CPU", "peak RSS MiB",
            "gateway target", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    for row in _table_rows(cells):
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in row) + " |")
    return "\n".join(lines)


def misses(cells: list[Cell]) -> list[str]:
    """One line per gateway row that misses a target or could not run."""
    out = []
    for row in _table_rows(cells):
        title, proto, server, median, _, cpu, per_op, ratio, cpu_ratio, rss, verdict, note = row
        if server != "gateway":
            continue
        if median == "n/a":
            out.append(f"{title} ({proto}): n/a — {note}")
        elif "✘" in verdict:
            cpu_text = f"CPU {cpu} s ({per_op}), " if cpu else ""
            cpu_text += f"{cpu_ratio} CPU, " if cpu_ratio else ""
            out.append(f"{title} ({proto}): {median} s, {ratio}, {cpu_text}{rss} MiB — {verdict}")
    return out
