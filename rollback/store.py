"""Where snapshots live: a directory, a ``file://`` URI, or ``s3://bucket/prefix``.

Every store keeps the same layout under its root::

    snapshots/<id>/manifest.json     written last: its presence means "complete"
    snapshots/<id>/files/<name>      the artifact files the manifest lists
    snapshots/<id>/records/<name>    what happened to it later (verifications, restores)
    logs/<log>/<name>                append-only logs (rollbacks, gate reports, audits)

Uploads are atomic in the sense that matters to a reader: a half-written
snapshot is never listed.

* **Directory.** Files are written into ``.staging/<id>-<token>/`` beside
  ``snapshots/``, flushed to disk, and the finished directory is renamed into
  ``snapshots/<id>`` in one ``rename(2)``. A killed writer leaves only
  staging, which ``list`` never reads and ``sweep_staging`` removes.
* **S3.** S3 has no rename, so completeness is the manifest: data objects are
  uploaded first, ``manifest.json`` last, and ``list`` reads manifests only.
  A killed upload leaves manifest-less objects that ``list`` ignores and
  ``sweep_staging`` removes. With ``kms_key_id`` every object is written with
  SSE-KMS under that key.

The store moves bytes; it does not judge them. Checksums are the manifest's
job (``rollback.manifest``), so a flipped bit is caught by whoever reads.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from core.errors import CannotRun, CheckFailed
from rollback.aws import make_client

MANIFEST_NAME = "manifest.json"
SNAPSHOTS = "snapshots"
STAGING = ".staging"
RECORDS = "records"
LOGS = "logs"

# Ids are minted by Rollgate, but a store can be edited by hand: an id is
# never allowed to walk out of its directory or into S3 key syntax tricks.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)
_FILE_NAME = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}(/[A-Za-z0-9][A-Za-z0-9._-]{0,200})*", re.ASCII
)


class StoreError(CannotRun):
    """The store could not be read or written (missing, unreachable, refused)."""


class SnapshotNotFound(CheckFailed):
    """No complete snapshot with that id is in the store."""


class LogEntryExists(CheckFailed):
    """Another writer appended that entry first; re-read the log and try again."""


class SnapshotStore(Protocol):
    """A place to keep snapshots: publish atomically, list complete ones, read back."""

    @property
    def uri(self) -> str:
        """Where the store is, as the user would write it (never with credentials)."""
        ...

    def begin(self, snapshot_id: str) -> Draft:
        """A draft to write artifact files into; ``Draft.commit`` publishes it."""
        ...

    def list_ids(self) -> list[str]:
        """Ids of complete snapshots (those whose manifest exists), sorted."""
        ...

    def read_manifest(self, snapshot_id: str) -> bytes:
        """The manifest's bytes, or ``SnapshotNotFound``."""
        ...

    def fetch(self, snapshot_id: str, name: str, destination: Path) -> None:
        """Copy one artifact file to ``destination``; ``StoreError`` when it is missing."""
        ...

    def delete(self, snapshot_id: str) -> None:
        """Remove a snapshot: the manifest first, so it stops being listed at once."""
        ...

    def sweep_staging(self) -> list[str]:
        """Remove what interrupted publishes left behind; returns what was removed."""
        ...

    def put_record(self, snapshot_id: str, name: str, data: bytes) -> None:
        """Keep a small record beside a snapshot (a verification, a restore); atomic."""
        ...

    def records(self, snapshot_id: str) -> dict[str, bytes]:
        """Every record kept beside a snapshot, by name."""
        ...

    def create_log_entry(self, log: str, name: str, data: bytes) -> None:
        """Write ``logs/<log>/<name>`` only if it does not exist (``LogEntryExists``)."""
        ...

    def log_entries(self, log: str) -> list[tuple[str, bytes]]:
        """Every entry of ``logs/<log>/``, sorted by name."""
        ...


def open_store(
    uri: str, *, aws_endpoint_url: str | None = None, kms_key_id: str | None = None
) -> SnapshotStore:
    """The store at ``uri``: a path, ``file:///path`` or ``s3://bucket[/prefix]``."""
    if not uri or not uri.strip():
        raise StoreError("no store given: pass --store DIR, file:///DIR or s3://BUCKET/PREFIX")
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"invalid store {uri!r}: s3://BUCKET[/PREFIX] needs a bucket")
        endpoint = aws_endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        return S3Store(parsed.netloc, parsed.path.strip("/"), endpoint, kms_key_id)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise StoreError(f"invalid store {uri!r}: file:// URIs name a local path")
        return _directory_store(Path(unquote(parsed.path)))
    if parsed.scheme and len(parsed.scheme) > 1:  # "C:" would be a drive, not a scheme
        raise StoreError(
            f"unsupported store {uri!r}: use a directory, file:///DIR or s3://BUCKET/PREFIX"
        )
    return _directory_store(Path(uri))


