"""Names shared between the Pulumi program and the packages that read its stack.

`smoke/`, `rollback/` and the audits read the stack's outputs by these names
(`pulumi stack output --json`), and emit the custom metrics that the alarms in
`infra/alarms.py` watch. This module is plain constants on purpose: it must not
import pulumi, so any package can import it without the Pulumi runtime.
"""

from typing import Final

# --- Stack output names -------------------------------------------------------

#: ``https://<alb-dns>`` (or ``http://`` on a dev stack without a certificate).
APP_URL: Final = "appUrl"
#: DNS name of the public application load balancer.
LOAD_BALANCER_DNS_NAME: Final = "loadBalancerDnsName"

VPC_ID: Final = "vpcId"

#: ``host:port`` of the RDS PostgreSQL instance.
DB_ENDPOINT: Final = "dbEndpoint"
DB_ADDRESS: Final = "dbAddress"
DB_PORT: Final = "dbPort"
DB_NAME: Final = "dbName"
#: RDS instance identifier (what snapshot/restore APIs take).
DB_INSTANCE_ID: Final = "dbInstanceId"
#: ARN of the RDS-managed master-user secret (JSON with ``username`` and ``password``).
#: Only the migrate task gets it; the policy pack fails any other task that does.
DB_SECRET_ARN: Final = "dbSecretArn"  # noqa: S105 (an output name, not a secret)
#: Secrets (JSON ``username``, ``password``) of the per-service roles: web and worker
#: connect as the app role (DML only), the audit as the read-only audit role.
DB_APP_SECRET_ARN: Final = "dbAppSecretArn"  # noqa: S105 (an output name, not a secret)
DB_AUDIT_SECRET_ARN: Final = "dbAuditSecretArn"  # noqa: S105 (an output name, not a secret)

QUEUE_URL: Final = "queueUrl"
QUEUE_ARN: Final = "queueArn"
DLQ_URL: Final = "dlqUrl"
DLQ_ARN: Final = "dlqArn"

#: Name of the versioned, KMS-encrypted rollback artifact bucket.
ARTIFACT_BUCKET: Final = "artifactBucket"
ARTIFACT_KMS_KEY_ARN: Final = "artifactKmsKeyArn"

CLUSTER_NAME: Final = "clusterName"
CLUSTER_ARN: Final = "clusterArn"
WEB_SERVICE_NAME: Final = "webServiceName"
#: The port the web container listens on (the load balancer's target port); the scheduled
#: audit probes a web task's private address on it from inside the VPC.
WEB_CONTAINER_PORT: Final = "webContainerPort"
WORKER_SERVICE_NAME: Final = "workerServiceName"
WEB_TASK_DEFINITION_ARN: Final = "webTaskDefinitionArn"
WORKER_TASK_DEFINITION_ARN: Final = "workerTaskDefinitionArn"
AUDIT_TASK_DEFINITION_ARN: Final = "auditTaskDefinitionArn"
#: The audit task's family: what the audit task itself knows of its own definition (its
#: ARN names a revision, which cannot be written into that same revision).
AUDIT_TASK_FAMILY: Final = "auditTaskFamily"
#: One-off `rollgate db migrate` task (the only task with the master secret); run it with
#: `aws ecs run-task` in the app subnets with the worker security group.
MIGRATE_TASK_DEFINITION_ARN: Final = "migrateTaskDefinitionArn"
AUDIT_SCHEDULE_NAME: Final = "auditScheduleName"

ALARM_TOPIC_ARN: Final = "alarmTopicArn"
#: Names of the alarms ECS watches during web / worker deployments.
WEB_DEPLOYMENT_ALARMS: Final = "webDeploymentAlarmNames"
WORKER_DEPLOYMENT_ALARMS: Final = "workerDeploymentAlarmNames"

#: Every output the program exports; a test asserts the program exports exactly these.
ALL_OUTPUTS: Final[frozenset[str]] = frozenset(
    {
        APP_URL,
        LOAD_BALANCER_DNS_NAME,
        VPC_ID,
        DB_ENDPOINT,
        DB_ADDRESS,
        DB_PORT,
        DB_NAME,
        DB_INSTANCE_ID,
        DB_SECRET_ARN,
        DB_APP_SECRET_ARN,
        DB_AUDIT_SECRET_ARN,
        QUEUE_URL,
        QUEUE_ARN,
        DLQ_URL,
        DLQ_ARN,
        ARTIFACT_BUCKET,
        ARTIFACT_KMS_KEY_ARN,
        CLUSTER_NAME,
        CLUSTER_ARN,
        WEB_SERVICE_NAME,
        WEB_CONTAINER_PORT,
        WORKER_SERVICE_NAME,
        WEB_TASK_DEFINITION_ARN,
        WORKER_TASK_DEFINITION_ARN,
        AUDIT_TASK_DEFINITION_ARN,
        AUDIT_TASK_FAMILY,
        MIGRATE_TASK_DEFINITION_ARN,
        AUDIT_SCHEDULE_NAME,
        ALARM_TOPIC_ARN,
        WEB_DEPLOYMENT_ALARMS,
        WORKER_DEPLOYMENT_ALARMS,
    }
)

