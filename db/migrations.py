"""Migration files on disk -> an ordered list of ``Migration``s. No database here.

A migration is three same-named files, as in sqitch's deploy/revert/verify::

    db/migrations/0002_add_ai_model.up.sql      apply the change
    db/migrations/0002_add_ai_model.down.sql    undo it exactly
    db/migrations/0002_add_ai_model.verify.sql  cheap shape check; raises on failure

Names are ``NNNN_verb_object``. Loading refuses, naming the file, anything
that would make a run ambiguous: a missing down or verify file, a stray file,
two migrations with one version, a syntax error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from core.errors import CannotRun
from db.errors import MigrationFileError
from db.sqlfile import SqlScript, read_script

BUNDLED_MIGRATIONS = Path(__file__).parent / "migrations"
BUNDLED_SCHEMA = Path(__file__).parent / "schema.sql"

_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z][a-z0-9_]*)\.(?P<kind>up|down|verify)\.sql$")
KINDS = ("up", "down", "verify")


@dataclass(frozen=True)
class Migration:
    """One versioned, reversible change."""

    version: int
    name: str
    up: SqlScript
    down: SqlScript
    verify: SqlScript

    @property
    def label(self) -> str:
        """``0002_add_ai_model``: how people and history refer to it."""
        return f"{self.version:04d}_{self.name}"

    @property
    def checksums(self) -> dict[str, str]:
        return {"up": self.up.sha256, "down": self.down.sha256, "verify": self.verify.sha256}

    def script(self, kind: str) -> SqlScript:
        script: SqlScript = getattr(self, kind)
        return script


def require_schema_file(path: Path) -> Path:
    """``path`` if it is a readable file, else ``CannotRun`` (a usage problem, exit 2)."""
    if not path.is_file():
        raise CannotRun(f"{path}: schema file not found (check --schema)")
    return path


def load_migrations(directory: Path = BUNDLED_MIGRATIONS) -> list[Migration]:
    """Read every migration in ``directory``, ordered by version.

    Raises ``MigrationFileError`` naming the offending file for anything that is
    not exactly a set of complete, well-formed up/down/verify triples.
    """
    if not directory.is_dir():
        raise CannotRun(f"{directory}: migrations directory not found (check --migrations)")
    found: dict[int, dict[str, Path]] = {}
    names: dict[int, str] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.is_dir():
            continue
        match = _FILE.match(path.name)
        if not match:
            if path.suffix == ".sql":
                raise MigrationFileError(
                    f"{path}: not a migration file name; expected "
                    "NNNN_verb_object.{up,down,verify}.sql, e.g. 0003_add_index.up.sql"
                )
            continue  # READMEs and the like may live beside migrations
        version = int(match["version"])
        if version == 0:
            raise MigrationFileError(f"{path}: version 0000 is reserved for 'nothing applied'")
        if names.setdefault(version, match["name"]) != match["name"]:
            raise MigrationFileError(
                f"{path}: version {version:04d} is already used by "
                f"{version:04d}_{names[version]}; each version needs a unique number"
            )
        found.setdefault(version, {})[match["kind"]] = path

    migrations = []
    for version in sorted(found):
        files = found[version]
        label = f"{version:04d}_{names[version]}"
        for kind in KINDS:
            if kind not in files:
                raise MigrationFileError(
                    f"{directory / f'{label}.{kind}.sql'}: missing; every migration needs "
                    f"up, down and verify files (found: {', '.join(sorted(files))})"
                )
        scripts = {kind: read_script(files[kind]) for kind in KINDS}
        if not scripts["up"].statements:
            raise MigrationFileError(f"{files['up']}: no SQL statements")
        migrations.append(
            Migration(
                version=version,
                name=names[version],
                up=scripts["up"],
                down=scripts["down"],
                verify=scripts["verify"],
            )
        )
    return migrations
