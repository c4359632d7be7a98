"""``rollgate rehearse``: a whole release, end to end, on one machine (no cloud; Docker optional).

The stand-ins:

* **production Postgres**: an embedded throwaway server (``wal_level =
  logical``), migrated to release N and loaded with ``db.sample`` data;
* **AWS**: moto's server on 127.0.0.1: the SQS task queue and its DLQ, the S3
  artifact bucket (the snapshot store), ECS (a cluster, task definitions for
  release N and N+1, the web and worker services) and the RDS snapshot API;
* **ECS running tasks**: the app image as one container per role when Docker
  answers and the image is built (``--app-runner auto``, the default), else
  the app as processes (``python -m app web|worker``); started for whatever
  task definition each service points at (moto keeps the desired state, the
  rehearsal makes it so);
* **the circuit breaker and the alarms**: ``release.breaker`` (moto ignores
  both);
* **what the post-deploy suite reads** (``release.standins``): TLS in front of
  N+1's web (the ALB's part, a certificate from the rehearsal's own CA), the
  read-only audit role (made by ``db.roles``' bootstrap, with a generated
  password that only moto's Secrets Manager holds) and the stack's outputs.

Release N+1 is the scenario's migrations plus a "new app version": the same
app code (or image), marked by the ``ROLLGATE_RELEASE`` variable (the app
ignores it).

The sequence (each step lands in the timeline with its duration):
deploy N and start traffic (tasks and signed Stripe webhooks); gate N+1 and
apply it under traffic; post-deploy smoke; the incident (N+1's worker fails
every task: ``ROLLGATE_EXECUTOR`` points at ``release.scenarios.incident``);
the alarm model trips; ``rollback run`` (gather facts, plan, run the confirmed
plan); the proof (data, tasks, recovery time, the audit).

A broken scenario must end at the gate in no-go, with nothing rolled out.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from core.errors import CannotRun, RollgateError
from core.paths import writable_directory
from core.progress import Progress, silent
from core.sizes import parse_size
from db.checksums import table_checksums
from db.migrations import BUNDLED_MIGRATIONS, load_migrations
from db.runner import MigrationRunner
from db.sample import generate_sample
from db.schemafile import generate_schema
from db.throwaway import create_database, start_throwaway
from infra import outputs
from release import apps, standins
from release.breaker import CircuitBreaker, FailureRateAlarm
from release.gate import GO, INCONCLUSIVE, NOT_RUN, SMOKE_MISSING, GateOptions, run_gate
from release.scenarios import HEALTHY, Scenario, load_scenario, materialize, release_n_version
from rollback.ecs import ecs_client, read_services
from rollback.plan import plan_rollback
from rollback.releases import record_release
from rollback.run import gather_facts, run_rollback
from rollback.store import SnapshotStore, open_store
from rollback.verify import load_manifest

CLUSTER = "rollgate-rehearsal"
SERVICES = {"web": "rollgate-rehearsal-web", "worker": "rollgate-rehearsal-worker"}
BUCKET = "rollgate-rehearsal-artifacts"
INCIDENT_EXECUTOR = "release.scenarios.incident:FailingExecutor"
#: The incident's module is the rehearsal's, not the app's: a container gets it mounted.
INCIDENT_MODULE = INCIDENT_EXECUTOR.split(":", 1)[0]
#: Tables the traffic writes; every other table must come back bit for bit.
TRAFFIC_TABLES = ("public.execution_tasks", "public.task_outbox", "public.payment_events")
#: The read-only audit role the post-deploy suite connects as, and the secret holding it.
AUDIT_ROLE = "rollgate_rehearsal_audit"
AUDIT_SECRET = "rollgate-rehearsal/db-audit"  # noqa: S105 (a secret's name, not a secret)


@dataclass(frozen=True)
class RehearsalOptions:
    size: str = "25MB"
    scenario: str = HEALTHY
    report_dir: Path = Path("rehearsal-report")
    rto_seconds: float = 900.0
    #: Seconds of traffic before the gate, and between the later steps.
    traffic_seconds: float = 3.0
    #: ``auto`` (the image when it can run here), ``image`` or ``processes``.
    app_runner: str = apps.AUTO
    app_image: str = apps.DEFAULT_APP_IMAGE


@dataclass
class TimelineStep:
    name: str
    started: float
    seconds: float = 0.0
    status: str = "running"
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "started_at_seconds": round(self.started, 3),
            "seconds": round(self.seconds, 3),
            "status": self.status,
            "summary": self.summary,
            "details": self.details,
        }


@dataclass
class RehearsalReport:
    scenario: dict[str, Any]
    outcome: str  # "passed" (what the scenario expects happened) or "failed"
    gate_verdict: str | None
    steps: list[TimelineStep]
    proof: dict[str, Any]
    seconds: float
    report_dir: Path
    notes: list[str] = field(default_factory=list)
    #: How the app ran (``AppRunner.to_dict``): ``container IMAGE`` or ``processes``, and why.
    app_runner: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 0 if self.outcome == "passed" else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "outcome": self.outcome,
            "gate_verdict": self.gate_verdict,
            "seconds": round(self.seconds, 3),
            "steps": [s.to_dict() for s in self.steps],
            "proof": self.proof,
            "notes": self.notes,
            "app_runner": self.app_runner,
            "report_dir": str(self.report_dir),
        }


class _Timeline:
    def __init__(self, progress: Progress) -> None:
        self.origin = time.monotonic()
        self.steps: list[TimelineStep] = []
        self.progress = progress

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[TimelineStep]:
        step = TimelineStep(name, time.monotonic() - self.origin)
        self.steps.append(step)
        self.progress(f"rehearse: {name} ...")
        started = time.monotonic()
        try:
            yield step
            if step.status == "running":
                step.status = "passed"
        except BaseException as exc:
            step.status = "failed"
            step.summary = step.summary or f"{type(exc).__name__}: {exc}"[:300]
            raise
        finally:
            step.seconds = time.monotonic() - started
            self.progress(f"rehearse: {name} {step.status} ({step.seconds:.1f}s) {step.summary}")


@dataclass
class _World:
    """Everything the rehearsal started; ``close`` stops it all."""

    report_dir: Path
    runner: apps.AppRunner = field(default_factory=lambda: apps.AppRunner(apps.PROCESSES, None, ""))
    endpoint: str = ""
    dsn: str = ""
    store: SnapshotStore | None = None
    queues: apps.Queues | None = None
    task_definitions: dict[str, dict[str, str]] = field(default_factory=dict)
    processes: dict[tuple[str, str], apps.AppProcess] = field(default_factory=dict)
    traffic: apps.Traffic | None = None
    #: The stand-in stack's TLS (the ALB's certificate and the CA clients trust).
    certificates: standins.Certificates | None = None
    #: The audit role's password: only ever in its Secrets Manager secret, never in a file.
    audit_password: str = field(default="", repr=False)

    @property
    def logs(self) -> Path:
        return self.report_dir / "logs"

    def env(self, release: str, **overrides: str) -> dict[str, str]:
        assert self.queues is not None
        return apps.app_env(
            self.dsn,
            self.queues,
            self.endpoint,
            self.report_dir / "work",
            release,
            ROLLGATE_MAX_ATTEMPTS="20",
            ROLLGATE_RETRY_BASE_SECONDS="1",
            **overrides,
        )

    def start(
        self, role: str, release: str, *, modules: tuple[str, ...] = (), **overrides: str
    ) -> apps.AppProcess:
        process = self.runner.start(
            role, self.env(release, **overrides), self.logs, release, modules=modules
        )
        self.processes[(role, release)] = process
        return process

    def image_name(self, release: str) -> str:
        """What ECS and the release record name: the image that runs, or a stand-in name."""
        return self.runner.image or f"rollgate-app:{release}"

    def stop(self, role: str, release: str) -> None:
        process = self.processes.pop((role, release), None)
        if process is not None:
            process.stop()

    def close(self) -> None:
        if self.traffic is not None:
            self.traffic.stop()
        for key in list(self.processes):
            self.stop(*key)


def rehearse(  # noqa: PLR0915 (one sequence, read top to bottom, is the point)
    options: RehearsalOptions, *, progress: Progress = silent
) -> RehearsalReport:
    """Play the whole release; the report says whether the scenario's expectation held."""
    scenario = load_scenario(options.scenario)
    app_runner = apps.choose_app_runner(options.app_runner, options.app_image)
    started = time.monotonic()
    report_dir = options.report_dir
    writable_directory(report_dir, "the rehearsal's reports (--report-dir)")
    (report_dir / "work").mkdir(exist_ok=True)
    (report_dir / "logs").mkdir(exist_ok=True)
    progress = _logged(progress, report_dir / "logs" / "rehearsal.log")
    timeline = _Timeline(progress)
    world = _World(report_dir, app_runner)
    proof: dict[str, Any] = {}
    notes: list[str] = [_app_note(app_runner)]
    if app_runner.kind == apps.IMAGE:
        reaped = apps.reap_abandoned_containers()
        if reaped:
            progress(f"removed {len(reaped)} container(s) left by killed runs")
    gate_verdict: str | None = None
    outcome = "failed"
    migrations_dir = materialize(scenario, report_dir / "work" / "migrations")
    migrations = load_migrations(migrations_dir)
    target_bytes = parse_size(options.size)
    with contextlib.ExitStack() as stack:
        with timeline.step("stand-ins: embedded Postgres, moto") as step:
            server = start_throwaway("embedded", progress=progress)
            stack.callback(server.close)
            world.endpoint = stack.enter_context(apps.local_moto())
            stack.callback(world.close)
            world.dsn = create_database(server, "production")
            # Many receives before the DLQ: the incident's retries must not dead-letter tasks
            # that release N will run after the rollback (production: queueMaxReceiveCount).
            world.queues = apps.create_queues(
                world.endpoint, "rollgate-rehearsal-tasks", max_receive=50
            )
            s3 = apps.aws_client("s3", world.endpoint)
            s3.create_bucket(Bucket=BUCKET)
            s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
            world.store = open_store(f"s3://{BUCKET}/rollgate", aws_endpoint_url=world.endpoint)
            _create_ecs(world)
            world.certificates = standins.make_certificates(
                report_dir / "work" / "tls", ["localhost"]
            )
            world.audit_password = standins.new_password()
            step.details = {"app": app_runner.to_dict(), "ecs_images": _ecs_images(world)}
            step.summary = (
                f"Postgres {server.major_version} (embedded), moto at {world.endpoint}; "
                f"the app as {app_runner.description}"
            )
        with timeline.step("release N: migrate, sample data") as step:
            with MigrationRunner(world.dsn, load_migrations(BUNDLED_MIGRATIONS)) as runner:
                runner.migrate()
            with psycopg.connect(world.dsn, autocommit=True) as conn:
                sample = generate_sample(conn, target_bytes)
            step.details = {"sample": sample.to_dict()}
            step.summary = f"schema {release_n_version():04d}, {options.size} of sample data"
        with timeline.step("release N: deploy app, record, start traffic") as step:
            web = world.start("web", "N")
            world.start("worker", "N")
            ready = apps.wait_ready(web)
            if not ready.ready:
                raise CannotRun(f"release N's app did not become ready: {ready.reason}")
            release_n = record_release(
                world.store,
                commit="release-N",
                app_image=world.image_name("N"),
                schema_version=release_n_version(),
                cluster=CLUSTER,
                service_names=SERVICES,
                ecs_client=ecs_client(world.endpoint),
            )
            world.traffic = apps.Traffic(web.url)
            world.traffic.start()
            time.sleep(options.traffic_seconds)
            step.details = {"release": release_n.to_dict(), "app": app_runner.to_dict()}
            step.summary = (
                f"recorded {release_n.label}; app as {app_runner.description}; traffic running"
            )
        with timeline.step("RDS: snapshot API (moto)") as step:
            step.details = _rds_snapshot(world.endpoint)
            step.summary = f"DB snapshot {step.details['snapshot']} ({step.details['status']})"
        with timeline.step("gate N+1") as step:
            # The schema N+1's migrations build: the smoke suite compares the catalog with it.
            schema_path = report_dir / "work" / "schema-n+1.sql"
            schema_path.write_text(generate_schema(server, migrations))
            gate = run_gate(
                GateOptions(
                    dsn=world.dsn,
                    store=world.store,
                    migrations_dir=migrations_dir,
                    schema_path=schema_path,
                    stack="dev",
                    stack_dir=apps.REPO,
                    # N+1 is release N's image marked as N+1 (one image plays both), so
                    # the gate's app checks and the smoke suite's N-1 checks run it as a
                    # container; with processes, no image: they run processes too.
                    app_image=app_runner.image,
                    previous_app_image=app_runner.image,
                    aws_endpoint_url=world.endpoint,
                    rto_seconds=options.rto_seconds,
                    lock_budget_seconds=scenario.lock_budget_seconds or 5.0,
                    commit="release-N+1",
                    report_dir=report_dir / "gate",
                    new_app_env=scenario.new_app_env,
                ),
                progress=progress,
            )
            gate_verdict = gate.verdict
            step.details = {
                "verdict": gate.verdict,
                "report": str(gate.report_path),
                "entry_sha256": gate.entry_sha256,
                "steps": {s.name: s.status for s in gate.steps},
            }
            step.summary = f"verdict {gate.verdict}"
            proceed = gate.verdict == GO or _only_smoke_missing(gate)
            if gate.verdict == INCONCLUSIVE and proceed:
                notes.append(
                    f"the gate was inconclusive only because: {SMOKE_MISSING}; the "
                    "rehearsal rolls out anyway to show the rest (a real rollout would stop)"
                )
            if not proceed:
                step.status = "no-go" if gate.verdict != INCONCLUSIVE else "inconclusive"
        if not proceed:
            with timeline.step("nothing rolled out") as step:
                proof["nothing_rolled_out"] = _nothing_rolled_out(world, migrations)
                step.details = proof["nothing_rolled_out"]
                step.summary = proof["nothing_rolled_out"]["summary"]
            expected = scenario.expect != GO
            outcome = "passed" if expected and proof["nothing_rolled_out"]["ok"] else "failed"
        else:
            outcome = _roll_out_and_back(
                world,
                scenario=scenario,
                migrations=migrations,
                gate_entry=gate.entry_sha256,
                timeline=timeline,
                options=options,
                proof=proof,
                notes=notes,
            )
            if scenario.expect != GO:
                outcome = "failed"
                notes.append(f"scenario {scenario.name} expected no-go, but the gate let it pass")
    report = RehearsalReport(
        app_runner=app_runner.to_dict(),
        scenario=scenario.to_dict(),
        outcome=outcome,
        gate_verdict=gate_verdict,
        steps=timeline.steps,
        proof=proof,
        seconds=time.monotonic() - started,
        report_dir=report_dir,
        notes=notes,
    )
    write_reports(report)
    return report


