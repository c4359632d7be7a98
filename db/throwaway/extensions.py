"""Extensions a project needs, and a throwaway server that can create them.

RDS lets its (non-superuser) master user create every extension on its
allow-list. The throwaway servers run migrations as the non-superuser
``rollgate_owner`` too, so an extension counts as *creatable* on a backend when
the backend ships it and its control file says ``trusted``: the docker image
marks every RDS extension it ships trusted (``image/rds_extensions.txt``); the
embedded wheel ships contrib without pgcrypto or uuid-ossp, and leaves the
untrusted ones (dblink, postgres_fdw, pg_stat_statements, ...) untrusted.

When the backend asked for cannot create an RDS extension that the project
needs, that is the test bench's shortcoming, not the project's: the embedded
backend hands over to docker (said in progress and in the warnings), and
otherwise ``CannotRun`` (exit 2) names the extension and the remedy. It is
never reported as a failed check. An extension off RDS's list is left to fail
where the project creates it, as it would on RDS.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg

from core.errors import CannotRun, RollgateError
from core.progress import Progress
from db.sqlfile import SqlScript
from db.throwaway import ThrowawayPostgres, start_throwaway

RDS_EXTENSIONS_FILE = Path(__file__).parent / "image" / "rds_extensions.txt"


def rds_extensions() -> frozenset[str]:
    """Names of the extensions RDS for PostgreSQL 18 lets its master user create."""
    lines = RDS_EXTENSIONS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


@dataclass(frozen=True)
class ExtensionUse:
    """An extension a file creates, and where (``file:line``) it first does."""

    name: str
    where: str


def required_extensions(scripts: Iterable[SqlScript]) -> dict[str, ExtensionUse]:
    """Every extension a ``CREATE EXTENSION`` in ``scripts`` creates, by name, first use first."""
    from pglast import ast, parser

    found: dict[str, ExtensionUse] = {}
    for script in scripts:
        for statement in script.statements:
            # A cheap filter first: parsing every statement of a large schema
            # twice would cost more than the whole check of the rest.
            if "extension" not in statement.text.lower():
                continue
            for raw in parser.parse_sql(statement.text):
                node = raw.stmt
                if isinstance(node, ast.CreateExtensionStmt) and node.extname:
                    found.setdefault(
                        node.extname,
                        ExtensionUse(node.extname, f"{script.path}:{statement.line}"),
                    )
    return found


def uncreatable(server: ThrowawayPostgres, needed: Iterable[str]) -> list[str]:
    """The RDS extensions in ``needed`` that ``rollgate_owner`` cannot create on ``server``.

    Missing, or shipped but untrusted (so only a superuser could create it).
    Extensions off RDS's list are not judged here: RDS refuses them too, and
    the file that creates one fails where it does so.
    """
    wanted = sorted(set(needed) & rds_extensions())
    if not wanted:
        return []
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT name, bool_or(trusted) FROM pg_available_extension_versions "
            "WHERE name = ANY(%s) GROUP BY name",
            (wanted,),
        ).fetchall()
    # plpgsql is trusted as a language and already installed in every database.
    creatable = {name for name, trusted in rows if trusted or name == "plpgsql"}
    return [name for name in wanted if name not in creatable]


def start_for_extensions(
    backend: str,
    needed: Mapping[str, ExtensionUse],
    *,
    image: str | None = None,
    progress: Progress | None = None,
) -> ThrowawayPostgres:
    """Start a throwaway server on which ``rollgate_owner`` can create every extension needed.

    The embedded backend hands over to docker when it lacks one and Docker
    with the image is available; the switch lands in ``server.warnings``.
    Otherwise ``CannotRun`` names the extensions, the files using them, and
    the remedy. The caller closes the server.
    """
    say = progress or (lambda message: None)
    server = start_throwaway(backend, image=image, progress=say)
    try:
        lacking = uncreatable(server, needed)
    except BaseException:
        server.close()
        raise
    if not lacking:
        return server
    server.close()
    uses = ", ".join(f"{name} (created at {needed[name].where})" for name in lacking)
    if backend != "embedded":
        raise CannotRun(
            f"the {backend} throwaway Postgres cannot create the RDS extension(s) {uses}: "
            "they are missing or untrusted there. Fix: rebuild the image with them "
            "(bash db/throwaway/image/build.sh --force) or point --image at one that has them",
            details={"extensions": lacking, "backend": backend},
        )
    say(f"embedded Postgres cannot create {', '.join(lacking)}: switching to the docker backend")
    try:
        switched = start_throwaway("docker", image=image, progress=say)
    except RollgateError as exc:
        raise CannotRun(
            f"the embedded throwaway Postgres cannot create the RDS extension(s) {uses}, "
            f"and the docker backend is unavailable: {exc.message}. "
            "Fix: run with --backend docker on a machine with Docker and the image "
            "(bash db/throwaway/image/build.sh)",
            details={"extensions": lacking, "backend": backend},
        ) from exc
    try:
        still_lacking = uncreatable(switched, needed)
    except BaseException:
        switched.close()
        raise
    if still_lacking:
        switched.close()
        raise CannotRun(
            f"neither throwaway backend can create the RDS extension(s) "
            f"{', '.join(still_lacking)}. Fix: rebuild the docker image with them "
            "(bash db/throwaway/image/build.sh --force)",
            details={"extensions": still_lacking},
        )
    switched.warnings.insert(
        0,
        f"switched from the embedded to the docker backend: embedded cannot create {uses}",
    )
    return switched
