"""Passing and failing fixtures for every CrossGuard policy.

Each fixture is a tiny stack: a list of `Res` (type, props as the engine sends
them, resource options, and which other fixture resources a property comes
from). Failing fixtures are a passing baseline with one thing broken, so each
shows the exact property its policy guards. `CASES` must name every policy in
the pack; a test enforces that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from infra import outputs
from infra.tagging import (
    ENV_DEV,
    ENV_PROD,
    ROLE_ACCESS_LOGS,
    ROLE_DATABASE,
    ROLE_DEAD_LETTER_QUEUE,
    ROLE_LOAD_BALANCER,
    ROLE_MIGRATOR,
    ROLE_SCHEDULE_DEAD_LETTER_QUEUE,
    ROLE_TASK_QUEUE,
    ROLE_WEB,
    TAG_ENVIRONMENT,
    TAG_ROLE,
)
from tests.infra.harness import CapturedResource

DELETE: Final = object()
PROD: Final = {TAG_ENVIRONMENT: ENV_PROD}
DEV: Final = {TAG_ENVIRONMENT: ENV_DEV}
DIGEST: Final = "sha256:" + "ab" * 32


@dataclass
class Res:
    type: str
    props: dict[str, Any]
    name: str = "r"
    protect: bool = False
    #: property -> names of fixture resources the property's value comes from
    deps: dict[str, list[str]] = field(default_factory=dict)


def to_captured(fixture: list[Res]) -> list[CapturedResource]:
    def urn(name: str) -> str:
        found = [r for r in fixture if r.name == name]
        assert len(found) == 1, f"fixture names must be unique: {name}"
        return f"urn:pulumi:fixture::rollgate::{found[0].type}::{name}"

    present = {r.name for r in fixture}
    return [
        CapturedResource(
            type=r.type,
            name=r.name,
            urn=urn(r.name),
            parent=None,
            custom=True,
            inputs=r.props,
            outputs=r.props,
            protect=r.protect,
            depends_on=[],
            property_dependencies={
                prop: [urn(n) for n in names if n in present] for prop, names in r.deps.items()
            },
            ignore_changes=[],
        )
        for r in fixture
    ]


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`base` with `changes` applied; a value of DELETE removes the key."""
    result = dict(base)
    for key, value in changes.items():
        if value is DELETE:
            result.pop(key, None)
        else:
            result[key] = value
    return result


# --- baselines --------------------------------------------------------------------

RDS: Final = "aws:rds/instance:Instance"
GOOD_RDS: Final = {
    "engine": "postgres",
    "storageEncrypted": True,
    "kmsKeyId": "arn:aws:kms:eu-west-1:123456789012:key/db",
    "publiclyAccessible": False,
    "manageMasterUserPassword": True,
    "backupRetentionPeriod": 7.0,
    "skipFinalSnapshot": False,
    "finalSnapshotIdentifier": "db-final",
    "copyTagsToSnapshot": True,
    "performanceInsightsEnabled": True,
    "enabledCloudwatchLogsExports": ["postgresql", "upgrade"],
    "multiAz": True,
    "deletionProtection": True,
    "vpcSecurityGroupIds": ["sg-db"],
    "tags": PROD,
}


def rds(
    protect: bool = True, name: str = "db", deps: dict[str, list[str]] | None = None, **changes: Any
) -> Res:
    return Res(RDS, with_(GOOD_RDS, **changes), name=name, protect=protect, deps=deps or {})


PARAMS: Final = "aws:rds/parameterGroup:ParameterGroup"


def params(force_ssl: str | None = "1", slow: str | None = "500") -> Res:
    parameters = []
    if force_ssl is not None:
        parameters.append({"name": "rds.force_ssl", "value": force_ssl})
    if slow is not None:
        parameters.append({"name": "log_min_duration_statement", "value": slow})
    return Res(PARAMS, {"family": "postgres18", "parameters": parameters})


