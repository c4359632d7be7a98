"""``rollgate smoke``: run the smoke suite (``pytest smoke``) and report; exit code is pytest's."""

from __future__ import annotations

from pathlib import Path

from rollgate import render
from rollgate.commands import Options, Outcome
from smoke.run import SmokeOptions, run_smoke


def smoke(
    opts: Options,
    *,
    snapshot: str | None,
    store: str | None,
    aws_endpoint_url: str | None,
    backend: str,
    image: str | None,
    app_image: str | None,
    previous_app_image: str | None,
    sample_size: str,
    from_version: int | None,
    lock_budget_seconds: float,
    output_dir: Path,
    post_deploy: bool,
    stack_outputs: Path | None,
    ca_bundle: Path | None,
    select: str | None,
) -> Outcome:
    """Run the suite with the global ``--migrations`` / ``--schema``; pytest's exit code."""
    opts.progress(f"running the smoke suite (pytest log: {output_dir / 'smoke-pytest.log'})")
    report = run_smoke(
        SmokeOptions(
            migrations=opts.migrations_dir,
            schema=opts.schema_path,
            output_dir=output_dir,
            snapshot=snapshot,
            store=store,
            aws_endpoint_url=aws_endpoint_url,
            backend=backend,
            image=image,
            app_image=app_image,
            previous_app_image=previous_app_image,
            sample_size=sample_size,
            from_version=from_version,
            lock_budget_seconds=lock_budget_seconds,
            post_deploy=post_deploy,
            stack_outputs=stack_outputs,
            ca_bundle=ca_bundle,
            select=select,
        )
    )
    return Outcome(report.exit_code, report.to_dict(), render.smoke(report))
