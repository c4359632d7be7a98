"""Benchmark the workflow service end to end: moto's SQS, embedded Postgres, real processes.

Run::

    .venv/bin/python benchmarks/bench_app.py [--tasks 300] [--webhooks 400] [--clients 4]

Starts a throwaway embedded Postgres (migrated), moto's SQS on 127.0.0.1 and
``python -m app web``, then measures and prints one table:

* task submission: ``POST /tasks`` from ``--clients`` threads (outbox row +
  relay publish);
* end-to-end tasks/s with 1 and 2 ``python -m app worker`` processes: the
  queue is filled first, then the clock runs from the workers' start until
  every task is ``succeeded``;
* webhook ingest: signed ``charge.succeeded`` events from ``--clients``
  threads: rate and p50/p99 latency;
* for reference, raw moto SQS receive+delete round trips per second with 1
  and 2 client threads, and a claim+finish transaction pair on Postgres: the
  ceiling each resource puts on a worker.

Measured on the 2-core build machine (2026-11-30, --tasks 150 --webhooks 300)::

    POST /tasks (4 clients)               172 req/s
    end to end, 1 worker(s)               18.2 tasks/s
    end to end, 2 worker(s)               17.8 tasks/s
    webhook ingest (4 clients)            190 events/s
    webhook latency p50 / p99             19.0 ms / 45.8 ms
    moto SQS receive+delete, 1 thread(s)  16 pairs/s
    moto SQS receive+delete, 2 thread(s)  17 pairs/s
    Postgres claim+finish pair, 1 conn    2,511 pairs/s

The bottleneck is moto's SQS: a bare receive+delete pair runs at ~16/s and a
second client thread adds nothing, so a second worker adds nothing either;
the worker's own path (two Postgres transactions, ~2,500 pairs/s) has two
orders of magnitude of headroom. Against real SQS the per-call latency is
~10-20 ms and scales with workers, so expect the worker count, not the
database, to set throughput there.

Machines are noisy: compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import psycopg
from moto.server import ThreadedMotoServer

from db.migrations import BUNDLED_MIGRATIONS, load_migrations
from db.runner import MigrationRunner
from db.throwaway import create_database, start_throwaway

REPO = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
SECRET = "whsec_bench_" + "0" * 20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300, help="tasks per worker run (300)")
    parser.add_argument("--webhooks", type=int, default=400, help="webhook events (400)")
    parser.add_argument("--clients", type=int, default=4, help="HTTP client threads (4)")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request lines
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    rows: list[tuple[str, str]] = []
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint)
    try:
        with start_throwaway("embedded") as server:
            for workers in (1, 2):
                dsn = _migrated(server, f"bench_tasks_{workers}")
                queue, dlq = _queues(sqs, f"bench-{workers}")
                env = _env(dsn, queue, dlq, endpoint)
                with _process("web", env) as web:
                    rate, _lat = _hammer(
                        args.tasks,
                        args.clients,
                        functools.partial(_post_task, web.url),
                    )
                    if workers == 1:
                        rows.append((f"POST /tasks ({args.clients} clients)", f"{rate:,.0f} req/s"))
                    _wait(functools.partial(_queued_at_least, sqs, queue, args.tasks), 120)
                started = time.monotonic()
                procs = [_process("worker", env) for _ in range(workers)]
                for proc in procs:
                    proc.__enter__()
                try:
                    _wait(functools.partial(_succeeded_at_least, dsn, args.tasks), 600)
                finally:
                    for proc in procs:
                        proc.__exit__(None, None, None)
                elapsed = time.monotonic() - started
                rows.append(
                    (f"end to end, {workers} worker(s)", f"{args.tasks / elapsed:,.1f} tasks/s")
                )

            dsn = _migrated(server, "bench_webhooks")
            queue, dlq = _queues(sqs, "bench-webhooks")
            with _process("web", _env(dsn, queue, dlq, endpoint)) as web:
                rate, latencies = _hammer(
                    args.webhooks, args.clients, functools.partial(_webhook, web.url)
                )
            p50 = statistics.median(latencies) * 1000
            p99 = statistics.quantiles(latencies, n=100)[98] * 1000
            rows.append((f"webhook ingest ({args.clients} clients)", f"{rate:,.0f} events/s"))
            rows.append(("webhook latency p50 / p99", f"{p50:.1f} ms / {p99:.1f} ms"))

            for threads in (1, 2):
                rows.append(
                    (
                        f"moto SQS receive+delete, {threads} thread(s)",
                        f"{_sqs_round_trips(sqs, threads):,.0f} pairs/s",
                    )
                )
            rows.append(("Postgres claim+finish pair, 1 conn", f"{_db_pairs(dsn):,.0f} pairs/s"))
    finally:
        moto.stop()
    _print_table(rows)
    return 0


def _print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  result")
    print(f"{'-' * width}  ------")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _migrated(server: Any, name: str) -> str:
    dsn: str = create_database(server, name)
    with MigrationRunner(dsn, load_migrations(BUNDLED_MIGRATIONS)) as runner:
        runner.migrate()
    return dsn


def _queues(sqs: Any, name: str) -> tuple[str, str]:
    dlq: str = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "5"})
    queue: str = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": redrive})["QueueUrl"]
    return queue, dlq


def _env(dsn: str, queue: str, dlq: str, endpoint: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": dsn,
        "ROLLGATE_QUEUE_URL": queue,
        "ROLLGATE_DLQ_URL": dlq,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "ROLLGATE_STACK": "bench",
        "ROLLGATE_POLL_WAIT_SECONDS": "1",
        "ROLLGATE_RELAY_INTERVAL_SECONDS": "0.1",
        "ROLLGATE_HEARTBEAT_FILE": f"/tmp/rollgate-bench-{os.getpid()}.heartbeat",  # noqa: S108
        "ROLLGATE_BIND_HOST": "127.0.0.1",
    }


class _process:
    def __init__(self, role: str, env: dict[str, str]) -> None:
        self.role = role
        self.env = dict(env)
        self.url = ""

    def __enter__(self) -> _process:
        if self.role == "web":
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            self.env["PORT"] = str(port)
            self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", self.role],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if self.role == "web":
            _wait(self._answers, 30)
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1):  # noqa: S310
                return True
        except OSError:
            return False

    def __exit__(self, *_exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def _wait(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("bench_app: timed out")
        time.sleep(0.05)


def _post(url: str, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 (loopback)
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        response.read()


def _post_task(url: str, i: int) -> None:
    _post(url + "/tasks", {"payload": {"i": i}})


def _queued_at_least(sqs: Any, queue: str, count: int) -> bool:
    return _count(sqs, queue) >= count


def _succeeded_at_least(dsn: str, count: int) -> bool:
    return _succeeded(dsn) >= count


def _webhook(url: str, _i: int) -> None:
    event = {
        "id": "evt_" + secrets.token_hex(12),
        "type": "charge.succeeded",
        "data": {"object": {"amount": 1999, "currency": "usd", "metadata": {}}},
    }
    payload = json.dumps(event).encode()
    stamp = int(time.time())
    mac = hmac.new(SECRET.encode(), f"{stamp}.".encode() + payload, hashlib.sha256).hexdigest()
    _post(url + "/webhooks/stripe", payload, {"Stripe-Signature": f"t={stamp},v1={mac}"})


def _hammer(count: int, clients: int, call: Callable[[int], None]) -> tuple[float, list[float]]:
    def timed(i: int) -> float:
        started = time.perf_counter()
        call(i)
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(timed, range(count)))
    return count / (time.perf_counter() - started), latencies


def _count(sqs: Any, queue: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def _succeeded(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM execution_tasks WHERE status = 'succeeded'"
        ).fetchone()
    return int(row[0]) if row else 0


def _sqs_round_trips(sqs: Any, threads: int, seconds: float = 5.0) -> float:
    queue, _dlq = _queues(sqs, f"bench-raw-{threads}")
    for start in range(0, 400, 10):
        sqs.send_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": str(i), "MessageBody": "{}"} for i in range(start, start + 10)],
        )
    client = boto3.client("sqs", region_name=REGION, endpoint_url=sqs.meta.endpoint_url)
    deadline = time.monotonic() + seconds

    def loop(_: int) -> int:
        pairs = 0
        while time.monotonic() < deadline:
            for message in client.receive_message(QueueUrl=queue, MaxNumberOfMessages=1).get(
                "Messages", []
            ):
                client.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
                pairs += 1
        return pairs

    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(loop, range(threads)))
    return total / seconds


def _db_pairs(dsn: str, count: int = 500) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO execution_tasks (payload) SELECT '{}'::jsonb FROM generate_series(1, %s)",
            (count,),
        )
        ids = [r[0] for r in conn.execute("SELECT id FROM execution_tasks WHERE status='queued'")]
        started = time.perf_counter()
        for task_id in ids[:count]:
            with conn.transaction():
                conn.execute(
                    "UPDATE execution_tasks SET status='running', attempts=attempts+1, "
                    "started_at=now() WHERE id=%s AND status='queued'",
                    (task_id,),
                )
            with conn.transaction():
                conn.execute(
                    "UPDATE execution_tasks SET status='succeeded', finished_at=now() WHERE id=%s",
                    (task_id,),
                )
        return min(count, len(ids)) / (time.perf_counter() - started)


if __name__ == "__main__":
    sys.exit(main())
