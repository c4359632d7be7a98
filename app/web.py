"""The web API (FastAPI): tasks, Stripe webhooks, the ROI report and health.

Every error answers with ``{"detail": <what is wrong and how to fix it>}`` and
never echoes the request body back. Handlers are plain ``def``: FastAPI runs
them in its thread pool, next to a psycopg connection pool.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Final

import psycopg
from fastapi import FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import ConnectionPool, PoolTimeout
from pydantic import BaseModel, ConfigDict, Field

from app import schema, webhooks
from app.logs import get_logger
from app.metrics import Metrics
from app.outbox import IdempotencyConflict, OutboxRelay, create_task
from app.settings import Settings
from app.sqs import sqs_client
from infra import outputs

#: A task payload, serialized, may not exceed this (SQS carries only the id, but rows stay small).
MAX_PAYLOAD_BYTES: Final = 64 * 1024
MAX_WEBHOOK_BYTES: Final = 512 * 1024
MAX_ROI_DAYS: Final = 366
IDEMPOTENCY_KEY_PATTERN: Final = r"^[A-Za-z0-9_.:-]{1,200}$"
AI_MODEL_PATTERN: Final = r"^[A-Za-z0-9_.:/-]{1,100}$"

log = get_logger(role="web")


class TaskRequest(BaseModel):
    """A task to run: its payload (a JSON object) and optionally the model to run it with."""

    model_config = ConfigDict(extra="forbid")

    payload: dict[str, Any] = Field(description="Task input; stored, never logged.")
    ai_model: str | None = Field(
        default=None,
        pattern=AI_MODEL_PATTERN,
        description="Model to run the task with; the worker's executor default when absent.",
    )


class TaskAccepted(BaseModel):
    id: int


class WebhookAck(BaseModel):
    received: bool
    recorded: bool


class Problem(BaseModel):
    detail: str


class DailyRoi(BaseModel):
    day: dt.date
    currency: str
    gross_minor: int
    refunds_minor: int
    net_minor: int


class CustomerRoi(BaseModel):
    customer_id: int | None
    currency: str
    gross_minor: int
    refunds_minor: int
    net_minor: int


class RoiReport(BaseModel):
    start: dt.date = Field(serialization_alias="from")
    end: dt.date = Field(serialization_alias="to")
    daily: list[DailyRoi]
    customers: list[CustomerRoi]


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, dict[str, Any]]


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail})


def create_app(settings: Settings, *, start_relay: bool = True) -> FastAPI:  # noqa: PLR0915 (routes close over the pool, relay and settings)
    """The ASGI application for ``settings``."""
    metrics = Metrics(settings.metric_namespace, settings.stack)
    pool: ConnectionPool[Any] = ConnectionPool(
        settings.database_url,
        min_size=1,
        max_size=8,
        open=False,
        timeout=5.0,
        kwargs={"autocommit": True, "application_name": "rollgate-app-web", "connect_timeout": 5},
    )
    sqs = sqs_client(settings, read_timeout=5)
    # Readiness answers within the load balancer's timeout: one try, short timeouts.
    probe_sqs = sqs_client(settings, read_timeout=2, attempts=1)
    relay = OutboxRelay(pool, sqs, settings.queue_url, metrics, settings.relay_interval_seconds)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        pool.open(wait=False)
        if start_relay:
            relay.start()
        log.info("web_started", port=settings.port, stack=settings.stack)
        try:
            yield
        finally:
            relay.stop()
            pool.close()
            log.info("web_stopped")

    app = FastAPI(
        title="Rollgate workflow service",
        version="1",
        lifespan=lifespan,
        responses={422: {"model": Problem}, 503: {"model": Problem}},
    )
    app.state.relay = relay
    app.state.pool = pool

    @app.middleware("http")
    async def access_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.monotonic()
        response = await call_next(request)
        route = request.scope.get("route")
        log.info(
            "http_request",
            method=request.method,
            # The route template (/tasks), never the raw path or query.
            path=getattr(route, "path", "unmatched"),
            status_code=response.status_code,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the field and the rule; never echo the input (it may be personal data).
        parts = []
        for error in exc.errors()[:5]:
            where = ".".join(str(p) for p in error.get("loc", ()))
            parts.append(f"{where}: {error.get('msg', 'invalid')}")
        return _problem(422, "invalid request: " + "; ".join(parts))

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("database_unavailable", error_type=type(exc).__name__)
        return _problem(503, "database unavailable; retry later")

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled_error", error_type=type(exc).__name__)
        return _problem(500, "internal error")

    @app.get(outputs.APP_HEALTH_PATH, tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get(outputs.APP_READY_PATH, tags=["health"], response_model=Readiness)
    def readyz() -> JSONResponse:
        """Readiness: database answers, queue reachable, schema within this release's range."""
        checks: dict[str, dict[str, Any]] = {}
        try:
            with pool.connection(timeout=3) as conn:
                conn.execute("SELECT 1")
                checks["database"] = {"ok": True}
                checks["schema"] = schema.check_schema(conn).to_dict()
        except (psycopg.Error, PoolTimeout) as exc:
            checks["database"] = {"ok": False, "message": f"unreachable ({type(exc).__name__})"}
            checks["schema"] = {"ok": False, "message": "not checked: database unreachable"}
        try:
            probe_sqs.get_queue_attributes(QueueUrl=settings.queue_url, AttributeNames=["QueueArn"])
            checks["queue"] = {"ok": True}
        except Exception as exc:
            checks["queue"] = {"ok": False, "message": f"unreachable ({type(exc).__name__})"}
        ready = all(check["ok"] for check in checks.values())
        if not ready:
            log.warning("not_ready", reason=",".join(k for k, v in checks.items() if not v["ok"]))
        return JSONResponse(
            status_code=200 if ready else 503, content={"ready": ready, "checks": checks}
        )

    @app.post(
        "/tasks",
        status_code=201,
        response_model=TaskAccepted,
        responses={200: {"model": TaskAccepted}, 409: {"model": Problem}, 413: {"model": Problem}},
        tags=["tasks"],
    )
    def post_task(
        body: TaskRequest,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                pattern=IDEMPOTENCY_KEY_PATTERN,
                description="Retries with the same key return the same task.",
            ),
        ] = None,
    ) -> JSONResponse:
        """Create a task and queue it (transactional outbox): 201 new, 200 an idempotent replay."""
        problem = _payload_problem(body.payload)
        if problem is not None:
            return problem
        try:
            with pool.connection() as conn:
                created = create_task(
                    conn,
                    payload=body.payload,
                    ai_model=body.ai_model,
                    idempotency_key=idempotency_key,
                )
        except IdempotencyConflict:
            return _problem(
                409, "Idempotency-Key was already used with a different request; use a new key"
            )
        if created.created:
            relay.wake()
            log.info(
                "task_created", task_id=created.task_id, ai_model=body.ai_model, status="queued"
            )
        return JSONResponse(
            status_code=201 if created.created else 200, content={"id": created.task_id}
        )

    @app.post(
        "/webhooks/stripe",
        response_model=WebhookAck,
        responses={400: {"model": Problem}, 413: {"model": Problem}},
        tags=["webhooks"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    async def stripe_webhook(
        request: Request,
        stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
    ) -> JSONResponse:
        """Record a signed Stripe event once; unknown types are acknowledged and counted."""
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BYTES:
            return _problem(413, f"body larger than {MAX_WEBHOOK_BYTES} bytes")
        secret = settings.stripe_webhook_secret
        assert secret is not None  # required for the web role
        try:
            verified = webhooks.verify(body, stripe_signature, secret)
        except webhooks.WebhookRejected as exc:
            metrics.count(outputs.METRIC_WEBHOOK_REJECTED)
            log.warning("webhook_rejected", outcome="rejected", reason=str(exc))
            return _problem(400, f"webhook rejected: {exc}")
        if verified.payment is None:
            metrics.count(outputs.METRIC_WEBHOOK_IGNORED)
            log.info(
                "webhook_ignored",
                outcome="ignored",
                stripe_event_id=verified.event_id,
                stripe_event_type=verified.event_type,
            )
            return JSONResponse({"received": True, "recorded": False})
        payment = verified.payment

        def _record() -> bool:
            with pool.connection() as conn:
                return webhooks.record(conn, payment)

        from starlette.concurrency import run_in_threadpool

        recorded = await run_in_threadpool(_record)
        if recorded:
            metrics.count(outputs.METRIC_WEBHOOK_RECORDED)
        log.info(
            "webhook_recorded" if recorded else "webhook_duplicate",
            outcome="recorded" if recorded else "duplicate",
            stripe_event_id=verified.event_id,
            stripe_event_type=verified.event_type,
        )
        return JSONResponse({"received": True, "recorded": recorded})

    @app.get(
        "/roi",
        response_model=RoiReport,
        responses={400: {"model": Problem}},
        tags=["reports"],
    )
    def roi(
        start: Annotated[dt.date, Query(alias="from", description="First UTC day (YYYY-MM-DD).")],
        end: Annotated[dt.date, Query(alias="to", description="Last UTC day, inclusive.")],
    ) -> JSONResponse:
        """Gross, refunds and net in minor units per day and currency, and per customer."""
        if end < start:
            return _problem(400, "'to' is before 'from'")
        if (end - start).days >= MAX_ROI_DAYS:
            return _problem(400, f"the window spans more than {MAX_ROI_DAYS} days; narrow it")
        with pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            daily = conn.execute(
                "SELECT day, currency, gross_minor, refunds_minor, net_minor "
                "FROM public.roi_daily WHERE day BETWEEN %s AND %s ORDER BY day, currency",
                (start, end),
            ).fetchall()
            customers = conn.execute(
                "SELECT customer_id, currency, sum(gross_minor)::bigint, "
                "sum(refunds_minor)::bigint, sum(net_minor)::bigint "
                "FROM public.roi_customer_daily WHERE day BETWEEN %s AND %s "
                "GROUP BY customer_id, currency ORDER BY 5 DESC, customer_id NULLS LAST, currency",
                (start, end),
            ).fetchall()
        fields = ("gross_minor", "refunds_minor", "net_minor")
        return JSONResponse(
            {
                "from": start.isoformat(),
                "to": end.isoformat(),
                "daily": [
                    {"day": d.isoformat(), "currency": c, **dict(zip(fields, v, strict=True))}
                    for d, c, *v in daily
                ],
                "customers": [
                    {"customer_id": cid, "currency": c, **dict(zip(fields, v, strict=True))}
                    for cid, c, *v in customers
                ],
            }
        )

    return app


def _payload_problem(payload: dict[str, Any]) -> JSONResponse | None:
    try:
        text = json.dumps(payload, allow_nan=False)
    except ValueError:
        return _problem(422, "invalid request: body.payload: NaN and Infinity are not JSON")
    if len(text.encode()) > MAX_PAYLOAD_BYTES:
        return _problem(413, f"body.payload is larger than {MAX_PAYLOAD_BYTES} bytes")
    if "\\u0000" in text:
        return _problem(422, "invalid request: body.payload: NUL characters are not allowed")
    return None