#: The outputs the scheduled audit task receives in `ENV_STACK_OUTPUTS`: what its queue
#: health, security posture and API probe checks name. Not `APP_URL`: the task runs in
#: private subnets with no route to the public load balancer; its API probe finds a
#: running web task (cluster, web service) and probes its private address on
#: `WEB_CONTAINER_PORT`, which the web security group accepts from the audit's group.
AUDIT_TASK_OUTPUTS: Final[frozenset[str]] = frozenset(
    {
        DB_INSTANCE_ID,
        DB_SECRET_ARN,
        QUEUE_URL,
        DLQ_URL,
        DLQ_ARN,
        ARTIFACT_BUCKET,
        CLUSTER_NAME,
        WEB_SERVICE_NAME,
        WEB_CONTAINER_PORT,
        WORKER_SERVICE_NAME,
        WEB_TASK_DEFINITION_ARN,
        WORKER_TASK_DEFINITION_ARN,
        MIGRATE_TASK_DEFINITION_ARN,
        AUDIT_TASK_FAMILY,
    }
)

# --- Custom CloudWatch metrics the bundle emits --------------------------------

#: Namespace of every custom metric Rollgate emits.
METRIC_NAMESPACE: Final = "Rollgate"
#: The one dimension every custom metric carries; its value is the Pulumi stack name
#: (tasks get it as the ``ROLLGATE_STACK`` environment variable). Alarms match
#: dimensions exactly, so emitters must send this dimension and no other.
METRIC_DIMENSION_STACK: Final = "Stack"
#: Age of the newest verified snapshot, in seconds (emitted by each audit run).
METRIC_SNAPSHOT_AGE_SECONDS: Final = "SnapshotAgeSeconds"
#: Wall time of a restore (drill or real), in seconds.
METRIC_RESTORE_SECONDS: Final = "RestoreSeconds"
#: Number of failed checks in one audit run (0 when all pass; emitted every run).
METRIC_AUDIT_FAILURES: Final = "AuditFailures"
#: Differences between the live schema and the canonical one, plus migration checksum
#: mismatches, found by one audit run (0 when there is no drift).
METRIC_AUDIT_DRIFT_COUNT: Final = "AuditDriftCount"
#: Size of the snapshot the restore drill restored, in megabytes (with RestoreSeconds,
#: the restore time per GB that infra's trend alarm watches).
METRIC_SNAPSHOT_MEGABYTES: Final = "SnapshotMegabytes"

# Emitted by the workflow service (app/), in Embedded Metric Format on stdout.
#: A task run that succeeded (count).
METRIC_TASKS_SUCCEEDED: Final = "TasksSucceeded"
#: A task that exhausted its attempts and was marked failed (count).
METRIC_TASKS_FAILED: Final = "TasksFailed"
#: A failed run that will be retried after a backoff (count).
METRIC_TASK_RETRIES: Final = "TaskRetries"
#: Wall time of one task run, in milliseconds.
METRIC_TASK_DURATION_MS: Final = "TaskDurationMilliseconds"
#: A queue message that could not be parsed; SQS's redrive takes it to the DLQ (count).
METRIC_POISON_MESSAGES: Final = "PoisonMessages"
#: Outbox rows published to the queue, and relay passes that failed to publish (count).
METRIC_OUTBOX_PUBLISHED: Final = "OutboxPublished"
METRIC_OUTBOX_PUBLISH_FAILURES: Final = "OutboxPublishFailures"
#: Stripe webhook events recorded, ignored (unknown type) and rejected (bad signature/body).
METRIC_WEBHOOK_RECORDED: Final = "WebhookEventsRecorded"
METRIC_WEBHOOK_IGNORED: Final = "WebhookEventsIgnored"
METRIC_WEBHOOK_REJECTED: Final = "WebhookEventsRejected"

#: Container commands of the workflow service (app/); the image's default CMD is the web one.
APP_WEB_COMMAND: Final = ("python", "-m", "app", "web")
APP_WORKER_COMMAND: Final = ("python", "-m", "app", "worker")
#: Liveness path of the web service (the ALB and container health checks' default).
APP_HEALTH_PATH: Final = "/healthz"
#: Readiness path: database, queue and schema version (smoke tests and deploy gates).
APP_READY_PATH: Final = "/readyz"