def _app_note(runner: apps.AppRunner) -> str:
    if runner.kind == apps.IMAGE:
        return (
            f"the app runs as its image: one container {runner.image} per role ({runner.reason}); "
            "release N+1 is the same image marked by ROLLGATE_RELEASE"
        )
    return (
        f"the app runs as processes (python -m app): {runner.reason}; release N+1 is the same "
        "app code marked by ROLLGATE_RELEASE"
    )


def _logged(progress: Progress, path: Path) -> Progress:
    """``progress``, and every line also appended (timestamped) to ``path``."""

    def say(message: str) -> None:
        with path.open("a", encoding="utf-8") as log:
            log.write(f"{datetime.now(UTC).isoformat(timespec='milliseconds')} {message}\n")
        progress(message)

    return say


def _only_smoke_missing(gate: Any) -> bool:
    inconclusive = [s for s in gate.steps if s.status == NOT_RUN]
    return (
        gate.verdict == INCONCLUSIVE
        and len(inconclusive) == 1
        and inconclusive[0].name == "rehearse"
        and any(SMOKE_MISSING in f for f in inconclusive[0].findings)
        and all(s.status == "passed" for s in gate.steps if s.name != "rehearse")
    )


def _create_ecs(world: _World) -> None:
    """A cluster, task definitions for N and N+1 of each role, and the two services."""
    ecs = apps.aws_client("ecs", world.endpoint)
    ecs.create_cluster(clusterName=CLUSTER)
    for release in ("N", "N+1"):
        for role in SERVICES:
            arn = ecs.register_task_definition(
                family=f"rollgate-rehearsal-{role}",
                containerDefinitions=[
                    {
                        "name": role,
                        "image": world.image_name(release),
                        "memory": 512,
                        "command": ["python", "-m", "app", role],
                        "environment": [{"name": apps.RELEASE_MARKER, "value": release}],
                    }
                ],
            )["taskDefinition"]["taskDefinitionArn"]
            world.task_definitions.setdefault(release, {})[role] = str(arn)
    for role, name in SERVICES.items():
        ecs.create_service(
            cluster=CLUSTER,
            serviceName=name,
            taskDefinition=world.task_definitions["N"][role],
            desiredCount=1,
            deploymentConfiguration={
                "deploymentCircuitBreaker": {"enable": True, "rollback": True},
                "maximumPercent": 200,
                "minimumHealthyPercent": 100,
            },
        )


