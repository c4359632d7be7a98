"""AppService + Ingress: web behind the ALB, worker on the queue, safe deployments."""

from __future__ import annotations

import json
from typing import Any

from infra import outputs
from infra.config import WEB_COMMAND, WORKER_COMMAND
from tests.infra.harness import CapturedResource, ProgramRun

SERVICE = "aws:ecs/service:Service"
TASK = "aws:ecs/taskDefinition:TaskDefinition"
LISTENER = "aws:lb/listener:Listener"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"


def containers(task: CapturedResource) -> list[dict[str, Any]]:
    return json.loads(task.inputs["containerDefinitions"])  # type: ignore[no-any-return]


def container(run: ProgramRun, family: str) -> dict[str, Any]:
    [only] = containers(run.one(TASK, f"-{family}-task"))
    return only


def test_web_service_sits_behind_the_alb_after_its_listener(run: ProgramRun) -> None:
    web = run.one(SERVICE, "-app-web")
    target_group = run.one("aws:lb/targetGroup:TargetGroup")
    [attachment] = web.inputs["loadBalancers"]
    assert attachment["containerName"] == "web"
    assert attachment["containerPort"] == 8000
    assert web.property_dependencies["loadBalancers"] == [target_group.urn]
    forwarding = [
        listener
        for listener in run.of_type(LISTENER)
        if listener.property_dependencies.get("defaultActions") == [target_group.urn]
    ]
    assert [listener.urn for listener in forwarding] == web.depends_on
    assert target_group.inputs["targetType"] == "ip"
    assert target_group.inputs["healthCheck"]["path"] == "/healthz"


