"""Snapshots on real Postgres: create, verify, and every kind of corruption caught first."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from pathlib import Path

import psycopg
import pytest

from core.postgres import connect
from db.checksums import ROW_HASH_V2, ROW_TEXT_V1, table_checksums
from db.migrations import BUNDLED_MIGRATIONS, load_migrations
from db.throwaway import create_database, drop_database
from rollback.decoding import flush_wal
from rollback.manifest import CorruptSnapshot, Manifest
from rollback.snapshot import SnapshotFailed, create_snapshot, drop_slot
from rollback.store import DirectoryStore, open_store
from rollback.verify import latest_verification, load_manifest, verify_snapshot

# Partitions, a domain, an enum, a trigger and a custom schema: what a
# logical snapshot must reproduce exactly (the shapes Pagila is known for).
SHOP = """
CREATE SCHEMA shop;
CREATE DOMAIN shop.price AS numeric(10,2) CHECK (VALUE >= 0);
CREATE TYPE shop.rating AS ENUM ('G', 'PG', 'R');
CREATE TABLE shop.film (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, title text NOT NULL,
                        rating shop.rating, price shop.price, updated_at timestamptz);
CREATE FUNCTION shop.touch() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN NEW.updated_at := now(); RETURN NEW; END$$;
CREATE TRIGGER film_touch BEFORE UPDATE ON shop.film FOR EACH ROW EXECUTE FUNCTION shop.touch();
CREATE TABLE shop.payment (id bigint, film_id bigint REFERENCES shop.film (id), paid_on date,
                           amount shop.price) PARTITION BY RANGE (paid_on);
CREATE TABLE shop.payment_2026_01 PARTITION OF shop.payment
  FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE shop.payment_2026_02 PARTITION OF shop.payment
  FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
INSERT INTO shop.film (title, rating, price)
  SELECT 'film ' || g, (ARRAY['G','PG','R'])[1 + g % 3]::shop.rating, g % 20
  FROM generate_series(1, 300) g;
INSERT INTO shop.payment
  SELECT g, 1 + g % 300, DATE '2026-01-01' + (g % 59), (g % 9) + 0.99
  FROM generate_series(1, 2000) g;