def _ecs_images(world: _World) -> dict[str, dict[str, str]]:
    """The image each release's task definitions name, as moto's ECS holds them."""
    ecs = apps.aws_client("ecs", world.endpoint)
    return {
        release: {
            role: str(
                ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"][
                    "containerDefinitions"
                ][0]["image"]
            )
            for role, arn in by_role.items()
        }
        for release, by_role in world.task_definitions.items()
    }


def _rds_snapshot(endpoint: str) -> dict[str, Any]:
    """The RDS-level snapshot a real rollout takes too (moto's RDS API)."""
    rds = apps.aws_client("rds", endpoint)
    identifier = "rollgate-rehearsal-db"
    with contextlib.suppress(Exception):
        rds.create_db_instance(
            DBInstanceIdentifier=identifier,
            Engine="postgres",
            DBInstanceClass="db.t4g.medium",
            AllocatedStorage=20,
            MasterUsername="rollgate",
            MasterUserPassword=secrets.token_hex(12),
        )
    name = f"pre-release-{secrets.token_hex(3)}"
    snapshot = rds.create_db_snapshot(DBSnapshotIdentifier=name, DBInstanceIdentifier=identifier)
    return {"snapshot": name, "status": snapshot["DBSnapshot"].get("Status", "?")}


def _nothing_rolled_out(world: _World, migrations: list[Any]) -> dict[str, Any]:
    """After a no-go: the live schema is still N's, ECS still runs N, no N+1 process ran."""
    with MigrationRunner(world.dsn, migrations) as runner:
        version = runner.status().current
    services = read_services(ecs_client(world.endpoint), CLUSTER, SERVICES)
    on_n = all(
        state.task_definition == world.task_definitions["N"][role]
        for role, state in services.by_role.items()
    )
    started = sorted(f"{role}:{release}" for role, release in world.processes)
    ok = version == release_n_version() and on_n and all(r == "N" for _role, r in world.processes)
    return {
        "ok": ok,
        "schema_version": version,
        "services": services.to_dict(),
        "processes": started,
        "summary": (
            f"schema {version:04d}, ECS on release N's task definitions: {on_n}, "
            f"processes {', '.join(started)}"
        ),
    }


