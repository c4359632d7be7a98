"""What an audit check returns: passed, failed or not run, always with evidence."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    #: The check could not run (no access, no tool, no target): never a pass.
    NOT_RUN = "not_run"


@dataclass(frozen=True)
class Finding:
    """One thing a check looked at: its verdict and what it saw."""

    name: str
    ok: bool
    evidence: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "evidence": self.evidence}


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check of the catalogue."""

    check: str
    status: Status
    summary: str
    findings: tuple[Finding, ...] = ()
    #: Numbers the trend and the metrics read (snapshot age, restore seconds, ...).
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "status": self.status.value,
            "summary": self.summary,
            "findings": [f.to_dict() for f in self.findings],
            "metrics": dict(self.metrics),
            "seconds": round(self.seconds, 3),
        }


class NotRunnable(Exception):
    """Raised inside a check when it cannot reach a verdict; the reason is reported."""


def verdict(check: str, findings: list[Finding], passed: str, **extra: Any) -> CheckResult:
    """PASSED when every finding is ok, else FAILED naming the failed findings."""
    failed = [f for f in findings if not f.ok]
    if failed:
        summary = "; ".join(f"{f.name}: {f.evidence}" for f in failed[:5])
        if len(failed) > 5:
            summary += f" (and {len(failed) - 5} more)"
        return CheckResult(check, Status.FAILED, summary, tuple(findings), **extra)
    return CheckResult(check, Status.PASSED, passed, tuple(findings), **extra)


Check = Callable[[], CheckResult]
