"""Benchmark rollback snapshots against bare ``pg_dump``/``pg_restore``, in one run per size.

Run::

    .venv/bin/python benchmarks/bench_snapshots.py [--sizes 25MB,250MB] [--sizes 1GB]

For each size it starts from a fresh database on one throwaway embedded
Postgres (``wal_level = logical``), migrated to 0003 and filled by
``db.sample``; records release A in the releases log (its ECS services on
moto's ECS server, on loopback); applies 0004 and records release B. Then it
times, on the same data:

* bare ``pg_dump -Fd -j2`` (its default gzip) and ``pg_dump -Fd -j2 -Z0``
  (the same format and compression ``snapshot create`` uses), and bare
  ``pg_restore -j2`` of the ``-Z0`` dump into a fresh database: the baseline;
* ``snapshot create`` (``rollback.snapshot.create_snapshot``, directory store,
  replication slot on, checksums and sha256 included), with its own timing
  breakdown from the manifest;
* ``snapshot verify`` (restore into a throwaway database, checksums, catalog);
* ``snapshot warm`` (restore + verify beside the live database);
* ``rollback run`` by down migrations (B -> A: 0004 reverted, services put
  back on A's task definitions on moto, worker stopped and resumed), with
  ``rollback.run.run_rollback`` exactly as the CLI drives it;
* the full rollback from the warm standby: ``rollback.restore.swap_in``,
  the rename that ``rollback run``'s warm-swap step performs;
* ``snapshot restore`` (restore, verify, swap by rename).

and prints one table with the ratios the issue sets as targets. Machines are
noisy, and other work shares the CPU: compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from core.sizes import parse_size
from db.migrations import load_migrations
from db.runner import MigrationRunner
from db.sample import generate_sample
from db.throwaway import ThrowawayPostgres, create_database, drop_database, start_throwaway
from rollback.plan import plan_rollback
from rollback.releases import record_release
from rollback.restore import restore_snapshot, swap_in, warm_standby
from rollback.run import gather_facts, run_rollback
from rollback.snapshot import create_snapshot
from rollback.store import DirectoryStore
from rollback.verify import verify_snapshot

MIB = 1024 * 1024
CLUSTER = "bench"
SERVICES = {"web": "bench-web", "worker": "bench-worker"}


@dataclass
class SizeResult:
    size: str
    database_bytes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    create_timings: dict[str, float] = field(default_factory=dict)
    rollback_path: str = ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="25MB,250MB",
        help="comma-separated targets (default 25MB,250MB; 1GB only on request, outside CI)",
    )
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    results = []
    with _moto_ecs() as ecs, start_throwaway("embedded") as server:
        _register_task_definitions(ecs)
        for size in sizes:
            print(f"== {size}", file=sys.stderr)
            results.append(_bench_size(server, ecs, size, args.seed))
    print(render(results))
    return 0


def _bench_size(server: ThrowawayPostgres, ecs: Any, size: str, seed: int) -> SizeResult:
    result = SizeResult(size)
    tag = size.lower()
    live = f"bench_live_{tag}"
    dsn = create_database(server, live)
    migrations = load_migrations()
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-snapshots-{tag}-"))
    store = DirectoryStore(workdir / "store")
    slot_name: str | None = None
    try:
        with MigrationRunner(dsn, migrations) as runner:
            runner.migrate(3)
        with psycopg.connect(dsn) as conn:
            generate_sample(conn, parse_size(size), seed=seed)
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
            result.database_bytes = int(
                conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
            )
        _deploy(ecs, revision=1)
        _record(store, ecs, dsn, migrations, commit="a" * 40)
        with MigrationRunner(dsn, migrations) as runner:
            runner.migrate()
        _deploy(ecs, revision=2)
        _record(store, ecs, dsn, migrations, commit="b" * 40)
        _baseline(server, dsn, workdir, tag, result.seconds)
        seconds = result.seconds
        manifest, seconds["snapshot create"] = _clock(lambda: create_snapshot(dsn, store))
        slot_name = manifest.slot.name if manifest.slot else None
        result.create_timings = dict(manifest.timings)
        report, seconds["snapshot verify"] = _clock(
            lambda: verify_snapshot(store, manifest.id, server, migrations=migrations)
        )
        if not report.ok:
            raise SystemExit(f"verify failed: {report.problems}")
        result.create_timings["verify: pg_restore"] = report.restore_seconds
        warm, seconds["snapshot warm"] = _clock(lambda: warm_standby(store, manifest.id, dsn))
        result.create_timings["warm: pg_restore"] = warm.restore_seconds
        result.create_timings["warm: checks"] = warm.verify_seconds

        facts = gather_facts(store, dsn, migrations)
        plan = plan_rollback(facts)
        result.rollback_path = plan.path
        _, seconds["rollback run (down)"] = _clock(
            lambda: run_rollback(
                store, dsn, migrations, plan, confirmed=plan.fingerprint(), ecs=ecs
            )
        )
        replaced, seconds["warm-standby swap"] = _clock(
            lambda: _swap_warm(server, dsn, live, str(warm.kept_database))
        )
        drop_database(server, replaced)
        restore, seconds["snapshot restore"] = _clock(
            lambda: restore_snapshot(store, manifest.id, dsn)
        )
        drop_database(server, restore.replaced_by_rename)
    finally:
        _clean_up(server, tag, slot_name, workdir)
    return result


def _swap_warm(server: ThrowawayPostgres, dsn: str, live: str, warm: str) -> str:
    """What ``rollback run``'s warm-swap step does (with no writes to replay)."""
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{warm}" WITH ALLOW_CONNECTIONS true')
    return swap_in(dsn, live, warm)


