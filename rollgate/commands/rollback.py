"""``rollgate release`` and ``rollgate rollback``: record what is deployed; go back to it."""

from __future__ import annotations

from core.errors import CheckFailed
from db.migrations import load_migrations
from db.runner import MigrationRunner
from rollback.ecs import ecs_client
from rollback.plan import plan_rollback
from rollback.releases import list_releases, record_release
from rollback.run import gather_facts, resume_unfinished, run_rollback
from rollgate import render
from rollgate.commands import Options, Outcome
from rollgate.commands.snapshot import open_snapshot_store


def release_record(
    opts: Options,
    *,
    store: str | None,
    aws_endpoint_url: str | None,
    cluster: str,
    web_service: str,
    worker_service: str,
    commit: str | None,
    app_image: str | None,
    gate_entry: str | None,
) -> Outcome:
    """Append the release deployed now to the store's ``releases`` log."""
    target = open_snapshot_store(store, aws_endpoint_url)
    with MigrationRunner(opts.require_dsn(), load_migrations(opts.migrations_dir)) as runner:
        version = runner.status().current
    release = record_release(
        target,
        commit=commit,
        app_image=app_image,
        schema_version=version,
        cluster=cluster,
        service_names={"web": web_service, "worker": worker_service},
        ecs_client=ecs_client(aws_endpoint_url),
        gate_entry=gate_entry,
    )
    return Outcome(0, release.to_dict(), f"recorded release {release.label}")


def release_list(opts: Options, *, store: str | None, aws_endpoint_url: str | None) -> Outcome:
    """Every recorded release, oldest first (the log's hash chain is checked)."""
    releases = list_releases(open_snapshot_store(store, aws_endpoint_url))
    lines = [f"{r.label}  image {r.app_image or '-'}  at {r.recorded_at}" for r in releases]
    return Outcome(
        0,
        {"releases": [r.to_dict() for r in releases]},
        "\n".join(lines) or "no releases recorded",
    )


def plan(
    opts: Options,
    *,
    store: str | None,
    aws_endpoint_url: str | None,
    to: str | None,
    accept_data_loss: bool,
) -> Outcome:
    """The rollback plan; changes nothing."""
    target = open_snapshot_store(store, aws_endpoint_url)
    facts = gather_facts(
        target,
        opts.require_dsn(),
        load_migrations(opts.migrations_dir),
        to=to,
        accept_data_loss=accept_data_loss,
    )
    computed = plan_rollback(facts)
    return Outcome(0, computed.to_dict(), render.rollback_plan(computed))


def run(
    opts: Options,
    *,
    store: str | None,
    aws_endpoint_url: str | None,
    to: str | None,
    accept_data_loss: bool,
    plan_fingerprint: str | None,
    yes: bool,
) -> Outcome:
    """Plan, confirm, execute exactly that plan; or finish an interrupted rollback."""
    target = open_snapshot_store(store, aws_endpoint_url)
    dsn = opts.require_dsn()
    migrations = load_migrations(opts.migrations_dir)
    ecs = ecs_client(aws_endpoint_url)
    resumed = resume_unfinished(target, dsn, migrations, ecs=ecs, progress=opts.progress)
    if resumed is not None:
        return Outcome(0, resumed.to_dict(), render.rollback_outcome(resumed))
    facts = gather_facts(target, dsn, migrations, to=to, accept_data_loss=accept_data_loss)
    computed = plan_rollback(facts)
    confirmed = plan_fingerprint
    if confirmed is None:
        opts.progress(render.rollback_plan(computed))
        if not yes and not opts.confirm(
            f"Roll back to {computed.target.label} by this plan ({computed.path})?"
        ):
            raise CheckFailed(
                "rollback refused: not confirmed. Review `rollgate rollback plan`, then pass "
                "--yes, or --plan-fingerprint with the fingerprint the plan printed",
                details={"plan": computed.to_dict()},
            )
        confirmed = computed.fingerprint()
    outcome = run_rollback(
        target, dsn, migrations, computed, confirmed=confirmed, ecs=ecs, progress=opts.progress
    )
    return Outcome(0, outcome.to_dict(), render.rollback_outcome(outcome))
