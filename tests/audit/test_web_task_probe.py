"""The scheduled audit's API probe without appUrl: one running web task, inside the VPC.

The resolution runs against moto's ECS (real HTTP on 127.0.0.1). Moto hands out private
addresses that are not loopback, so no test here ever connects to one: the resolution is
tested on its own, and the probe of a task is tested against the real app on loopback.
"""

from __future__ import annotations

import json
import secrets
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from infra import outputs
from release.audit.api import WebTask, api_check, find_running_web_task, probe_web_task
from release.audit.model import NotRunnable, Status
from tests.app.conftest import AppProcess
from tests.audit.moto_stack import build_stack


def _moto_api(endpoint: str, path: str, body: dict[str, Any]) -> None:
    """POST to moto's own control API (on loopback, like every call here)."""
    assert endpoint.startswith("http://127.0.0.1:")
    request = urllib.request.Request(  # noqa: S310 (the loopback moto server)
        f"{endpoint}/moto-api/state-manager/{path}",
        data=json.dumps(body).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310
        pass


@pytest.fixture
def tasks_stay_running(moto_endpoint: str) -> Iterator[None]:
    """Moto moves a task on from RUNNING at its first describe; real tasks keep running."""
    _moto_api(
        moto_endpoint,
        "set-transition",
        {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**6}},
    )
    try:
        yield
    finally:
        _moto_api(moto_endpoint, "unset-transition", {"model_name": "ecs::task"})


@dataclass(frozen=True)
class Cluster:
    """A moto cluster with a subnet for awsvpc tasks; runs tasks as services do."""

    ecs: Any
    name: str
    subnet: str
    security_group: str
    definition: str

    def run(self, service: str, count: int = 1) -> list[dict[str, Any]]:
        """Fargate tasks in the group ECS gives a service's tasks (``service:<name>``)."""
        started = self.ecs.run_task(
            cluster=self.name,
            taskDefinition=self.definition,
            launchType="FARGATE",
            count=count,
            group=f"service:{service}",
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": [self.subnet],
                    "securityGroups": [self.security_group],
                    "assignPublicIp": "DISABLED",
                }
            },
        )
        return list(started["tasks"])

    def address_of(self, task_arn: str) -> str:
        """What DescribeTasks reports as the task's private IPv4 (read, never connected to)."""
        [task] = self.ecs.describe_tasks(cluster=self.name, tasks=[task_arn])["tasks"]
        [eni] = [a for a in task["attachments"] if a["type"] == "ElasticNetworkInterface"]
        return str(next(d["value"] for d in eni["details"] if d["name"] == "privateIPv4Address"))


@pytest.fixture
def cluster(moto_endpoint: str, tasks_stay_running: None) -> Cluster:
    ec2: Any = boto3.client("ec2", endpoint_url=moto_endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    # As infra's VPC has (and moto needs, to name the tasks' interfaces).
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.4.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(
        GroupName=f"web-{secrets.token_hex(3)}", Description="web tasks", VpcId=vpc
    )["GroupId"]
    ecs: Any = boto3.client("ecs", endpoint_url=moto_endpoint)
    name = f"rollgate-{secrets.token_hex(3)}"
    ecs.create_cluster(clusterName=name)
    definition = ecs.register_task_definition(
        family=f"web-{name}",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": "web",
                "image": "rollgate/app:test",
                "memory": 512,
                "portMappings": [{"containerPort": 8000}],
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    return Cluster(ecs, name, subnet, group, str(definition))


def test_a_running_web_task_is_found_with_its_private_address(
    cluster: Cluster, moto_endpoint: str
) -> None:
    cluster.run("worker")  # another service's task in the same cluster: never the target
    [web] = cluster.run("web")
    found = find_running_web_task(cluster.name, "web", 8000, moto_endpoint)
    assert found is not None
    assert found.arn == web["taskArn"]
    assert found.address == cluster.address_of(web["taskArn"])
    assert found.port == 8000
    assert found.url == f"http://{found.address}:8000"
    assert found.describe() == (
        f"web task {web['taskArn']} at {found.address}:8000, inside the VPC"
    )


def test_a_stopped_web_task_is_not_a_target(cluster: Cluster, moto_endpoint: str) -> None:
    [web] = cluster.run("web")
    cluster.run("worker")
    cluster.ecs.stop_task(cluster=cluster.name, task=web["taskArn"], reason="test")
    assert find_running_web_task(cluster.name, "web", 8000, moto_endpoint) is None


def test_an_ecs_error_leaves_the_probe_not_run(moto_endpoint: str) -> None:
    with pytest.raises(NotRunnable, match="cannot list the tasks of web service web"):
        find_running_web_task("no-such-cluster", "web", 8000, moto_endpoint)


def test_a_web_service_with_no_running_task_fails_the_check(moto_endpoint: str) -> None:
    """The scheduled task's outputs (no appUrl); the moto web service runs nothing."""
    stack = build_stack(moto_endpoint)
    assert outputs.APP_URL not in stack
    result = api_check(stack, moto_endpoint, examples=1)
    assert result.status is Status.FAILED
    assert f"web service {stack[outputs.WEB_SERVICE_NAME]}" in result.summary
    assert "no RUNNING task" in result.summary
    assert [(f.name, f.ok) for f in result.findings] == [("running web task", False)]


def test_without_appurl_or_the_web_task_outputs_the_check_says_what_is_missing(
    moto_endpoint: str,
) -> None:
    stack = build_stack(moto_endpoint)
    del stack[outputs.WEB_CONTAINER_PORT]
    with pytest.raises(NotRunnable, match=r"no appUrl .* and no webContainerPort"):
        api_check(stack, moto_endpoint)
    with pytest.raises(NotRunnable, match="appUrl"):
        api_check({outputs.QUEUE_URL: "https://sqs.example/q"}, moto_endpoint)


@pytest.mark.slow
def test_the_probe_of_a_web_task_names_it_and_passes_against_the_live_app(
    app_env: dict[str, str], start_app: Callable[..., AppProcess]
) -> None:
    """The address a task resolves to, here the real app on loopback."""
    app = start_app("web", app_env)
    host, port = app.url.removeprefix("http://").rsplit(":", 1)
    assert host == "127.0.0.1"
    task = WebTask("arn:aws:ecs:eu-west-1:123456789012:task/rollgate/abc", host, int(port))
    result = probe_web_task(task, examples=3)
    assert result.status is Status.PASSED, result.summary
    assert task.describe() in result.summary
    assert result.findings[0].evidence == task.describe()
