"""Releases: what is deployed, recorded in the store so a rollback knows where to go back to.

After every rollout, ``record_release`` appends one entry to the ``releases``
log (hash-chained, see ``rollback.ledger``): the bundle commit, the app image,
the schema version the database is at, and the task definition each ECS
service runs, read from ECS itself rather than believed from the caller. A
rollback's target is an entry of this log: by default the one before the
newest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import CannotRun, CheckFailed
from rollback import ledger
from rollback.ecs import Services, read_services
from rollback.store import SnapshotStore

RELEASES_LOG = "releases"


@dataclass(frozen=True)
class Release:
    """One deployed release, as recorded."""

    sequence: int
    commit: str | None
    app_image: str | None
    schema_version: int
    services: Services
    gate_entry: str | None = None  # entry_sha256 of the gate report this rollout passed
    recorded_at: str = ""

    @property
    def label(self) -> str:
        commit = (self.commit or "unknown")[:12]
        return f"#{self.sequence} ({commit}, schema {self.schema_version:04d})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "commit": self.commit,
            "app_image": self.app_image,
            "schema_version": self.schema_version,
            "services": self.services.to_dict(),
            "gate_entry": self.gate_entry,
            "recorded_at": self.recorded_at,
        }


def record_release(
    store: SnapshotStore,
    *,
    commit: str | None,
    app_image: str | None,
    schema_version: int,
    cluster: str,
    service_names: Mapping[str, str],
    ecs_client: Any,
    gate_entry: str | None = None,
) -> Release:
    """Append the release now deployed (task definitions read from ECS) to the log."""
    services = read_services(ecs_client, cluster, service_names)
    body = {
        "commit": commit,
        "app_image": app_image,
        "schema_version": schema_version,
        "services": services.to_dict(),
        "gate_entry": gate_entry,
    }
    entry = ledger.append(store, RELEASES_LOG, body)
    return _release(entry)


def list_releases(store: SnapshotStore) -> list[Release]:
    """Every recorded release, oldest first, after checking the log's hash chain."""
    ledger.verify_chain(store, RELEASES_LOG)
    return ledger.read_as(store, RELEASES_LOG, _release)


def resolve_target(releases: list[Release], to: str | None) -> tuple[Release, Release]:
    """(current, target): the newest release, and ``to`` (a sequence or commit prefix).

    Without ``to`` the target is the release before the newest. Refuses when
    there is nothing to go back to, or when ``to`` names no single release.
    """
    if not releases:
        raise CannotRun(
            "no releases are recorded in this store: record each rollout with "
            "`rollgate release record` so a rollback knows where to return"
        )
    current = releases[-1]
    if to is None:
        if len(releases) < 2:
            raise CheckFailed(
                f"only one release is recorded ({current.label}): nothing to go back to"
            )
        return current, releases[-2]
    wanted = to.lstrip("#")
    matches = [
        r
        for r in releases
        if wanted == str(r.sequence)
        or (r.commit is not None and len(wanted) >= 7 and r.commit.startswith(wanted))
    ]
    if len(matches) != 1:
        known = ", ".join(r.label for r in releases[-5:])
        what = "matches no release" if not matches else "matches more than one release"
        raise CannotRun(f"--to {to} {what}; recent releases: {known}")
    if matches[0].sequence == current.sequence:
        raise CheckFailed(f"{current.label} is the release deployed now: nothing to roll back")
    return current, matches[0]


def _release(entry: ledger.LogEntry) -> Release:
    body = entry.body
    return Release(
        sequence=entry.sequence,
        commit=_optional_text(body, "commit"),
        app_image=_optional_text(body, "app_image"),
        schema_version=int(body["schema_version"]),
        services=Services.from_dict(body["services"]),
        gate_entry=_optional_text(body, "gate_entry"),
        recorded_at=entry.recorded_at,
    )


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{key} is {type(value).__name__}, not text")
    return value
