"""Migrating down to the starting version restores its catalog and its data,
except what the down files declare they destroy (``db.destructive``)."""

from __future__ import annotations

import pytest

from core.errors import RollgateError
from core.postgres import connect
from db.catalog import diff_catalogs, read_catalog
from db.checksums import checksum_method_of, compare_checksums, parallel_table_checksums
from db.destructive import affected_data, classify_reverts
from db.runner import MigrationRunner
from smoke.prepare import Prepared
from smoke.summary import Summary


def test_reverting_restores_the_starting_catalog_and_data(
    prepared: Prepared, summary: Summary
) -> None:
    if prepared.reversibility_proven_by is not None:
        summary.reversibility = {"proven_by": prepared.reversibility_proven_by}
        pytest.skip(f"the revert is proven by the caller: {prepared.reversibility_proven_by}")
    if prepared.revert_dsn is None or not prepared.applied:
        pytest.skip("no pending migration was applied: nothing to revert")
    assert prepared.revert_dsn is not None
    declared = affected_data(classify_reverts(prepared.applied))
    try:
        with MigrationRunner(prepared.revert_dsn, prepared.migrations) as runner:
            runner.revert(prepared.start_version)
    except RollgateError as exc:
        summary.reversibility = {"reverted": False, "error": exc.message, "data_lost": None}
        pytest.fail(
            f"reverting to {prepared.start_version:04d} failed: {exc.message}", pytrace=False
        )
    with connect(prepared.revert_dsn) as conn:
        catalog = read_catalog(conn)
    # Nothing else touches the clone: its tables can be summed on two sessions at once,
    # by the method the start's checksums were taken with.
    checksums = parallel_table_checksums(
        prepared.revert_dsn,
        exclude_schemas=("rollgate",),
        method=checksum_method_of(prepared.start_checksums),
    )
    catalog_differences = [d.describe() for d in diff_catalogs(prepared.start_catalog, catalog)]
    lost, undeclared = [], []
    for difference in compare_checksums(prepared.start_checksums, checksums):
        columns = declared.get(difference.table, ())
        is_declared = difference.table in declared
        item = {
            "table": difference.table,
            "columns": list(columns) if columns else None,
            "declared": is_declared,
            "description": difference.describe(),
        }
        lost.append(item)
        if not is_declared:
            undeclared.append(difference.describe())
    summary.reversibility = {
        "reverted": True,
        "to_version": prepared.start_version,
        "catalog_differences": catalog_differences,
        "declared_destructive": {
            table: list(columns) if columns else None for table, columns in declared.items()
        },
        "data_lost": lost,
    }
    problems = []
    if catalog_differences:
        problems.append(
            f"the catalog after reverting differs from {prepared.start_version:04d}'s: "
            + "; ".join(catalog_differences[:10])
        )
    if undeclared:
        problems.append(
            "the revert lost data its down files do not declare: " + "; ".join(undeclared)
        )
    if problems:
        pytest.fail(" / ".join(problems), pytrace=False)
