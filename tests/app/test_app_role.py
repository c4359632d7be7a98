"""The web app runs as the DML-only app role that ``rollgate db bootstrap-roles`` makes.

The production tasks connect as that role (never the master); this proves the
grants of migration 0005 are enough for the app's real work: readiness (which
reads Rollgate's history), POST /tasks with its outbox row, the relay, a webhook
and the ROI report.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.conninfo import make_conninfo

from app.web import create_app
from db.roles import bootstrap_roles, roles_from_environment
from tests.app.conftest import Queues, settings_for, stripe_event
from tests.app.test_web import post_webhook, relay_of, rows, task_ids_in

APP_PASSWORD = "app-role-password-0123"


@pytest.fixture
def app_role_env(app_env: dict[str, str], migrated_dsn: str) -> Iterator[dict[str, str]]:
    suffix = secrets.token_hex(3)
    app, audit = roles_from_environment(
        {
            "APP_USER": f"web_app_{suffix}",
            "APP_PASSWORD": APP_PASSWORD,
            "AUDIT_USER": f"web_audit_{suffix}",
            "AUDIT_PASSWORD": "audit-role-password-0123",
        },
        app_user_variable="APP_USER",
        app_password_variable="APP_PASSWORD",
        audit_user_variable="AUDIT_USER",
        audit_password_variable="AUDIT_PASSWORD",
    )
    bootstrap_roles(migrated_dsn, (app, audit))
    yield {
        **app_env,
        "DATABASE_URL": make_conninfo(migrated_dsn, user=app.name, password=APP_PASSWORD),
    }
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        for role in (app, audit):
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role.name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role.name)))


def test_the_web_app_works_as_the_app_role(
    app_role_env: dict[str, str], migrated_dsn: str, queues: Queues
) -> None:
    with TestClient(create_app(settings_for(app_role_env), start_relay=False)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.json()
        created = client.post("/tasks", json={"payload": {"n": 1}, "ai_model": "model-a"})
        assert created.status_code == 201, created.json()
        assert relay_of(client).publish_pending() == 1
        assert task_ids_in(queues) == [created.json()["id"]]
        webhook = post_webhook(client, stripe_event(event_id="evt_asrole1", amount=500))
        assert webhook.status_code == 200 and webhook.json()["recorded"] is True
        today = str(dt.datetime.now(dt.UTC).date())
        roi = client.get("/roi", params={"from": today, "to": today})
        assert roi.status_code == 200, roi.json()
    # Written by the app role, read back as the superuser.
    assert rows(migrated_dsn, "SELECT count(*) FROM task_outbox WHERE sent_at IS NOT NULL") == [
        (1,)
    ]
    assert rows(migrated_dsn, "SELECT amount_minor FROM payment_events") == [(500,)]
    with psycopg.connect(app_role_env["DATABASE_URL"], autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() != ("postgres",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("TRUNCATE payment_events")
