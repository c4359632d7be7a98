"""The model of ECS's deployment circuit breaker and the failure-rate alarm."""

from __future__ import annotations

from release.breaker import CircuitBreaker, FailureRateAlarm, failure_threshold


def test_threshold_is_half_the_desired_count_clamped_to_3_and_200() -> None:
    assert failure_threshold(1) == 3
    assert failure_threshold(6) == 3
    assert failure_threshold(7) == 4
    assert failure_threshold(1000) == 200


def test_failed_tasks_trip_the_breaker_only_at_the_threshold() -> None:
    breaker = CircuitBreaker("web", "web:2", desired_count=2)
    breaker.task_started(False, "readyz 503")
    breaker.task_started(True)
    breaker.task_started(False, "readyz 503")
    assert not breaker.decision().rollback
    breaker.task_started(False, "exited 1")
    decision = breaker.decision()
    assert decision.rollback
    assert "3 task(s) failed" in decision.reason and "exited 1" in decision.reason


def test_alarm_needs_enough_breaching_datapoints_and_samples() -> None:
    alarm = FailureRateAlarm(threshold=0.5, evaluation_periods=3, datapoints_to_alarm=2)
    assert alarm.observe_period(succeeded=0, failed=2) == "OK"  # too few samples
    assert alarm.observe_period(succeeded=1, failed=4) == "OK"  # one breaching datapoint
    assert alarm.observe_period(succeeded=10, failed=0) == "OK"
    assert alarm.observe_period(succeeded=0, failed=5) == "ALARM"  # 2 of the last 3
    assert alarm.observe_period(succeeded=9, failed=0) == "OK"  # the first breach aged out


def test_an_alarm_in_alarm_rolls_the_deployment_back_with_healthy_tasks() -> None:
    alarm = FailureRateAlarm(datapoints_to_alarm=1, evaluation_periods=1)
    breaker = CircuitBreaker("worker", "worker:2", alarms=(alarm,))
    breaker.task_started(True)
    assert not breaker.decision().rollback
    alarm.observe_period(succeeded=0, failed=3)
    decision = breaker.decision()
    assert decision.rollback and "worker-task-failure-rate" in decision.reason
