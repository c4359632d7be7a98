"""The app side of a release: which task definition each ECS service runs.

Only three calls, through any boto3 ECS client (real AWS, or moto's server in
tests): read what services run, point them at other task definitions, and
scale the worker to stop writers during a rollback. Every failure is a
``CannotRun`` naming the service, never a botocore traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import CannotRun
from rollback.aws import make_client


@dataclass(frozen=True)
class ServiceState:
    name: str
    task_definition: str
    desired_count: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task_definition": self.task_definition,
            "desired_count": self.desired_count,
        }


@dataclass(frozen=True)
class Services:
    """The ECS services of one release, by role ("web", "worker")."""

    cluster: str
    by_role: Mapping[str, ServiceState]

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "services": {role: state.to_dict() for role, state in sorted(self.by_role.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Services:
        return cls(
            cluster=str(data["cluster"]),
            by_role={
                role: ServiceState(
                    str(state["name"]), str(state["task_definition"]), int(state["desired_count"])
                )
                for role, state in data["services"].items()
            },
        )


def ecs_client(endpoint_url: str | None) -> Any:
    """A boto3 ECS client with bounded retries; ``endpoint_url`` for moto or a VPC endpoint."""
    from botocore.config import Config

    config = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=10)
    return make_client("ecs", endpoint_url, config)


def read_services(client: Any, cluster: str, names: Mapping[str, str]) -> Services:
    """What each named service runs now (``names``: role -> service name)."""
    try:
        response = client.describe_services(cluster=cluster, services=list(names.values()))
    except Exception as exc:  # botocore's errors share no narrower base worth naming
        raise CannotRun(f"cannot read ECS services in cluster {cluster}: {exc}") from exc
    found = {service["serviceName"]: service for service in response.get("services", [])}
    states = {}
    for role, name in names.items():
        service = found.get(name)
        if service is None or service.get("status") == "INACTIVE":
            raise CannotRun(f"ECS service {name} ({role}) not found in cluster {cluster}")
        states[role] = ServiceState(
            name=name,
            task_definition=str(service["taskDefinition"]),
            desired_count=int(service.get("desiredCount", 0)),
        )
    return Services(cluster, states)


def update_service(
    client: Any,
    cluster: str,
    name: str,
    *,
    task_definition: str | None = None,
    desired_count: int | None = None,
) -> None:
    """Point ``name`` at ``task_definition`` and/or scale it; idempotent."""
    arguments: dict[str, Any] = {"cluster": cluster, "service": name}
    if task_definition is not None:
        arguments["taskDefinition"] = task_definition
    if desired_count is not None:
        arguments["desiredCount"] = desired_count
    try:
        client.update_service(**arguments)
    except Exception as exc:
        raise CannotRun(f"cannot update ECS service {name} in cluster {cluster}: {exc}") from exc