# --- Environment the tasks receive ---------------------------------------------

ENV_STACK: Final = "ROLLGATE_STACK"
ENV_ENVIRONMENT: Final = "ROLLGATE_ENVIRONMENT"
ENV_QUEUE_URL: Final = "ROLLGATE_QUEUE_URL"
ENV_DLQ_URL: Final = "ROLLGATE_DLQ_URL"
ENV_ARTIFACT_BUCKET: Final = "ROLLGATE_ARTIFACT_BUCKET"
ENV_METRIC_NAMESPACE: Final = "ROLLGATE_METRIC_NAMESPACE"
ENV_DB_INSTANCE_ID: Final = "ROLLGATE_DB_INSTANCE_ID"
#: The scheduled audit task's view of its stack: a JSON object keyed by the stack output
#: names above (`AUDIT_TASK_OUTPUTS`), resource identifiers only, never a secret value.
#: `rollgate audit` reads it when no ``--stack-outputs`` file is given.
ENV_STACK_OUTPUTS: Final = "ROLLGATE_STACK_OUTPUTS"
#: The web container's listening port (the app defaults to 8000).
ENV_PORT: Final = "PORT"
#: Worker tuning the app reads; infra derives them from the queue's settings so the
#: worker's attempts match the redrive's maxReceiveCount and its grace fits the stop timeout.
ENV_WORKER_MAX_ATTEMPTS: Final = "ROLLGATE_MAX_ATTEMPTS"
ENV_WORKER_VISIBILITY_TIMEOUT: Final = "ROLLGATE_VISIBILITY_TIMEOUT_SECONDS"
ENV_WORKER_STOP_GRACE: Final = "ROLLGATE_STOP_GRACE_SECONDS"
#: libpq variables: host, port and database come in `environment`; user and
#: password come in `secrets` from the RDS-managed secret.
ENV_DB_HOST: Final = "PGHOST"
ENV_DB_PORT: Final = "PGPORT"
ENV_DB_NAME: Final = "PGDATABASE"
ENV_DB_SSLMODE: Final = "PGSSLMODE"
#: libpq's CA file: with PGSSLMODE=verify-full, the server certificate must chain to it
#: and name the host.
ENV_DB_SSLROOTCERT: Final = "PGSSLROOTCERT"
#: Every task verifies the database's certificate and host name.
DB_SSLMODE: Final = "verify-full"
#: Where the image must carry the RDS global CA bundle
#: (https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem).
RDS_CA_BUNDLE_PATH: Final = "/etc/ssl/certs/rds-global-bundle.pem"
#: The worker's per-message time limit, in seconds (the queue's visibility timeout is twice it).
ENV_WORKER_TIMEOUT_SECONDS: Final = "ROLLGATE_WORKER_TIMEOUT_SECONDS"
#: "true" when the worker must hold ECS task scale-in protection (ecs:UpdateTaskProtection,
#: ``expiresInMinutes`` = ENV_WORKER_PROTECTION_MINUTES) while it works on a message.
ENV_WORKER_TASK_PROTECTION: Final = "ROLLGATE_WORKER_TASK_PROTECTION"
ENV_WORKER_PROTECTION_MINUTES: Final = "ROLLGATE_WORKER_PROTECTION_MINUTES"
SECRET_DB_USER: Final = "PGUSER"  # noqa: S105 (a variable name)
SECRET_DB_PASSWORD: Final = "PGPASSWORD"  # noqa: S105 (a variable name)
#: The migrate task also gets the service roles' credentials (via `secrets`), so the
#: role bootstrap it runs can create or re-password them to match their secrets.
SECRET_DB_APP_USER: Final = "ROLLGATE_DB_APP_USER"  # noqa: S105 (a variable name)
SECRET_DB_APP_PASSWORD: Final = "ROLLGATE_DB_APP_PASSWORD"  # noqa: S105 (a variable name)
SECRET_DB_AUDIT_USER: Final = "ROLLGATE_DB_AUDIT_USER"  # noqa: S105 (a variable name)
SECRET_DB_AUDIT_PASSWORD: Final = "ROLLGATE_DB_AUDIT_PASSWORD"  # noqa: S105 (a variable name)
#: The web task's Stripe webhook signing secret (``whsec_...``), from its own
#: Secrets Manager secret; the value is put there out of band, never by Pulumi.
SECRET_STRIPE_WEBHOOK: Final = "STRIPE_WEBHOOK_SECRET"  # noqa: S105 (a variable name)

#: The worker touches this file at least every 60 s; its container health check
#: fails when the file is older than 120 s.
WORKER_HEARTBEAT_FILE: Final = "/tmp/rollgate-worker.heartbeat"  # noqa: S108 (per-task tmpfs)
