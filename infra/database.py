"""Database: RDS for PostgreSQL, encrypted, private, backed up, observable.

Creates:
- a customer-managed KMS key (storage, Performance Insights, the master secret);
- a DB subnet group over the isolated database subnets;
- a parameter group that forces TLS (``rds.force_ssl``) and logs slow statements
  and lock waits;
- the two log groups RDS exports into, created first so they get a retention,
  encrypted with the stack's log key;
- one Secrets Manager secret per service role (app: DML only, used by web and
  worker; audit: read-only), under the database key, each with a generated
  password written write-only (never in state). The roles themselves are
  created in the database by a bootstrap that runs with the master secret
  (not in this program: see docs/infra.md); rotate their passwords out of band;
- the instance: engine version from config, storage encrypted with the key, not
  publicly accessible, Multi-AZ and deletion protection (prod), backups kept
  >= 7 days, a final snapshot on delete, tags copied to snapshots, the master
  password generated and kept by RDS in Secrets Manager (only the migrate task
  gets it), Performance Insights and CloudWatch log exports. Minor versions
  upgrade automatically unless config pins one. `protect`-ed in prod.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_aws as aws

from infra.config import DatabaseConfig
from infra.encryption import customer_managed_key

#: Log types exported to CloudWatch Logs.
LOG_EXPORTS: Final = ("postgresql", "upgrade")
#: The RSA 2048 CA, valid to 2061. Tasks verify the server against it: PGSSLMODE=verify-full
#: with the RDS global CA bundle (which contains it) at `outputs.RDS_CA_BUNDLE_PATH` in the
#: image. The CA alone verifies nothing; the client's sslmode decides.
CA_CERT_IDENTIFIER: Final = "rds-ca-rsa2048-g1"
#: Generated role passwords: long, and without characters that need quoting in a DSN.
ROLE_PASSWORD_LENGTH: Final = 40
#: Bumped only to push a new generated password from the program (rotation is out of band).
ROLE_PASSWORD_VERSION: Final = 1
#: Performance Insights' free retention tier.
PERFORMANCE_INSIGHTS_RETENTION_DAYS: Final = 7
BACKUP_WINDOW: Final = "03:00-04:00"
MAINTENANCE_WINDOW: Final = "sun:04:30-sun:05:30"


@dataclass(frozen=True)
class DatabaseArgs:
    config: DatabaseConfig
    #: RDS instance identifier; fixed (not auto-named) so its log groups can exist first.
    identifier: str
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    prod: bool
    log_retention_days: int
    log_kms_key_arn: pulumi.Input[str]
    tags: Mapping[str, str]


def parameters(config: DatabaseConfig) -> dict[str, str]:
    """The non-default PostgreSQL parameters, by name."""
    return {
        "rds.force_ssl": "1",
        "log_min_duration_statement": str(config.slow_statement_ms),
        "log_lock_waits": "1",
    }


def master_secret_arn(secrets: Sequence[aws.rds.outputs.InstanceMasterUserSecret]) -> str:
    """ARN of the RDS-managed master secret (RDS reports exactly one)."""
    arn = secrets[0].secret_arn if secrets else None
    if arn is None:
        raise ValueError(
            "RDS reported no managed master-user secret; is manage_master_user_password on?"
        )
    return arn


class Database(pulumi.ComponentResource):
    instance: aws.rds.Instance
    address: pulumi.Output[str]
    port: pulumi.Output[int]
    endpoint: pulumi.Output[str]
    identifier: pulumi.Output[str]
    arn: pulumi.Output[str]
    secret_arn: pulumi.Output[str]
    app_secret_arn: pulumi.Output[str]
    audit_secret_arn: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rollgate:infra:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        config = args.config

        key = customer_managed_key(
            name,
            alias=f"{args.identifier}-db",
            description=(
                f"Rollgate {args.identifier}: RDS storage, Performance Insights, master secret"
            ),
            tags=tags,
            parent=self,
            protect=args.prod,
        )
        # Subnet group over the isolated database subnets, one per AZ.
        subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnet-group",
            subnet_ids=list(args.subnet_ids),
            description=f"Rollgate {args.identifier} database subnets",
            tags=tags,
            opts=child,
        )
        # Parameter group that forces TLS and logs slow statements.
        parameter_group = aws.rds.ParameterGroup(
            f"{name}-params",
            family=config.parameter_group_family,
            description=f"Rollgate {args.identifier}: force TLS, log slow statements",
            parameters=[
                aws.rds.ParameterGroupParameterArgs(name=param, value=value)
                for param, value in parameters(config).items()
            ],
            tags=tags,
            opts=child,
        )
        log_groups = [
            # Log group RDS exports into, created first so it has a retention.
            aws.cloudwatch.LogGroup(
                f"{name}-{log}-logs",
                name=f"/aws/rds/instance/{args.identifier}/{log}",
                retention_in_days=args.log_retention_days,
                kms_key_id=args.log_kms_key_arn,
                tags=tags,
                opts=child,
            )
            for log in LOG_EXPORTS
        ]
        # The PostgreSQL instance; the master password lives only in Secrets Manager.
        self.instance = aws.rds.Instance(
            f"{name}-instance",
            identifier=args.identifier,
            engine="postgres",
            engine_version=config.engine_version,
            instance_class=config.instance_class,
            allocated_storage=config.allocated_storage_gb,
            max_allocated_storage=config.max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=key.arn,
            db_name=config.db_name,
            username=config.username,
            manage_master_user_password=True,
            master_user_secret_kms_key_id=key.arn,
            port=config.port,
            db_subnet_group_name=subnet_group.name,
            vpc_security_group_ids=[args.security_group_id],
            parameter_group_name=parameter_group.name,
            publicly_accessible=False,
            multi_az=config.multi_az,
            deletion_protection=config.deletion_protection,
            backup_retention_period=config.backup_retention_days,
            backup_window=BACKUP_WINDOW,
            maintenance_window=MAINTENANCE_WINDOW,
            copy_tags_to_snapshot=True,
            skip_final_snapshot=False,
            final_snapshot_identifier=f"{args.identifier}-final",
            delete_automated_backups=False,
            performance_insights_enabled=True,
            performance_insights_kms_key_id=key.arn,
            performance_insights_retention_period=PERFORMANCE_INSIGHTS_RETENTION_DAYS,
            enabled_cloudwatch_logs_exports=list(LOG_EXPORTS),
            ca_cert_identifier=CA_CERT_IDENTIFIER,
            auto_minor_version_upgrade=config.auto_minor_version_upgrade,
            allow_major_version_upgrade=False,
            apply_immediately=not args.prod,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=args.prod, depends_on=log_groups),
        )

        self.address = self.instance.address
        self.port = self.instance.port
        self.endpoint = self.instance.endpoint
        self.identifier = self.instance.identifier
        self.arn = self.instance.arn
        self.secret_arn = self.instance.master_user_secrets.apply(master_secret_arn)
        self.app_secret_arn = self._role_secret(name, "app", config.app_username, key, tags)
        self.audit_secret_arn = self._role_secret(name, "audit", config.audit_username, key, tags)
        self.kms_key_arn = key.arn
        self.parameter_group_arn = parameter_group.arn
        self.register_outputs(
            {
                "address": self.address,
                "port": self.port,
                "identifier": self.identifier,
                "secretArn": self.secret_arn,
                "appSecretArn": self.app_secret_arn,
                "auditSecretArn": self.audit_secret_arn,
                "kmsKeyArn": self.kms_key_arn,
            }
        )

    def _role_secret(
        self, name: str, service: str, username: str, key: aws.kms.Key, tags: dict[str, str]
    ) -> pulumi.Output[str]:
        """A secret holding one service role's credentials; returns its ARN."""
        child = pulumi.ResourceOptions(parent=self)
        # Credentials of one per-service database role, encrypted with the database key.
        secret = aws.secretsmanager.Secret(
            f"{name}-{service}-role-secret",
            description=f"Rollgate database role {username} ({service}); rotated out of band",
            kms_key_id=key.arn,
            tags=tags,
            opts=child,
        )
        password = aws.secretsmanager.get_random_password_output(
            password_length=ROLE_PASSWORD_LENGTH,
            exclude_punctuation=True,
            include_space=False,
        ).random_password
        credentials: pulumi.Output[str] = pulumi.Output.json_dumps(
            {"username": username, "password": password}
        )
        secret_credentials: pulumi.Output[str] = pulumi.Output.secret(credentials)
        # First value: generated here, sent write-only (never stored in Pulumi state).
        aws.secretsmanager.SecretVersion(
            f"{name}-{service}-role-secret-value",
            secret_id=secret.id,
            secret_string_wo=secret_credentials,
            secret_string_wo_version=ROLE_PASSWORD_VERSION,
            opts=child,
        )
        return secret.arn
