"""Issue 9: what a security review and a real `pulumi up` need, proven on the program.

Each test names the issue item it covers; each fails on the program before the fix
(no endpoint policies, plain log groups, no access logs, `PGSSLMODE=require`, no
task protection, a web service without autoscaling, an ALB-name appUrl).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra import outputs
from infra.network import ecr_layer_bucket_arn
from tests.infra.harness import ACCOUNT_ID, REGION, CapturedResource, ProgramRun, run_program
from tests.infra.harness import stack_config as example_config

TASK = "aws:ecs/taskDefinition:TaskDefinition"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
ENDPOINT_POLICY = "aws:ec2/vpcEndpointPolicy:VpcEndpointPolicy"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"


def document(resource: CapturedResource, prop: str = "policy") -> dict[str, Any]:
    return json.loads(resource.inputs[prop])  # type: ignore[no-any-return]


def containers(task: CapturedResource) -> list[dict[str, Any]]:
    return json.loads(task.inputs["containerDefinitions"])  # type: ignore[no-any-return]


def environment(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["environment"]}


# --- 1. per-service database roles ------------------------------------------------------


def test_role_secrets_are_generated_write_only_under_the_database_key(run: ProgramRun) -> None:
    db_key = run.one("aws:kms/key:Key", "-db-key")
    for service, user in (("app", "rollgate_app"), ("audit", "rollgate_audit")):
        secret = run.one("aws:secretsmanager/secret:Secret", f"-{service}-role-secret")
        assert secret.property_dependencies["kmsKeyId"] == [db_key.urn]
        version = run.one(
            "aws:secretsmanager/secretVersion:SecretVersion", f"-{service}-role-secret-value"
        )
        assert version.property_dependencies["secretId"] == [secret.urn]
        # Write-only: the value reaches AWS but is never stored in Pulumi state.
        assert "secretString" not in version.inputs
        assert version.inputs["secretStringWoVersion"] == 1
        value = version.inputs["secretStringWo"]["value"]  # a Pulumi secret
        assert json.loads(value)["username"] == user
    exports = run.exports
    assert {exports[outputs.DB_APP_SECRET_ARN], exports[outputs.DB_AUDIT_SECRET_ARN]}.isdisjoint(
        {exports[outputs.DB_SECRET_ARN]}
    )


def test_only_the_migrate_task_gets_the_master_secret(run: ProgramRun) -> None:
    master = run.exports[outputs.DB_SECRET_ARN]
    holders = [
        task.name
        for task in run.of_type(TASK)
        if any(master in s["valueFrom"] for c in containers(task) for s in c["secrets"])
    ]
    assert holders == [f"rollgate-{run.stack}-app-migrate-task"]
    migrate = run.one(TASK, "-app-migrate-task")
    assert migrate.inputs["tags"]["rollgate:role"] == "migrator"
    # The role bootstrap runs first, and the migrations only if it succeeded.
    assert containers(migrate)[0]["command"] == [
        "sh",
        "-c",
        "rollgate db bootstrap-roles && exec rollgate db migrate",
    ]
    assert run.exports[outputs.MIGRATE_TASK_DEFINITION_ARN].endswith(
        f"task-definition/rollgate-{run.stack}-migrate:1"
    )


# --- 2. TLS verify-full ------------------------------------------------------------------


def test_every_task_verifies_the_database_certificate_and_host(run: ProgramRun) -> None:
    tasks = run.of_type(TASK)
    assert len(tasks) == 4
    for task in tasks:
        for container in containers(task):
            env = environment(container)
            assert env[outputs.ENV_DB_SSLMODE] == "verify-full", task.name
            assert env[outputs.ENV_DB_SSLROOTCERT] == "/etc/ssl/certs/rds-global-bundle.pem"
    assert outputs.RDS_CA_BUNDLE_PATH == "/etc/ssl/certs/rds-global-bundle.pem"


# --- 3. VPC endpoint policies -------------------------------------------------------------


def endpoint_document(run: ProgramRun, service: str) -> dict[str, Any]:
    endpoint = run.one(ENDPOINT, f"-{service.replace('.', '-')}-endpoint")
    [policy] = [
        p
        for p in run.of_type(ENDPOINT_POLICY)
        if p.property_dependencies.get("vpcEndpointId") == [endpoint.urn]
    ]
    return document(policy)


def test_every_endpoint_has_a_policy(run: ProgramRun) -> None:
    endpoints = run.of_type(ENDPOINT)
    assert len(endpoints) == 9  # s3 gateway + 8 interface endpoints (ecs: the audit)
    attached = {
        urn
        for p in run.of_type(ENDPOINT_POLICY)
        for urn in p.property_dependencies["vpcEndpointId"]
    }
    assert attached == {e.urn for e in endpoints}


def test_s3_gateway_reaches_only_the_artifact_bucket_and_ecr_layers(run: ProgramRun) -> None:
    statements = endpoint_document(run, "s3")["Statement"]
    resources = [r for s in statements for r in s["Resource"]]
    bucket = run.exports[outputs.ARTIFACT_BUCKET]
    assert sorted(resources) == sorted(
        [
            f"arn:aws:s3:::prod-{REGION}-starport-layer-bucket/*",
            f"arn:aws:s3:::{bucket}",
            f"arn:aws:s3:::{bucket}/*",
        ]
    )
    assert ecr_layer_bucket_arn("aws", REGION) in resources
    [layers] = [s for s in statements if s.get("Sid") == "EcrImageLayers"]
    assert layers["Action"] == ["s3:GetObject"]
    for statement in statements:
        assert "*" not in statement["Action"] and "s3:*" not in statement["Action"]
        if statement is not layers:
            assert statement["Condition"] == {"StringEquals": {"aws:PrincipalAccount": ACCOUNT_ID}}


def test_interface_endpoints_name_this_stacks_resources(run: ProgramRun) -> None:
    def resources(service: str) -> set[str]:
        return {
            r
            for s in endpoint_document(run, service)["Statement"]
            for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
        }

    assert resources("secretsmanager") == {
        run.exports[outputs.DB_SECRET_ARN],
        run.exports[outputs.DB_APP_SECRET_ARN],
        run.exports[outputs.DB_AUDIT_SECRET_ARN],
    }
    assert resources("sqs") == {run.exports[outputs.QUEUE_ARN], run.exports[outputs.DLQ_ARN]}
    logs = f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:/rollgate/{run.stack}/*"
    assert resources("logs") == {logs, f"{logs}:log-stream:*"}
    repository = f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/rollgate"
    assert resources("ecr.dkr") == resources("ecr.api") == {"*", repository}
    metrics = endpoint_document(run, "monitoring")["Statement"][0]
    assert metrics["Condition"]["StringEquals"]["cloudwatch:namespace"] == "Rollgate"


# --- 4. log encryption, access logs, WAF -----------------------------------------------


def test_every_log_group_is_encrypted_with_the_log_key(run: ProgramRun) -> None:
    key = run.one("aws:kms/key:Key", "-logs-key")
    groups = run.of_type(LOG_GROUP)
    assert len(groups) == 7  # flow logs, RDS x2, web, worker, migrate, audit
    for group in groups:
        assert group.property_dependencies["kmsKeyId"] == [key.urn], group.name


def test_log_key_lets_cloudwatch_logs_use_it_for_this_stacks_groups_only(
    run: ProgramRun,
) -> None:
    key = run.one("aws:kms/key:Key", "-logs-key")
    assert key.inputs["enableKeyRotation"] is True
    [logs] = [s for s in document(key)["Statement"] if s["Sid"] != "AccountAdministers"]
    assert logs["Principal"] == {"Service": f"logs.{REGION}.amazonaws.com"}
    arns = logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    prefix = f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:"
    assert arns == [
        f"{prefix}/rollgate/{run.stack}/*",
        f"{prefix}/aws/rds/instance/rollgate-{run.stack}/*",
    ]


def test_alb_writes_access_logs_to_a_bucket_elb_may_write(run: ProgramRun) -> None:
    alb = run.one("aws:lb/loadBalancer:LoadBalancer")
    bucket = run.one("aws:s3/bucket:Bucket", "-access-logs-bucket")
    logs = alb.inputs["accessLogs"]
    assert logs == {"bucket": bucket.outputs["bucket"], "prefix": "alb", "enabled": True}
    policy = run.one("aws:s3/bucketPolicy:BucketPolicy", "-access-logs-policy")
    assert policy.urn in alb.depends_on  # ELB test-writes when logging is turned on
    [delivery] = [s for s in document(policy)["Statement"] if s["Sid"] == "ElbLogDelivery"]
    assert delivery["Principal"] == {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}
    assert delivery["Action"] == ["s3:PutObject"]
    assert delivery["Resource"] == [f"{bucket.outputs['arn']}/alb/AWSLogs/{ACCOUNT_ID}/*"]
    encryption = run.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "-access-logs-encryption",
    )
    default = encryption.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
    assert default == {"sseAlgorithm": "AES256"}  # the only encryption ELB delivery supports


def test_waf_is_optional_and_attached_from_config(dev: ProgramRun) -> None:
    assert dev.of_type("aws:wafv2/webAclAssociation:WebAclAssociation") == []
    acl = (
        f"arn:aws:wafv2:{REGION}:{ACCOUNT_ID}:regional/webacl/rollgate/"
        "00000000-0000-0000-0000-000000000000"
    )
    run = run_program({**example_config("dev"), "wafWebAclArn": acl}, "dev")
    association = run.one("aws:wafv2/webAclAssociation:WebAclAssociation")
    assert association.inputs["webAclArn"] == acl
    assert association.property_dependencies["resourceArn"] == [
        run.one("aws:lb/loadBalancer:LoadBalancer").urn
    ]


# --- 5. worker stop timeout and task protection -------------------------------------------


def test_worker_may_protect_its_own_task_and_knows_for_how_long(run: ProgramRun) -> None:
    policy = run.one("aws:iam/rolePolicy:RolePolicy", "-app-worker-task-policy")
    by_sid = {s["Sid"]: s for s in document(policy)["Statement"] if "Sid" in s}
    protect = by_sid["ProtectOwnTaskWhileWorking"]
    assert protect["Action"] == ["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"]
    assert protect["Resource"] == [
        f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:task/rollgate-{run.stack}-app-cluster/*"
    ]
    worker = containers(run.one(TASK, "-app-worker-task"))[0]
    env = environment(worker)
    assert env[outputs.ENV_WORKER_TIMEOUT_SECONDS] == "300"
    assert env[outputs.ENV_WORKER_TASK_PROTECTION] == "true"
    assert env[outputs.ENV_WORKER_PROTECTION_MINUTES] == "5"
    assert worker["stopTimeout"] == 120
    # Only the worker may change task protection.
    for other in ("-app-web-task-policy", "-audit-task-policy", "-app-migrate-task-policy"):
        actions = {
            a
            for s in document(run.one("aws:iam/rolePolicy:RolePolicy", other))["Statement"]
            for a in s["Action"]
        }
        assert "ecs:UpdateTaskProtection" not in actions


def test_worker_scale_in_is_not_disabled_but_respects_protection(run: ProgramRun) -> None:
    # ECS skips protected tasks on scale-in and deployments; the policy must not turn
    # scale-in off to "protect" work (that would pin the fleet at its peak).
    policy = run.one("aws:appautoscaling/policy:Policy", "-worker-backlog-scaling").inputs
    assert policy["targetTrackingScalingPolicyConfiguration"].get("disableScaleIn") in (
        None,
        False,
    )


# --- 6. domain name and appUrl ------------------------------------------------------------


def test_app_url_uses_the_domain_and_route53_points_it_at_the_alb(prod: ProgramRun) -> None:
    assert prod.exports[outputs.APP_URL] == "https://rollgate.example.com"
    record = prod.one("aws:route53/record:Record")
    alb = prod.one("aws:lb/loadBalancer:LoadBalancer")
    assert record.inputs["name"] == "rollgate.example.com"
    assert record.inputs["type"] == "A"
    assert record.inputs["zoneId"] == "Z0000000000EXAMPLE0000"
    [alias] = record.inputs["aliases"]
    assert alias["name"] == alb.outputs["dnsName"]
    assert alias["zoneId"] == alb.outputs["zoneId"]


def test_without_a_domain_app_url_is_the_alb_and_no_record_is_made(dev: ProgramRun) -> None:
    assert dev.of_type("aws:route53/record:Record") == []
    alb = dev.one("aws:lb/loadBalancer:LoadBalancer")
    assert dev.exports[outputs.APP_URL] == f"http://{alb.outputs['dnsName']}"


# --- 10. web autoscaling -------------------------------------------------------------------


def test_web_scales_on_requests_per_target_between_configured_bounds(run: ProgramRun) -> None:
    web = run.one("aws:ecs/service:Service", "-app-web")
    assert web.ignore_changes == ["desiredCount"]  # autoscaling owns it
    target = run.one("aws:appautoscaling/target:Target", "-web-scaling-target").inputs
    expected = {"dev": (1, 4), "prod": (3, 10)}[run.stack]
    assert (target["minCapacity"], target["maxCapacity"]) == expected
    assert target["resourceId"] == (
        f"service/rollgate-{run.stack}-app-cluster/rollgate-{run.stack}-app-web"
    )
    policy = run.one("aws:appautoscaling/policy:Policy", "-web-requests-scaling").inputs
    tracking = policy["targetTrackingScalingPolicyConfiguration"]
    assert tracking["targetValue"] == 1000
    metric = tracking["predefinedMetricSpecification"]
    assert metric["predefinedMetricType"] == "ALBRequestCountPerTarget"
    alb = run.one("aws:lb/loadBalancer:LoadBalancer").outputs["arnSuffix"]
    tg = run.one("aws:lb/targetGroup:TargetGroup").outputs["arnSuffix"]
    assert metric["resourceLabel"] == f"{alb}/{tg}"


@pytest.mark.parametrize(("key", "value"), [("webMaxCount", "7"), ("webRequestsPerTarget", "250")])
def test_web_scaling_comes_from_config(key: str, value: str) -> None:
    run = run_program({**example_config("dev"), key: value}, "dev")
    target = run.one("aws:appautoscaling/target:Target", "-web-scaling-target").inputs
    policy = run.one("aws:appautoscaling/policy:Policy", "-web-requests-scaling").inputs
    found = {
        "webMaxCount": target["maxCapacity"],
        "webRequestsPerTarget": policy["targetTrackingScalingPolicyConfiguration"]["targetValue"],
    }
    assert found[key] == int(value)


# --- 13. pinned minor version ---------------------------------------------------------------


def test_minor_upgrades_follow_config() -> None:
    pinned = run_program(
        {**example_config("dev"), "dbEngineVersion": "18.1", "dbAutoMinorVersionUpgrade": "false"},
        "dev",
    )
    instance = pinned.one("aws:rds/instance:Instance").inputs
    assert instance["engineVersion"] == "18.1"
    assert instance["autoMinorVersionUpgrade"] is False


#: What the scheduled audit calls through each endpoint (release/audit/aws.py,
#: rollback/store.py): without NAT, an action an endpoint policy omits is denied.
AUDIT_CALLS_BY_ENDPOINT = {
    "rds": {"rds:DescribeDBInstances", "rds:DescribeDBParameters", "rds:DescribeDBSnapshots"},
    "ecs": {
        "ecs:DescribeTaskDefinition",
        "ecs:DescribeServices",
        "ecs:ListTasks",  # the API probe's web task (release/audit/api.py)
        "ecs:DescribeTasks",
    },
    "monitoring": {"cloudwatch:GetMetricStatistics", "cloudwatch:PutMetricData"},
    "sqs": {"sqs:GetQueueAttributes"},
    "s3": {
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
        "s3:GetBucketVersioning",
        "s3:GetBucketObjectLockConfiguration",
        "s3:GetBucketPublicAccessBlock",
        "s3:GetBucketAcl",
        "s3:GetBucketPolicy",
    },
}


def test_endpoint_policies_let_the_scheduled_audit_read_what_it_checks(run: ProgramRun) -> None:
    for service, calls in AUDIT_CALLS_BY_ENDPOINT.items():
        allowed = {a for s in endpoint_document(run, service)["Statement"] for a in s["Action"]}
        assert sorted(calls - allowed) == [], service
    rds = endpoint_document(run, "rds")["Statement"]
    [parameters] = [s for s in rds if s["Action"] == ["rds:DescribeDBParameters"]]
    audit_role = run.one("aws:iam/rolePolicy:RolePolicy", "-audit-task-policy")
    [granted] = [
        s
        for s in json.loads(audit_role.inputs["policy"])["Statement"]
        if s["Sid"] == "InspectParameterGroup"
    ]
    assert parameters["Resource"] == granted["Resource"]  # this stack's parameter group only
    ecs = endpoint_document(run, "ecs")["Statement"]
    [services] = [s for s in ecs if s["Action"] == ["ecs:DescribeServices"]]
    cluster = run.exports[outputs.CLUSTER_NAME]
    assert services["Resource"] == [f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:service/{cluster}/*"]
    [list_tasks] = [s for s in ecs if s["Action"] == ["ecs:ListTasks"]]
    [describe_tasks] = [s for s in ecs if s["Action"] == ["ecs:DescribeTasks"]]
    assert describe_tasks["Resource"] == [f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:task/{cluster}/*"]
    # ListTasks has no task resource type: "*", but only for calls naming this cluster.
    assert list_tasks["Resource"] == "*"
    assert list_tasks["Condition"] == {
        "StringEquals": {"aws:PrincipalAccount": ACCOUNT_ID},
        "ArnEquals": {"ecs:cluster": run.exports[outputs.CLUSTER_ARN]},
    }
    for statement in ecs:
        assert statement["Condition"]["StringEquals"] == {"aws:PrincipalAccount": ACCOUNT_ID}


def test_the_ecs_endpoint_keeps_the_workers_task_protection(run: ProgramRun) -> None:
    """The ECS endpoint (added for the audit) must not deny what the worker already does."""
    worker_role = run.one("aws:iam/rolePolicy:RolePolicy", "-worker-task-policy")
    [protection] = [
        s
        for s in json.loads(worker_role.inputs["policy"])["Statement"]
        if s["Sid"] == "ProtectOwnTaskWhileWorking"
    ]
    ecs = endpoint_document(run, "ecs")["Statement"]
    [allowed] = [s for s in ecs if set(s["Action"]) == set(protection["Action"])]
    assert allowed["Resource"] == protection["Resource"]