def _directory_store(root: Path) -> DirectoryStore:
    if root.exists() and not root.is_dir():
        raise StoreError(f"store {root} is a file, not a directory: pass a directory")
    return DirectoryStore(root)


def check_snapshot_id(snapshot_id: str) -> str:
    """``snapshot_id`` if it is a safe id, else ``StoreError`` naming it."""
    if not _ID.fullmatch(snapshot_id):
        raise StoreError(
            f"invalid snapshot id {snapshot_id!r}: letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 128 characters"
        )
    return snapshot_id


def is_safe_file_name(name: object) -> bool:
    """Whether ``name`` is a relative artifact name that stays in its directory."""
    return (
        isinstance(name, str)
        and _FILE_NAME.fullmatch(name) is not None
        and ".." not in name.split("/")
    )


def check_file_name(name: str) -> str:
    """``name`` if it is a safe relative artifact name (no '..', no absolute paths)."""
    if not is_safe_file_name(name):
        raise StoreError(f"invalid artifact file name {name!r}")
    return name


@dataclass
class DirectoryStore:
    """Snapshots in a local directory (see the module docstring for the layout)."""

    root: Path

    @property
    def uri(self) -> str:
        return str(self.root)

    def begin(self, snapshot_id: str) -> Draft:
        check_snapshot_id(snapshot_id)
        final = self._snapshot_dir(snapshot_id)
        if final.exists():
            raise StoreError(f"{final}: a snapshot with id {snapshot_id} already exists")
        staging = self.root / STAGING / f"{snapshot_id}-{secrets.token_hex(4)}"
        try:
            (staging / "files").mkdir(parents=True)
        except OSError as exc:
            raise StoreError(f"cannot write to the store {self.root}: {exc}") from exc

        def commit(manifest: bytes) -> None:
            try:
                for path in sorted((staging / "files").rglob("*")):
                    if path.is_file():
                        _fsync_file(path)
                _write_durably(staging / MANIFEST_NAME, manifest)
                final.parent.mkdir(parents=True, exist_ok=True)
                _fsync_directory(staging)
                os.rename(staging, final)  # the moment the snapshot becomes visible
                _fsync_directory(final.parent)
            except OSError as exc:
                raise StoreError(
                    f"could not write snapshot {snapshot_id} to {self.root}: {exc}"
                ) from exc

        return Draft(snapshot_id, staging / "files", commit, lambda: _remove(staging))

    def list_ids(self) -> list[str]:
        base = self.root / SNAPSHOTS
        if not self.root.exists():
            raise StoreError(f"store {self.root} does not exist")
        if not base.is_dir():
            return []
        return sorted(
            entry.name
            for entry in base.iterdir()
            if _ID.fullmatch(entry.name) and (entry / MANIFEST_NAME).is_file()
        )

    def read_manifest(self, snapshot_id: str) -> bytes:
        path = self._snapshot_dir(check_snapshot_id(snapshot_id)) / MANIFEST_NAME
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise SnapshotNotFound(
                f"no snapshot {snapshot_id} in {self.root}",
                details={"snapshot": snapshot_id, "store": self.uri},
            ) from None
        except OSError as exc:
            raise StoreError(f"{path}: cannot read: {exc.strerror}") from exc

    def fetch(self, snapshot_id: str, name: str, destination: Path) -> None:
        source = (
            self._snapshot_dir(check_snapshot_id(snapshot_id)) / "files" / check_file_name(name)
        )
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
        except FileNotFoundError:
            raise StoreError(
                f"snapshot {snapshot_id}: artifact file {name} is missing from {self.root}",
                details={"snapshot": snapshot_id, "file": name},
            ) from None
        except OSError as exc:
            raise StoreError(f"snapshot {snapshot_id}: cannot copy {name}: {exc}") from exc

    def local_path(self, snapshot_id: str, name: str) -> Path:
        """Where an artifact lives on disk, so readers can skip a copy."""
        return self._snapshot_dir(check_snapshot_id(snapshot_id)) / "files" / check_file_name(name)

    def delete(self, snapshot_id: str) -> None:
        directory = self._snapshot_dir(check_snapshot_id(snapshot_id))
        try:
            (directory / MANIFEST_NAME).unlink()
        except FileNotFoundError:
            raise SnapshotNotFound(f"no snapshot {snapshot_id} in {self.root}") from None
        shutil.rmtree(directory, ignore_errors=True)

    def sweep_staging(self) -> list[str]:
        staging = self.root / STAGING
        if not staging.is_dir():
            return []
        removed = []
        for entry in sorted(staging.iterdir()):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
        return removed

    def put_record(self, snapshot_id: str, name: str, data: bytes) -> None:
        directory = self._snapshot_dir(check_snapshot_id(snapshot_id))
        if not (directory / MANIFEST_NAME).is_file():
            raise SnapshotNotFound(f"no snapshot {snapshot_id} in {self.root}")
        target = directory / RECORDS / check_file_name(name)
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
        try:
            target.parent.mkdir(exist_ok=True)
            _write_durably(temporary, data)
            os.replace(temporary, target)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise StoreError(f"cannot write record {name} of {snapshot_id}: {exc}") from exc

    def records(self, snapshot_id: str) -> dict[str, bytes]:
        directory = self._snapshot_dir(check_snapshot_id(snapshot_id)) / RECORDS
        if not directory.is_dir():
            return {}
        return {
            path.name: path.read_bytes()
            for path in sorted(directory.iterdir())
            if path.is_file() and not path.name.startswith(".")
        }

    def create_log_entry(self, log: str, name: str, data: bytes) -> None:
        directory = self.root / LOGS / check_snapshot_id(log)
        target = directory / check_file_name(name)
        temporary = directory / f".{name}.{secrets.token_hex(4)}"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            _write_durably(temporary, data)
            # link(2) fails if the name exists: exclusive, and the entry appears
            # complete or not at all (a crash leaves only a dot-file). Only this
            # FileExistsError means another writer: mkdir's (a file where the log's
            # directory belongs) is a broken store.
            try:
                os.link(temporary, target)
            except FileExistsError:
                raise LogEntryExists(f"{target}: already written by another writer") from None
            _fsync_directory(directory)
        except OSError as exc:
            raise StoreError(f"cannot append to log {log} in {self.root}: {exc}") from exc
        finally:
            # Never let the cleanup mask the real error (the directory may be missing,
            # or not a directory at all).
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)

    def log_entries(self, log: str) -> list[tuple[str, bytes]]:
        directory = self.root / LOGS / check_snapshot_id(log)
        if not directory.is_dir():
            return []
        return [
            (path.name, path.read_bytes())
            for path in sorted(directory.iterdir())
            if path.is_file() and not path.name.startswith(".")
        ]

    def _snapshot_dir(self, snapshot_id: str) -> Path:
        return self.root / SNAPSHOTS / snapshot_id