QUEUE: Final = "aws:sqs/queue:Queue"
GOOD_TASK_QUEUE: Final = {
    "name": "tasks",
    "sqsManagedSseEnabled": True,
    "receiveWaitTimeSeconds": 20.0,
    "visibilityTimeoutSeconds": 600.0,
    "messageRetentionSeconds": 345600.0,
    "redrivePolicy": json.dumps(
        {"deadLetterTargetArn": "arn:aws:sqs:eu-west-1:1:dlq", "maxReceiveCount": 5}
    ),
    "tags": {TAG_ROLE: ROLE_TASK_QUEUE},
}
GOOD_DLQ: Final = {
    "name": "dlq",
    "arn": "arn:aws:sqs:eu-west-1:1:dlq",
    "sqsManagedSseEnabled": True,
    "receiveWaitTimeSeconds": 20.0,
    "messageRetentionSeconds": 1209600.0,
    "tags": {TAG_ROLE: ROLE_DEAD_LETTER_QUEUE},
}


def queue(**changes: Any) -> Res:
    return Res(
        QUEUE, with_(GOOD_TASK_QUEUE, **changes), name="tasks", deps={"redrivePolicy": ["dlq"]}
    )


def dlq(**changes: Any) -> Res:
    return Res(QUEUE, with_(GOOD_DLQ, **changes), name="dlq")


def redrive_allow() -> Res:
    return Res(
        "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy",
        {"queueUrl": "https://sqs/dlq", "redriveAllowPolicy": "{}"},
        name="allow",
        deps={"queueUrl": ["dlq"]},
    )


BUCKET: Final = "aws:s3/bucket:Bucket"


def access_log_bucket() -> Res:
    return Res(BUCKET, {"tags": {**PROD, TAG_ROLE: ROLE_ACCESS_LOGS}}, name="bucket", protect=True)


def bucket(protect: bool = True, tags: dict[str, str] | None = None) -> Res:
    return Res(BUCKET, {"tags": tags if tags is not None else PROD}, name="bucket", protect=protect)


def companion(type_suffix: str, props: dict[str, Any], *, of: str | None = "bucket") -> Res:
    return Res(
        f"aws:s3/{type_suffix}",
        {"bucket": "b", **props},
        name=type_suffix.split(":", maxsplit=1)[0],
        deps={"bucket": [of]} if of else {},
    )


def versioning(status: str = "Enabled", of: str | None = "bucket") -> Res:
    return companion(
        "bucketVersioning:BucketVersioning", {"versioningConfiguration": {"status": status}}, of=of
    )


def encryption(algorithm: str = "aws:kms", key: str | None = "arn:aws:kms:key") -> Res:
    default = {"sseAlgorithm": algorithm, **({"kmsMasterKeyId": key} if key else {})}
    return companion(
        "bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        {"rules": [{"applyServerSideEncryptionByDefault": default, "bucketKeyEnabled": True}]},
    )


def public_access_block(**changes: bool) -> Res:
    flags = {
        "blockPublicAcls": True,
        "blockPublicPolicy": True,
        "ignorePublicAcls": True,
        "restrictPublicBuckets": True,
    }
    return companion("bucketPublicAccessBlock:BucketPublicAccessBlock", {**flags, **changes})


def ownership(value: str = "BucketOwnerEnforced") -> Res:
    return companion(
        "bucketOwnershipControls:BucketOwnershipControls", {"rule": {"objectOwnership": value}}
    )


def deny_insecure(effect: str = "Deny") -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": effect,
                    "Principal": "*",
                    "Action": ["s3:*"],
                    "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


def bucket_policy(document: str) -> Res:
    return companion("bucketPolicy:BucketPolicy", {"policy": document})


def lifecycle(rule: dict[str, Any]) -> Res:
    return companion("bucketLifecycleConfiguration:BucketLifecycleConfiguration", {"rules": [rule]})


GOOD_LIFECYCLE_RULE: Final = {
    "id": "expire-noncurrent-versions",
    "status": "Enabled",
    "noncurrentVersionExpiration": {"noncurrentDays": 90.0},
}

TASK_DEFINITION: Final = "aws:ecs/taskDefinition:TaskDefinition"
HEALTH: Final = {"command": ["CMD", "true"], "interval": 15.0}


GOOD_DB_ENV: Final = [
    {"name": "PGHOST", "value": "db"},
    {"name": "PGSSLMODE", "value": "verify-full"},
    {"name": "PGSSLROOTCERT", "value": outputs.RDS_CA_BUNDLE_PATH},
]
APP_SECRET: Final = "arn:aws:secretsmanager:eu-west-1:1:secret:app-AbCdEf"
MASTER_SECRET: Final = "arn:aws:secretsmanager:eu-west-1:1:secret:rds!db-0a1b-AbCdEf"


