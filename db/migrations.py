"""Migration files on disk -> an ordered list of ``Migration``s. No database here.

A migration is three same-named files, as in sqitch's deploy/revert/verify::

    db/migrations/0002_add_ai_model.up.sql      apply the change
    db/migrations/0002_add_ai_model.down.sql    undo it exactly
    db/migrations/0002_add_ai_model.verify.sql  cheap shape check; raises on failure

Names are ``NNNN_verb_object``: four ASCII digits, then lower-case ASCII
letters, digits and ``_``. Loading refuses, naming the file, anything that
would make a run ambiguous: a missing down or verify file, a stray file, a file
that looks like a migration but is not named like one (``.SQL``, Arabic-Indic
digits, a trailing newline or space), anything but a regular file, two
migrations with one version, a syntax error, and any statement that
``db.sqlrules`` refuses (transaction control, COPY, the rollgate schema ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from core.errors import CannotRun
from db.errors import MigrationFileError
from db.sqlfile import SqlScript, read_migration_script

BUNDLED_MIGRATIONS = Path(__file__).parent / "migrations"
BUNDLED_SCHEMA = Path(__file__).parent / "schema.sql"

# Matched with fullmatch and re.ASCII: ``\\d`` would also match Arabic-Indic
# digits, and ``$`` matches before a trailing newline.
_FILE = re.compile(
    r"(?P<version>[0-9]{4})_(?P<name>[a-z][a-z0-9_]*)\.(?P<kind>up|down|verify)\.sql", re.ASCII
)
_KIND_INFIX = re.compile(r"\.(up|down|verify)\.", re.IGNORECASE)
NAME_RULE = (
    "expected NNNN_verb_object.{up,down,verify}.sql with four ASCII digits and "
    "lower-case a-z, 0-9 and _, e.g. 0003_add_index.up.sql"
)
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
        if path.name.startswith("."):
            continue  # editor swap files, .gitkeep
        match = _FILE.fullmatch(path.name)
        if not match:
            reason = lookalike_reason(path.name)
            if reason:
                raise MigrationFileError(
                    f"{path.parent / repr(path.name)[1:-1]}: not a migration file name "
                    f"({reason}); {NAME_RULE}; rename it, or move it out of {directory}",
                    details={"file": str(path), "reason": reason},
                )
            continue  # READMEs, notes and sub-directories may live beside migrations
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
        scripts = {kind: read_migration_script(files[kind]) for kind in KINDS}
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


def lookalike_reason(name: str) -> str | None:
    """Why a name that is not a migration's still looks like one, or None if it does not.

    Such a file is refused rather than skipped: a skipped ``0003_x.UP.SQL`` or
    ``٠٠٠٣_x.up.sql`` would silently leave a change out of every run.
    """
    checks: tuple[tuple[bool, str], ...] = (
        (name.strip() != name, "leading or trailing whitespace"),
        (not name.isprintable(), "a control or invisible character"),
        (".sql" in name.casefold(), "an .sql file"),
        (bool(_KIND_INFIX.search(name)), "contains .up., .down. or .verify."),
        # isdigit(), not just decimal digits: superscripts and the like look alike too.
        (name[:1].isdigit(), "starts with a digit"),
        (any(c.isdigit() and not c.isascii() for c in name), "contains a non-ASCII digit"),
    )
    return next((reason for matched, reason in checks if matched), None)
