"""Rollgate's CrossGuard policies: the security and reliability properties of infra/.

Each policy is a small generator of violation messages over the resource's
properties (camelCase, as the engine passes them), wrapped into a
`ResourceValidationPolicy` or `StackValidationPolicy`. `POLICIES` is the pack;
`infra/policy/__main__.py` serves it (building a `PolicyPack` starts a server, so
nothing here builds one) and tests call the validate functions directly.

"Prod" is read from the ``rollgate:environment`` tag the program stamps on every
taggable resource. Rules marked prod-only apply to those resources; every other
rule applies to every stack. The pack's enforcement level is mandatory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from pulumi_policy import (
    Policy,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra import outputs
from infra.iam import CLUSTER_CONDITIONED_ACTIONS, UNSCOPED_ACTIONS
from infra.tagging import (
    DATABASE_CLIENT_ROLES,
    ENV_PROD,
    ROLE_ACCESS_LOGS,
    ROLE_DATABASE,
    ROLE_DEAD_LETTER_QUEUE,
    ROLE_LOAD_BALANCER,
    ROLE_MIGRATOR,
    ROLE_SCHEDULE_DEAD_LETTER_QUEUE,
    TAG_ENVIRONMENT,
    TAG_ROLE,
)

# Resource type tokens.
RDS_INSTANCE: Final = "aws:rds/instance:Instance"
RDS_PARAMETER_GROUP: Final = "aws:rds/parameterGroup:ParameterGroup"
SQS_QUEUE: Final = "aws:sqs/queue:Queue"
SQS_REDRIVE_ALLOW: Final = "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy"
S3_BUCKET: Final = "aws:s3/bucket:Bucket"
S3_VERSIONING: Final = "aws:s3/bucketVersioning:BucketVersioning"
S3_ENCRYPTION: Final = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
)
S3_PUBLIC_ACCESS_BLOCK: Final = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
S3_OWNERSHIP: Final = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
S3_POLICY: Final = "aws:s3/bucketPolicy:BucketPolicy"
S3_LIFECYCLE: Final = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
ECS_TASK_DEFINITION: Final = "aws:ecs/taskDefinition:TaskDefinition"
ECS_SERVICE: Final = "aws:ecs/service:Service"
SCHEDULE: Final = "aws:scheduler/schedule:Schedule"
LISTENER: Final = "aws:lb/listener:Listener"
SECURITY_GROUP: Final = "aws:ec2/securityGroup:SecurityGroup"
INGRESS_RULE: Final = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
KMS_KEY: Final = "aws:kms/key:Key"
IAM_ROLE: Final = "aws:iam/role:Role"
IAM_ROLE_POLICY: Final = "aws:iam/rolePolicy:RolePolicy"
LOG_GROUP: Final = "aws:cloudwatch/logGroup:LogGroup"
METRIC_ALARM: Final = "aws:cloudwatch/metricAlarm:MetricAlarm"
VPC_ENDPOINT: Final = "aws:ec2/vpcEndpoint:VpcEndpoint"
VPC_ENDPOINT_POLICY: Final = "aws:ec2/vpcEndpointPolicy:VpcEndpointPolicy"
LOAD_BALANCER: Final = "aws:lb/loadBalancer:LoadBalancer"

#: Queue roles that are dead-letter queues (no redrive of their own, an alarm on depth).
DEAD_LETTER_QUEUE_ROLES: Final = frozenset(
    {ROLE_DEAD_LETTER_QUEUE, ROLE_SCHEDULE_DEAD_LETTER_QUEUE}
)
#: RDS names the master secret it manages ``rds!db-<id>``; its ARN carries that name.
RDS_MANAGED_SECRET: Final = re.compile(r":secret:rds!")

MIN_BACKUP_RETENTION_DAYS: Final = 7
#: ALB TLS policies that allow only TLS 1.2 and 1.3.
MODERN_TLS_POLICIES: Final = frozenset(
    {
        "ELBSecurityPolicy-TLS13-1-2-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
        "ELBSecurityPolicy-TLS13-1-3-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-FIPS-2023-04",
        "ELBSecurityPolicy-TLS13-1-3-FIPS-2023-04",
        "ELBSecurityPolicy-TLS-1-2-2017-01",
        "ELBSecurityPolicy-TLS-1-2-Ext-2018-06",
    }
)
OPEN_CIDRS: Final = frozenset({"0.0.0.0/0", "::/0"})
PUBLIC_LISTENER_PORTS: Final = frozenset({80, 443})
SECRET_LIKE_NAME: Final = re.compile(
    r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL", re.IGNORECASE
)
DIGEST_PINNED: Final = re.compile(r"@sha256:[0-9a-f]{64}$")

#: Leading indicators that must each have an alarm: (namespace, metric, what).
REQUIRED_ALARM_METRICS: Final = (
    ("AWS/SQS", "ApproximateAgeOfOldestMessage", "age of the oldest task message"),
    ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "5xx rate"),
    ("AWS/RDS", "CPUUtilization", "database CPU"),
    ("AWS/RDS", "DatabaseConnections", "database connections"),
    ("AWS/RDS", "FreeStorageSpace", "database free storage"),
    (outputs.METRIC_NAMESPACE, outputs.METRIC_SNAPSHOT_AGE_SECONDS, "snapshot age"),
    (outputs.METRIC_NAMESPACE, outputs.METRIC_RESTORE_SECONDS, "restore seconds"),
    (outputs.METRIC_NAMESPACE, outputs.METRIC_AUDIT_FAILURES, "audit failures"),
    # Trend alarms (issue 12): restore time per GB, and the app's leading indicators.
    (outputs.METRIC_NAMESPACE, outputs.METRIC_SNAPSHOT_MEGABYTES, "restore time per GB"),
    (outputs.METRIC_NAMESPACE, outputs.METRIC_WEBHOOK_REJECTED, "rejected webhooks"),
    (outputs.METRIC_NAMESPACE, outputs.METRIC_TASK_RETRIES, "task retries"),
    (outputs.METRIC_NAMESPACE, outputs.METRIC_TASK_DURATION_MS, "task run time"),
    (outputs.METRIC_NAMESPACE, outputs.METRIC_OUTBOX_PUBLISH_FAILURES, "outbox publish failures"),
)

Props = Mapping[str, Any]
ResourceCheck = Callable[[Props, ResourceValidationArgs], Iterable[str]]
StackCheck = Callable[[Sequence[PolicyResource]], Iterable[tuple[str, str | None]]]


# --- helpers ----------------------------------------------------------------------


def tags_of(props: Props) -> Mapping[str, str]:
    tags = props.get("tags")
    return tags if isinstance(tags, Mapping) else {}


def is_prod(props: Props) -> bool:
    return tags_of(props).get(TAG_ENVIRONMENT) == ENV_PROD


def role_of(props: Props) -> str | None:
    return tags_of(props).get(TAG_ROLE)


def parse_json(value: Any) -> Any:
    """A JSON-encoded property (policy documents, container definitions), decoded."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return None
    return value


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    # The engine hands policies read-only proxies (Sequence, not list) of the properties.
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    return [value]


