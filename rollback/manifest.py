"""A snapshot's manifest: what it protects, what it holds, and how to prove it.

The manifest is the snapshot's contract with whoever restores it. It records:

* the snapshot id and when it was taken;
* the release it protects: bundle commit, app image, schema version and the
  checksums of every applied migration (from Rollgate's history);
* the source server's version and the catalog fingerprint (``db.catalog``);
* per table, the row count and an order-independent content checksum
  (``db.checksums``), all read in the dump's own snapshot, and the method
  that computed them (``checksum_method``; a manifest without one predates
  the field and is ``row-text-v1``): whoever checks a restored copy
  recomputes with that method;
* the size and sha256 of every artifact file;
* the replication slot (and its LSN) opened at the dump's consistent point,
  from which writes made after the snapshot can be replayed;
* which columns were masked, if any, and the timings.

It never holds a secret: no DSN, no password, no host credentials.

**Integrity.** ``to_json`` writes canonical JSON with a ``manifest_sha256``
over everything else, so a manifest edited by hand (or a flipped bit in it)
is refused by ``from_json`` before anything trusts it. Artifact files are
checked against their recorded size and sha256 by ``check_files``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.errors import CheckFailed
from db.checksums import (
    CHECKSUM_METHODS,
    LEGACY_CHECKSUM_METHOD,
    TableChecksum,
    require_one_method,
)
from rollback.store import is_safe_file_name

MANIFEST_FORMAT = 1
_HASH_CHUNK = 4 * 1024 * 1024


class CorruptSnapshot(CheckFailed):
    """A snapshot's manifest or artifact files are not what was recorded."""


@dataclass(frozen=True)
class Release:
    """The release a snapshot protects."""

    bundle_commit: str | None = None
    app_image: str | None = None
    schema_version: int | None = None  # None: the database has no Rollgate history
    migrations: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ArtifactFile:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ReplicationSlot:
    """The logical slot opened at the dump's consistent point (see issue: replay)."""

    name: str
    plugin: str
    consistent_lsn: str


@dataclass(frozen=True)
class RdsSnapshot:
    """An RDS manual snapshot that stands in for the artifact files (``create --rds``)."""

    snapshot_identifier: str
    instance: str
    engine: str
    engine_version: str
    arn: str
    encrypted: bool = False
    kms_key_id: str | None = None


