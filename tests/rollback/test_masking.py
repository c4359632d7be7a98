"""Masked snapshots: personal data never reaches the artifact, every constraint still holds."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from core.errors import CannotRun
from db.migrations import load_migrations
from db.sample import generate_sample
from rollback.masking import MaskingRules, load_masking
from rollback.snapshot import create_snapshot
from rollback.store import DirectoryStore
from rollback.verify import verify_snapshot

RULES = {"public.customers.email": "email", "public.customers.name": "name"}


@pytest.fixture
def customers_dsn(migrated_dsn: str) -> str:
    with psycopg.connect(migrated_dsn) as conn:
        generate_sample(conn, 2 * 1024 * 1024, seed=3)
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        # Emails that differ only by case cannot both exist (unique on lower(email));
        # one with upper case letters must still mask to the same shape.
        conn.execute(
            "INSERT INTO customers (name, email) "
            "VALUES ('Zoë Ångström', 'Zoe.Angstrom@Example.COM')"
        )
    return migrated_dsn


def originals(dsn: str) -> tuple[set[str], set[str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT email, name FROM customers").fetchall()
    return {r[0] for r in rows}, {r[1] for r in rows}


def test_a_masked_snapshot_restores_with_every_constraint_and_no_personal_data(
    customers_dsn, server, tmp_path: Path
):
    emails, names = originals(customers_dsn)
    store = DirectoryStore(tmp_path / "store")
    manifest = create_snapshot(
        customers_dsn, store, mask=MaskingRules(RULES), mask_server=server, slot=True
    )
    assert manifest.masked_columns == ("public.customers.email", "public.customers.name")
    assert manifest.slot is None  # nothing is ever replayed onto a masked copy
    # Restores with --exit-on-error: unique indexes, CHECKs and foreign keys all re-checked,
    # and the masked data's checksums are the manifest's.
    report = verify_snapshot(store, manifest.id, server, migrations=load_migrations())
    assert report.ok, report.problems
    # Verified, of the live schema version, and still never a rollback's source.
    from rollback.run import _choose_snapshot

    assert manifest.release.schema_version is not None
    assert _choose_snapshot(store, customers_dsn, manifest.release.schema_version, None) is None
    dump = store.local_path(manifest.id, "dump/toc.dat").parent
    blob = b"".join(p.read_bytes() for p in dump.rglob("*") if p.is_file())
    assert not [e for e in emails if e.encode() in blob]
    assert not [e for e in emails if e.lower().encode() in blob]
    fields = {f for line in blob.split(b"\n") for f in line.split(b"\t")}
    assert not [n for n in names if n.encode() in fields]
    assert b"@example.invalid" in blob and b"Customer " in blob


def test_masks_are_unique_where_the_emails_were_and_keep_the_rows(customers_dsn, make_database):
    from rollback.masking import apply_masking

    emails, _ = originals(customers_dsn)
    with psycopg.connect(customers_dsn) as conn:
        apply_masking(conn, MaskingRules(RULES, salt="fixed"))
        masked = conn.execute("SELECT email, name FROM customers").fetchall()
        again = conn.execute(
            "SELECT 'u' || substr(md5('fixed' || lower('Zoe.Angstrom@Example.COM')), 1, 16) "
            "|| '@example.invalid'"
        ).fetchone()[0]
    assert len({e for e, _ in masked}) == len(masked) == len(emails)
    assert all(e.endswith("@example.invalid") and n.startswith("Customer ") for e, n in masked)
    assert again in {e for e, _ in masked}  # deterministic for a salt


def test_masking_rules_name_what_is_wrong(tmp_path: Path, customers_dsn):
    from rollback.masking import apply_masking

    bad = tmp_path / "masking.toml"
    bad.write_text('[columns]\n"public.customers.email" = "scramble"\n')
    with pytest.raises(CannotRun, match="scramble"):
        load_masking(bad)
    bad.write_text('[columns]\n"customers.email" = "email"\n')
    with pytest.raises(CannotRun, match=r"schema\.table\.column"):
        load_masking(bad)
    assert load_masking().columns == RULES  # the project's db/masking.toml
    with psycopg.connect(customers_dsn) as conn, pytest.raises(CannotRun, match="phone"):
        apply_masking(conn, MaskingRules({"public.customers.phone": "text"}))


def test_the_cli_makes_a_masked_snapshot(customers_dsn, tmp_path: Path, capsys):
    import json

    from rollgate.cli import main

    store = str(tmp_path / "store")
    argv = ["--json", "snapshot", "create", "--mask", "--dsn", customers_dsn, "--store", store]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)["result"]
    assert result["manifest"]["masked_columns"] == sorted(RULES)
    assert result["manifest"]["slot"] is None