def container(**changes: Any) -> dict[str, Any]:
    base = {
        "name": "web",
        "image": f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/rollgate@{DIGEST}",
        "essential": True,
        "environment": GOOD_DB_ENV,
        "secrets": [{"name": "PGPASSWORD", "valueFrom": f"{APP_SECRET}:password::"}],
        "healthCheck": HEALTH,
    }
    return with_(base, **changes)


def env_without(name: str, **replace: str) -> list[dict[str, str]]:
    """GOOD_DB_ENV without `name`, with `replace` values swapped in."""
    return [
        {"name": e["name"], "value": replace.get(e["name"], e["value"])}
        for e in GOOD_DB_ENV
        if e["name"] != name
    ]


def master_secret() -> list[dict[str, str]]:
    return [{"name": "PGPASSWORD", "valueFrom": f"{MASTER_SECRET}:password::"}]


def task_definition(tags: dict[str, str] | None = None, **changes: Any) -> Res:
    return Res(
        TASK_DEFINITION,
        {
            "containerDefinitions": json.dumps([container(**changes)]),
            "tags": tags if tags is not None else PROD,
        },
        name="td",
    )


SERVICE: Final = "aws:ecs/service:Service"
GOOD_SERVICE: Final = {
    "deploymentCircuitBreaker": {"enable": True, "rollback": True},
    "alarms": {"alarmNames": ["x-http-5xx-rate"], "enable": True, "rollback": True},
    "networkConfiguration": {"subnets": ["s"], "assignPublicIp": False},
    "taskDefinition": "arn:td:1",
}


def service(**changes: Any) -> Res:
    return Res(SERVICE, with_(GOOD_SERVICE, **changes), name="svc", deps={"taskDefinition": ["td"]})


def schedule(assign_public_ip: bool = False, dead_letter: bool = True) -> Res:
    return Res(
        "aws:scheduler/schedule:Schedule",
        {
            "target": {
                "arn": "arn:cluster",
                **({"deadLetterConfig": {"arn": "arn:aws:sqs:x:1:dl"}} if dead_letter else {}),
                "ecsParameters": {
                    "taskDefinitionArn": "arn:td:1",
                    "networkConfiguration": {"subnets": ["s"], "assignPublicIp": assign_public_ip},
                },
            }
        },
        name="schedule",
    )


LISTENER: Final = "aws:lb/listener:Listener"


def https_listener(policy: str = "ELBSecurityPolicy-TLS13-1-2-2021-06") -> Res:
    return Res(
        LISTENER,
        {
            "protocol": "HTTPS",
            "port": 443.0,
            "sslPolicy": policy,
            "certificateArn": "arn:acm",
            "tags": PROD,
        },
    )


def http_listener(action: dict[str, Any], tags: dict[str, str]) -> Res:
    return Res(
        LISTENER, {"protocol": "HTTP", "port": 80.0, "defaultActions": [action], "tags": tags}
    )


