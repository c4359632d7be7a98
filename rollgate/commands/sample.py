"""``rollgate sample``: fill a migrated database with production-shaped data."""

from __future__ import annotations

from db.runner import connect
from db.sample import generate_sample, parse_size
from rollgate import render
from rollgate.commands import Options, Outcome


def sample(opts: Options, *, size: str, seed: int) -> Outcome:
    """Generate about ``size`` of data; progress after every batch."""
    target = parse_size(size)
    with connect(opts.require_dsn()) as conn:
        report = generate_sample(
            conn, target, seed=seed, progress=lambda p: opts.progress(render.sample_progress(p))
        )
    return Outcome(0, report.to_dict(), render.sample(report))
