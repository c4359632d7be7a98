"""Trends in the audit log: leading indicators moving the wrong way, drawn as inline SVG.

Each watched series (restore seconds per MB, snapshot age, drift count,
failures, rejected webhooks when recorded) is taken from the audit log in
order. A series is flagged when both hold:

* its Theil-Sen slope (the median of the slopes between every pair of
  points: one outlier run cannot tilt it) points the wrong way, and
* the median of its last ``window`` points exceeds the median of the
  ``window`` before by more than ``tolerance`` (relative; counts by at least 1).

Restore time is divided by the snapshot's size, so a restore that grows
because the data grew is not flagged; one that grows faster than the data is.
"""

from __future__ import annotations

import html
import statistics
from dataclasses import dataclass
from typing import Any

from rollback import ledger
from rollback.store import SnapshotStore

#: metric key in a report -> (label, "up" is the wrong way, is a count)
WATCHED: dict[str, tuple[str, bool]] = {
    "restore_seconds_per_mb": ("restore seconds per MB", False),
    "snapshot_age_seconds": ("snapshot age (s)", False),
    "drift_count": ("schema drift (differences)", True),
    "failures": ("failed checks", True),
    "webhook_rejected": ("rejected webhooks", True),
    "dlq_messages": ("messages in the DLQ", True),
}


@dataclass(frozen=True)
class Trend:
    metric: str
    label: str
    points: tuple[tuple[int, float], ...]  # (audit log sequence, value)
    slope: float
    previous_median: float | None
    recent_median: float | None
    flagged: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "label": self.label,
            "points": [list(p) for p in self.points],
            "slope_per_run": self.slope,
            "previous_median": self.previous_median,
            "recent_median": self.recent_median,
            "flagged": self.flagged,
            "reason": self.reason,
        }


def theil_sen_slope(points: list[tuple[int, float]]) -> float:
    """Median of the pairwise slopes; 0 for fewer than two points."""
    slopes = [
        (y2 - y1) / (x2 - x1)
        for i, (x1, y1) in enumerate(points)
        for (x2, y2) in points[i + 1 :]
        if x2 != x1
    ]
    return statistics.median(slopes) if slopes else 0.0


def _with_metrics(entry: ledger.LogEntry) -> ledger.LogEntry:
    """``entry`` once its body and its metrics are JSON objects (``TypeError`` otherwise)."""
    if not isinstance(entry.body, dict):
        raise TypeError("the body is not a JSON object")
    if not isinstance(entry.body.get("metrics") or {}, dict):
        raise TypeError("its metrics are not a JSON object")
    return entry


def series(entries: list[ledger.LogEntry]) -> dict[str, list[tuple[int, float]]]:
    found: dict[str, list[tuple[int, float]]] = {key: [] for key in WATCHED}
    for entry in entries:
        metrics = entry.body.get("metrics") or {}
        for key in WATCHED:
            value = metrics.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                found[key].append((entry.sequence, float(value)))
    return found


def analyse(
    points: list[tuple[int, float]], metric: str, *, window: int = 5, tolerance: float = 0.2
) -> Trend:
    label, is_count = WATCHED[metric]
    slope = theil_sen_slope(points)
    values = [v for _, v in points]
    if len(values) < 2 * window:
        return Trend(
            metric,
            label,
            tuple(points),
            slope,
            None,
            None,
            False,
            f"{len(values)} runs recorded; {2 * window} needed to compare",
        )
    previous = statistics.median(values[-2 * window : -window])
    recent = statistics.median(values[-window:])
    margin = 1.0 if is_count else abs(previous) * tolerance
    worse = recent > previous + margin and slope > 0
    reason = (
        f"median of the last {window} runs {recent:.3g} vs {previous:.3g} before; "
        f"Theil-Sen slope {slope:+.3g} per run"
    )
    return Trend(metric, label, tuple(points), slope, previous, recent, worse, reason)


def trends(store: SnapshotStore, log: str, *, window: int = 5) -> list[Trend]:
    """Every watched series in the audit log (the chain is verified first)."""
    ledger.verify_chain(store, log)
    # An entry whose body is not this Rollgate's shape is a broken log naming it.
    entries = ledger.read_as(store, log, _with_metrics)
    return [
        analyse(points, metric, window=window)
        for metric, points in series(entries).items()
        if points
    ]


def svg_chart(trend: Trend, width: int = 520, height: int = 140) -> str:
    """A line chart of one series, as SVG markup (no script, no external reference)."""
    pad = 28
    xs = [x for x, _ in trend.points]
    ys = [y for _, y in trend.points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, *ys), max(ys)
    span_x = (x1 - x0) or 1
    span_y = (y1 - y0) or 1.0

    def at(x: float, y: float) -> tuple[float, float]:
        return (
            pad + (x - x0) / span_x * (width - 2 * pad),
            height - pad - (y - y0) / span_y * (height - 2 * pad),
        )

    line = " ".join(f"{px:.1f},{py:.1f}" for px, py in (at(x, y) for x, y in trend.points))
    colour = "#c0392b" if trend.flagged else "#2c7be5"
    dots = "".join(
        f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{colour}"/>'
        for px, py in (at(x, y) for x, y in trend.points)
    )
    # The Theil-Sen line through the median point, so the reader sees the slope judged.
    mx, my = statistics.median(xs), statistics.median(ys)
    ax, ay = at(x0, my + trend.slope * (x0 - mx))
    bx, by = at(x1, my + trend.slope * (x1 - mx))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{html.escape(trend.label)}">'
        f'<rect width="{width}" height="{height}" fill="#fff" stroke="#ddd"/>'
        f'<text x="{pad}" y="16" font-size="12" font-family="sans-serif">'
        f"{html.escape(trend.label)} (max {y1:.3g})</text>"
        f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{line}"/>{dots}'
        f'<line x1="{ax:.1f}" y1="{ay:.1f}" x2="{bx:.1f}" y2="{by:.1f}" stroke="#888" '
        'stroke-dasharray="4 3"/>'
        f'<text x="{pad}" y="{height - 8}" font-size="10" font-family="sans-serif">'
        f"runs {x0}-{x1}</text></svg>"
    )


def html_report(trends_found: list[Trend], source: str) -> str:
    """A self-contained HTML page: one SVG chart and verdict per series."""
    sections = []
    for trend in trends_found:
        verdict = "moving the wrong way" if trend.flagged else "steady"
        sections.append(
            f"<section><h2>{html.escape(trend.label)}: {verdict}</h2>"
            f"<p>{html.escape(trend.reason)}</p>{svg_chart(trend)}</section>"
        )
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>Rollgate audit trends'
        "</title><style>body{font-family:sans-serif;max-width:44em;margin:2em auto}"
        "</style></head><body><h1>Rollgate audit trends</h1>"
        f"<p>From {html.escape(source)}. A series is flagged when its Theil-Sen slope points "
        "the wrong way and the median of the last runs exceeds the median of the runs "
        "before.</p>" + "".join(sections) + "</body></html>\n"
    )