def _deploy(world: _World, release: str) -> CircuitBreaker:
    """Point ECS at ``release``'s task definitions and start its processes (rolling)."""
    ecs = apps.aws_client("ecs", world.endpoint)
    for role, name in SERVICES.items():
        ecs.update_service(
            cluster=CLUSTER, service=name, taskDefinition=world.task_definitions[release][role]
        )
    web = world.start("web", release)
    world.start("worker", release)
    breaker = CircuitBreaker(SERVICES["web"], world.task_definitions[release]["web"])
    ready = apps.wait_ready(web)
    breaker.task_started(ready.ready, ready.reason)
    return breaker


def _roll_out_and_back(  # noqa: PLR0915 (one sequence, read top to bottom)
    world: _World,
    *,
    scenario: Scenario,
    migrations: list[Any],
    gate_entry: str | None,
    timeline: _Timeline,
    options: RehearsalOptions,
    proof: dict[str, Any],
    notes: list[str],
) -> str:
    assert world.store is not None and world.traffic is not None
    with timeline.step("release N+1: migrate under traffic, deploy, record") as step:
        with MigrationRunner(world.dsn, migrations) as runner:
            run = runner.migrate()
        breaker = _deploy(world, "N+1")
        decision = breaker.decision()
        if breaker.failed_tasks:
            raise CannotRun(f"release N+1's web did not become ready: {breaker.failures[-1]}")
        world.traffic.target = world.processes[("web", "N+1")].url
        world.stop("web", "N")
        world.stop("worker", "N")
        release = record_release(
            world.store,
            commit="release-N+1",
            app_image=world.image_name("N+1"),
            schema_version=migrations[-1].version,
            cluster=CLUSTER,
            service_names=SERVICES,
            ecs_client=ecs_client(world.endpoint),
            gate_entry=gate_entry,
        )
        step.details = {
            "applied": [r.migration for r in run.results] if hasattr(run, "results") else [],
            "breaker": decision.to_dict(),
            "release": release.to_dict(),
        }
        step.summary = f"recorded {release.label} (gate entry {str(gate_entry)[:12]})"
    time.sleep(options.traffic_seconds)
    with timeline.step("post-deploy smoke") as step:
        _post_deploy(world, migrations, step)
    with timeline.step("incident: N+1's worker fails its tasks; alarm model") as step:
        world.stop("worker", "N+1")
        # The failing executor is not in the app image: a container gets that one module
        # mounted read-only and on its PYTHONPATH (smoke.apps.module_mounts), nothing else.
        worker = world.start(
            "worker", "N+1", modules=(INCIDENT_MODULE,), ROLLGATE_EXECUTOR=INCIDENT_EXECUTOR
        )
        alarm = FailureRateAlarm()
        breaker = CircuitBreaker(
            SERVICES["worker"], world.task_definitions["N+1"]["worker"], alarms=(alarm,)
        )
        incident_started = time.monotonic()
        # The alarm reads the worker's own task outcomes (production: its EMF metrics).
        last: dict[str, int] = {}
        while not breaker.decision().rollback and time.monotonic() - incident_started < 60:
            time.sleep(1.0)
            now = worker.outcomes()
            failed = sum(now.get(k, 0) - last.get(k, 0) for k in ("retry", "failed", "error"))
            alarm.observe_period(
                succeeded=now.get("succeeded", 0) - last.get("succeeded", 0), failed=failed
            )
            last = now
        decision = breaker.decision()
        detected = time.monotonic()
        step.details = {"alarm": alarm.history, "decision": decision.to_dict()}
        step.summary = decision.reason
        if not decision.rollback:
            raise CannotRun("the incident did not trip the alarm model within 60 s")
    with timeline.step("rollback run: plan, confirm, run") as step:
        # ECS's rollback (and `rollback run` itself) stop the failing writers first.
        world.stop("worker", "N+1")
        facts = gather_facts(world.store, world.dsn, migrations)
        plan = plan_rollback(facts)
        outcome = run_rollback(
            world.store,
            world.dsn,
            migrations,
            plan,
            confirmed=plan.fingerprint(),
            ecs=ecs_client(world.endpoint),
            actor="rollgate-rehearse",
        )
        step.details = {"plan": plan.to_dict(), "outcome": outcome.to_dict()}
        step.summary = f"path {plan.path}; {plan.rpo}"
    with timeline.step("ECS converges on release N") as step:
        services = read_services(ecs_client(world.endpoint), CLUSTER, SERVICES)
        release_of = {
            arn: rel for rel, defs in world.task_definitions.items() for arn in defs.values()
        }
        target = {
            role: release_of.get(s.task_definition, "?") for role, s in services.by_role.items()
        }
        web = world.start("web", target["web"])
        ready = apps.wait_ready(web)
        world.traffic.target = web.url
        world.stop("web", "N+1")
        world.start("worker", target["worker"])
        recovered = time.monotonic()
        step.details = {"services": services.to_dict(), "ready": ready.to_dict()}
        step.summary = f"web and worker on release {target['web']}/{target['worker']}"
        if not ready.ready:
            step.status = "failed"
    recovery_seconds = recovered - detected
    time.sleep(options.traffic_seconds)
    with timeline.step("prove: data, tasks, recovery time") as step:
        world.traffic.stop()
        proof.update(_prove(world, plan.to_dict(), outcome.to_dict(), recovery_seconds, options))
        step.details = proof
        step.summary = proof["summary"]
        if not proof["ok"]:
            step.status = "failed"
    with timeline.step("audit") as step:
        step.details = _audit(world, migrations)
        step.summary = str(step.details.get("summary", ""))
        if step.details.get("status") == "not available":
            step.status = "inconclusive"
            notes.append("the audit (release.audit) is not installed in this tree")
        elif step.details.get("status") == "inconclusive":
            step.status = "inconclusive"
            notes.append(f"the audit did not run: {step.details.get('summary')}")
    failed_steps = [s.name for s in timeline.steps if s.status == "failed"]
    return "passed" if proof.get("ok") and not failed_steps else "failed"