REDIRECT: Final = {
    "type": "redirect",
    "redirect": {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"},
}
FORWARD: Final = {"type": "forward", "targetGroupArn": "arn:tg"}

INGRESS: Final = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG: Final = "aws:ec2/securityGroup:SecurityGroup"


def ingress_rule(
    role: str,
    port: float,
    name: str = "rule",
    deps: dict[str, list[str]] | None = None,
    **props: Any,
) -> Res:
    return Res(
        INGRESS,
        {"ipProtocol": "tcp", "fromPort": port, "toPort": port, "tags": {TAG_ROLE: role}, **props},
        name=name,
        deps=deps or {},
    )


def sg(role: str, name: str) -> Res:
    return Res(SG, {"id": f"{name}-id", "tags": {TAG_ROLE: role}}, name=name)


def db_network(rule: Res, attached: str = "db-sg") -> list[Res]:
    return [
        sg(ROLE_DATABASE, "db-sg"),
        sg(ROLE_WEB, "web-sg"),
        sg(ROLE_LOAD_BALANCER, "lb-sg"),
        rule,
        rds(deps={"vpcSecurityGroupIds": [attached]}),
    ]


def role_policy(*statements: dict[str, Any]) -> Res:
    return Res(
        "aws:iam/rolePolicy:RolePolicy",
        {
            "role": "r",
            "policy": json.dumps({"Version": "2012-10-17", "Statement": list(statements)}),
        },
    )


def allow(actions: list[str], resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resource, **extra}


NAMESPACE_CONDITION: Final = {"StringEquals": {"cloudwatch:namespace": outputs.METRIC_NAMESPACE}}
#: Calls naming one cluster (what an unscoped ecs:ListTasks must carry).
ONE_CLUSTER_CONDITION: Final = {"ArnEquals": {"ecs:cluster": "arn:aws:ecs:eu-west-1:1:cluster/c"}}

ALARM: Final = "aws:cloudwatch/metricAlarm:MetricAlarm"


def alarm(name: str, namespace: str, metric: str, **props: Any) -> Res:
    return Res(
        ALARM,
        {"namespace": namespace, "metricName": metric, "alarmActions": ["arn:sns"], **props},
        name=name,
    )


def all_alarms(dlq_queue_name: str = "dlq", skip: str | None = None) -> list[Res]:
    fixture = [
        dlq(),
        alarm(
            "dlq-depth",
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": dlq_queue_name},
        ),
        alarm("age", "AWS/SQS", "ApproximateAgeOfOldestMessage"),
        Res(
            ALARM,
            {
                "alarmActions": ["arn:sns"],
                "metricQueries": [
                    {
                        "id": "t",
                        "metric": {
                            "namespace": "AWS/ApplicationELB",
                            "metricName": "HTTPCode_Target_5XX_Count",
                        },
                    },
                    {"id": "rate", "expression": "t"},
                ],
            },
            name="5xx",
        ),
        alarm("cpu", "AWS/RDS", "CPUUtilization"),
        alarm("connections", "AWS/RDS", "DatabaseConnections"),
        alarm("storage", "AWS/RDS", "FreeStorageSpace"),
        alarm("snapshot", outputs.METRIC_NAMESPACE, outputs.METRIC_SNAPSHOT_AGE_SECONDS),
        alarm("restore", outputs.METRIC_NAMESPACE, outputs.METRIC_RESTORE_SECONDS),
        alarm("audit", outputs.METRIC_NAMESPACE, outputs.METRIC_AUDIT_FAILURES),
        alarm("per-gb", outputs.METRIC_NAMESPACE, outputs.METRIC_SNAPSHOT_MEGABYTES),
        alarm("webhooks", outputs.METRIC_NAMESPACE, outputs.METRIC_WEBHOOK_REJECTED),
        alarm("retries", outputs.METRIC_NAMESPACE, outputs.METRIC_TASK_RETRIES),
        alarm("duration", outputs.METRIC_NAMESPACE, outputs.METRIC_TASK_DURATION_MS),
        alarm("outbox", outputs.METRIC_NAMESPACE, outputs.METRIC_OUTBOX_PUBLISH_FAILURES),
    ]
    return [r for r in fixture if r.name != skip]


ENDPOINT: Final = "aws:ec2/vpcEndpoint:VpcEndpoint"
SCOPED_ENDPOINT_POLICY: Final = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": ["sqs:SendMessage"],
            "Resource": ["arn:aws:sqs:eu-west-1:1:tasks"],
            "Condition": {"StringEquals": {"aws:PrincipalAccount": "1"}},
        }
    ],
}
FULL_ACCESS_POLICY: Final = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}],
}


def endpoint(**props: Any) -> Res:
    return Res(
        ENDPOINT,
        {"id": "vpce-1", "serviceName": "com.amazonaws.eu-west-1.sqs", **props},
        name="endpoint",
    )


def endpoint_policy(document: dict[str, Any], of: str = "endpoint") -> Res:
    return Res(
        "aws:ec2/vpcEndpointPolicy:VpcEndpointPolicy",
        {"vpcEndpointId": "vpce-x", "policy": json.dumps(document)},
        name="endpoint-policy",
        deps={"vpcEndpointId": [of]},
    )


def load_balancer(**props: Any) -> Res:
    return Res(
        "aws:lb/loadBalancer:LoadBalancer",
        with_(
            {
                "loadBalancerType": "application",
                "accessLogs": {"bucket": "logs", "prefix": "alb", "enabled": True},
            },
            **props,
        ),
        name="alb",
    )


# --- the cases --------------------------------------------------------------------