def depends_on(resource: PolicyResource, prop: str, target: PolicyResource) -> bool:
    """Does `resource.<prop>` come from `target` (by dependency or equal identifier)?"""
    if any(dep.urn == target.urn for dep in resource.property_dependencies.get(prop, [])):
        return True
    value = resource.props.get(prop)
    identifiers = {target.props.get(key) for key in ("id", "bucket", "arn", "url")} - {None}
    return isinstance(value, str) and value in identifiers


def sources(
    resource: PolicyResource, prop: str, candidates: Iterable[PolicyResource]
) -> list[PolicyResource]:
    return [candidate for candidate in candidates if depends_on(resource, prop, candidate)]


def resource_policy(
    name: str, description: str, types: Sequence[str], check: ResourceCheck
) -> ResourceValidationPolicy:
    """A resource policy that runs `check` on resources of `types` and reports each message."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type not in types:
            return
        for message in check(args.props, args):
            report_violation(message, None)

    return ResourceValidationPolicy(name=name, description=description, validate=validate)


def stack_policy(name: str, description: str, check: StackCheck) -> StackValidationPolicy:
    """A stack policy that runs `check` over every resource and reports each message."""

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for message, urn in check(args.resources):
            report_violation(message, urn)

    return StackValidationPolicy(name=name, description=description, validate=validate)


def of_type(resources: Sequence[PolicyResource], type_: str) -> list[PolicyResource]:
    return [r for r in resources if r.resource_type == type_]


# --- database ---------------------------------------------------------------------


def rds_encrypted_with_cmk(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    if props.get("storageEncrypted") is not True:
        yield "storageEncrypted must be true"
    if not props.get("kmsKeyId"):
        yield "kmsKeyId must name a customer-managed KMS key"


def rds_not_public(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    if props.get("publiclyAccessible") is True:
        yield "publiclyAccessible must be false"


def rds_managed_master_password(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    if props.get("manageMasterUserPassword") is not True:
        yield "manageMasterUserPassword must be true (RDS keeps the password in Secrets Manager)"
    if props.get("password") or props.get("passwordWo"):
        yield "a master password must not be set in the program or its config"


def rds_backups(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    retention = props.get("backupRetentionPeriod") or 0
    if retention < MIN_BACKUP_RETENTION_DAYS:
        yield f"backupRetentionPeriod must be >= {MIN_BACKUP_RETENTION_DAYS} days, is {retention}"
    if props.get("skipFinalSnapshot") is not False:
        yield "skipFinalSnapshot must be false (take a final snapshot on delete)"
    if not props.get("finalSnapshotIdentifier"):
        yield "finalSnapshotIdentifier must be set"
    if props.get("copyTagsToSnapshot") is not True:
        yield "copyTagsToSnapshot must be true"


def rds_observability(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    if props.get("performanceInsightsEnabled") is not True:
        yield "performanceInsightsEnabled must be true"
    if "postgresql" not in as_list(props.get("enabledCloudwatchLogsExports")):
        yield "enabledCloudwatchLogsExports must include postgresql"


def rds_prod_resilience(props: Props, args: ResourceValidationArgs) -> Iterator[str]:
    if not is_prod(props):
        return
    if props.get("multiAz") is not True:
        yield "prod: multiAz must be true"
    if props.get("deletionProtection") is not True:
        yield "prod: deletionProtection must be true"
    if not args.opts.protect:
        yield "prod: the instance must have the `protect` resource option"


def rds_parameter_group(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    if not str(props.get("family", "")).startswith("postgres"):
        return
    values = {p.get("name"): str(p.get("value")) for p in as_list(props.get("parameters"))}
    if values.get("rds.force_ssl") != "1":
        yield "rds.force_ssl must be 1 (TLS only)"
    slow = values.get("log_min_duration_statement")
    if slow is None or slow == "-1":
        yield "log_min_duration_statement must be set (log slow statements)"


# --- queue ------------------------------------------------------------------------


def sqs_encrypted(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    if props.get("sqsManagedSseEnabled") is not True and not props.get("kmsMasterKeyId"):
        yield "server-side encryption must be on (sqsManagedSseEnabled or kmsMasterKeyId)"


def sqs_long_polling(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    if (props.get("receiveWaitTimeSeconds") or 0) < 1:
        yield "receiveWaitTimeSeconds must be >= 1 (long polling)"


def sqs_task_queue_redrive(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    if role_of(props) in DEAD_LETTER_QUEUE_ROLES:
        return
    redrive = parse_json(props.get("redrivePolicy"))
    if not isinstance(redrive, Mapping) or not redrive.get("deadLetterTargetArn"):
        yield "a task queue must redrive to a dead-letter queue (redrivePolicy)"
    elif int(redrive.get("maxReceiveCount") or 0) < 1:
        yield "redrivePolicy.maxReceiveCount must be >= 1"


def sqs_dead_letter_queues(resources: Sequence[PolicyResource]) -> Iterator[tuple[str, str | None]]:
    queues = of_type(resources, SQS_QUEUE)
    allow_policies = of_type(resources, SQS_REDRIVE_ALLOW)
    for queue in queues:
        redrive = parse_json(queue.props.get("redrivePolicy"))
        if not isinstance(redrive, Mapping):
            continue
        targets = [
            q
            for q in queues
            if q is not queue
            and (
                depends_on(queue, "redrivePolicy", q)
                or q.props.get("arn") == redrive.get("deadLetterTargetArn")
            )
        ]
        for dlq in targets:
            source_retention = queue.props.get("messageRetentionSeconds") or 345600
            dlq_retention = dlq.props.get("messageRetentionSeconds") or 345600
            if dlq_retention <= source_retention:
                yield (
                    f"{dlq.name} keeps messages {dlq_retention}s, not longer than its source "
                    f"{queue.name} ({source_retention}s): they would expire on arrival",
                    dlq.urn,
                )
            if not any(
                depends_on(policy, "queueUrl", dlq) for policy in allow_policies
            ) and not dlq.props.get("redriveAllowPolicy"):
                yield f"{dlq.name} needs a redrive-allow policy naming its source queue", dlq.urn


# --- bucket -----------------------------------------------------------------------


def _bucket_companions(
    resources: Sequence[PolicyResource], type_: str
) -> Iterator[tuple[PolicyResource, list[PolicyResource]]]:
    companions = of_type(resources, type_)
    for bucket in of_type(resources, S3_BUCKET):
        yield bucket, [c for c in companions if depends_on(c, "bucket", bucket)]


def s3_versioning(resources: Sequence[PolicyResource]) -> Iterator[tuple[str, str | None]]:
    for bucket, found in _bucket_companions(resources, S3_VERSIONING):
        statuses = [(c.props.get("versioningConfiguration") or {}).get("status") for c in found]
        if "Enabled" not in statuses:
            yield f"bucket {bucket.name} must have versioning Enabled", bucket.urn


def s3_kms_encryption(resources: Sequence[PolicyResource]) -> Iterator[tuple[str, str | None]]:
    for bucket, found in _bucket_companions(resources, S3_ENCRYPTION):
        if role_of(bucket.props) == ROLE_ACCESS_LOGS:
            # ELB writes access logs only with SSE-S3; such a bucket holds nothing else.
            if not any(
                (rule.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
                == "AES256"
                for c in found
                for rule in as_list(c.props.get("rules"))
            ):
                yield f"access-log bucket {bucket.name} must default to SSE-S3", bucket.urn
            continue
        ok = any(
            (rule.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
            in {"aws:kms", "aws:kms:dsse"}
            and (rule.get("applyServerSideEncryptionByDefault") or {}).get("kmsMasterKeyId")
            for c in found
            for rule in as_list(c.props.get("rules"))
        )
        if not ok:
            yield (
                f"bucket {bucket.name} must default to SSE-KMS with a customer-managed key",
                bucket.urn,
            )


def s3_public_access_blocked(
    resources: Sequence[PolicyResource],
) -> Iterator[tuple[str, str | None]]:
    keys = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    for bucket, found in _bucket_companions(resources, S3_PUBLIC_ACCESS_BLOCK):
        if not any(all(c.props.get(key) is True for key in keys) for c in found):
            yield (
                f"bucket {bucket.name} must block all public access ({', '.join(keys)})",
                bucket.urn,
            )


def s3_owner_enforced(resources: Sequence[PolicyResource]) -> Iterator[tuple[str, str | None]]:
    for bucket, found in _bucket_companions(resources, S3_OWNERSHIP):
        if not any(
            (c.props.get("rule") or {}).get("objectOwnership") == "BucketOwnerEnforced"
            for c in found
        ):
            yield (
                f"bucket {bucket.name} must set object ownership to BucketOwnerEnforced",
                bucket.urn,
            )


def _denies_insecure_transport(document: Any) -> bool:
    if not isinstance(document, Mapping):
        return False
    for item in as_list(document.get("Statement")):
        condition = (item.get("Condition") or {}).get("Bool") or {}
        if (
            item.get("Effect") == "Deny"
            and str(condition.get("aws:SecureTransport")).lower() == "false"
        ):
            return True
    return False


def s3_tls_only(resources: Sequence[PolicyResource]) -> Iterator[tuple[str, str | None]]:
    for bucket, found in _bucket_companions(resources, S3_POLICY):
        if not any(_denies_insecure_transport(parse_json(c.props.get("policy"))) for c in found):
            yield f"bucket {bucket.name} needs a policy denying requests without TLS", bucket.urn


def s3_noncurrent_lifecycle(
    resources: Sequence[PolicyResource],
) -> Iterator[tuple[str, str | None]]:
    for bucket, found in _bucket_companions(resources, S3_LIFECYCLE):
        ok = any(
            rule.get("status") == "Enabled"
            and (rule.get("noncurrentVersionExpiration") or {}).get("noncurrentDays")
            for c in found
            for rule in as_list(c.props.get("rules"))
        )
        if not ok:
            yield (
                f"bucket {bucket.name} needs an enabled lifecycle rule expiring old versions",
                bucket.urn,
            )


def prod_stateful_protected(props: Props, args: ResourceValidationArgs) -> Iterator[str]:
    if is_prod(props) and not args.opts.protect:
        yield f"prod: {args.resource_type} holds state and must have the `protect` resource option"


# --- compute ----------------------------------------------------------------------


def _containers(props: Props) -> list[Mapping[str, Any]]:
    containers = parse_json(props.get("containerDefinitions"))
    return [c for c in as_list(containers) if isinstance(c, Mapping)]


def ecs_secrets_not_in_environment(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    for container in _containers(props):
        for variable in as_list(container.get("environment")):
            name = str(variable.get("name", ""))
            if SECRET_LIKE_NAME.search(name):
                yield (
                    f"container {container.get('name')}: {name} looks like a secret; "
                    "pass it in `secrets` (valueFrom Secrets Manager), not `environment`"
                )


def _environment(container: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(v.get("name")): str(v.get("value"))
        for v in as_list(container.get("environment"))
        if isinstance(v, Mapping)
    }


def ecs_db_tls_verified(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    for container in _containers(props):
        env = _environment(container)
        if outputs.ENV_DB_HOST not in env:
            continue
        name = container.get("name")
        if env.get(outputs.ENV_DB_SSLMODE) != outputs.DB_SSLMODE:
            yield (
                f"container {name}: {outputs.ENV_DB_SSLMODE} must be {outputs.DB_SSLMODE} "
                f"(require checks neither the certificate nor the host), "
                f"is {env.get(outputs.ENV_DB_SSLMODE)!r}"
            )
        if not env.get(outputs.ENV_DB_SSLROOTCERT):
            yield (
                f"container {name}: {outputs.ENV_DB_SSLROOTCERT} must name the RDS CA bundle "
                f"in the image ({outputs.RDS_CA_BUNDLE_PATH})"
            )


def db_master_secret_migrator_only(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    if role_of(props) == ROLE_MIGRATOR:
        return
    for container in _containers(props):
        for secret in as_list(container.get("secrets")):
            value_from = str((secret or {}).get("valueFrom", ""))
            if RDS_MANAGED_SECRET.search(value_from):
                yield (
                    f"container {container.get('name')}: {secret.get('name')} comes from the "
                    "RDS master secret; only the migrator task (tag "
                    f"{TAG_ROLE}={ROLE_MIGRATOR}) may connect as the master user, others use "
                    "their service role's secret"
                )


def ecs_image_pinned_in_prod(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    if not is_prod(props):
        return
    for container in _containers(props):
        if not DIGEST_PINNED.search(str(container.get("image", ""))):
            name = container.get("name")
            yield f"prod: container {name} image must be pinned by digest (@sha256:...)"


def ecs_deployment_rollback(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    breaker = props.get("deploymentCircuitBreaker") or {}
    if not (breaker.get("enable") is True and breaker.get("rollback") is True):
        yield "deploymentCircuitBreaker must have enable and rollback true"
    alarms = props.get("alarms") or {}
    if not (
        alarms.get("enable") is True and alarms.get("rollback") is True and alarms.get("alarmNames")
    ):
        yield "alarms must name CloudWatch alarms, with enable and rollback true"


def tasks_without_public_ip(props: Props, args: ResourceValidationArgs) -> Iterator[str]:
    if args.resource_type == ECS_SERVICE:
        network = props.get("networkConfiguration") or {}
    else:
        ecs = (props.get("target") or {}).get("ecsParameters")
        if not ecs:
            return  # a schedule that starts no ECS task
        network = ecs.get("networkConfiguration") or {}
    if not network:
        yield "tasks must run in awsvpc mode with an explicit networkConfiguration"
    elif network.get("assignPublicIp") is True:
        yield "tasks must not get a public IP (assignPublicIp false)"


def ecs_service_health_checks(
    resources: Sequence[PolicyResource],
) -> Iterator[tuple[str, str | None]]:
    definitions = of_type(resources, ECS_TASK_DEFINITION)
    for service in of_type(resources, ECS_SERVICE):
        for definition in sources(service, "taskDefinition", definitions):
            for container in _containers(definition.props):
                if container.get("essential", True) and not (
                    container.get("healthCheck") or {}
                ).get("command"):
                    yield (
                        f"{service.name}: container {container.get('name')} has no health check",
                        definition.urn,
                    )


def alb_access_logs(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    if props.get("loadBalancerType", "application") != "application":
        return
    logs = props.get("accessLogs") or {}
    if logs.get("enabled") is not True or not logs.get("bucket"):
        yield "accessLogs must be enabled, into a bucket"


def scheduled_tasks_dead_letter(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    target = props.get("target") or {}
    if not target.get("ecsParameters"):
        return
    if not (target.get("deadLetterConfig") or {}).get("arn"):
        yield "a schedule that runs a task needs target.deadLetterConfig (failed runs vanish)"


def alb_listener_tls(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    protocol = props.get("protocol")
    if protocol == "HTTPS":
        if props.get("sslPolicy") not in MODERN_TLS_POLICIES:
            yield f"HTTPS listener must use a TLS 1.2+ policy, not {props.get('sslPolicy')!r}"
        if not props.get("certificateArn"):
            yield "HTTPS listener needs a certificateArn"
        return
    actions = as_list(props.get("defaultActions"))
    redirects = all(
        a.get("type") == "redirect" and (a.get("redirect") or {}).get("protocol") == "HTTPS"
        for a in actions
    )
    if actions and redirects:
        return
    if is_prod(props):
        yield f"prod: a {protocol} listener may only redirect to HTTPS"


# --- network ----------------------------------------------------------------------


def sg_no_open_ingress(props: Props, args: ResourceValidationArgs) -> Iterator[str]:
    if args.resource_type == SECURITY_GROUP:
        for rule in as_list(props.get("ingress")):
            cidrs = set(as_list(rule.get("cidrBlocks"))) | set(as_list(rule.get("ipv6CidrBlocks")))
            if cidrs & OPEN_CIDRS:
                yield "inline ingress open to the internet; only load-balancer rules may be open"
        return
    cidrs = {props.get("cidrIpv4"), props.get("cidrIpv6")} & OPEN_CIDRS
    if not cidrs:
        return
    if role_of(props) != ROLE_LOAD_BALANCER:
        yield f"ingress from {', '.join(sorted(cidrs))} is allowed on the load balancer only"
    elif props.get("fromPort") not in PUBLIC_LISTENER_PORTS or props.get("toPort") != props.get(
        "fromPort"
    ):
        yield f"the load balancer may only be open on ports {sorted(PUBLIC_LISTENER_PORTS)}"


def db_reachable_only_from_app_tiers(
    resources: Sequence[PolicyResource],
) -> Iterator[tuple[str, str | None]]:
    groups = of_type(resources, SECURITY_GROUP)
    db_groups = [g for g in groups if role_of(g.props) == ROLE_DATABASE]
    client_groups = [g for g in groups if role_of(g.props) in DATABASE_CLIENT_ROLES]
    for rule in of_type(resources, INGRESS_RULE):
        if not sources(rule, "securityGroupId", db_groups):
            continue
        if (
            rule.props.get("cidrIpv4")
            or rule.props.get("cidrIpv6")
            or rule.props.get("prefixListId")
        ):
            yield (
                f"{rule.name}: the database accepts no address ranges, only app security groups",
                rule.urn,
            )
        elif not sources(rule, "referencedSecurityGroupId", client_groups):
            yield (
                f"{rule.name}: the database is reachable only from web, worker and audit",
                rule.urn,
            )
    for instance in of_type(resources, RDS_INSTANCE):
        attached = [g for g in groups if depends_on_any(instance, "vpcSecurityGroupIds", g)]
        if not attached or any(role_of(g.props) != ROLE_DATABASE for g in attached):
            yield f"{instance.name} must use only the database security group", instance.urn


def depends_on_any(resource: PolicyResource, prop: str, target: PolicyResource) -> bool:
    """Like `depends_on` for list-valued properties."""
    if any(dep.urn == target.urn for dep in resource.property_dependencies.get(prop, [])):
        return True
    return target.props.get("id") in as_list(resource.props.get(prop))


def _endpoint_policy_documents(
    endpoint: PolicyResource, policies: Sequence[PolicyResource]
) -> list[Any]:
    documents = [parse_json(p.props.get("policy")) for p in policies]
    if endpoint.props.get("policy"):
        documents.append(parse_json(endpoint.props.get("policy")))
    return documents


def vpc_endpoint_policies(
    resources: Sequence[PolicyResource],
) -> Iterator[tuple[str, str | None]]:
    endpoint_policies = of_type(resources, VPC_ENDPOINT_POLICY)
    for endpoint in of_type(resources, VPC_ENDPOINT):
        attached = sources_of(endpoint, endpoint_policies, "vpcEndpointId")
        documents = _endpoint_policy_documents(endpoint, attached)
        service = endpoint.props.get("serviceName", endpoint.name)
        if not documents:
            yield (
                f"endpoint {service} has no endpoint policy: the default allows any principal "
                "to reach any resource (of any account) through it",
                endpoint.urn,
            )
        for document in documents:
            for problem in _policy_violations(document):
                yield f"endpoint {service}: {problem}", endpoint.urn


def sources_of(
    target: PolicyResource, candidates: Iterable[PolicyResource], prop: str
) -> list[PolicyResource]:
    """The `candidates` whose `prop` comes from `target`."""
    return [c for c in candidates if depends_on(c, prop, target)]


# --- identity, keys, logs, alarms --------------------------------------------------


def kms_rotation(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    if props.get("enableKeyRotation") is not True:
        yield "enableKeyRotation must be true"


def _policy_violations(document: Any) -> Iterator[str]:
    if not isinstance(document, Mapping):
        yield "policy is not a JSON policy document"
        return
    for item in as_list(document.get("Statement")):
        if item.get("Effect") != "Allow":
            continue
        actions = [str(a) for a in as_list(item.get("Action"))]
        if item.get("NotAction") or item.get("NotResource"):
            yield "NotAction / NotResource grant more than they name"
        for action in actions:
            if action == "*" or action.endswith(":*"):
                yield f"action {action} is a wildcard; name the actions"
        if "*" in as_list(item.get("Resource")):
            allowed = UNSCOPED_ACTIONS | (
                CLUSTER_CONDITIONED_ACTIONS if _names_one_cluster(item) else frozenset()
            )
            broad = sorted(set(actions) - allowed)
            if broad:
                yield (
                    f"Resource '*' is only allowed for {sorted(UNSCOPED_ACTIONS)}, and for "
                    f"{sorted(CLUSTER_CONDITIONED_ACTIONS)} under an ArnEquals ecs:cluster "
                    f"condition; not {broad}"
                )
            if "cloudwatch:PutMetricData" in actions and not item.get("Condition"):
                yield "cloudwatch:PutMetricData must be scoped by a cloudwatch:namespace condition"


def _names_one_cluster(item: Mapping[str, Any]) -> bool:
    """The statement holds an ``ArnEquals`` ``ecs:cluster`` condition naming one cluster ARN."""
    condition = item.get("Condition")
    arn_equals = condition.get("ArnEquals") if isinstance(condition, Mapping) else None
    cluster = arn_equals.get("ecs:cluster") if isinstance(arn_equals, Mapping) else None
    return isinstance(cluster, str) and ":cluster/" in cluster and "*" not in cluster


def iam_least_privilege(props: Props, args: ResourceValidationArgs) -> Iterator[str]:
    if args.resource_type == IAM_ROLE:
        if props.get("managedPolicyArns"):
            yield "attach no managed policies; write inline least-privilege policies"
        for inline in as_list(props.get("inlinePolicies")):
            yield from _policy_violations(parse_json(inline.get("policy")))
        return
    yield from _policy_violations(parse_json(props.get("policy")))


def logs_retention(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    if not props.get("retentionInDays"):
        yield "retentionInDays must be set (log groups must not keep logs forever by accident)"


def logs_encrypted(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    if not props.get("kmsKeyId"):
        yield "kmsKeyId must name the stack's log key (customer-managed KMS)"


def alarms_notify(props: Props, _: ResourceValidationArgs) -> Iterator[str]:
    if not props.get("alarmActions"):
        yield "alarmActions must notify someone (the alarm SNS topic)"
    if props.get("actionsEnabled") is False:
        yield "actionsEnabled must not be false"


def _alarm_metrics(alarm: PolicyResource) -> set[tuple[str, str]]:
    props = alarm.props
    found = set()
    if props.get("metricName"):
        found.add((str(props.get("namespace")), str(props.get("metricName"))))
    for query in as_list(props.get("metricQueries")):
        metric = query.get("metric") or {}
        if metric.get("metricName"):
            found.add((str(metric.get("namespace")), str(metric.get("metricName"))))
    return found


def _watches_dead_letter_queue(alarm: PolicyResource, dlqs: Sequence[PolicyResource]) -> bool:
    if alarm.props.get("metricName") != "ApproximateNumberOfMessagesVisible":
        return False
    queue_name = (alarm.props.get("dimensions") or {}).get("QueueName")
    return any(
        queue_name == dlq.props.get("name") or depends_on(alarm, "dimensions", dlq) for dlq in dlqs
    )


def leading_indicator_alarms(
    resources: Sequence[PolicyResource],
) -> Iterator[tuple[str, str | None]]:
    alarms = of_type(resources, METRIC_ALARM)
    watched: set[tuple[str, str]] = set()
    for alarm in alarms:
        watched |= _alarm_metrics(alarm)
    for namespace, metric, what in REQUIRED_ALARM_METRICS:
        if (namespace, metric) not in watched:
            yield f"no alarm watches {what} ({namespace} {metric})", None
    dlqs = [q for q in of_type(resources, SQS_QUEUE) if role_of(q.props) in DEAD_LETTER_QUEUE_ROLES]
    for dlq in dlqs:
        if not any(_watches_dead_letter_queue(alarm, [dlq]) for alarm in alarms):
            yield f"no alarm watches the depth of dead-letter queue {dlq.name}", dlq.urn


# --- the pack ---------------------------------------------------------------------

POLICIES: Final[list[Policy]] = [
    resource_policy(
        "rds-encrypted-with-cmk",
        "RDS storage is encrypted with a customer-managed KMS key.",
        [RDS_INSTANCE],
        rds_encrypted_with_cmk,
    ),
    resource_policy(
        "rds-not-public", "RDS is not publicly accessible.", [RDS_INSTANCE], rds_not_public
    ),
    resource_policy(
        "rds-managed-master-password",
        "The master password is generated and kept by RDS in Secrets Manager.",
        [RDS_INSTANCE],
        rds_managed_master_password,
    ),
    resource_policy(
        "rds-backups",
        "Backups are kept >= 7 days, a final snapshot is taken on delete, tags go to snapshots.",
        [RDS_INSTANCE],
        rds_backups,
    ),
    resource_policy(
        "rds-observability",
        "Performance Insights on; PostgreSQL logs exported to CloudWatch.",
        [RDS_INSTANCE],
        rds_observability,
    ),
    resource_policy(
        "rds-prod-resilience",
        "Prod databases are Multi-AZ, deletion-protected and `protect`-ed.",
        [RDS_INSTANCE],
        rds_prod_resilience,
    ),
    resource_policy(
        "rds-parameter-group-tls",
        "PostgreSQL parameter groups force TLS and log slow statements.",
        [RDS_PARAMETER_GROUP],
        rds_parameter_group,
    ),
    resource_policy("sqs-encrypted", "Queues are encrypted at rest.", [SQS_QUEUE], sqs_encrypted),
    resource_policy("sqs-long-polling", "Queues use long polling.", [SQS_QUEUE], sqs_long_polling),
    resource_policy(
        "sqs-task-queue-redrive",
        "Task queues redrive to a dead-letter queue after a bounded number of receives.",
        [SQS_QUEUE],
        sqs_task_queue_redrive,
    ),
    stack_policy(
        "sqs-dead-letter-queue",
        "A DLQ keeps messages longer than its source queue and has a redrive-allow policy.",
        sqs_dead_letter_queues,
    ),
    stack_policy("s3-versioning", "Buckets are versioned.", s3_versioning),
    stack_policy(
        "s3-kms-encryption", "Buckets default to SSE-KMS with a customer key.", s3_kms_encryption
    ),
    stack_policy(
        "s3-public-access-blocked", "Buckets block all public access.", s3_public_access_blocked
    ),
    stack_policy(
        "s3-owner-enforced", "Buckets disable ACLs (BucketOwnerEnforced).", s3_owner_enforced
    ),
    stack_policy("s3-tls-only", "Bucket policies deny requests without TLS.", s3_tls_only),
    stack_policy(
        "s3-noncurrent-version-lifecycle",
        "Buckets expire old object versions.",
        s3_noncurrent_lifecycle,
    ),
    resource_policy(
        "prod-stateful-protected",
        "Prod databases and buckets carry the `protect` resource option.",
        [RDS_INSTANCE, S3_BUCKET],
        prod_stateful_protected,
    ),
    resource_policy(
        "ecs-secrets-not-in-environment",
        "Secrets reach containers via `secrets`, never `environment`.",
        [ECS_TASK_DEFINITION],
        ecs_secrets_not_in_environment,
    ),
    resource_policy(
        "ecs-db-tls-verified",
        "Containers that connect to PostgreSQL verify its certificate and host (verify-full).",
        [ECS_TASK_DEFINITION],
        ecs_db_tls_verified,
    ),
    resource_policy(
        "db-master-secret-migrator-only",
        "Only the migrator task gets the RDS master secret.",
        [ECS_TASK_DEFINITION],
        db_master_secret_migrator_only,
    ),
    resource_policy(
        "ecs-image-pinned-in-prod",
        "Prod container images are pinned by digest.",
        [ECS_TASK_DEFINITION],
        ecs_image_pinned_in_prod,
    ),
    resource_policy(
        "ecs-deployment-rollback",
        "ECS services roll back on the circuit breaker and on CloudWatch alarms.",
        [ECS_SERVICE],
        ecs_deployment_rollback,
    ),
    resource_policy(
        "tasks-without-public-ip",
        "ECS services and scheduled tasks run without public IPs.",
        [ECS_SERVICE, SCHEDULE],
        tasks_without_public_ip,
    ),
    stack_policy(
        "ecs-service-health-checks",
        "Every container of every ECS service has a health check.",
        ecs_service_health_checks,
    ),
    resource_policy(
        "alb-access-logs",
        "Application load balancers write access logs to a bucket.",
        [LOAD_BALANCER],
        alb_access_logs,
    ),
    resource_policy(
        "scheduled-tasks-dead-letter",
        "Schedules that run ECS tasks send failed invocations to a dead-letter queue.",
        [SCHEDULE],
        scheduled_tasks_dead_letter,
    ),
    resource_policy(
        "alb-listener-tls",
        "HTTPS listeners use TLS 1.2+; in prod, HTTP listeners only redirect to HTTPS.",
        [LISTENER],
        alb_listener_tls,
    ),
    resource_policy(
        "sg-no-open-ingress",
        "Only the load balancer is open to the internet, and only on 80/443.",
        [INGRESS_RULE, SECURITY_GROUP],
        sg_no_open_ingress,
    ),
    stack_policy(
        "vpc-endpoint-policies",
        "Every VPC endpoint has a policy naming actions and resources (no full access).",
        vpc_endpoint_policies,
    ),
    stack_policy(
        "db-reachable-only-from-app-tiers",
        "The database accepts connections only from the web, worker and audit security groups.",
        db_reachable_only_from_app_tiers,
    ),
    resource_policy("kms-key-rotation", "KMS keys rotate.", [KMS_KEY], kms_rotation),
    resource_policy(
        "iam-least-privilege",
        "IAM policies name actions and resources; '*' only where AWS allows nothing narrower.",
        [IAM_ROLE, IAM_ROLE_POLICY],
        iam_least_privilege,
    ),
    resource_policy("logs-retention", "Log groups have a retention.", [LOG_GROUP], logs_retention),
    resource_policy(
        "logs-encrypted", "Log groups are encrypted with a KMS key.", [LOG_GROUP], logs_encrypted
    ),
    resource_policy(
        "alarms-notify", "Alarms notify the alarm topic.", [METRIC_ALARM], alarms_notify
    ),
    stack_policy(
        "leading-indicator-alarms",
        "Every leading indicator (queue, 5xx, database, snapshot, restore, audit) has an alarm.",
        leading_indicator_alarms,
    ),
]