def _post_deploy(world: _World, migrations: list[Any], step: TimelineStep) -> None:
    """The built-in requests against N+1's web, then the post-deploy smoke suite if installed.

    The step passes when both pass and fails when either fails: the suite runs against
    the stand-in stack (``_post_deploy_smoke``), which has everything it reads.
    """
    web = world.processes[("web", "N+1")]
    problems = apps.smoke_requests(web.url)
    step.details = {"built_in_requests": problems or "all answered"}
    if problems:
        step.status = "failed"
    elif importlib.util.find_spec("smoke.run") is None:
        step.summary = f"{SMOKE_MISSING}: the built-in requests passed"
    else:
        suite = _post_deploy_smoke(world, migrations, web.url)
        step.details["suite"] = suite
        if suite["exit_code"] == 0:
            step.summary = (
                f"the post-deploy smoke suite ({suite['passed']} checks, over TLS, as the "
                "audit role) and the built-in requests passed"
            )
        else:
            step.status = "failed"
            step.summary = (
                f"the post-deploy smoke suite failed (pytest exit {suite['exit_code']}): "
                + ("; ".join(suite["failures"]) or f"see {suite['markdown_summary']}")
            )[:600]


def _post_deploy_smoke(world: _World, migrations: list[Any], url: str) -> dict[str, Any]:
    """The post-deploy suite against the stand-in stack in front of N+1's web at ``url``.

    What a deployed stack has and the rehearsal stands in for (``release.standins``):
    the audit role, made by the project's bootstrap with a generated password that
    only its Secrets Manager secret holds; TLS in front of the app, signed by the
    rehearsal's CA; and the stack's outputs naming all of it.
    """
    smoke_run = importlib.import_module("smoke.run")
    assert world.queues is not None and world.certificates is not None
    role = standins.create_audit_role(world.dsn, AUDIT_ROLE, world.audit_password)
    secret_arn = standins.publish_audit_secret(
        world.endpoint, username=AUDIT_ROLE, password=world.audit_password, name=AUDIT_SECRET
    )
    path = world.report_dir / "work" / "stack-outputs.json"
    with standins.TlsFront(url, world.certificates) as front:
        values = standins.stack_outputs(
            app_url=front.url,
            dsn=world.dsn,
            audit_secret_arn=secret_arn,
            endpoint=world.endpoint,
            queue_url=world.queues.url,
            dlq_url=world.queues.dlq_url,
        )
        values.update(
            {
                outputs.ARTIFACT_BUCKET: BUCKET,
                outputs.CLUSTER_NAME: CLUSTER,
                outputs.WEB_SERVICE_NAME: SERVICES["web"],
                outputs.WORKER_SERVICE_NAME: SERVICES["worker"],
                outputs.WEB_TASK_DEFINITION_ARN: world.task_definitions.get("N+1", {}).get("web"),
                outputs.WORKER_TASK_DEFINITION_ARN: world.task_definitions.get("N+1", {}).get(
                    "worker"
                ),
            }
        )
        path.write_text(json.dumps(values, indent=2) + "\n")
        report = smoke_run.run_smoke(
            smoke_run.SmokeOptions(
                migrations=world.report_dir / "work" / "migrations",
                schema=world.report_dir / "work" / "schema-n+1.sql",
                output_dir=world.report_dir / "smoke-post-deploy",
                aws_endpoint_url=world.endpoint,
                post_deploy=True,
                stack_outputs=path,
                ca_bundle=world.certificates.ca,
            )
        )
    checks = report.summary.get("checks", {}) if isinstance(report.summary, dict) else {}
    failures = [
        f"{name.rsplit('::', 1)[-1]}: {check.get('message', '')}".strip()
        for name, check in checks.items()
        if isinstance(check, dict) and check.get("outcome") not in ("passed", "skipped")
    ]
    if not checks and report.exit_code != 0:
        failures = [str(report.summary.get("error", "the suite ran no checks"))]
    return {
        "exit_code": report.exit_code,
        "passed": sum(1 for c in checks.values() if c.get("outcome") == "passed"),
        "failures": failures,
        "stack_outputs": str(path),
        "ca_bundle": str(world.certificates.ca),
        "audit_role": {**role.to_dict(), "secret_arn": secret_arn},
        "markdown_summary": str(report.markdown_summary),
    }


