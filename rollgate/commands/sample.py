"""``rollgate sample``: fill a migrated database with production-shaped data."""

from __future__ import annotations

import time

from core.postgres import connect
from core.sizes import parse_size
from db.sample import SampleProgress, generate_sample
from rollgate import render
from rollgate.commands import Options, Outcome

# A 250 MB run has hundreds of batches; one line a second is readable.
PROGRESS_INTERVAL_SECONDS = 1.0
# Sample data is for rehearsals and benchmarks; more than this is a typo
# (1TB for 1GB) far more often than a wish, and fills a disk for hours.
DEFAULT_MAX_SAMPLE_SIZE = "10GB"


def sample(
    opts: Options, *, size: str, seed: int, max_size: str = DEFAULT_MAX_SAMPLE_SIZE
) -> Outcome:
    """Generate about ``size`` of data (at most ``max_size``), reporting progress once a second."""
    target = parse_size(size)
    cap = parse_size(max_size)
    last_shown = 0.0

    def show(progress: SampleProgress) -> None:
        nonlocal last_shown
        now = time.monotonic()
        if now - last_shown >= PROGRESS_INTERVAL_SECONDS or progress.bytes_now >= target:
            last_shown = now
            opts.progress(render.sample_progress(progress))

    with connect(opts.require_dsn()) as conn:
        report = generate_sample(conn, target, seed=seed, progress=show, max_bytes=cap)
    return Outcome(0, report.to_dict(), render.sample(report))
