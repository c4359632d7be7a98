"""Rollgate's Pulumi program: load config -> components -> exports.

Pulumi runs this directory as a script (``main: infra/`` in Pulumi.yaml). Imports
are absolute (``infra.config``) and work because the project is pip-installed
into the virtualenv Pulumi uses (docs/infra.md).
"""

import pulumi

from infra import outputs
from infra.account import lookup_account
from infra.alarms import Alarms, AlarmsArgs, names
from infra.artifacts import Artifacts, ArtifactsArgs
from infra.audit import AuditJob, AuditJobArgs
from infra.config import load_config
from infra.database import Database, DatabaseArgs
from infra.ingress import Ingress, IngressArgs
from infra.messaging import Messaging, MessagingArgs
from infra.network import EndpointScope, Network, NetworkArgs
from infra.service import AppService, AppServiceArgs
from infra.tasks import TaskEnvironment

config = load_config()
account = lookup_account(config)
prefix = config.name_prefix
tags = config.tags

network = Network(
    prefix,
    NetworkArgs(
        cidr=config.network.vpc_cidr,
        availability_zones=account.availability_zones,
        region=account.region,
        account_id=account.account_id,
        nat_gateways=config.network.nat_gateways,
        app_port=config.service.container_port,
        db_port=config.database.port,
        https=config.service.https,
        log_retention_days=config.log_retention_days,
        log_group_prefix=config.log_group_prefix,
        tags=tags,
        partition=account.partition,
        log_group_names=[f"{config.log_group_prefix}/*", f"/aws/rds/instance/{prefix}/*"],
    ),
)
database = Database(
    f"{prefix}-db",
    DatabaseArgs(
        config=config.database,
        identifier=prefix,
        subnet_ids=network.db_subnet_ids,
        security_group_id=network.security_groups.database,
        prod=config.is_prod,
        log_retention_days=config.log_retention_days,
        log_kms_key_arn=network.log_kms_key_arn,
        tags=tags,
    ),
)
messaging = Messaging(f"{prefix}-queue", MessagingArgs(config=config.queue, tags=tags))
artifacts = Artifacts(
    f"{prefix}-artifacts",
    ArtifactsArgs(
        config=config.artifacts, alias=f"{prefix}-artifacts", prod=config.is_prod, tags=tags
    ),
)
ingress = Ingress(
    prefix,
    IngressArgs(
        vpc_id=network.vpc_id,
        public_subnet_ids=network.public_subnet_ids,
        security_group_id=network.security_groups.load_balancer,
        container_port=config.service.container_port,
        health_check_path=config.service.health_check_path,
        certificate_arn=config.service.certificate_arn,
        prod=config.is_prod,
        tags=tags,
        account_id=account.account_id,
        log_retention_days=config.log_retention_days,
        domain_name=config.service.domain_name,
        hosted_zone_id=config.service.hosted_zone_id,
        waf_web_acl_arn=config.service.waf_web_acl_arn,
    ),
)
alarms = Alarms(
    f"{prefix}-alarms",
    AlarmsArgs(
        name_prefix=prefix,
        stack=config.stack,
        account_id=account.account_id,
        partition=account.partition,
        queue_name=messaging.queue.name,
        dead_letter_queue_name=messaging.dead_letter_queue.name,
        schedule_dead_letter_queue_name=messaging.schedule_dead_letter_queue.name,
        load_balancer_arn_suffix=ingress.load_balancer.arn_suffix,
        db_instance_id=database.identifier,
        db_max_allocated_storage_gb=config.database.max_allocated_storage_gb,
        oldest_message_threshold_seconds=2 * config.queue.visibility_timeout_seconds,
        audit_interval_minutes=config.audit.interval_minutes,
        max_snapshot_age_hours=config.alarms.max_snapshot_age_hours,
        rto_seconds=config.alarms.rto_seconds,
        tags=tags,
    ),
)
task_environment = TaskEnvironment(
    stack=config.stack,
    environment=config.environment,
    region=account.region,
    queue_url=messaging.queue.url,
    dlq_url=messaging.dead_letter_queue.url,
    artifact_bucket=artifacts.bucket_name,
    db_host=database.address,
    db_port=database.port,
    db_name=config.database.db_name,
    db_instance_id=database.identifier,
)
app = AppService(
    f"{prefix}-app",
    AppServiceArgs(
        config=config.service,
        account=account,
        name_prefix=prefix,
        log_group_prefix=config.log_group_prefix,
        log_retention_days=config.log_retention_days,
        log_kms_key_arn=network.log_kms_key_arn,
        queue=config.queue,
        subnet_ids=network.app_subnet_ids,
        web_security_group_id=network.security_groups.web,
        worker_security_group_id=network.security_groups.worker,
        target_group_arn=ingress.target_group.arn,
        request_count_resource_label=pulumi.Output.concat(
            ingress.load_balancer.arn_suffix, "/", ingress.target_group.arn_suffix
        ),
        listener=ingress.listener,
        environment=task_environment,
        db_secret_arn=database.secret_arn,
        db_app_secret_arn=database.app_secret_arn,
        db_audit_secret_arn=database.audit_secret_arn,
        db_kms_key_arn=database.kms_key_arn,
        queue_arn=messaging.queue.arn,
        queue_name=messaging.queue.name,
        prod=config.is_prod,
        web_alarm_names=alarms.web_deployment_alarm_names,
        worker_alarm_names=alarms.worker_deployment_alarm_names,
        tags=tags,
    ),
)
audit = AuditJob(
    f"{prefix}-audit",
    AuditJobArgs(
        config=config.audit,
        account=account,
        # `rollgate audit` is the CLI: the tools image, not the app's.
        image=config.service.task_tools_image,
        cpu_architecture=config.service.cpu_architecture,
        ecr_repository=config.service.ecr_repository,
        name_prefix=prefix,
        log_group_prefix=config.log_group_prefix,
        log_retention_days=config.log_retention_days,
        log_kms_key_arn=network.log_kms_key_arn,
        cluster_arn=app.cluster.arn,
        subnet_ids=network.app_subnet_ids,
        security_group_id=network.security_groups.audit,
        environment=task_environment,
        db_instance_arn=database.arn,
        db_parameter_group_arn=database.parameter_group_arn,
        db_secret_arn=database.audit_secret_arn,
        db_kms_key_arn=database.kms_key_arn,
        queue_arns=[messaging.queue.arn, messaging.dead_letter_queue.arn],
        dead_letter_queue_arn=messaging.schedule_dead_letter_queue.arn,
        artifact_bucket_arn=artifacts.bucket_arn,
        artifact_kms_key_arn=artifacts.kms_key_arn,
        stack_outputs={
            outputs.DB_INSTANCE_ID: database.identifier,
            # The master secret's ARN (not its value): the audit fails any app task using it.
            outputs.DB_SECRET_ARN: database.secret_arn,
            outputs.QUEUE_URL: messaging.queue.url,
            outputs.DLQ_URL: messaging.dead_letter_queue.url,
            outputs.DLQ_ARN: messaging.dead_letter_queue.arn,
            outputs.ARTIFACT_BUCKET: artifacts.bucket_name,
            outputs.CLUSTER_NAME: app.cluster.name,
            outputs.WEB_SERVICE_NAME: app.web_service.name,
            outputs.WEB_CONTAINER_PORT: config.service.container_port,
            outputs.WORKER_SERVICE_NAME: app.worker_service.name,
            outputs.WEB_TASK_DEFINITION_ARN: app.web_task_definition.arn,
            outputs.WORKER_TASK_DEFINITION_ARN: app.worker_task_definition.arn,
            outputs.MIGRATE_TASK_DEFINITION_ARN: app.migrate_task_definition.arn,
        },
        tags=tags,
    ),
)

