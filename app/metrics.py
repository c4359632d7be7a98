"""CloudWatch metrics in Embedded Metric Format, written to stdout.

The container's log driver ships stdout to CloudWatch Logs, which extracts the
metrics: no PutMetricData calls, no extra IAM. Every metric carries exactly one
dimension, ``Stack`` (infra's alarms match dimensions exactly), in the
namespace and under the names `infra.outputs` defines.
"""

from __future__ import annotations

from aws_embedded_metrics.environment import Environment
from aws_embedded_metrics.environment.local_environment import LocalEnvironment
from aws_embedded_metrics.logger.metrics_logger import MetricsLogger

from infra import outputs

_STDOUT = LocalEnvironment()


async def _stdout_environment() -> Environment:
    # Always stdout: on ECS the awslogs driver carries it; no agent, no probing of
    # instance metadata endpoints.
    return _STDOUT


class Metrics:
    """Emits one EMF record per call, with the stack dimension only."""

    def __init__(self, namespace: str, stack: str) -> None:
        self.namespace = namespace
        self.stack = stack

    def emit(self, values: dict[str, float], unit: str = "Count") -> None:
        """Write one EMF line carrying ``values`` (name -> value)."""
        logger = MetricsLogger(_stdout_environment)
        logger.set_namespace(self.namespace)
        logger.set_dimensions({outputs.METRIC_DIMENSION_STACK: self.stack}, use_default=False)
        for name, value in values.items():
            logger.put_metric(name, value, unit)
        logger.flush_sync()

    def count(self, name: str, value: float = 1) -> None:
        """One count metric."""
        self.emit({name: value})

    def milliseconds(self, name: str, value: float) -> None:
        """One duration metric."""
        self.emit({name: value}, unit="Milliseconds")
