"""The suite's JSON summary and its Markdown twin (for a CI job summary).

pytest writes the JUnit XML itself; this module collects, per check, the
outcome and the one-line reason, plus what the fixtures measured (backend,
whether Docker was absent, lock holds, N-1 compatibility, data lost on
revert), and writes both files when the session ends.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

JSON_NAME = "smoke-summary.json"
MARKDOWN_NAME = "smoke-summary.md"

#: Where the session keeps its Summary (``config.stash[SUMMARY_KEY]``).
SUMMARY_KEY = pytest.StashKey["Summary"]()

_ORDER = {"error": 0, "failed": 1, "passed": 2, "skipped": 3}


@dataclass
class Summary:
    """What the session found; fixtures and tests fill in the measured parts."""

    post_deploy: bool = False
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    prepared: dict[str, Any] | None = None
    locks: list[dict[str, Any]] = field(default_factory=list)
    app_runner: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_minus_1: dict[str, Any] | None = None
    reversibility: dict[str, Any] | None = None
    post_deploy_results: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def record(self, report: pytest.TestReport) -> None:
        """Fold one phase's report into its check's outcome (the worst phase wins)."""
        if report.when == "call" or report.outcome != "passed":
            outcome = str(report.outcome)
            if report.when != "call" and outcome == "failed":
                outcome = "error"
        elif report.nodeid not in self.checks:
            outcome = "passed"
        else:
            return
        entry = {"outcome": outcome, "message": _message(report), "phase": report.when}
        known = self.checks.get(report.nodeid)
        if (
            known is None
            or _ORDER[outcome] < _ORDER[known["outcome"]]
            or (outcome == known["outcome"] == "passed")
        ):
            self.checks[report.nodeid] = entry

    def to_dict(self, exit_code: int) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for entry in self.checks.values():
            counts[entry["outcome"]] = counts.get(entry["outcome"], 0) + 1
        prepared = self.prepared or {}
        return {
            "ok": exit_code == 0,
            "exit_code": exit_code,
            "mode": "post-deploy" if self.post_deploy else "pre-deploy",
            "backend": prepared.get("backend"),
            "docker_absent": prepared.get("docker_absent"),
            "counts": counts,
            "checks": dict(sorted(self.checks.items())),
            "prepared": self.prepared,
            "locks": self.locks,
            "app": self.app_runner,
            "n_minus_1": self._n_minus_1(),
            "reversibility": self.reversibility,
            "data_lost_on_revert": (self.reversibility or {}).get("data_lost"),
            "post_deploy": self.post_deploy_results or None,
            "notes": list(dict.fromkeys(self.notes)),
        }

    def _n_minus_1(self) -> dict[str, Any] | None:
        if self.n_minus_1 is not None or self.post_deploy:
            return self.n_minus_1
        previous = {k: v for k, v in self.checks.items() if "[previous]" in k}
        if not previous or all(v["outcome"] == "skipped" for v in previous.values()):
            return {"checked": False, "reason": "the previous app's checks did not run"}
        broken = sorted(k for k, v in previous.items() if v["outcome"] in ("failed", "error"))
        return {
            "checked": True,
            "compatible": not broken,
            "verdict": (
                "backward compatible: the previous app works on the migrated schema"
                if not broken
                else "NOT backward compatible: rolling back the app alone would break"
            ),
            "failed_checks": broken,
        }


def _message(report: pytest.TestReport) -> str:
    if report.outcome == "passed":
        return ""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (file, line, reason)
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)
    return str(report.longreprtext).strip().splitlines()[-1] if report.longreprtext else ""


def write_summaries(summary: Summary, output_dir: Path, exit_code: int) -> dict[str, Any]:
    """Write ``smoke-summary.json`` and ``smoke-summary.md`` into ``output_dir``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    data = summary.to_dict(exit_code)
    (output_dir / JSON_NAME).write_text(json.dumps(data, indent=2, default=str) + "\n")
    text = markdown(data)
    (output_dir / MARKDOWN_NAME).write_text(text)
    job_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if job_summary:  # a CI job summary page (GitHub Actions; others read the .md file)
        with Path(job_summary).open("a") as page:
            page.write(text)
    return data


def markdown(data: dict[str, Any]) -> str:
    """A job-summary page: verdict, checks table, locks, N-1, data lost on revert."""
    verdict = "passed" if data["ok"] else "FAILED"
    lines = [f"## Rollgate smoke ({data['mode']}): {verdict}", ""]
    if data.get("backend"):
        absent = " (Docker absent)" if data.get("docker_absent") else ""
        lines += [f"Postgres backend: **{data['backend']}**{absent}", ""]
    lines += ["| Check | Outcome | Why |", "|---|---|---|"]
    for nodeid, entry in sorted(data["checks"].items(), key=lambda kv: _ORDER[kv[1]["outcome"]]):
        why = entry["message"].replace("|", "\\|").replace("\n", " ")[:300]
        lines.append(f"| `{nodeid.split('::')[-1]}` | {entry['outcome']} | {why} |")
    if data["locks"]:
        lines += ["", "### Writer-blocking locks per migration", ""]
        lines += ["| Migration | Longest hold | Budget |", "|---|---|---|"]
        for lock in data["locks"]:
            longest = lock["longest"]
            held = (
                f"{longest['mode']} on {longest['table']}: {longest['seconds']}s"
                if longest
                else "none"
            )
            lines.append(f"| {lock['migration']} | {held} | {lock['budget_seconds']}s |")
    n1 = data.get("n_minus_1")
    if n1:
        lines += ["", "### N-1 compatibility", "", n1.get("verdict") or n1.get("reason", "")]
    lost = data.get("data_lost_on_revert")
    if lost is not None:
        lines += ["", "### Data lost on revert", ""]
        if not lost:
            lines.append("none")
        for item in lost:
            columns = ", ".join(item["columns"]) if item.get("columns") else "whole table"
            declared = "declared" if item["declared"] else "**NOT declared**"
            lines.append(f"- `{item['table']}` ({columns}): {item['description']} ({declared})")
    if data["notes"]:
        lines += ["", "### Notes", ""] + [f"- {note}" for note in data["notes"]]
    return "\n".join(lines) + "\n"