def _prove(
    world: _World,
    plan: dict[str, Any],
    outcome: dict[str, Any],
    recovery_seconds: float,
    options: RehearsalOptions,
) -> dict[str, Any]:
    """Data from before the rollout unchanged; every accepted write kept; every task done."""
    assert world.store is not None and world.traffic is not None and world.queues is not None
    traffic = world.traffic
    # Let release N's worker finish what the incident left in the queue.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _open_tasks(world.dsn, traffic.task_ids):
        time.sleep(1.0)
    snapshots = sorted(world.store.list_ids())
    manifest = load_manifest(world.store, snapshots[-1])
    with psycopg.connect(world.dsn) as conn:
        now = {
            c.table: c
            for c in table_checksums(
                conn, exclude_schemas=("rollgate",), method=manifest.checksum_method
            )
        }
        statuses: dict[str, int] = dict(
            conn.execute(
                "SELECT status, count(*) FROM public.execution_tasks WHERE id = ANY(%s) "
                "GROUP BY status",
                (traffic.task_ids,),
            ).fetchall()
        )
        found_tasks = conn.execute(
            "SELECT count(*) FROM public.execution_tasks WHERE id = ANY(%s)", (traffic.task_ids,)
        ).fetchone()
        found_events = conn.execute(
            "SELECT count(*) FROM public.payment_events WHERE stripe_event_id = ANY(%s)",
            (traffic.webhooks,),
        ).fetchone()
    unchanged, changed_untouched, changed_by_traffic = [], [], []
    for before in manifest.tables:
        if before.table.startswith("rollgate."):
            continue
        after = now.get(before.table)
        if after is not None and after.same_rows(before):
            unchanged.append(before.table)
        elif before.table in TRAFFIC_TABLES:
            changed_by_traffic.append(before.table)
        else:
            changed_untouched.append(before.table)
    tasks_kept = int(found_tasks[0]) if found_tasks else 0
    events_kept = int(found_events[0]) if found_events else 0
    queued = int(statuses.get("queued", 0)) + int(statuses.get("running", 0))
    in_queue = apps.queue_depth(world.endpoint, world.queues.url)
    lost = len(traffic.task_ids) - int(statuses.get("succeeded", 0)) - queued
    replayed = outcome.get("replay") or {}
    ok = (
        not changed_untouched
        and tasks_kept == len(traffic.task_ids)
        and events_kept == len(traffic.webhooks)
        and lost == 0
        and (queued == 0 or in_queue >= queued)
        and recovery_seconds <= options.rto_seconds
        and replayed.get("rpo_zero", True) is not False
    )
    rpo = (
        "RPO 0"
        if tasks_kept == len(traffic.task_ids) and events_kept == len(traffic.webhooks)
        else "writes lost"
    )
    return {
        "ok": ok,
        "summary": (
            f"{rpo}: {tasks_kept}/{len(traffic.task_ids)} tasks and {events_kept}/"
            f"{len(traffic.webhooks)} webhooks written during the release are present; "
            f"{int(statuses.get('succeeded', 0))} succeeded, {queued} queued, {lost} lost; "
            f"recovery {recovery_seconds:.1f}s (budget {options.rto_seconds:.0f}s)"
            + (
                f"; replay carried {replayed.get('rows_replayed', 0)} row change(s) onto the "
                f"restored snapshot, {_not_replayed(replayed)} not replayed"
                if replayed
                else f"; rolled back by {plan.get('path')} (no restore, nothing to replay)"
            )
        ),
        "rpo": rpo,
        "snapshot": manifest.id,
        "tables_unchanged_since_snapshot": unchanged,
        "tables_written_by_traffic": changed_by_traffic,
        "tables_changed_unexpectedly": changed_untouched,
        "tasks": {
            "accepted": len(traffic.task_ids),
            "present": tasks_kept,
            "by_status": {str(k): int(v) for k, v in statuses.items()},
            "in_queue": in_queue,
            "lost": lost,
        },
        "webhooks": {"accepted": len(traffic.webhooks), "present": events_kept},
        "traffic_errors": traffic.errors[:20],
        "traffic_error_count": len(traffic.errors),
        "plan_losses": plan.get("losses", []),
        "plan_rpo": plan.get("rpo"),
        "replay": replayed,
        "recovery_seconds": round(recovery_seconds, 2),
        "rto_seconds": options.rto_seconds,
    }