"""


@pytest.fixture
def shop_dsn(make_database) -> str:
    dsn = make_database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SHOP)
    return dsn


@pytest.fixture
def store(tmp_path: Path) -> DirectoryStore:
    store = open_store(str(tmp_path / "store"))
    assert isinstance(store, DirectoryStore)
    return store


def test_any_database_round_trips_exactly(shop_dsn, store, server):
    manifest = create_snapshot(shop_dsn, store, slot=False)
    assert store.list_ids() == [manifest.id]
    assert manifest.release.schema_version is None  # no Rollgate history here
    rows = {t.table: t.rows for t in manifest.tables}
    assert rows["shop.film"] == 300
    assert rows["shop.payment_2026_01"] + rows["shop.payment_2026_02"] == 2000
    assert all(f.sha256 and f.size > 0 for f in manifest.files)
    report = verify_snapshot(store, manifest.id, server)
    assert report.ok, report.problems
    assert latest_verification(store, manifest.id)["ok"] is True
    # Nothing secret in the manifest: no password, no user, no host.
    text = store.read_manifest(manifest.id).decode()
    assert "password" not in text and "host" not in text.lower().replace("hash", "")


def test_the_snapshot_is_of_one_moment_even_while_writers_write(shop_dsn, store, server):
    """Writers keep writing during the dump; the manifest and dump agree on one moment."""
    stop = threading.Event()
    written = []

    def writer() -> None:
        with psycopg.connect(shop_dsn, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '2s'")  # a blocked writer would fail the test
            while not stop.is_set():
                conn.execute("INSERT INTO shop.film (title) VALUES ('during')")
                written.append(1)
                time.sleep(0.005)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.2)
        manifest = create_snapshot(shop_dsn, store, slot=False)
    finally:
        stop.set()
        thread.join()
    assert len(written) > 10
    assert verify_snapshot(store, manifest.id, server).ok


@pytest.mark.parametrize("fault", ["flip", "truncate", "missing", "extra"])
def test_corrupt_artifacts_are_named_before_anything_is_restored(shop_dsn, store, server, fault):
    manifest = create_snapshot(shop_dsn, store, slot=False)
    victim = max(manifest.files, key=lambda f: f.size)
    path = store.local_path(manifest.id, victim.name)
    if fault == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    elif fault == "truncate":
        path.write_bytes(path.read_bytes()[:-10])
    elif fault == "missing":
        path.unlink()
    else:
        (path.parent / "stray.dat").write_bytes(b"x")
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        before = conn.execute("SELECT count(*) FROM pg_database").fetchone()
        with pytest.raises(CorruptSnapshot) as caught:
            verify_snapshot(store, manifest.id, server)
        after = conn.execute("SELECT count(*) FROM pg_database").fetchone()
    assert before == after  # no database was even created
    expected = "stray.dat" if fault == "extra" else victim.name
    assert expected in caught.value.message


def test_an_edited_manifest_is_refused(shop_dsn, store, server):
    manifest = create_snapshot(shop_dsn, store, slot=False)
    path = store.root / "snapshots" / manifest.id / "manifest.json"
    data = json.loads(path.read_text())
    data["tables"][0]["rows"] += 1
    path.write_text(json.dumps(data))
    with pytest.raises(CorruptSnapshot, match="edited or damaged"):
        verify_snapshot(store, manifest.id, server)
    path.write_bytes(b"\x00garbage")
    with pytest.raises(CorruptSnapshot, match="not valid JSON"):
        load_manifest(store, manifest.id)


def test_a_restore_that_differs_from_the_manifest_is_a_problem(shop_dsn, store, server):
    """The comparison is live: tamper with a manifest consistently (rehashed) and verify fails."""
    manifest = create_snapshot(shop_dsn, store, slot=False)
    tampered = Manifest(
        **{
            **manifest.__dict__,
            "tables": tuple(
                t if t.table != "shop.film" else type(t)(t.table, t.rows + 1, t.checksum)
                for t in manifest.tables
            ),
            "catalog_fingerprint": "0" * 64,
        }
    )
    path = store.root / "snapshots" / manifest.id / "manifest.json"
    path.write_bytes(tampered.to_json())
    report = verify_snapshot(store, manifest.id, server)
    assert not report.ok
    assert any("shop.film" in p for p in report.problems)
    assert any("catalog fingerprint" in p for p in report.problems)


def _write_rehashed(path: Path, body: dict) -> None:
    """Write a manifest body as Rollgate would have, with a matching self-hash."""
    body = {key: value for key, value in body.items() if key != "manifest_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    body["manifest_sha256"] = hashlib.sha256(canonical).hexdigest()
    path.write_text(json.dumps(body, sort_keys=True, indent=2) + "\n")


def test_a_snapshot_from_before_checksum_methods_verifies_by_row_text_v1(shop_dsn, store, server):
    manifest = create_snapshot(shop_dsn, store, slot=False)
    assert manifest.checksum_method == ROW_HASH_V2
    path = store.root / "snapshots" / manifest.id / "manifest.json"
    data = json.loads(path.read_text())
    assert data["checksum_method"] == ROW_HASH_V2
    assert all(set(t) == {"table", "rows", "checksum"} for t in data["tables"])
    # The manifest as earlier releases wrote it: no method, checksums of the rows' text.
    with psycopg.connect(shop_dsn) as conn:
        by_text = {t.table: t.checksum for t in table_checksums(conn, method=ROW_TEXT_V1)}
    del data["checksum_method"]
    for table in data["tables"]:
        assert table["checksum"] != by_text[table["table"]]
        table["checksum"] = by_text[table["table"]]
    _write_rehashed(path, data)
    old = load_manifest(store, manifest.id)
    assert old.checksum_method == ROW_TEXT_V1
    assert {t.method for t in old.tables} == {ROW_TEXT_V1}
    report = verify_snapshot(store, manifest.id, server)
    assert report.ok, report.problems
    # Still a real comparison: a wrong v1 checksum is named.
    film = next(t for t in data["tables"] if t["table"] == "shop.film")
    film["checksum"] = "1"
    _write_rehashed(path, data)
    report = verify_snapshot(store, manifest.id, server)
    assert report.problems == ("table shop.film: same row count (300), different content",)


def test_a_manifest_with_an_unknown_checksum_method_is_refused(shop_dsn, store):
    manifest = create_snapshot(shop_dsn, store, slot=False)
    path = store.root / "snapshots" / manifest.id / "manifest.json"
    data = json.loads(path.read_text())
    data["checksum_method"] = "row-hash-v9"
    _write_rehashed(path, data)
    with pytest.raises(CorruptSnapshot, match="checksum method 'row-hash-v9' is unknown"):
        load_manifest(store, manifest.id)


def test_rollgate_release_is_recorded_and_verify_scripts_run(migrated_dsn, store, server):
    manifest = create_snapshot(migrated_dsn, store, slot=False)
    migrations = load_migrations(BUNDLED_MIGRATIONS)
    assert manifest.release.schema_version == migrations[-1].version
    assert set(manifest.release.migrations) == {m.label for m in migrations}
    report = verify_snapshot(store, manifest.id, server, migrations=migrations)
    assert report.ok, report.problems
    assert report.verify_scripts == tuple(m.label for m in migrations)
    # Verify scripts that do not match what the snapshot recorded cannot prove it.
    report = verify_snapshot(store, manifest.id, server, migrations=migrations[:1])
    assert not report.ok
    assert "could not run" in report.problems[0]


def test_slot_is_opened_at_the_dumps_moment_and_keeps_later_changes(shop_dsn, store):
    manifest = create_snapshot(shop_dsn, store, slot=True)
    assert manifest.slot is not None
    try:
        with connect(shop_dsn) as conn:
            conn.execute("UPDATE shop.film SET title = 'after' WHERE id = 1")
            flush_wal(conn)  # decoding sees only flushed WAL (async commit on throwaways)
            changes = conn.execute(
                "SELECT data FROM pg_logical_slot_peek_changes(%s, NULL, NULL)",
                (manifest.slot.name,),
            ).fetchall()
        assert any("UPDATE" in row[0] and "'after'" in row[0] for row in changes)
    finally:
        assert drop_slot(shop_dsn, manifest.slot.name)


def test_a_role_that_cannot_replicate_gets_a_clear_refusal_and_nothing_is_stored(server, store):
    # The RDS-like owner role has no REPLICATION attribute (RDS: rds_replication).
    name = f"noreplication_{secrets.token_hex(3)}"
    dsn = create_database(server, name, owner=True)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        with pytest.raises(SnapshotFailed, match="REPLICATION attribute"):
            create_snapshot(dsn, store, slot=True)
        assert store.list_ids() == []
        manifest = create_snapshot(dsn, store, slot=False)  # the documented way out
        assert manifest.slot is None
    finally:
        drop_database(server, name)