def test_https_with_a_certificate_and_redirect(prod: ProgramRun) -> None:
    listeners = {each.inputs["port"]: each.inputs for each in prod.of_type(LISTENER)}
    assert listeners[443]["protocol"] == "HTTPS"
    assert listeners[443]["certificateArn"] == prod.config["certificateArn"]
    assert listeners[443]["sslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    [redirect] = listeners[80]["defaultActions"]
    assert redirect["type"] == "redirect"
    assert redirect["redirect"]["protocol"] == "HTTPS"
    assert prod.exports[outputs.APP_URL].startswith("https://")
    alb = prod.one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert alb["enableDeletionProtection"] is True
    assert alb["dropInvalidHeaderFields"] is True


def test_plain_http_without_a_certificate(dev: ProgramRun) -> None:
    [listener] = dev.of_type(LISTENER)
    assert listener.inputs["protocol"] == "HTTP"
    assert listener.inputs["defaultActions"][0]["type"] == "forward"
    assert dev.exports[outputs.APP_URL].startswith("http://")


def test_load_balancer_names_fit_aws_limits(run: ProgramRun) -> None:
    # Pulumi appends an 8-character suffix; ALB and target-group names allow 32.
    for type_ in ("aws:lb/loadBalancer:LoadBalancer", "aws:lb/targetGroup:TargetGroup"):
        assert len(run.one(type_).name) + 8 <= 32


#: The one-off tasks that run the rollgate CLI: the tools image (the app image has no CLI).
TOOLS_TASKS = ("-migrate-task", "-audit-task")


def test_image_comes_from_config_and_is_pinned_in_prod(run: ProgramRun, prod: ProgramRun) -> None:
    for task in run.of_type(TASK):
        key = "toolsImage" if task.name.endswith(TOOLS_TASKS) else "image"
        assert [c["image"] for c in containers(task)] == [run.config[key]], task.name
    for task in prod.of_type(TASK):
        assert all("@sha256:" in c["image"] for c in containers(task))


#: Which database role's secret each task family gets (issue 9 #1: master only for migrate).
SECRET_OF_TASK = {
    "-app-web-task": outputs.DB_APP_SECRET_ARN,
    "-app-worker-task": outputs.DB_APP_SECRET_ARN,
    "-audit-task": outputs.DB_AUDIT_SECRET_ARN,
    "-app-migrate-task": outputs.DB_SECRET_ARN,
}


def test_secrets_come_from_secrets_manager_never_environment(run: ProgramRun) -> None:
    assert len(run.of_type(TASK)) == len(SECRET_OF_TASK)
    for suffix, output in SECRET_OF_TASK.items():
        task = run.one(TASK, suffix)
        secret_arn = run.exports[output]
        for c in containers(task):
            names = {e["name"] for e in c["environment"]}
            assert not names & {outputs.SECRET_DB_USER, outputs.SECRET_DB_PASSWORD}
            assert not any("PASSWORD" in n or "SECRET" in n for n in names)
            assert c["secrets"][:2] == [
                {"name": outputs.SECRET_DB_USER, "valueFrom": f"{secret_arn}:username::"},
                {"name": outputs.SECRET_DB_PASSWORD, "valueFrom": f"{secret_arn}:password::"},
            ]
            extra = {s["name"]: s["valueFrom"] for s in c["secrets"][2:]}
            if suffix == "-app-migrate-task":
                # The role bootstrap run by the migrate task sets the roles' passwords.
                app = run.exports[outputs.DB_APP_SECRET_ARN]
                audit = run.exports[outputs.DB_AUDIT_SECRET_ARN]
                assert extra == {
                    outputs.SECRET_DB_APP_USER: f"{app}:username::",
                    outputs.SECRET_DB_APP_PASSWORD: f"{app}:password::",
                    outputs.SECRET_DB_AUDIT_USER: f"{audit}:username::",
                    outputs.SECRET_DB_AUDIT_PASSWORD: f"{audit}:password::",
                }
            elif c["name"] == "web":
                stripe = run.one("aws:secretsmanager/secret:Secret", "-stripe-webhook-secret")
                assert extra == {outputs.SECRET_STRIPE_WEBHOOK: stripe.outputs["arn"]}
                db_key = run.one("aws:kms/key:Key", "-db-key")
                assert stripe.inputs["kmsKeyId"] == db_key.outputs["arn"]
            else:
                assert extra == {}


def test_tasks_know_where_everything_is(run: ProgramRun) -> None:
    env = {e["name"]: e["value"] for e in container(run, "web")["environment"]}
    assert env[outputs.ENV_QUEUE_URL] == run.exports[outputs.QUEUE_URL]
    assert env[outputs.ENV_ARTIFACT_BUCKET] == run.exports[outputs.ARTIFACT_BUCKET]
    assert env[outputs.ENV_DB_HOST] == run.exports[outputs.DB_ADDRESS]
    assert env[outputs.ENV_DB_SSLMODE] == "verify-full"
    assert env[outputs.ENV_METRIC_NAMESPACE] == outputs.METRIC_NAMESPACE
    assert env[outputs.ENV_STACK] == run.stack


def test_containers_have_health_checks(run: ProgramRun) -> None:
    assert container(run, "web")["command"] == list(WEB_COMMAND)
    web = container(run, "web")["healthCheck"]
    assert web["command"][:3] == ["CMD", "python", "-c"]
    assert "http://127.0.0.1:8000/healthz" in web["command"][3]
    worker = container(run, "worker")
    assert worker["command"] == list(WORKER_COMMAND)
    assert outputs.WORKER_HEARTBEAT_FILE in worker["healthCheck"]["command"][3]


def test_containers_are_hardened(run: ProgramRun) -> None:
    for task in run.of_type(TASK):
        assert task.inputs["networkMode"] == "awsvpc"
        assert task.inputs["requiresCompatibilities"] == ["FARGATE"]
        for c in containers(task):
            assert c["readonlyRootFilesystem"] is True
            assert c["logConfiguration"]["logDriver"] == "awslogs"


def test_services_roll_back_on_circuit_breaker_and_alarms(run: ProgramRun) -> None:
    alarm_names = {a.inputs["name"] for a in run.of_type(ALARM)}
    expected = {
        "-app-web": f"rollgate-{run.stack}-http-5xx-rate",
        "-app-worker": f"rollgate-{run.stack}-oldest-message-age",
    }
    for suffix, alarm in expected.items():
        service = run.one(SERVICE, suffix).inputs
        assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
        assert service["alarms"]["enable"] is True
        assert service["alarms"]["rollback"] is True
        assert service["alarms"]["alarmNames"] == [alarm]
        assert alarm in alarm_names
        assert service["launchType"] == "FARGATE"
        assert service["networkConfiguration"]["assignPublicIp"] is False
        assert service["deploymentMinimumHealthyPercent"] == 100
        assert service["waitForSteadyState"] is True


def test_worker_scales_on_backlog_per_task(run: ProgramRun) -> None:
    worker = run.one(SERVICE, "-app-worker")
    assert worker.ignore_changes == ["desiredCount"]  # autoscaling owns it
    target = run.one("aws:appautoscaling/target:Target", "-worker-scaling-target")
    assert target.inputs["minCapacity"] == int(run.config["workerMinCount"])
    assert target.inputs["maxCapacity"] == int(run.config["workerMaxCount"])
    assert (
        target.inputs["resourceId"]
        == f"service/rollgate-{run.stack}-app-cluster/rollgate-{run.stack}-app-worker"
    )
    policy = run.one("aws:appautoscaling/policy:Policy", "-worker-backlog-scaling").inputs
    assert policy["policyType"] == "TargetTrackingScaling"
    tracking = policy["targetTrackingScalingPolicyConfiguration"]
    assert tracking["targetValue"] == 10
    metrics = {m["id"]: m for m in tracking["customizedMetricSpecification"]["metrics"]}
    assert metrics["backlog_per_task"]["expression"] == "visible / running"
    assert metrics["backlog_per_task"]["returnData"] is True
    visible = metrics["visible"]["metricStat"]["metric"]
    assert (visible["namespace"], visible["metricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert visible["dimensions"] == [
        {"name": "QueueName", "value": run.exports[outputs.QUEUE_URL].rsplit("/", 1)[1]}
    ]
    running = metrics["running"]["metricStat"]["metric"]
    assert running["metricName"] == "RunningTaskCount"
    cluster = run.one("aws:ecs/cluster:Cluster").inputs
    assert {"name": "containerInsights", "value": "enabled"} in cluster["settings"]


def test_roles_are_least_privilege(run: ProgramRun) -> None:
    def document(name_suffix: str) -> list[dict[str, Any]]:
        policy = run.one("aws:iam/rolePolicy:RolePolicy", name_suffix)
        return json.loads(policy.inputs["policy"])["Statement"]  # type: ignore[no-any-return]

    web = document("-app-web-task-policy")
    assert [s["Action"] for s in web] == [["sqs:SendMessage", "sqs:GetQueueAttributes"]]
    assert web[0]["Resource"] == [run.exports[outputs.QUEUE_ARN]]
    worker_actions = {a for s in document("-app-worker-task-policy") for a in s["Action"]}
    assert "sqs:DeleteMessage" in worker_actions
    assert "sqs:SendMessage" not in worker_actions
    execution = document("-app-web-execution-policy")
    by_sid = {s["Sid"]: s for s in execution}
    assert by_sid["ReadDatabaseSecret"]["Resource"] == [run.exports[outputs.DB_APP_SECRET_ARN]]
    assert by_sid["PullImage"]["Resource"] == [
        "arn:aws:ecr:eu-west-1:123456789012:repository/rollgate"
    ]
    assert by_sid["WriteOwnLogGroup"]["Resource"].endswith(
        f"/rollgate/{run.stack}/web:log-stream:*"
    )
    for role in run.of_type("aws:iam/role:Role"):
        trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
        assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_the_cli_tasks_run_the_tools_image_and_the_services_the_app_image(
    run: ProgramRun,
) -> None:
    # The app image ships app/, core/ and infra/outputs.py only: `rollgate` is not in it.
    assert run.config["toolsImage"] != run.config["image"]
    images = {task.name: [c["image"] for c in containers(task)] for task in run.of_type(TASK)}
    for suffix in TOOLS_TASKS:
        [name] = [name for name in images if name.endswith(suffix)]
        assert images[name] == [run.config["toolsImage"]]
    for family in ("web", "worker"):
        [name] = [name for name in images if name.endswith(f"-app-{family}-task")]
        assert images[name] == [run.config["image"]]
