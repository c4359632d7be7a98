"""``rollgate gate`` and ``rollgate rehearse``: the go/no-go, and the whole release rehearsed.

Exit codes: 0 go, 1 no-go, 2 inconclusive (a check could not run). The
report's Markdown summary is appended to ``$GITHUB_STEP_SUMMARY`` when set.
On a terminal the steps show live (rich); otherwise one plain line per event.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from release.gate import STEPS, GateOptions, StepResult, run_gate
from rollgate.commands import Options, Outcome
from rollgate.commands.snapshot import open_snapshot_store

REPO = Path(__file__).resolve().parents[2]


class StepDisplay:
    """The step list with timings: a rich live table on a terminal, plain lines otherwise."""

    def __init__(self, names: tuple[str, ...], plain: Callable[[str], None]) -> None:
        self.names = names
        self.plain = plain
        self.status: dict[str, str] = dict.fromkeys(names, "waiting")
        self.seconds: dict[str, float] = {}
        self.started: dict[str, float] = {}
        self.message = ""
        self.live: Any = None

    @contextmanager
    def shown(self) -> Iterator[StepDisplay]:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            with Live(self._render(), console=Console(stderr=True), refresh_per_second=4) as live:
                self.live = live
                yield self
                live.update(self._render())
            self.live = None
        else:
            yield self

    def _render(self) -> Any:
        from rich.table import Table

        table = Table(title="rollgate gate", show_header=True, header_style="bold")
        table.add_column("step")
        table.add_column("status")
        table.add_column("time", justify="right")
        colours = {"passed": "green", "failed": "red", "inconclusive": "yellow"}
        for name in self.names:
            status = self.status[name]
            if status == "running":
                seconds = time.monotonic() - self.started[name]
            else:
                seconds = self.seconds.get(name, 0.0)
            colour = colours.get(status, "white")
            table.add_row(name, f"[{colour}]{status}[/{colour}]", f"{seconds:.1f}s")
        if self.message:
            table.caption = self.message[-120:]
        return table

    def on_step(self, event: str, step: StepResult) -> None:
        if event == "start":
            self.status[step.name] = "running"
            self.started[step.name] = time.monotonic()
            if self.live is None:
                self.plain(f"gate: {step.name} ...")
        else:
            self.status[step.name] = step.status
            self.seconds[step.name] = step.seconds
            if self.live is None:
                self.plain(f"gate: {step.name} {step.status} ({step.seconds:.1f}s) {step.summary}")
        if self.live is not None:
            self.live.update(self._render())

    def progress(self, message: str) -> None:
        self.message = message
        if self.live is not None:
            self.live.update(self._render())
        else:
            self.plain(f"  {message}")


def gate(
    opts: Options,
    *,
    store: str | None,
    aws_endpoint_url: str | None,
    app_image: str | None,
    previous_app_image: str | None,
    stack: str | None,
    rto_seconds: float,
    lock_budget_seconds: float,
    allow_incompatible: bool,
    report_dir: Path,
    commit: str | None,
    backend: str,
) -> Outcome:
    """Run the gate; exit 0 go, 1 no-go, 2 inconclusive."""
    options = GateOptions(
        dsn=opts.require_dsn(),
        store=open_snapshot_store(store, aws_endpoint_url),
        migrations_dir=opts.migrations_dir,
        schema_path=opts.schema_path,
        stack=stack,
        stack_dir=Path.cwd() if (Path.cwd() / "Pulumi.yaml").is_file() else REPO,
        app_image=app_image,
        previous_app_image=previous_app_image,
        aws_endpoint_url=aws_endpoint_url,
        rto_seconds=rto_seconds,
        lock_budget_seconds=lock_budget_seconds,
        allow_incompatible=allow_incompatible,
        lint_since=opts.config.lint_since,
        backend=backend,
        commit=commit,
        report_dir=report_dir,
    )
    display = StepDisplay(STEPS, opts.progress)
    with display.shown():
        report = run_gate(options, progress=display.progress, on_step=display.on_step)
        display.status.update({step.name: step.status for step in report.steps})
        display.message = f"verdict: {report.verdict}"
    append_step_summary(report.summary_path)
    lines = [f"gate: {report.verdict.upper()} in {report.seconds:.1f}s"]
    for step in report.steps:
        lines.append(f"  {step.name:<9} {step.status:<12} {step.seconds:6.1f}s  {step.summary}")
        lines += [f"      - {finding}" for finding in step.findings]
    lines.append(f"report: {report.report_path}")
    lines.append(f"summary: {report.summary_path}")
    if report.ledger_error:
        lines.append(f"NOT RECORDED: {report.ledger_error}")
    else:
        lines.append(f"gate entry: {report.entry_sha256}")
    return Outcome(report.exit_code, report.to_dict(), "\n".join(lines))


def append_step_summary(summary_path: Path | None) -> None:
    """Append the Markdown summary to GitHub's job summary, when running there."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if target and summary_path is not None and summary_path.is_file():
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(summary_path.read_text(encoding="utf-8"))


def rehearse(
    opts: Options,
    *,
    size: str,
    scenario: str,
    report_dir: Path,
    rto_seconds: float,
    app_runner: str = "auto",
    app_image: str = "rollgate/app:dev",
) -> Outcome:
    """The whole release on this machine; exit 0 when the scenario's expectation held."""
    from release.rehearse import RehearsalOptions
    from release.rehearse import rehearse as run_rehearsal

    report = run_rehearsal(
        RehearsalOptions(
            size=size,
            scenario=scenario,
            report_dir=report_dir,
            rto_seconds=rto_seconds,
            app_runner=app_runner,
            app_image=app_image,
        ),
        progress=opts.progress,
    )
    append_step_summary(report_dir / "gate" / "gate-summary.md")
    lines = [
        f"rehearsal {report.scenario['name']}: {report.outcome.upper()} in {report.seconds:.1f}s "
        f"(gate: {report.gate_verdict}, expected {report.scenario['expect']})"
    ]
    lines.append(f"app: {report.app_runner.get('runs_as')} ({report.app_runner.get('reason')})")
    lines += [f"  {s.name:<52} {s.status:<12} {s.seconds:6.1f}s  {s.summary}" for s in report.steps]
    if report.proof.get("summary"):
        lines.append(f"proof: {report.proof['summary']}")
    lines += [f"note: {note}" for note in report.notes]
    lines.append(f"report: {report_dir / 'report.html'}")
    lines.append(f"timeline: {report_dir / 'timeline.json'}")
    return Outcome(report.exit_code, report.to_dict(), "\n".join(lines))