def _not_replayed(replay: dict[str, Any]) -> int:
    tables = replay.get("tables") or {}
    return sum(
        sum((info.get("not_replayed") or {}).values())
        for info in tables.values()
        if isinstance(info, dict)
    )


def _open_tasks(dsn: str, ids: list[int]) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM public.execution_tasks WHERE id = ANY(%s) "
            "AND status NOT IN ('succeeded', 'failed', 'dead')",
            (ids,),
        ).fetchone()
    return int(row[0]) if row else 0


def _audit(world: _World, migrations: list[Any]) -> dict[str, Any]:
    """release.audit.run_audit, when that module is installed."""
    if importlib.util.find_spec("release.audit") is None:
        return {"status": "not available", "summary": "release.audit is not installed"}
    audit = importlib.import_module("release.audit")
    try:
        report = audit.run_audit(
            audit.AuditOptions(
                dsn=world.dsn,
                store=world.store,
                aws_endpoint_url=world.endpoint,
                migrations=migrations,
            )
        )
    except RollgateError as exc:
        return {"status": "inconclusive", "summary": str(exc)}
    except Exception as exc:  # another module's bug must not cost the rehearsal its report
        return {
            "status": "inconclusive",
            "summary": f"the audit crashed: {type(exc).__name__}: {exc}",
        }
    data = report.to_dict() if hasattr(report, "to_dict") else {}
    failed = len(getattr(report, "failed", []))
    return {"status": "failed" if failed else "passed", "summary": f"{failed} failed", **data}


# --- reports ------------------------------------------------------------------------------


def write_reports(report: RehearsalReport) -> None:
    """timeline.json and report.html (self-contained, inline SVG) in the report directory."""
    directory = report.report_dir
    (directory / "timeline.json").write_text(
        json.dumps(report.to_dict(), indent=2, default=str) + "\n"
    )
    (directory / "report.html").write_text(html_report(report))


def _escape(text: Any) -> str:
    return (
        str(text)
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
    )


_COLOURS = {"passed": "#2e7d32", "failed": "#c62828", "no-go": "#c62828", "inconclusive": "#f9a825"}


def timeline_svg(steps: list[TimelineStep]) -> str:
    """A Gantt chart of the steps: one bar per step, on a shared time axis."""
    total = max((s.started + s.seconds for s in steps), default=1.0) or 1.0
    width, label, row = 900, 330, 24
    height = row * len(steps) + 40
    scale = (width - label - 20) / total
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">']
    for i, s in enumerate(steps):
        y = 10 + i * row
        x = label + s.started * scale
        w = max(2.0, s.seconds * scale)
        colour = _COLOURS.get(s.status, "#607d8b")
        parts.append(f'<text x="4" y="{y + 15}" font-size="12">{_escape(s.name[:48])}</text>')
        parts.append(
            f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="16" fill="{colour}">'
            f"<title>{_escape(s.name)}: {s.seconds:.1f}s {s.status}</title></rect>"
        )
        parts.append(
            f'<text x="{x + w + 4:.1f}" y="{y + 15}" font-size="11">{s.seconds:.1f}s</text>'
        )
    parts.append(
        f'<text x="{label}" y="{height - 8}" font-size="11">0 s</text>'
        f'<text x="{width - 60}" y="{height - 8}" font-size="11">{total:.0f} s</text></svg>'
    )
    return "".join(parts)


