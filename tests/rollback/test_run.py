"""``rollback run`` end to end: real Postgres, moto's ECS over HTTP, every path, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

from core.errors import CheckFailed
from db.migrations import load_migrations
from db.runner import MigrationRunner
from rollback.ecs import ecs_client, read_services
from rollback.plan import DOWN, RESTORE, TABLE_RESTORE, plan_rollback
from rollback.releases import list_releases, record_release
from rollback.run import (
    PlanChangedSinceConfirmed,
    gather_facts,
    resume_unfinished,
    run_rollback,
)
from rollback.snapshot import create_snapshot
from rollback.store import DirectoryStore, open_store
from rollback.verify import verify_snapshot
from tests.db.conftest import write_migration_set

BASE = (
    "CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "amount numeric NOT NULL);\n"
    "CREATE TABLE audit (id bigint PRIMARY KEY, event text NOT NULL);",
    "DROP TABLE audit;\nDROP TABLE orders;",
    "SELECT id, amount FROM orders WHERE false;\nSELECT id, event FROM audit WHERE false;",
)
ADD_DISCOUNT = (
    "ALTER TABLE orders ADD COLUMN discount numeric;",
    "ALTER TABLE orders DROP COLUMN discount;",
    "SELECT discount FROM orders WHERE false;",
)
# A careless down: it also empties a table the previous release has.
ADD_DISCOUNT_TRUNCATING = (
    ADD_DISCOUNT[0],
    "ALTER TABLE orders DROP COLUMN discount;\nTRUNCATE audit;",
    ADD_DISCOUNT[2],
)


@pytest.fixture
def ecs(moto_endpoint: str) -> Any:
    client = ecs_client(moto_endpoint)
    client.create_cluster(clusterName="shop")
    for family in ("web", "worker"):
        for version in (1, 2):
            client.register_task_definition(
                family=family,
                containerDefinitions=[{"name": family, "image": f"app:{version}", "memory": 512}],
            )
    for name in ("web", "worker"):
        client.create_service(
            cluster="shop", serviceName=name, taskDefinition=f"{name}:1", desiredCount=2
        )
    return client


@pytest.fixture
def live(make_database, server):
    dsn = make_database()
    name = conninfo.conninfo_to_dict(dsn)["dbname"]
    yield dsn
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        for (extra,) in admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s AND datname <> %s",
            (f"{name}\\_\\_%", name),
        ).fetchall():
            admin.execute(f'ALTER DATABASE "{extra}" ALLOW_CONNECTIONS true')
            admin.execute(f'DROP DATABASE "{extra}" WITH (FORCE)')
        for (slot,) in admin.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
        ).fetchall():
            admin.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def deploy_two_releases(tmp_path: Path, live: str, ecs: Any, second: tuple[str, str, str], server):
    """Release 1 (schema 1, task definitions :1), a verified snapshot, then release 2."""
    migrations = load_migrations(
        write_migration_set(
            tmp_path / "migrations", {"0001_create_orders": BASE, "0002_add_discount": second}
        )
    )
    store = open_store(str(tmp_path / "store"))
    assert isinstance(store, DirectoryStore)
    with MigrationRunner(live, migrations) as runner:
        runner.migrate(1)
    with psycopg.connect(live, autocommit=True) as conn:
        conn.execute("INSERT INTO orders (amount) SELECT g FROM generate_series(1, 20) g")
        conn.execute("INSERT INTO audit SELECT g, 'before ' || g FROM generate_series(1, 10) g")
    names = {"web": "web", "worker": "worker"}
    record_release(
        store,
        commit="a" * 40,
        app_image="app:1",
        schema_version=1,
        cluster="shop",
        service_names=names,
        ecs_client=ecs,
    )
    manifest = create_snapshot(live, store, release=_release_info("a" * 40))
    assert verify_snapshot(store, manifest.id, server, migrations=migrations).ok
    with MigrationRunner(live, migrations) as runner:
        runner.migrate()
    for name in names:
        ecs.update_service(cluster="shop", service=name, taskDefinition=f"{name}:2")
    record_release(
        store,
        commit="b" * 40,
        app_image="app:2",
        schema_version=2,
        cluster="shop",
        service_names=names,
        ecs_client=ecs,
    )
    return store, migrations


def _release_info(commit: str):
    from rollback.snapshot import ReleaseInfo

    return ReleaseInfo(bundle_commit=commit, app_image="app:1")


def task_definitions(ecs: Any) -> dict[str, str]:
    services = read_services(ecs, "shop", {"web": "web", "worker": "worker"})
    return {
        role: state.task_definition.rsplit("/", 1)[-1] for role, state in services.by_role.items()
    }


def test_down_path_takes_app_and_schema_back_and_records_it(tmp_path, live, ecs, server):
    store, migrations = deploy_two_releases(tmp_path, live, ecs, ADD_DISCOUNT, server)
    with psycopg.connect(live, autocommit=True) as conn:
        conn.execute("INSERT INTO orders (amount, discount) VALUES (5, 0.5)")  # after the rollout
    plan = plan_rollback(gather_facts(store, live, migrations))
    assert plan.path == DOWN
    assert any("public.orders(discount)" in loss for loss in plan.losses)
    outcome = run_rollback(store, live, migrations, plan, confirmed=plan.fingerprint(), ecs=ecs)
    assert task_definitions(ecs) == {"web": "web:1", "worker": "worker:1"}
    with MigrationRunner(live, migrations) as runner:
        assert runner.status().current == 1
    with psycopg.connect(live) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 21  # the write is kept
    assert outcome.record is not None
    services = ecs.describe_services(cluster="shop", services=["worker"])["services"][0]
    assert services["desiredCount"] == 2  # writers resumed


def test_a_careless_down_with_no_writes_since_is_a_table_restore(tmp_path, live, ecs, server):
    store, migrations = deploy_two_releases(tmp_path, live, ecs, ADD_DISCOUNT_TRUNCATING, server)
    plan = plan_rollback(gather_facts(store, live, migrations))
    assert plan.path == TABLE_RESTORE
    run_rollback(store, live, migrations, plan, confirmed=plan.fingerprint(), ecs=ecs)
    with psycopg.connect(live) as conn:
        # The down emptied audit; the table-level restore filled it back.
        assert conn.execute("SELECT count(*) FROM audit").fetchone()[0] == 10


def test_writes_since_on_the_harmed_table_restore_and_replay_to_rpo_zero(
    tmp_path, live, ecs, server
):
    store, migrations = deploy_two_releases(tmp_path, live, ecs, ADD_DISCOUNT_TRUNCATING, server)
    with psycopg.connect(live, autocommit=True) as conn:
        conn.execute("INSERT INTO audit VALUES (11, 'after the rollout')")
        conn.execute("INSERT INTO orders (amount, discount) VALUES (7, 0.1)")
        conn.execute("DELETE FROM orders WHERE id = 1")
        conn.execute("UPDATE orders SET amount = 99 WHERE id = 2")
    plan = plan_rollback(gather_facts(store, live, migrations))
    assert plan.path == RESTORE
    outcome = run_rollback(store, live, migrations, plan, confirmed=plan.fingerprint(), ecs=ecs)
    with psycopg.connect(live) as conn:
        assert conn.execute("SELECT count(*) FROM audit").fetchone()[0] == 11
        orders = dict(conn.execute("SELECT id, amount FROM orders").fetchall())
    assert 1 not in orders and orders[2] == 99 and 7 in orders.values()
    assert outcome.replay is not None
    assert outcome.replay["tables"]["public.orders"]["columns_not_carried"] == {"discount": 1}
    with MigrationRunner(live, migrations) as runner:
        assert runner.status().current == 1


def test_a_plan_that_changed_since_it_was_confirmed_is_refused(tmp_path, live, ecs, server):
    store, migrations = deploy_two_releases(tmp_path, live, ecs, ADD_DISCOUNT, server)
    confirmed = plan_rollback(gather_facts(store, live, migrations)).fingerprint()
    ecs.update_service(cluster="shop", service="web", taskDefinition="web:1")
    record_release(
        store,
        commit="c" * 40,
        app_image="app:3",
        schema_version=2,
        cluster="shop",
        service_names={"web": "web", "worker": "worker"},
        ecs_client=ecs,
    )
    now = plan_rollback(gather_facts(store, live, migrations))
    with pytest.raises(PlanChangedSinceConfirmed):
        run_rollback(store, live, migrations, now, confirmed=confirmed, ecs=ecs)
    assert task_definitions(ecs)["worker"] == "worker:2"  # nothing was done


def test_a_rollback_killed_midway_is_finished_by_the_next_run(
    tmp_path, live, ecs, server, monkeypatch
):
    store, migrations = deploy_two_releases(tmp_path, live, ecs, ADD_DISCOUNT, server)
    plan = plan_rollback(gather_facts(store, live, migrations))
    from rollback import run as run_module

    original = run_module._STEPS["down"]

    def crash(context, details):
        raise KeyboardInterrupt  # what SIGINT/SIGTERM raise mid-step

    monkeypatch.setitem(run_module._STEPS, "down", crash)
    with pytest.raises(KeyboardInterrupt):
        run_rollback(store, live, migrations, plan, confirmed=plan.fingerprint(), ecs=ecs)
    assert task_definitions(ecs) == {"web": "web:1", "worker": "worker:1"}  # app went back
    monkeypatch.setitem(run_module._STEPS, "down", original)
    outcome = resume_unfinished(store, live, migrations, ecs=ecs)
    assert outcome is not None and outcome.resumed_from == 3  # stop-writers, app, app
    with MigrationRunner(live, migrations) as runner:
        assert runner.status().current == 1
    assert resume_unfinished(store, live, migrations, ecs=ecs) is None
    assert len(list_releases(store)) == 2


def test_two_rollbacks_at_once_the_second_is_refused(tmp_path, live, ecs, server):
    store, migrations = deploy_two_releases(tmp_path, live, ecs, ADD_DISCOUNT, server)
    plan = plan_rollback(gather_facts(store, live, migrations))
    from rollback.run import ROLLBACK_LOCK_KEY

    with psycopg.connect(conninfo.make_conninfo(live, dbname="postgres"), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (ROLLBACK_LOCK_KEY,))
        with pytest.raises(CheckFailed, match="another rollback is running"):
            run_rollback(store, live, migrations, plan, confirmed=plan.fingerprint(), ecs=ecs)
    assert task_definitions(ecs)["web"] == "web:2"


def test_a_migration_started_during_a_rollback_is_refused(tmp_path, live, ecs, server, monkeypatch):
    """The rollback holds the migration lock from start to end: `db migrate` cannot slip in."""
    import subprocess
    import sys

    from rollback import run as run_module

    store, migrations = deploy_two_releases(tmp_path, live, ecs, ADD_DISCOUNT, server)
    plan = plan_rollback(gather_facts(store, live, migrations))
    original = run_module._STEPS["app"]
    attempts = []

    def app_step_with_a_migration_racing(context, details):
        if not attempts:
            attempts.append(
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "rollgate",
                        "db",
                        "migrate",
                        "--dsn",
                        live,
                        "--migrations",
                        str(tmp_path / "migrations"),
                        "--lock-wait",
                        "1",
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=120,
                )
            )
        original(context, details)

    monkeypatch.setitem(run_module._STEPS, "app", app_step_with_a_migration_racing)
    run_rollback(store, live, migrations, plan, confirmed=plan.fingerprint(), ecs=ecs)
    [racing] = attempts
    assert racing.returncode == 1, racing.stderr
    assert "holds the lock" in racing.stderr and "nothing was applied" in racing.stderr
    with MigrationRunner(live, migrations) as runner:
        assert runner.status().current == 1  # the rollback's target, untouched by the racer