def _clean_up(server: ThrowawayPostgres, tag: str, slot_name: str | None, workdir: Path) -> None:
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        if slot_name:
            admin.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = %s",
                (slot_name,),
            )
        names = [
            row[0]
            for row in admin.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"bench_%{tag}%",)
            )
        ]
    for name in names:
        drop_database(server, name)
    shutil.rmtree(workdir, ignore_errors=True)


def _baseline(
    server: ThrowawayPostgres, dsn: str, workdir: Path, tag: str, seconds: dict[str, float]
) -> None:
    """Bare pg_dump (default gzip, and -Z0) and bare pg_restore -j2, on the same data."""
    bin_dir = server.client_bin()
    seconds["pg_dump -Fd -j2"] = _timed(
        [str(bin_dir / "pg_dump"), "-Fd", "-j2", "-f", str(workdir / "bare-gz"), dsn]
    )
    seconds["pg_dump -Fd -j2 -Z0"] = _timed(
        [str(bin_dir / "pg_dump"), "-Fd", "-j2", "-Z0", "-f", str(workdir / "bare"), dsn]
    )
    restored = create_database(server, f"bench_bare_{tag}")
    seconds["pg_restore -j2"] = _timed(
        [str(bin_dir / "pg_restore"), "-j2", "--no-owner", "-d", restored, str(workdir / "bare")]
    )
    drop_database(server, f"bench_bare_{tag}")
    shutil.rmtree(workdir / "bare-gz")
    shutil.rmtree(workdir / "bare")


def render(results: list[SizeResult]) -> str:
    """The table: seconds per operation and size, then the target ratios."""
    operations = list(results[0].seconds) if results else []
    header = f"{'operation':28s}" + "".join(f"{r.size:>12s}" for r in results)
    lines = [
        header,
        f"{'database size (MiB)':28s}"
        + "".join(f"{r.database_bytes / MIB:12.0f}" for r in results),
    ]
    for op in operations:
        lines.append(f"{op + ' (s)':28s}" + "".join(f"{r.seconds[op]:12.2f}" for r in results))
    for key in (
        "checksum_seconds",
        "dump_seconds",
        "hash_seconds",
        "verify: pg_restore",
        "warm: pg_restore",
        "warm: checks",
    ):
        label = key if ":" in key else "create: " + key
        lines.append(
            f"{'  ' + label:28s}"
            + "".join(f"{r.create_timings.get(key, 0.0):12.2f}" for r in results)
        )
    lines.append("")
    ratios: list[tuple[str, Callable[[SizeResult], float], str]] = [
        (
            "create / pg_dump -Fd -j2",
            lambda r: r.seconds["snapshot create"] / r.seconds["pg_dump -Fd -j2"],
            "<= 1.15",
        ),
        (
            "create / pg_dump -j2 -Z0",
            lambda r: r.seconds["snapshot create"] / r.seconds["pg_dump -Fd -j2 -Z0"],
            "(same work)",
        ),
        (
            "verify / pg_restore -j2",
            lambda r: r.seconds["snapshot verify"] / r.seconds["pg_restore -j2"],
            "<= 1.2",
        ),
        ("rollback run down (s)", lambda r: r.seconds["rollback run (down)"], "< 1"),
        ("warm-standby swap (s)", lambda r: r.seconds["warm-standby swap"], "< 2, flat"),
    ]
    lines.append(f"{'ratio':28s}" + "".join(f"{r.size:>12s}" for r in results) + "   target")
    for name, value, target in ratios:
        lines.append(f"{name:28s}" + "".join(f"{value(r):12.2f}" for r in results) + f"   {target}")
    lines.append("rollback path: " + ", ".join(f"{r.size}={r.rollback_path}" for r in results))
    return "\n".join(lines)


def _clock(action: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    value = action()
    return value, time.monotonic() - started


def _timed(args: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def _record(store: DirectoryStore, ecs: Any, dsn: str, migrations: Any, *, commit: str) -> None:
    with MigrationRunner(dsn, migrations) as runner:
        version = runner.status().current
    record_release(
        store,
        commit=commit,
        app_image=f"bench@sha256:{commit[:8]}",
        schema_version=version,
        cluster=CLUSTER,
        service_names=SERVICES,
        ecs_client=ecs,
    )


@contextmanager
def _moto_ecs() -> Iterator[Any]:
    """moto's ECS API on 127.0.0.1, with fake credentials (never real ones)."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ[name] = value
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield boto3.client("ecs", endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()


def _register_task_definitions(ecs: Any) -> None:
    ecs.create_cluster(clusterName=CLUSTER)
    for revision in (1, 2):
        for role in SERVICES:
            ecs.register_task_definition(
                family=f"bench-{role}",
                containerDefinitions=[
                    {"name": role, "image": f"bench:{revision}", "memory": 512, "essential": True}
                ],
            )
    for role, name in SERVICES.items():
        ecs.create_service(
            cluster=CLUSTER, serviceName=name, taskDefinition=f"bench-{role}:1", desiredCount=1
        )


def _deploy(ecs: Any, *, revision: int) -> None:
    for role, name in SERVICES.items():
        ecs.update_service(cluster=CLUSTER, service=name, taskDefinition=f"bench-{role}:{revision}")


if __name__ == "__main__":
    sys.exit(main())