@dataclass(frozen=True)
class Manifest:
    id: str
    created_at: str
    database: str
    server_version: str
    server_major: int
    catalog_fingerprint: str
    release: Release
    tables: tuple[TableChecksum, ...]
    files: tuple[ArtifactFile, ...]
    dump_format: str = "directory"
    slot: ReplicationSlot | None = None
    masked_columns: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    rds: RdsSnapshot | None = None
    format: int = MANIFEST_FORMAT
    checksum_method: str = LEGACY_CHECKSUM_METHOD

    def __post_init__(self) -> None:
        # Every table's checksum must be what the manifest says it is.
        if self.tables and require_one_method(self.tables) != self.checksum_method:
            raise ValueError(
                f"manifest {self.id}: table checksums by {self.tables[0].method}, "
                f"recorded as {self.checksum_method}"
            )

    @property
    def total_rows(self) -> int:
        return sum(table.rows for table in self.tables)

    @property
    def total_bytes(self) -> int:
        return sum(item.size for item in self.files)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["release"]["migrations"] = dict(self.release.migrations)
        data["timings"] = dict(self.timings)
        # The method is recorded once, for the manifest, not per table.
        data["tables"] = [
            {key: value for key, value in table.to_dict().items() if key != "method"}
            for table in self.tables
        ]
        if self.rds is None:
            # Absent, not null: a logical snapshot's manifest stays byte-identical
            # to what earlier releases wrote (and a reader treats absent as None).
            del data["rds"]
        return data

    def to_json(self) -> bytes:
        """Canonical JSON with a self-hash; byte-identical for equal manifests."""
        body = self.to_dict()
        body["manifest_sha256"] = _self_hash(body)
        return (json.dumps(body, sort_keys=True, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes, *, source: str = "manifest.json") -> Manifest:
        """Parse and check a manifest; ``CorruptSnapshot`` names what is wrong."""
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptSnapshot(
                f"{source}: not valid JSON ({exc}); the manifest is damaged"
            ) from exc
        if not isinstance(data, dict):
            raise CorruptSnapshot(f"{source}: not a manifest (a JSON object was expected)")
        recorded = data.pop("manifest_sha256", None)
        if recorded != _self_hash(data):
            raise CorruptSnapshot(
                f"{source}: edited or damaged: its manifest_sha256 does not match its content; "
                "a manifest must never be edited by hand",
                details={"file": source},
            )
        if data.get("format") != MANIFEST_FORMAT:
            raise CorruptSnapshot(
                f"{source}: manifest format {data.get('format')!r}; this Rollgate reads "
                f"format {MANIFEST_FORMAT}"
            )
        method = data.get("checksum_method", LEGACY_CHECKSUM_METHOD)
        if method not in CHECKSUM_METHODS:
            raise CorruptSnapshot(
                f"{source}: checksum method {method!r} is unknown to this Rollgate (it knows "
                f"{', '.join(CHECKSUM_METHODS)}); verify the snapshot with the Rollgate that "
                "wrote it"
            )
        try:
            release = data["release"]
            slot = data.get("slot")
            rds = data.get("rds")
            # A self-hash proves the manifest was not changed since it was hashed,
            # not that whoever hashed it wrote the right types: a forged or foreign
            # manifest with a fresh hash is refused here instead of crashing a reader.
            problem = _shape_problem(data)
            manifest = cls(
                id=str(data["id"]),
                created_at=str(data["created_at"]),
                database=str(data["database"]),
                server_version=str(data["server_version"]),
                server_major=int(data["server_major"]),
                catalog_fingerprint=str(data["catalog_fingerprint"]),
                release=Release(
                    bundle_commit=release.get("bundle_commit"),
                    app_image=release.get("app_image"),
                    schema_version=release.get("schema_version"),
                    migrations={k: dict(v) for k, v in release.get("migrations", {}).items()},
                ),
                tables=tuple(
                    TableChecksum.from_dict({**t, "method": method}) for t in data["tables"]
                ),
                files=tuple(ArtifactFile(**f) for f in data["files"]),
                dump_format=str(data.get("dump_format", "directory")),
                slot=ReplicationSlot(**slot) if slot else None,
                masked_columns=tuple(data.get("masked_columns", ())),
                timings=dict(data.get("timings", {})),
                rds=RdsSnapshot(**rds) if rds else None,
                checksum_method=method,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptSnapshot(f"{source}: missing or malformed field: {exc}") from exc
        if problem:
            raise CorruptSnapshot(f"{source}: malformed field {problem}; the manifest is damaged")
        return manifest


_SHA256 = re.compile(r"[0-9a-f]{64}")
# What each top-level field must be in JSON (absent optional fields are not checked).
_STRINGS = ("id", "created_at", "database", "server_version", "catalog_fingerprint")


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_optional_str(value: object) -> bool:
    return value is None or isinstance(value, str)


def _shape_problem(data: Mapping[str, Any]) -> str:
    """The first field of a parsed manifest whose JSON type is wrong, else ""."""
    release = data["release"]
    checks: list[tuple[str, bool]] = [
        *((f"{key!r} (a string was expected)", isinstance(data[key], str)) for key in _STRINGS),
        ("'server_major' (a whole number was expected)", _is_count(data["server_major"])),
        ("'dump_format' (a string was expected)", isinstance(data.get("dump_format", ""), str)),
        (
            "'release' (bundle_commit and app_image are strings or null)",
            _is_optional_str(release.get("bundle_commit"))
            and _is_optional_str(release.get("app_image")),
        ),
        (
            "'release.schema_version' (a whole number or null was expected)",
            release.get("schema_version") is None or _is_count(release.get("schema_version")),
        ),
        *(
            (
                f"'release.migrations' entry {name!r} (strings were expected)",
                all(isinstance(v, str) for v in (name, *item.keys(), *item.values())),
            )
            for name, item in release.get("migrations", {}).items()
        ),
        *(
            (
                f"'tables' entry {table['table']!r} (a name, a whole number of rows, a checksum)",
                isinstance(table["table"], str)
                and isinstance(table["checksum"], str)
                and _is_count(table["rows"]),
            )
            for table in data["tables"]
        ),
        *_file_checks(data["files"]),
        (
            "'masked_columns' (strings were expected)",
            all(isinstance(column, str) for column in data.get("masked_columns", ())),
        ),
        *(
            (
                f"'timings' entry {step!r} (seconds were expected)",
                isinstance(seconds, int | float) and not isinstance(seconds, bool),
            )
            for step, seconds in data.get("timings", {}).items()
        ),
    ]
    return next((field_name for field_name, valid in checks if not valid), "")


def _file_checks(files: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, bool]]:
    for item in files:
        name = item["name"]
        yield f"'files' name {name!r} (a relative artifact path)", is_safe_file_name(name)
        yield f"'files' entry {name!r} (size in whole bytes)", _is_count(item["size"])
        yield (
            f"'files' entry {name!r} (sha256 of 64 hex digits)",
            isinstance(item["sha256"], str) and _SHA256.fullmatch(item["sha256"]) is not None,
        )


def describe_files(directory: Path) -> tuple[ArtifactFile, ...]:
    """Size and sha256 of every file under ``directory``, by relative POSIX name."""
    paths = sorted(p for p in directory.rglob("*") if p.is_file())
    return tuple(
        ArtifactFile(
            name=path.relative_to(directory).as_posix(), size=path.stat().st_size, sha256=digest
        )
        for path, digest in zip(paths, sha256_of_each(paths), strict=True)
    )


def sha256_of_each(paths: Sequence[Path], *, threads: int = 2) -> list[str]:
    """``sha256_of`` every path, ``threads`` files at a time, in the order given.

    hashlib releases the GIL while it hashes a chunk, so two threads hash two
    files on two cores: a dump's table files are hashed in about half the time.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return list(pool.map(sha256_of, paths))


def check_files(expected: Sequence[ArtifactFile], directory: Path, *, snapshot_id: str) -> None:
    """Refuse, naming the file, anything missing, truncated, grown or altered.

    Sizes first (cheap: a truncation is named without reading the file), then
    sha256. Files in ``directory`` that the manifest does not list are refused
    too: a restore must read exactly what was recorded.
    """
    problems = []
    listed = {item.name for item in expected}
    for item in expected:
        path = directory / item.name
        if not path.is_file():
            problems.append(f"{item.name}: missing")
            continue
        size = path.stat().st_size
        if size != item.size:
            kind = "truncated" if size < item.size else "grown"
            problems.append(f"{item.name}: {kind} ({size} bytes, recorded {item.size})")
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = path.relative_to(directory).as_posix()
        if name not in listed:
            problems.append(f"{name}: not listed in the manifest")
    if not problems:
        digests = sha256_of_each([directory / item.name for item in expected])
        for item, actual in zip(expected, digests, strict=True):
            if actual != item.sha256:
                problems.append(
                    f"{item.name}: content changed (sha256 {actual[:12]}, "
                    f"recorded {item.sha256[:12]})"
                )
    if problems:
        listed_problems = "; ".join(problems)
        raise CorruptSnapshot(
            f"snapshot {snapshot_id} is corrupt, nothing was restored: {listed_problems}",
            details={"snapshot": snapshot_id, "problems": problems},
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as reader:
        while chunk := reader.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _self_hash(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()