def bars_svg(title: str, bars: list[tuple[str, float, str]], unit: str = "s") -> str:
    """Horizontal bars (label, value, colour) on one scale."""
    top = max((v for _l, v, _c in bars), default=1.0) or 1.0
    width, label, row = 900, 330, 26
    height = row * len(bars) + 36
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">',
        f'<text x="4" y="16" font-size="13" font-weight="bold">{_escape(title)}</text>',
    ]
    for i, (name, value, colour) in enumerate(bars):
        y = 26 + i * row
        w = max(2.0, value / top * (width - label - 90))
        parts.append(f'<text x="4" y="{y + 14}" font-size="12">{_escape(name)}</text>')
        parts.append(f'<rect x="{label}" y="{y + 2}" width="{w:.1f}" height="16" fill="{colour}"/>')
        parts.append(
            f'<text x="{label + w + 4:.1f}" y="{y + 14}" font-size="11">{value:.1f} {unit}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def html_report(report: RehearsalReport) -> str:
    """One self-contained HTML file: verdicts, the timeline and the budgets as inline SVG."""
    gate_step = next((s for s in report.steps if s.name == "gate N+1"), None)
    restore_bars: list[tuple[str, float, str]] = []
    gate_path = report.report_dir / "gate" / "gate-report.json"
    if gate_path.is_file():
        gate = json.loads(gate_path.read_text())
        for step in gate.get("steps", []):
            if step["name"] == "verify" and step.get("details", {}).get("restore_seconds"):
                snap = next(s for s in gate["steps"] if s["name"] == "snapshot")
                size = snap.get("details", {}).get("bytes", 0)
                restore_bars.append(
                    (
                        f"restore of {size / 1e6:.0f} MB (gate verify)",
                        float(step["details"]["restore_seconds"]),
                        "#1565c0",
                    )
                )
    for step in report.steps:
        outcome = step.details.get("outcome") if isinstance(step.details, dict) else None
        if isinstance(outcome, dict):
            for item in outcome.get("steps", []):
                if isinstance(item, dict) and item.get("kind") in ("restore", "warm-swap"):
                    restore_bars.append(
                        (f"rollback {item['kind']}", float(item.get("seconds", 0)), "#6a1b9a")
                    )
    recovery = report.proof.get("recovery_seconds")
    budget_svg = (
        bars_svg(
            "Recovery time against the budget",
            [
                ("measured recovery (alarm to N serving)", float(recovery), "#2e7d32"),
                (
                    "recovery-time budget (RTO)",
                    float(report.proof.get("rto_seconds", 0)),
                    "#9e9e9e",
                ),
            ],
        )
        if recovery is not None
        else "<p>No rollback ran (nothing was rolled out).</p>"
    )
    restore_svg = (
        bars_svg("Restore time against size", restore_bars)
        if restore_bars
        else "<p>No restore was measured.</p>"
    )
    rows = "".join(
        f"<tr><td>{_escape(s.name)}</td><td style='color:{_COLOURS.get(s.status, '#000')}'>"
        f"{_escape(s.status)}</td><td>{s.seconds:.1f}s</td><td>{_escape(s.summary)}</td></tr>"
        for s in report.steps
    )
    proof = _escape(json.dumps(report.proof, indent=2, default=str))
    notes = "".join(f"<li>{_escape(n)}</li>" for n in report.notes)
    return f"""<!doctype html>
<html><head><meta charset="utf-8">
<title>Rollgate rehearsal: {_escape(report.scenario["name"])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}td,th{{padding:4px 8px;
border-bottom:1px solid #ddd;text-align:left;vertical-align:top}}pre{{background:#f5f5f5;
padding:1em;overflow:auto}}</style></head><body>
<h1>Rollgate rehearsal: {_escape(report.scenario["name"])} &mdash;
{_escape(report.outcome.upper())}</h1>
<p>{_escape(report.scenario["description"])}. Gate verdict:
<b>{_escape(report.gate_verdict)}</b> (expected {_escape(report.scenario["expect"])}).
Total {report.seconds:.1f}s.{" " + _escape(gate_step.summary) if gate_step else ""}</p>
<p>The app ran as {_escape(report.app_runner.get("runs_as", "processes"))}
({_escape(report.app_runner.get("reason", ""))}).</p>
<h2>Timeline</h2>{timeline_svg(report.steps)}
<h2>Recovery</h2>{budget_svg}
<h2>Restore</h2>{restore_svg}
<h2>Steps</h2><table><tr><th>step</th><th>status</th><th>time</th><th>summary</th></tr>{rows}</table>
<h2>Proof</h2><pre>{proof}</pre>
<h2>Notes</h2><ul>{notes}</ul>
<p>Files: timeline.json, gate/gate-report.json, gate/gate-summary.md, logs/.</p>
</body></html>
"""
