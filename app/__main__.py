"""``python -m app web|worker``: read the settings once, then serve or consume.

Exit codes follow Rollgate's: 2 when the process cannot start (a setting is
missing or malformed, the database is unreachable at start), 0 on a clean stop.
"""

from __future__ import annotations

import os
import sys
from typing import Final

from app.logs import configure_logging, get_logger
from app.settings import Role, Settings, SettingsError, load_settings

#: The process roles ``python -m app ROLE`` accepts.
ROLES: Final = ("web", "worker")
USAGE: Final = "usage: python -m app {web|worker}"
EXIT_CANNOT_RUN: Final = 2


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in ROLES:
        print(USAGE, file=sys.stderr)
        return EXIT_CANNOT_RUN
    role: Role = "web" if args[0] == "web" else "worker"
    try:
        settings = load_settings(os.environ, role)
    except SettingsError as exc:
        print(f"app {role}: cannot start: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    configure_logging()
    return run_web(settings) if role == "web" else run_worker(settings)


def run_web(settings: Settings) -> int:
    import uvicorn

    from app.web import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=20,
        server_header=False,
    )
    return 0


def run_worker(settings: Settings) -> int:
    import psycopg

    from app.executor import load_executor
    from app.metrics import Metrics
    from app.sqs import sqs_client
    from app.worker import Worker, connect_worker_database

    log = get_logger(role="worker")
    try:
        conn = connect_worker_database(settings)
    except psycopg.OperationalError:
        print("app worker: cannot start: the database is unreachable", file=sys.stderr)
        return EXIT_CANNOT_RUN
    try:
        executor = load_executor(settings.executor)
    except (ImportError, AttributeError):
        print(
            f"app worker: cannot start: ROLLGATE_EXECUTOR {settings.executor!r} does not load",
            file=sys.stderr,
        )
        return EXIT_CANNOT_RUN
    worker = Worker(
        settings,
        conn,
        sqs_client(settings),
        executor,
        Metrics(settings.metric_namespace, settings.stack),
    )
    worker.install_signal_handlers()
    try:
        worker.run()
    finally:
        conn.close()
    log.info("worker_exit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
