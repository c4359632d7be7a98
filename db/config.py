"""Project configuration: ``rollgate.toml``, for what differs between projects.

A team adopting Rollgate on an existing database rarely has Rollgate's
layout. The file says where its schema and migrations are, which schemas
Rollgate compares, and from which version on migrations are linted::

    # rollgate.toml (paths are relative to this file)
    schema = "db/structure.sql"
    migrations = "db/migrations"

    [catalog]
    schemas = ["app"]                             # default: every user schema
    exclude = ["public.ar_internal_metadata"]     # tables left out, with what is on them

    [lint]
    since = 41        # migrations <= 41 are in production already: not linted

Everything is optional; command-line flags override the file. Unknown keys
are refused, naming the key, so a typo never silently means "the default".
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import CannotRun

CONFIG_FILE_NAME = "rollgate.toml"

_KNOWN: dict[str, set[str]] = {
    "": {"schema", "migrations", "catalog", "lint"},
    "catalog": {"schemas", "exclude"},
    "lint": {"since"},
}


@dataclass(frozen=True)
class CatalogScope:
    """Which objects catalog comparisons read.

    ``schemas`` empty means every user schema (all but ``pg_*`` and
    ``information_schema``); Rollgate's own bookkeeping schema is never read.
    ``exclude`` names tables, bare or schema-qualified.
    """

    schemas: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProjectConfig:
    """What ``rollgate.toml`` says; every field has a safe default."""

    path: Path | None = None
    schema: Path | None = None
    migrations: Path | None = None
    catalog: CatalogScope = field(default_factory=CatalogScope)
    lint_since: int = 0


def load_config(path: Path | None) -> ProjectConfig:
    """Read ``path`` (or ``./rollgate.toml`` when present, when ``path`` is None)."""
    if path is None:
        default = Path.cwd() / CONFIG_FILE_NAME
        if not default.is_file():
            return ProjectConfig()
        path = default
    if not path.is_file():
        raise CannotRun(f"{path}: config file not found (check --config)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise CannotRun(f"{path}: cannot read config: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CannotRun(f"{path}: not valid TOML: {exc}") from exc
    _refuse_unknown(path, data)
    base = path.parent
    catalog = _table(path, data, "catalog")
    lint = _table(path, data, "lint")
    return ProjectConfig(
        path=path,
        schema=_path(path, base, data, "schema"),
        migrations=_path(path, base, data, "migrations"),
        catalog=CatalogScope(
            schemas=_names(path, catalog, "catalog.schemas"),
            exclude=_names(path, catalog, "catalog.exclude"),
        ),
        lint_since=_version(path, lint, "lint.since"),
    )


def _refuse_unknown(path: Path, data: dict[str, Any]) -> None:
    unknown = [key for key in data if key not in _KNOWN[""]]
    for section in ("catalog", "lint"):
        if isinstance(data.get(section), dict):
            unknown += [f"{section}.{key}" for key in data[section] if key not in _KNOWN[section]]
    if unknown:
        known = sorted(_KNOWN[""] | {f"{s}.{k}" for s in ("catalog", "lint") for k in _KNOWN[s]})
        raise CannotRun(
            f"{path}: unknown config key(s): {', '.join(unknown)}; known: {', '.join(known)}"
        )


def _table(path: Path, data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise CannotRun(f"{path}: [{key}] must be a table")
    return value


def _path(path: Path, base: Path, data: dict[str, Any], key: str) -> Path | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise CannotRun(f"{path}: {key} must be a non-empty path string")
    return base / value


def _names(path: Path, table: dict[str, Any], key: str) -> tuple[str, ...]:
    value = table.get(key.split(".", 1)[1], [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CannotRun(f"{path}: {key} must be a list of non-empty strings")
    return tuple(value)


def _version(path: Path, table: dict[str, Any], key: str) -> int:
    value = table.get(key.split(".", 1)[1], 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CannotRun(f"{path}: {key} must be a migration version (an integer >= 0)")
    return value