@dataclass
class S3Store:
    """Snapshots under ``s3://bucket/prefix`` (see the module docstring)."""

    bucket: str
    prefix: str
    endpoint_url: str | None = None
    kms_key_id: str | None = None
    #: Log entries are kept under Object Lock (GOVERNANCE mode) this long, when the
    #: bucket has Object Lock enabled: nobody without the bypass permission can
    #: rewrite or delete them, which makes the hash chain append-only for real.
    log_retention_days: int = 400

    def __post_init__(self) -> None:
        from botocore.config import Config

        # Bounded retries and timeouts: a 3 a.m. rollback must fail clearly,
        # not hang on an endpoint that stopped answering.
        config = Config(
            retries={"max_attempts": 4, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
        )
        self._client: Any = make_client("s3", self.endpoint_url, config)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def begin(self, snapshot_id: str) -> Draft:
        check_snapshot_id(snapshot_id)
        self._require_bucket()
        if self._exists(self._key(snapshot_id, MANIFEST_NAME)):
            raise StoreError(f"{self.uri}: a snapshot with id {snapshot_id} already exists")
        local = Path(tempfile.mkdtemp(prefix=f"rollgate-draft-{snapshot_id}-"))

        def commit(manifest: bytes) -> None:
            extra = self._encryption()
            with self._errors(f"upload snapshot {snapshot_id}"):
                for path in sorted(local.rglob("*")):
                    if path.is_file():
                        name = check_file_name(path.relative_to(local).as_posix())
                        self._client.upload_file(
                            str(path),
                            self.bucket,
                            self._key(snapshot_id, "files/" + name),
                            ExtraArgs=extra or None,
                        )
                # Last: from this moment on the snapshot is listed.
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=self._key(snapshot_id, MANIFEST_NAME),
                    Body=manifest,
                    ContentType="application/json",
                    **extra,
                )

        return Draft(snapshot_id, local, commit, lambda: _remove(local))

    def list_ids(self) -> list[str]:
        ids = []
        base = self._key("", "").rstrip("/") + "/"
        for key in self._keys(base):
            parts = key[len(base) :].split("/")
            if len(parts) == 2 and parts[1] == MANIFEST_NAME and _ID.fullmatch(parts[0]):
                ids.append(parts[0])
        return sorted(ids)

    def read_manifest(self, snapshot_id: str) -> bytes:
        key = self._key(check_snapshot_id(snapshot_id), MANIFEST_NAME)
        from botocore.exceptions import ClientError

        try:
            body: bytes = self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if _error_code(exc) in ("NoSuchKey", "404"):
                raise SnapshotNotFound(
                    f"no snapshot {snapshot_id} in {self.uri}",
                    details={"snapshot": snapshot_id, "store": self.uri},
                ) from None
            raise StoreError(f"{self.uri}: cannot read manifest of {snapshot_id}: {exc}") from exc
        except Exception as exc:  # botocore's connection errors share no useful base
            raise StoreError(f"{self.uri}: cannot read manifest of {snapshot_id}: {exc}") from exc
        return body

    def fetch(self, snapshot_id: str, name: str, destination: Path) -> None:
        key = self._key(check_snapshot_id(snapshot_id), "files/" + check_file_name(name))
        destination.parent.mkdir(parents=True, exist_ok=True)
        from botocore.exceptions import ClientError

        try:
            self._client.download_file(self.bucket, key, str(destination))
        except ClientError as exc:
            if _error_code(exc) in ("NoSuchKey", "404"):
                raise StoreError(
                    f"snapshot {snapshot_id}: artifact file {name} is missing from {self.uri}",
                    details={"snapshot": snapshot_id, "file": name},
                ) from None
            raise StoreError(f"snapshot {snapshot_id}: cannot download {name}: {exc}") from exc
        except Exception as exc:
            raise StoreError(f"snapshot {snapshot_id}: cannot download {name}: {exc}") from exc

    def delete(self, snapshot_id: str) -> None:
        check_snapshot_id(snapshot_id)
        manifest = self._key(snapshot_id, MANIFEST_NAME)
        if not self._exists(manifest):
            raise SnapshotNotFound(f"no snapshot {snapshot_id} in {self.uri}")
        with self._errors(f"delete snapshot {snapshot_id}"):
            self._client.delete_object(Bucket=self.bucket, Key=manifest)
            self._delete_keys(list(self._keys(self._key(snapshot_id, ""))))

    def sweep_staging(self) -> list[str]:
        complete = set(self.list_ids())
        base = self._key("", "").rstrip("/") + "/"
        orphans: dict[str, list[str]] = {}
        for key in self._keys(base):
            snapshot_id = key[len(base) :].split("/", 1)[0]
            if snapshot_id not in complete:
                orphans.setdefault(snapshot_id, []).append(key)
        with self._errors("remove incomplete uploads"):
            for keys in orphans.values():
                self._delete_keys(keys)
        return sorted(orphans)

    def put_record(self, snapshot_id: str, name: str, data: bytes) -> None:
        check_snapshot_id(snapshot_id)
        if not self._exists(self._key(snapshot_id, MANIFEST_NAME)):
            raise SnapshotNotFound(f"no snapshot {snapshot_id} in {self.uri}")
        with self._errors(f"write record {name} of {snapshot_id}"):
            self._client.put_object(
                Bucket=self.bucket,
                Key=self._key(snapshot_id, f"{RECORDS}/{check_file_name(name)}"),
                Body=data,
                **self._encryption(),
            )

    def records(self, snapshot_id: str) -> dict[str, bytes]:
        prefix = self._key(check_snapshot_id(snapshot_id), f"{RECORDS}/")
        found = {}
        with self._errors(f"read records of {snapshot_id}"):
            for key in self._keys(prefix):
                body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                found[key[len(prefix) :]] = body
        return found

    def create_log_entry(self, log: str, name: str, data: bytes) -> None:
        key = "/".join(
            p for p in (self.prefix, LOGS, check_snapshot_id(log), check_file_name(name)) if p
        )
        from botocore.exceptions import ClientError

        try:
            # If-None-Match: * makes S3 refuse to overwrite: two writers racing
            # for one sequence number cannot both win.
            self._client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                IfNoneMatch="*",
                **self._encryption(),
                **self._log_retention(),
            )
        except ClientError as exc:
            if _error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise LogEntryExists(
                    f"{self.uri}: {key} already written by another writer"
                ) from None
            raise StoreError(f"{self.uri}: cannot append to log {log}: {exc}") from exc
        except Exception as exc:
            raise StoreError(f"{self.uri}: cannot append to log {log}: {exc}") from exc

    def log_entries(self, log: str) -> list[tuple[str, bytes]]:
        prefix = "/".join(p for p in (self.prefix, LOGS, check_snapshot_id(log)) if p) + "/"
        entries = []
        with self._errors(f"read log {log}"):
            for key in sorted(self._keys(prefix)):
                body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                entries.append((key[len(prefix) :], body))
        return entries

    # --- helpers -----------------------------------------------------------

    def _key(self, snapshot_id: str, name: str) -> str:
        parts = [p for p in (self.prefix, SNAPSHOTS, snapshot_id) if p]
        return "/".join(parts) + "/" + name

    def object_lock_enabled(self) -> bool:
        """Whether the bucket reports Object Lock enabled (asked once, then remembered)."""
        cached: bool | None = getattr(self, "_object_lock", None)
        if cached is not None:
            return cached
        from botocore.exceptions import ClientError

        try:
            answer = self._client.get_object_lock_configuration(Bucket=self.bucket)
            configuration = answer.get("ObjectLockConfiguration", {})
            enabled = bool(configuration.get("ObjectLockEnabled") == "Enabled")
        except ClientError:
            enabled = False  # ObjectLockConfigurationNotFoundError: a bucket without it
        except Exception as exc:
            raise StoreError(f"{self.uri}: cannot reach the store: {exc}") from exc
        self._object_lock = enabled
        return enabled

    def _log_retention(self) -> dict[str, Any]:
        if not self.object_lock_enabled():
            return {}
        until = datetime.now(UTC) + timedelta(days=self.log_retention_days)
        return {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": until}

    def _encryption(self) -> dict[str, str]:
        if not self.kms_key_id:
            return {}
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}

    def _require_bucket(self) -> None:
        """``StoreError`` unless the bucket is there: found before a dump, not after it.

        A missing bucket answers 404 to a HEAD on any key inside it, which
        ``_exists`` reads as "no such snapshot yet": without this check the
        whole dump ran before its first upload failed.
        """
        from botocore.exceptions import ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
                raise StoreError(
                    f"{self.uri}: bucket {self.bucket} does not exist (or these credentials "
                    "cannot see it); create it or pass another --store"
                ) from None
            raise StoreError(f"{self.uri}: cannot use bucket {self.bucket}: {exc}") from exc
        except Exception as exc:  # botocore's connection errors share no useful base
            raise StoreError(f"{self.uri}: cannot reach the store: {exc}") from exc

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StoreError(f"{self.uri}: cannot read {key}: {exc}") from exc
        except Exception as exc:
            raise StoreError(f"{self.uri}: cannot reach the store: {exc}") from exc
        return True

    def _keys(self, prefix: str) -> Iterator[str]:
        with self._errors("list the store"):
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield str(item["Key"])

    def _delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # the DeleteObjects limit
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})

    def _errors(self, action: str) -> AbstractContextManager[None]:
        return _store_errors(f"{self.uri}: could not {action}")


@dataclass
class Draft:
    """A snapshot being written: files go into ``directory``; ``commit`` publishes.

    Use it as a context manager: leaving the block without ``commit`` (an
    error, Ctrl-C) discards everything written, so nothing half-done is listed.
    """

    snapshot_id: str
    directory: Path
    _commit: Callable[[bytes], None]
    _discard: Callable[[], None]
    committed: bool = False

    def commit(self, manifest: bytes) -> None:
        self._commit(manifest)
        self.committed = True
        self._discard()  # for S3 the local copy; for a directory a no-op by now

    def __enter__(self) -> Draft:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self.committed:
            self._discard()


@contextmanager
def _store_errors(prefix: str) -> Iterator[None]:
    """Turn any boto/botocore failure inside the block into a ``StoreError``."""
    try:
        yield
    except CannotRun:
        raise
    except Exception as error:  # botocore's failures share no narrower useful base
        raise StoreError(f"{prefix}: {error}") from error


def _error_code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_durably(target: Path, data: bytes) -> None:
    with target.open("wb") as writer:
        writer.write(data)
        writer.flush()
        os.fsync(writer.fileno())


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
