"""``smoke.run``: options become the suite's pytest flags; bad combinations are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import CannotRun
from smoke.run import SmokeOptions, pytest_args
from smoke.summary import Summary, markdown


def options(**changes: object) -> SmokeOptions:
    base = SmokeOptions(migrations=Path("m"), schema=Path("s.sql"), output_dir=Path("out"))
    return SmokeOptions(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def test_options_map_to_the_suites_pytest_flags() -> None:
    args = pytest_args(
        options(
            snapshot="snap1",
            store="s3://bucket/x",
            app_image="app:2",
            previous_app_image="app:1",
            lock_budget_seconds=0.5,
            queue_redrive=False,
            select="schema",
        )
    )
    assert "--junitxml=out/smoke-junit.xml" in args
    assert args[args.index("-m") : args.index("-m") + 2] == ["-m", ""]
    for flag in (
        "--smoke-snapshot=snap1",
        "--smoke-store=s3://bucket/x",
        "--smoke-app-image=app:2",
        "--smoke-previous-app-image=app:1",
        "--smoke-lock-budget=0.5",
        "--smoke-no-redrive",
        "--smoke-backend=auto",
        "--smoke-sample-size=25MB",
    ):
        assert flag in args
    assert args[-2:] == ["-k", "schema"]
    assert not any(a.startswith("--smoke-from-version") for a in args)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"backend": "podman"}, "unknown Postgres backend 'podman'"),
        ({"post_deploy": True}, "--post-deploy needs --stack-outputs"),
        ({"snapshot": "snap1"}, "--snapshot needs --store"),
        ({"database": "gate_copy"}, "needs the server it lives on"),
        ({"start_checksums": Path("sums.json")}, "only with the database they describe"),
    ],
)
def test_bad_combinations_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(CannotRun, match=message):
        pytest_args(options(**changes))


def test_the_markdown_summary_names_an_n_minus_1_break_and_undeclared_loss() -> None:
    summary = Summary()
    summary.checks = {
        "smoke/test_app.py::test_readyz_answers[previous]": {
            "outcome": "failed",
            "message": "never ready",
            "phase": "call",
        }
    }
    summary.reversibility = {
        "data_lost": [
            {
                "table": "public.orders",
                "columns": None,
                "declared": False,
                "description": "public.orders: 10 rows, expected 20",
            }
        ]
    }
    data = summary.to_dict(1)
    assert data["n_minus_1"]["compatible"] is False
    text = markdown(data)
    assert "NOT backward compatible" in text
    assert "`public.orders` (whole table)" in text and "**NOT declared**" in text


@pytest.mark.parametrize("content", ["", "{}", '{"tables": [{"table": "t"}]}', "[1]"])
def test_unreadable_start_checksums_are_refused(tmp_path: Path, content: str) -> None:
    from core.errors import CannotRun
    from smoke.prepare import _read_checksums

    path = tmp_path / "start-checksums.json"
    path.write_text(content)
    with pytest.raises(CannotRun, match="cannot read start checksums"):
        _read_checksums(path)
