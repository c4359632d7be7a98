"""A model of ECS's deployment circuit breaker and of the alarm that rolls a deployment back.

moto accepts ``deploymentCircuitBreaker`` and ``alarms`` on a service but never
acts on them, so the rehearsal decides for ECS with this model. It follows
what AWS documents for a rolling deployment with ``enable=True, rollback=True``
(infra/service.py sets both):

* **Circuit breaker (task health).** Each task of the new task definition
  either reaches a healthy state (the rehearsal: ``/readyz`` of that release's
  web process answers 200) or fails (exits, or never becomes ready). When the
  failed count reaches the *failure threshold* before the deployment is
  steady, the deployment FAILED and ECS rolls back to the last COMPLETED
  one. The threshold is ``ceil(0.5 * desiredCount)``, at least 3 and at most
  200; one healthy task does not reset the count (that is ECS's behaviour
  in stage 1, and the conservative reading).
* **Deployment alarms.** A CloudWatch alarm named on the service that goes to
  ALARM during the deployment (bake time included) fails it too. The alarm
  modelled here is the worker's task failure rate: per evaluation period,
  ``failed / (failed + succeeded)``; the alarm fires when ``datapoints_to_alarm``
  of the last ``evaluation_periods`` periods are at or over ``threshold``
  (periods with fewer than ``min_samples`` tasks count as not breaching, the
  ``notBreaching`` treatment of missing data).

The model is pure: the caller feeds it observations; ``decision()`` says
"continue" or "rollback" and why.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

CONTINUE = "continue"
ROLLBACK = "rollback"


def failure_threshold(desired_count: int) -> int:
    """ECS's circuit-breaker threshold: ceil(desired / 2), clamped to [3, 200]."""
    return min(200, max(3, math.ceil(0.5 * max(desired_count, 0))))


@dataclass
class FailureRateAlarm:
    """The worker's failure-rate alarm, evaluated per period (see the module docstring)."""

    name: str = "worker-task-failure-rate"
    threshold: float = 0.5
    evaluation_periods: int = 3
    datapoints_to_alarm: int = 2
    min_samples: int = 3
    _periods: deque[bool] = field(default_factory=deque, repr=False)
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def observe_period(self, succeeded: int, failed: int) -> str:
        """Add one period's counts; return the alarm's state (``OK`` or ``ALARM``)."""
        total = succeeded + failed
        rate = failed / total if total else 0.0
        breaching = total >= self.min_samples and rate >= self.threshold
        self._periods.append(breaching)
        while len(self._periods) > self.evaluation_periods:
            self._periods.popleft()
        state = self.state
        self.history.append(
            {"succeeded": succeeded, "failed": failed, "rate": round(rate, 3), "state": state}
        )
        return state

    @property
    def state(self) -> str:
        return "ALARM" if sum(self._periods) >= self.datapoints_to_alarm else "OK"


@dataclass
class CircuitBreaker:
    """One deployment of a service to a new task definition, as ECS judges it."""

    service: str
    task_definition: str
    desired_count: int = 1
    alarms: tuple[FailureRateAlarm, ...] = ()
    healthy_tasks: int = 0
    failed_tasks: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def threshold(self) -> int:
        return failure_threshold(self.desired_count)

    def task_started(self, healthy: bool, reason: str = "") -> None:
        """One task of the new task definition became healthy, or failed (and why)."""
        if healthy:
            self.healthy_tasks += 1
        else:
            self.failed_tasks += 1
            self.failures.append(reason or "task failed")

    def decision(self) -> Decision:
        """Roll back when the failed tasks reach the threshold or an alarm is in ALARM."""
        if self.failed_tasks >= self.threshold:
            return Decision(
                ROLLBACK,
                f"deployment of {self.task_definition} to {self.service} FAILED: "
                f"{self.failed_tasks} task(s) failed, threshold {self.threshold} "
                f"(last: {self.failures[-1]})",
            )
        for alarm in self.alarms:
            if alarm.state == "ALARM":
                return Decision(
                    ROLLBACK,
                    f"deployment of {self.task_definition} to {self.service} FAILED: "
                    f"alarm {alarm.name} is in ALARM",
                )
        return Decision(CONTINUE, f"{self.healthy_tasks} healthy, {self.failed_tasks} failed")


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str

    @property
    def rollback(self) -> bool:
        return self.action == ROLLBACK

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason}