# Endpoint policies last: they name resources of every other component.
network.restrict_endpoints(
    EndpointScope(
        account_id=account.account_id,
        partition=account.partition,
        region=account.region,
        ecr_repository_arn=(
            None
            if config.service.ecr_repository is None
            else (
                f"arn:{account.partition}:ecr:{config.service.ecr_repository.region}:"
                f"{config.service.ecr_repository.account}:repository/"
                f"{config.service.ecr_repository.name}"
            )
        ),
        log_group_prefix=config.log_group_prefix,
        artifact_bucket_arn=artifacts.bucket_arn,
        secret_arns=[database.secret_arn, database.app_secret_arn, database.audit_secret_arn],
        queue_arns=[messaging.queue.arn, messaging.dead_letter_queue.arn],
        db_instance_arn=database.arn,
        db_parameter_group_arn=database.parameter_group_arn,
        cluster_arn=app.cluster.arn,
        metric_namespace=outputs.METRIC_NAMESPACE,
    )
)

pulumi.export(outputs.APP_URL, ingress.url)
pulumi.export(outputs.LOAD_BALANCER_DNS_NAME, ingress.dns_name)
pulumi.export(outputs.VPC_ID, network.vpc_id)
pulumi.export(outputs.DB_ENDPOINT, database.endpoint)
pulumi.export(outputs.DB_ADDRESS, database.address)
pulumi.export(outputs.DB_PORT, database.port)
pulumi.export(outputs.DB_NAME, config.database.db_name)
pulumi.export(outputs.DB_INSTANCE_ID, database.identifier)
pulumi.export(outputs.DB_SECRET_ARN, database.secret_arn)
pulumi.export(outputs.DB_APP_SECRET_ARN, database.app_secret_arn)
pulumi.export(outputs.DB_AUDIT_SECRET_ARN, database.audit_secret_arn)
pulumi.export(outputs.QUEUE_URL, messaging.queue.url)
pulumi.export(outputs.QUEUE_ARN, messaging.queue.arn)
pulumi.export(outputs.DLQ_URL, messaging.dead_letter_queue.url)
pulumi.export(outputs.DLQ_ARN, messaging.dead_letter_queue.arn)
pulumi.export(outputs.ARTIFACT_BUCKET, artifacts.bucket_name)
pulumi.export(outputs.ARTIFACT_KMS_KEY_ARN, artifacts.kms_key_arn)
pulumi.export(outputs.CLUSTER_NAME, app.cluster.name)
pulumi.export(outputs.CLUSTER_ARN, app.cluster.arn)
pulumi.export(outputs.WEB_SERVICE_NAME, app.web_service.name)
pulumi.export(outputs.WEB_CONTAINER_PORT, config.service.container_port)
pulumi.export(outputs.WORKER_SERVICE_NAME, app.worker_service.name)
pulumi.export(outputs.WEB_TASK_DEFINITION_ARN, app.web_task_definition.arn)
pulumi.export(outputs.WORKER_TASK_DEFINITION_ARN, app.worker_task_definition.arn)
pulumi.export(outputs.AUDIT_TASK_DEFINITION_ARN, audit.task_definition.arn)
pulumi.export(outputs.AUDIT_TASK_FAMILY, audit.family)
pulumi.export(outputs.MIGRATE_TASK_DEFINITION_ARN, app.migrate_task_definition.arn)
pulumi.export(outputs.AUDIT_SCHEDULE_NAME, audit.schedule.name)
pulumi.export(outputs.ALARM_TOPIC_ARN, alarms.topic.arn)
pulumi.export(outputs.WEB_DEPLOYMENT_ALARMS, names(alarms.web_deployment_alarm_names))
pulumi.export(outputs.WORKER_DEPLOYMENT_ALARMS, names(alarms.worker_deployment_alarm_names))