#: policy name -> (passing fixtures, failing fixtures)
CASES: Final[dict[str, tuple[list[list[Res]], list[list[Res]]]]] = {
    "rds-encrypted-with-cmk": (
        [[rds()]],
        [[rds(storageEncrypted=False)], [rds(kmsKeyId=DELETE)]],
    ),
    "rds-not-public": ([[rds()]], [[rds(publiclyAccessible=True)]]),
    "rds-managed-master-password": (
        [[rds()]],
        [[rds(manageMasterUserPassword=False)], [rds(password="fixture-not-a-secret")]],
    ),
    "rds-backups": (
        [[rds()], [rds(backupRetentionPeriod=35.0)]],
        [
            [rds(backupRetentionPeriod=1.0)],
            [rds(skipFinalSnapshot=True)],
            [rds(finalSnapshotIdentifier=DELETE)],
            [rds(copyTagsToSnapshot=False)],
        ],
    ),
    "rds-observability": (
        [[rds()]],
        [[rds(performanceInsightsEnabled=False)], [rds(enabledCloudwatchLogsExports=["upgrade"])]],
    ),
    "rds-prod-resilience": (
        [[rds()], [rds(protect=False, multiAz=False, deletionProtection=False, tags=DEV)]],
        [[rds(multiAz=False)], [rds(deletionProtection=False)], [rds(protect=False)]],
    ),
    "rds-parameter-group-tls": (
        [[params()], [params(slow="0")]],
        [
            [params(force_ssl="0")],
            [params(force_ssl=None)],
            [params(slow=None)],
            [params(slow="-1")],
        ],
    ),
    "sqs-encrypted": (
        [[queue()], [queue(sqsManagedSseEnabled=DELETE, kmsMasterKeyId="alias/q")]],
        [[queue(sqsManagedSseEnabled=False)]],
    ),
    "sqs-long-polling": (
        [[queue()]],
        [[queue(receiveWaitTimeSeconds=0.0)], [queue(receiveWaitTimeSeconds=DELETE)]],
    ),
    "sqs-task-queue-redrive": (
        [[queue()], [dlq()], [dlq(tags={TAG_ROLE: ROLE_SCHEDULE_DEAD_LETTER_QUEUE})]],
        [
            [queue(redrivePolicy=DELETE)],
            [
                queue(
                    redrivePolicy=json.dumps(
                        {"deadLetterTargetArn": "arn:dlq", "maxReceiveCount": 0}
                    )
                )
            ],
        ],
    ),
    "sqs-dead-letter-queue": (
        [[queue(), dlq(), redrive_allow()]],
        [
            [queue(), dlq(messageRetentionSeconds=345600.0), redrive_allow()],
            [queue(messageRetentionSeconds=1209600.0), dlq(), redrive_allow()],
            [queue(), dlq()],
        ],
    ),
    "s3-versioning": (
        [[bucket(), versioning()]],
        [[bucket()], [bucket(), versioning("Suspended")], [bucket(), versioning(of=None)]],
    ),
    "s3-kms-encryption": (
        [[bucket(), encryption()], [access_log_bucket(), encryption("AES256", None)]],
        [
            [bucket()],
            [bucket(), encryption("AES256", None)],
            [bucket(), encryption("aws:kms", None)],
            [access_log_bucket()],
        ],
    ),
    "s3-public-access-blocked": (
        [[bucket(), public_access_block()]],
        [[bucket()], [bucket(), public_access_block(restrictPublicBuckets=False)]],
    ),
    "s3-owner-enforced": (
        [[bucket(), ownership()]],
        [[bucket()], [bucket(), ownership("ObjectWriter")]],
    ),
    "s3-tls-only": (
        [[bucket(), bucket_policy(deny_insecure())]],
        [[bucket()], [bucket(), bucket_policy(deny_insecure("Allow"))]],
    ),
    "s3-noncurrent-version-lifecycle": (
        [[bucket(), lifecycle(GOOD_LIFECYCLE_RULE)]],
        [
            [bucket()],
            [bucket(), lifecycle(with_(GOOD_LIFECYCLE_RULE, status="Disabled"))],
            [
                bucket(),
                lifecycle(
                    with_(
                        GOOD_LIFECYCLE_RULE,
                        noncurrentVersionExpiration=DELETE,
                        expiration={"days": 30.0},
                    )
                ),
            ],
        ],
    ),
    "prod-stateful-protected": (
        [[bucket()], [bucket(protect=False, tags=DEV)], [rds()]],
        [[bucket(protect=False)], [rds(protect=False)]],
    ),
    "ecs-secrets-not-in-environment": (
        [[task_definition()]],
        [
            [task_definition(environment=[{"name": "DB_PASSWORD", "value": "x"}])],
            [task_definition(environment=[{"name": "STRIPE_API_KEY", "value": "x"}])],
        ],
    ),
    "ecs-db-tls-verified": (
        [[task_definition()], [task_definition(environment=[{"name": "OTHER", "value": "x"}])]],
        [
            [task_definition(environment=env_without("PGSSLMODE"))],
            [task_definition(environment=env_without("X", PGSSLMODE="require"))],
            [task_definition(environment=env_without("PGSSLROOTCERT"))],
        ],
    ),
    "db-master-secret-migrator-only": (
        [
            [task_definition()],
            [task_definition(tags={**PROD, TAG_ROLE: ROLE_MIGRATOR}, secrets=master_secret())],
        ],
        [
            [task_definition(secrets=master_secret())],
            [task_definition(tags={**PROD, TAG_ROLE: ROLE_WEB}, secrets=master_secret())],
        ],
    ),
    "ecs-image-pinned-in-prod": (
        [[task_definition()], [task_definition(tags=DEV, image="repo/rollgate:main")]],
        [
            [task_definition(image="repo/rollgate:main")],
            [task_definition(image="repo/rollgate@sha256:short")],
        ],
    ),
    "ecs-deployment-rollback": (
        [[service()]],
        [
            [service(deploymentCircuitBreaker={"enable": True, "rollback": False})],
            [service(deploymentCircuitBreaker=DELETE)],
            [service(alarms=DELETE)],
            [service(alarms={"alarmNames": [], "enable": True, "rollback": True})],
            [service(alarms={"alarmNames": ["a"], "enable": True, "rollback": False})],
        ],
    ),
    "tasks-without-public-ip": (
        [[service()], [schedule()]],
        [
            [service(networkConfiguration={"subnets": ["s"], "assignPublicIp": True})],
            [service(networkConfiguration=DELETE)],
            [schedule(assign_public_ip=True)],
        ],
    ),
    "ecs-service-health-checks": (
        [[task_definition(), service()]],
        [[task_definition(healthCheck=DELETE), service()]],
    ),
    "alb-access-logs": (
        [[load_balancer()], [load_balancer(loadBalancerType="network", accessLogs=DELETE)]],
        [
            [load_balancer(accessLogs=DELETE)],
            [load_balancer(accessLogs={"bucket": "logs", "enabled": False})],
        ],
    ),
    "scheduled-tasks-dead-letter": (
        [[schedule()]],
        [[schedule(dead_letter=False)]],
    ),
    "vpc-endpoint-policies": (
        [
            [endpoint(), endpoint_policy(SCOPED_ENDPOINT_POLICY)],
            [endpoint(policy=json.dumps(SCOPED_ENDPOINT_POLICY))],
        ],
        [
            [endpoint()],
            [endpoint(), endpoint_policy(SCOPED_ENDPOINT_POLICY, of="elsewhere")],
            [endpoint(), endpoint_policy(FULL_ACCESS_POLICY)],
            [endpoint(policy=json.dumps(FULL_ACCESS_POLICY))],
        ],
    ),
    "alb-listener-tls": (
        [[https_listener()], [http_listener(REDIRECT, PROD)], [http_listener(FORWARD, DEV)]],
        [
            [https_listener("ELBSecurityPolicy-2016-08")],
            [http_listener(FORWARD, PROD)],
        ],
    ),
    "sg-no-open-ingress": (
        [
            [ingress_rule(ROLE_LOAD_BALANCER, 443.0, cidrIpv4="0.0.0.0/0")],
            [ingress_rule(ROLE_DATABASE, 5432.0, referencedSecurityGroupId="sg-web")],
        ],
        [
            [ingress_rule(ROLE_WEB, 8000.0, cidrIpv4="0.0.0.0/0")],
            [ingress_rule(ROLE_LOAD_BALANCER, 22.0, cidrIpv4="0.0.0.0/0")],
            [ingress_rule(ROLE_LOAD_BALANCER, 443.0, cidrIpv6="::/0", toPort=444.0)],
            [
                Res(
                    SG,
                    {"ingress": [{"fromPort": 22.0, "toPort": 22.0, "cidrBlocks": ["0.0.0.0/0"]}]},
                )
            ],
        ],
    ),
    "db-reachable-only-from-app-tiers": (
        [
            db_network(
                ingress_rule(
                    ROLE_DATABASE,
                    5432.0,
                    deps={"securityGroupId": ["db-sg"], "referencedSecurityGroupId": ["web-sg"]},
                )
            )
        ],
        [
            db_network(
                ingress_rule(
                    ROLE_DATABASE,
                    5432.0,
                    deps={"securityGroupId": ["db-sg"]},
                    cidrIpv4="10.0.0.0/8",
                )
            ),
            db_network(
                ingress_rule(
                    ROLE_DATABASE,
                    5432.0,
                    deps={"securityGroupId": ["db-sg"], "referencedSecurityGroupId": ["lb-sg"]},
                )
            ),
            db_network(
                ingress_rule(
                    ROLE_DATABASE,
                    5432.0,
                    deps={"securityGroupId": ["db-sg"], "referencedSecurityGroupId": ["web-sg"]},
                ),
                attached="web-sg",
            ),
        ],
    ),
    "kms-key-rotation": (
        [[Res("aws:kms/key:Key", {"enableKeyRotation": True})]],
        [[Res("aws:kms/key:Key", {"enableKeyRotation": False})], [Res("aws:kms/key:Key", {})]],
    ),
    "iam-least-privilege": (
        [
            [role_policy(allow(["sqs:SendMessage"], ["arn:aws:sqs:eu-west-1:1:tasks"]))],
            [role_policy(allow(["ecr:GetAuthorizationToken"], "*"))],
            [role_policy(allow(["cloudwatch:PutMetricData"], "*", Condition=NAMESPACE_CONDITION))],
            [role_policy({"Effect": "Deny", "Action": "*", "Resource": "*"})],
            [role_policy(allow(["ecs:ListTasks"], "*", Condition=ONE_CLUSTER_CONDITION))],
        ],
        [
            [role_policy(allow(["*"], ["arn:x"]))],
            # ListTasks on "*": only with a condition naming one cluster.
            [role_policy(allow(["ecs:ListTasks"], "*"))],
            [
                role_policy(
                    allow(
                        ["ecs:ListTasks"],
                        "*",
                        Condition={
                            "ArnEquals": {"ecs:cluster": "arn:aws:ecs:eu-west-1:1:cluster/*"}
                        },
                    )
                )
            ],
            [role_policy(allow(["s3:*"], ["arn:aws:s3:::b"]))],
            [role_policy(allow(["s3:GetObject"], "*"))],
            [role_policy(allow(["cloudwatch:PutMetricData"], "*"))],
            [role_policy({"Effect": "Allow", "NotAction": ["iam:*"], "Resource": ["arn:x"]})],
            [
                Res(
                    "aws:iam/role:Role",
                    {"managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]},
                )
            ],
        ],
    ),
    "logs-encrypted": (
        [[Res("aws:cloudwatch/logGroup:LogGroup", {"kmsKeyId": "arn:aws:kms:x:1:key/logs"})]],
        [[Res("aws:cloudwatch/logGroup:LogGroup", {"retentionInDays": 30.0})]],
    ),
    "logs-retention": (
        [[Res("aws:cloudwatch/logGroup:LogGroup", {"retentionInDays": 30.0})]],
        [
            [Res("aws:cloudwatch/logGroup:LogGroup", {})],
            [Res("aws:cloudwatch/logGroup:LogGroup", {"retentionInDays": 0.0})],
        ],
    ),
    "alarms-notify": (
        [[alarm("a", "AWS/RDS", "CPUUtilization")]],
        [
            [alarm("a", "AWS/RDS", "CPUUtilization", alarmActions=[])],
            [alarm("a", "AWS/RDS", "CPUUtilization", actionsEnabled=False)],
        ],
    ),
    "leading-indicator-alarms": (
        [all_alarms()],
        [
            all_alarms(skip="restore"),
            all_alarms(skip="5xx"),
            all_alarms(skip="snapshot"),
            all_alarms(skip="webhooks"),
            all_alarms(skip="per-gb"),
            all_alarms(dlq_queue_name="tasks"),
            [
                *all_alarms(),
                Res(
                    QUEUE,
                    {
                        **GOOD_DLQ,
                        "name": "schedule-dl",
                        "tags": {TAG_ROLE: ROLE_SCHEDULE_DEAD_LETTER_QUEUE},
                    },
                    name="schedule-dl",
                ),
            ],
        ],
    ),
}
