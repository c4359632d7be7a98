"""Trends from the audit log: Theil-Sen slope plus last-N vs previous-N medians, drawn as SVG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from release.audit import AUDIT_LOG
from release.audit.trend import analyse, theil_sen_slope
from rollback import ledger
from rollback.store import open_store
from tests.rollgate.conftest import run


def test_theil_sen_ignores_a_single_outlier() -> None:
    points = [(i, 2.0 * i) for i in range(1, 11)]
    points[4] = (5, 1000.0)
    assert theil_sen_slope(points) == pytest.approx(2.0)
    assert theil_sen_slope([(1, 5.0)]) == 0.0


def test_restore_time_growing_with_the_data_is_steady_faster_than_the_data_is_flagged() -> None:
    # Per MB: flat (restore grew in step with the data) -> steady.
    steady = analyse([(i, 0.5 + 0.01 * (i % 2)) for i in range(1, 13)], "restore_seconds_per_mb")
    assert not steady.flagged
    # Per MB doubling over the last runs -> flagged.
    worse = analyse(
        [(i, 0.5 if i <= 7 else 1.2 + 0.1 * i) for i in range(1, 13)], "restore_seconds_per_mb"
    )
    assert worse.flagged
    assert "Theil-Sen" in worse.reason
    # Too few runs to compare: never flagged, and it says so.
    assert "needed" in analyse([(1, 1.0), (2, 9.0)], "restore_seconds_per_mb").reason


def test_a_one_off_spike_in_a_count_is_not_a_trend() -> None:
    spike = analyse([(i, 9.0 if i == 11 else 0.0) for i in range(1, 13)], "drift_count")
    assert not spike.flagged
    rising = analyse([(i, 0.0 if i <= 6 else 3.0) for i in range(1, 13)], "drift_count")
    assert rising.flagged


def test_the_cli_flags_rising_drift_and_writes_a_self_contained_html_chart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "store"
    root.mkdir()
    store = open_store(str(root))
    for run_number in range(12):
        metrics = {
            "drift_count": float(run_number // 3),
            "restore_seconds_per_mb": 0.4,
            "failures": 0.0,
        }
        ledger.append(store, AUDIT_LOG, {"metrics": metrics})
    page = tmp_path / "trend.html"
    code, out, _ = run(capsys, "audit", "trend", "--store", str(root), "--html", str(page))
    assert code == 1
    assert "WORSE" in out and "schema drift" in out
    html = page.read_text()
    assert html.count("<svg") == 3
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")

    code, out, _ = run(capsys, "audit", "trend", "--store", str(root), "--json")
    result = json.loads(out)["result"]
    assert result["flagged"] == ["drift_count"]


@pytest.mark.parametrize("metrics", [[1, 2], "fast", 3])
def test_an_audit_entry_of_the_wrong_shape_is_a_broken_log_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], metrics: object
) -> None:
    # The chain's hashes are intact (the entry was appended, not edited), but its body is
    # not what the trend reads: damaged store content naming the entry, exit 1.
    root = tmp_path / "store"
    store = open_store(str(root))
    ledger.append(store, AUDIT_LOG, {"metrics": {"drift_count": 0.0}})
    ledger.append(store, AUDIT_LOG, {"metrics": metrics})
    code, out, err = run(capsys, "--json", "audit", "trend", "--store", str(root))
    assert code == 1, err
    error = json.loads(out)["error"]
    assert "entry 00000002" in error["message"] and "Traceback" not in err
