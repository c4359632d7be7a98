"""Restores onto a real server: never in place, verified first, swapped by rename."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo

from core.errors import RollgateError
from rollback.manifest import CorruptSnapshot, Manifest
from rollback.restore import (
    REPLACED_MARK,
    RestoreRefused,
    restore_snapshot,
    staging_name,
    swap_in,
    warm_standby,
)
from rollback.snapshot import create_snapshot
from rollback.store import DirectoryStore, open_store
from tests.rollback.test_snapshot import SHOP


@pytest.fixture
def store(tmp_path: Path) -> DirectoryStore:
    store = open_store(str(tmp_path / "store"))
    assert isinstance(store, DirectoryStore)
    return store


@pytest.fixture
def live(make_database, server):
    """A live database with data, and cleanup of every database a restore makes beside it."""
    dsn = make_database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SHOP)
    name = conninfo.conninfo_to_dict(dsn)["dbname"]
    yield dsn
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        for (extra,) in admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s AND datname <> %s",
            (f"{name}\\_\\_%", name),
        ).fetchall():
            admin.execute(f'ALTER DATABASE "{extra}" WITH IS_TEMPLATE false ALLOW_CONNECTIONS true')
            admin.execute(f'DROP DATABASE "{extra}" WITH (FORCE)')


def films(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM shop.film").fetchone()[0]


def databases(server) -> set[str]:
    with psycopg.connect(server.dsn()) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


def test_restore_swaps_in_a_verified_copy_and_keeps_the_replaced_database(live, store, server):
    manifest = create_snapshot(live, store, slot=False)
    with psycopg.connect(live, autocommit=True) as conn:
        conn.execute("DELETE FROM shop.payment; DELETE FROM shop.film WHERE id > 100")
    idle = psycopg.connect(live)  # a straggler session: it must not block the swap
    try:
        report = restore_snapshot(store, manifest.id, live)
    finally:
        idle.close()
    assert films(live) == 300
    assert report.replaced_by_rename is not None
    assert REPLACED_MARK in report.replaced_by_rename
    # The replaced database is kept as it was, closed so that nothing writes to it.
    kept = conninfo.make_conninfo(live, dbname=report.replaced_by_rename)
    with pytest.raises(psycopg.OperationalError, match="not currently accepting connections"):
        psycopg.connect(kept).close()
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{report.replaced_by_rename}" ALLOW_CONNECTIONS true')
    assert films(kept) == 100


def test_a_corrupt_snapshot_touches_nothing(live, store, server):
    manifest = create_snapshot(live, store, slot=False)
    victim = max(manifest.files, key=lambda f: f.size)
    path = store.local_path(manifest.id, victim.name)
    path.write_bytes(path.read_bytes()[:-1])
    before = databases(server)
    with pytest.raises(CorruptSnapshot, match=victim.name):
        restore_snapshot(store, manifest.id, live)
    assert databases(server) == before
    assert films(live) == 300


def test_a_copy_that_does_not_match_its_manifest_is_never_swapped_in(live, store, server):
    manifest = create_snapshot(live, store, slot=False)
    tampered = Manifest(**{**manifest.__dict__, "catalog_fingerprint": "f" * 64})
    (store.root / "snapshots" / manifest.id / "manifest.json").write_bytes(tampered.to_json())
    with psycopg.connect(live, autocommit=True) as conn:
        conn.execute("DELETE FROM shop.payment")
    before = databases(server)
    with pytest.raises(RestoreRefused, match="catalog fingerprint"):
        restore_snapshot(store, manifest.id, live)
    assert databases(server) == before  # the staging copy was dropped
    with psycopg.connect(live) as conn:  # live untouched, still accepting connections
        assert conn.execute("SELECT count(*) FROM shop.payment").fetchone()[0] == 0


def test_the_hook_runs_on_the_new_database_before_anyone_sees_it(live, store):
    manifest = create_snapshot(live, store, slot=False)
    seen = []

    def bring_forward(new_dsn: str, restored: Manifest) -> None:
        seen.append(restored.id)
        with psycopg.connect(new_dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO shop.film (title) VALUES ('replayed')")

    restore_snapshot(store, manifest.id, live, before_swap=bring_forward)
    assert seen == [manifest.id]
    assert films(live) == 301


def test_warm_standby_is_closed_and_swaps_in_by_rename(live, store, server):
    manifest = create_snapshot(live, store, slot=False)
    report = warm_standby(store, manifest.id, live)
    warm = report.kept_database
    assert warm == staging_name(conninfo.conninfo_to_dict(live)["dbname"], manifest.id, "__warm_")
    with pytest.raises(psycopg.OperationalError, match="not currently accepting connections"):
        psycopg.connect(conninfo.make_conninfo(live, dbname=warm)).close()
    with psycopg.connect(live, autocommit=True) as conn:
        conn.execute("DELETE FROM shop.payment; DELETE FROM shop.film")
    started = time.monotonic()
    swap_in(live, conninfo.conninfo_to_dict(live)["dbname"], warm)
    assert time.monotonic() - started < 30  # a rename, not a restore (no timing claim)
    assert films(live) == 300


@pytest.mark.slow
def test_a_restore_killed_midway_leaves_live_untouched_and_a_rerun_converges(live, store, server):
    manifest = create_snapshot(live, store, slot=False)
    with psycopg.connect(live, autocommit=True) as conn:
        conn.execute("DELETE FROM shop.payment; DELETE FROM shop.film WHERE id > 10")
    expected_live = films(live)
    code = textwrap.dedent(
        f"""
        import time
        from rollback import restore
        from rollback.store import open_store
        original = restore._restore_verified
        def slow(*args, **kwargs):
            result = original(*args, **kwargs)
            print("restored", flush=True)
            time.sleep(60)   # killed here: after the restore, before the swap
            return result
        restore._restore_verified = slow
        restore.restore_snapshot(open_store({str(store.root)!r}), {manifest.id!r}, {live!r})
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "restored"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert films(live) == expected_live  # untouched
    restore_snapshot(store, manifest.id, live)  # drops the leftover staging copy, converges
    assert films(live) == 300


@pytest.mark.slow
def test_a_disk_that_fills_during_a_restore_fails_cleanly_and_live_is_untouched(tmp_path):
    """New databases land on a 12 MB tmpfs; the restore runs out of space mid-way."""
    import shutil
    import subprocess
    import tempfile

    from db.throwaway import start_throwaway

    # Outside pytest's private tmp: the server's own OS user must reach it.
    mount_point = Path(tempfile.mkdtemp(prefix="rollgate-small-disk-", dir="/tmp"))
    mount_point.chmod(0o755)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12M", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:  # pragma: no cover - CI runs as root, where mount works
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        with start_throwaway("embedded") as server:
            owner = server.datadir.stat()  # type: ignore[attr-defined]
            shutil.chown(mount_point, owner.st_uid, owner.st_gid)
            admin_dsn = server.dsn()
            with psycopg.connect(admin_dsn, autocommit=True) as admin:
                admin.execute("CREATE DATABASE live TABLESPACE pg_default")
                admin.execute(f"CREATE TABLESPACE small LOCATION '{mount_point}'")
                # Every database created from now on (the restore's copy) is on the small disk.
                admin.execute("ALTER DATABASE template1 SET TABLESPACE small")
            live = server.dsn("live")
            with psycopg.connect(live, autocommit=True) as conn:
                conn.execute(SHOP)
                conn.execute(
                    "CREATE TABLE shop.bulk AS SELECT g AS id, repeat(md5(g::text), 8) AS pad "
                    "FROM generate_series(1, 60000) g"
                )
            store = open_store(str(tmp_path / "store"))
            manifest = create_snapshot(live, store, slot=False)
            with psycopg.connect(live, autocommit=True) as conn:
                conn.execute("DELETE FROM shop.payment")
            before = databases(server)
            with pytest.raises(RollgateError) as failed:  # ENOSPC from pg_restore: exit 2
                restore_snapshot(store, manifest.id, live)
            assert "space" in str(failed.value).lower() or "extend" in str(failed.value).lower()
            assert databases(server) == before  # the half-restored copy was dropped
            with psycopg.connect(live) as conn:  # live untouched, and still open
                assert conn.execute("SELECT count(*) FROM shop.payment").fetchone()[0] == 0
                assert conn.execute("SELECT count(*) FROM shop.bulk").fetchone()[0] == 60000
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        mount_point.rmdir()
