"""One typed, validated `StackConfig`, read once from the stack's Pulumi config.

`load_config()` is the only place the program touches `pulumi.Config`. It reads
every key in the ``rollgate`` namespace, validates all of them, and raises one
`InvalidConfig` that lists every problem by key, so a bad stack fails at program
start, before any resource is registered. `parse_config()` is the pure core: it
takes plain strings (what the Pulumi CLI hands a program) and is what the tests
drive directly.

Every key, its default and its rule is in `CONFIG_KEYS` below; docs/infra.md
shows the same table.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

import pulumi
from pulumi.runtime import config as runtime_config

from infra import outputs
from infra.tagging import (
    ENV_DEV,
    ENV_PROD,
    TAG_ENVIRONMENT,
    TAG_MANAGED_BY,
    TAG_PROJECT,
    TAG_STACK,
)

#: The PostgreSQL major version Rollgate's own tests run against (db/ targets it too).
DEFAULT_POSTGRES_MAJOR: Final = 18
#: Oldest major version the parameter group settings here are written for.
MIN_POSTGRES_MAJOR: Final = 14

#: Container command of the scheduled audit task.
AUDIT_COMMAND: Final = ("rollgate", "audit", "--json")
#: Container commands of the web service and the queue worker (the app's, see infra.outputs).
WEB_COMMAND: Final = outputs.APP_WEB_COMMAND
WORKER_COMMAND: Final = outputs.APP_WORKER_COMMAND

#: The dead-letter queue keeps messages for the SQS maximum, 14 days. SQS keeps a
#: message's original enqueue time when it moves to the DLQ, so the DLQ must keep
#: messages longer than the source queue or they expire on arrival.
DLQ_RETENTION_SECONDS: Final = 14 * 24 * 3600
#: Visibility timeout = this factor x the worker's timeout, so a message is never
#: handed to a second worker while the first may still legitimately be working on it.
VISIBILITY_TIMEOUT_FACTOR: Final = 2
SQS_MAX_VISIBILITY_SECONDS: Final = 12 * 3600

#: Fargate's ceiling for a container's SIGTERM-to-SIGKILL grace period (stopTimeout).
MAX_STOP_TIMEOUT_SECONDS: Final = 120
#: ECS task scale-in protection lasts at most 48 hours per call (expiresInMinutes).
MAX_TASK_PROTECTION_MINUTES: Final = 2880
#: RDS rejects a storage-autoscaling ceiling less than 10 % above the allocated storage.
MIN_STORAGE_HEADROOM_PERCENT: Final = 110
MAX_STORAGE_GB: Final = 65536
#: Pulumi auto-names a resource ``<logical name>-<7 hex>``.
AUTONAME_SUFFIX: Final = "-0000000"

#: CloudWatch Logs accepts only these retention periods.
# fmt: off
LOG_RETENTION_DAYS: Final = frozenset({
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
})
# fmt: on

#: Fargate task sizes: CPU units -> allowed memory (MiB).
FARGATE_MEMORY: Final[Mapping[int, frozenset[int]]] = {
    256: frozenset({512, 1024, 2048}),
    512: frozenset(range(1024, 4097, 1024)),
    1024: frozenset(range(2048, 8193, 1024)),
    2048: frozenset(range(4096, 16385, 1024)),
    4096: frozenset(range(8192, 30721, 1024)),
}

NAMESPACE: Final = "rollgate"

#: Every key this program reads, with what it means. Anything else in the
#: ``rollgate:`` namespace is rejected as unknown (most often a typo).
CONFIG_KEYS: Final[Mapping[str, str]] = {
    "environment": "dev or prod (required). prod turns on the production rules.",
    "vpcCidr": "VPC IPv4 range, /16 to /20 (default 10.40.0.0/16).",
    "azCount": "Availability zones to span, 2-4 (default 2; prod default 3).",
    "natGateways": "none, single or per-az (default none: tasks reach AWS via VPC endpoints).",
    "dbEngineVersion": (
        f"PostgreSQL engine version, major or major.minor (default {DEFAULT_POSTGRES_MAJOR})."
    ),
    "dbInstanceClass": "RDS instance class, e.g. db.t4g.medium (default db.t4g.medium).",
    "dbAllocatedStorageGb": "Initial gp3 storage, 20-65536 GiB (default 20).",
    "dbMaxAllocatedStorageGb": (
        "Storage autoscaling ceiling, at least 10 % above allocated "
        "(default max(100, ceil(1.1 x allocated)))."
    ),
    "dbAutoMinorVersionUpgrade": (
        "Let RDS apply minor versions (default true); only with a major-only dbEngineVersion."
    ),
    "dbBackupRetentionDays": "Automated backup retention, 7-35 days (default 7; prod 14).",
    "dbMultiAz": "Multi-AZ standby (default false; must be true in prod).",
    "dbDeletionProtection": "RDS deletion protection (default true; must be true in prod).",
    "dbSlowStatementMs": "log_min_duration_statement in ms, 10-600000 (default 500).",
    "dbName": "Initial database name (default rollgate).",
    "dbUsername": "Master user name; the password is generated and kept by RDS (default rollgate).",
    "image": "Container image (required). In prod it must be pinned: repo@sha256:<64 hex>.",
    "toolsImage": (
        "The tools image (tools/image/build.sh: the rollgate CLI, pg_dump 18) the migrate and "
        "audit tasks run; in image's repository. Required and digest-pinned in prod; dev "
        "default: image's repository, tag tools-<image's tag>."
    ),
    "certificateArn": "ACM certificate for the HTTPS listener (required in prod).",
    "domainName": "The app's DNS name, covered by certificateArn (required with a certificate).",
    "hostedZoneId": "Route 53 hosted zone for domainName; when set, an alias record is created.",
    "wafWebAclArn": "Regional WAFv2 web ACL to attach to the load balancer (optional).",
    "cpuArchitecture": "X86_64 or ARM64 (default X86_64); must match the image.",
    "containerPort": "Port the web container listens on (default 8000).",
    "healthCheckPath": "HTTP path for the ALB and container health checks (default /healthz).",
    "webCpu": "Web task CPU units (default 512).",
    "webMemory": "Web task memory MiB, valid for webCpu on Fargate (default 1024).",
    "webDesiredCount": (
        "Web tasks at creation and the autoscaling floor, 1-50 (default 1; prod default and min 2)."
    ),
    "webMaxCount": "Web autoscaling ceiling, >= webDesiredCount (default 4; prod 10).",
    "webRequestsPerTarget": (
        "Target ALB requests per web task per minute for autoscaling (default 1000)."
    ),
    "workerCpu": "Worker task CPU units (default 512).",
    "workerMemory": "Worker task memory MiB (default 1024).",
    "workerMinCount": "Worker autoscaling floor, 1-100 (default 1; prod 2).",
    "workerMaxCount": "Worker autoscaling ceiling, >= min (default 4; prod 10).",
    "workerTimeoutSeconds": "Longest a worker may spend on one message, 10-21600 (default 300).",
    "workerTaskProtection": (
        "Worker protects itself from scale-in while it works (default true); "
        "without it workerTimeoutSeconds must fit the 120 s stop timeout."
    ),
    "workerBacklogPerTask": "Target visible messages per running worker task (default 10).",
    "queueMaxReceiveCount": "Receives before a message goes to the DLQ, 1-1000 (default 5).",
    "queueRetentionDays": "Task-queue retention, 1-13 days (default 4; the DLQ keeps 14).",
    "artifactNoncurrentVersionDays": "Days to keep old artifact versions, 1-3650 (default 90).",
    "auditIntervalMinutes": "How often the audit runs, 15-720 minutes (default 60).",
    "maxSnapshotAgeHours": "Alarm when the newest verified snapshot is older, 1-168 (default 26).",
    "rtoSeconds": (
        "Recovery time objective: alarm when a restore takes longer, 60-86400 s (default 3600)."
    ),
    "dbAppUsername": "Database role web and worker connect as, DML only (default rollgate_app).",
    "dbAuditUsername": "Read-only database role the audit connects as (default rollgate_audit).",
    "logRetentionDays": "CloudWatch Logs retention, an allowed value (default 30; prod 90).",
}

_STACK_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9-]{0,9}$")
_RDS_IDENTIFIER_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,62}$")
_BUCKET_NAME_RE: Final = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ELB_NAME_RE: Final = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$")
_DOMAIN_RE: Final = re.compile(
    r"^(?=.{4,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$"
)
_HOSTED_ZONE_RE: Final = re.compile(r"^Z[A-Z0-9]{1,31}$")
_WAF_ACL_RE: Final = re.compile(
    r"^arn:aws[a-z-]*:wafv2:(?P<region>[a-z0-9-]+):\d{12}:regional/webacl/[\w-]{1,128}/[0-9a-f-]{36}$"
)
_INSTANCE_CLASS_RE: Final = re.compile(r"^db\.[a-z][a-z0-9-]*\.[a-z0-9]+$")
_ENGINE_VERSION_RE: Final = re.compile(r"^(?P<major>\d+)(?:\.\d+)?$")
_IDENTIFIER_RE: Final = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]{0,62}$")
_CERTIFICATE_ARN_RE: Final = re.compile(
    r"^arn:aws[a-z-]*:acm:(?P<region>[a-z0-9-]+):\d{12}:certificate/[0-9a-f-]{36}$"
)
_DIGEST_RE: Final = re.compile(r"^sha256:[0-9a-f]{64}$")
_REPOSITORY_RE: Final = re.compile(
    r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::\d+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+$"
)
_TAG_RE: Final = re.compile(r"^\w[\w.-]{0,127}$")
_ECR_RE: Final = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<name>.+)$"
)
_HEALTH_PATH_RE: Final = re.compile(r"^/[A-Za-z0-9._~/-]*$")
#: Instance sizes RDS offers no Performance Insights on.
_NO_PERFORMANCE_INSIGHTS_SIZES: Final = frozenset({"micro", "small"})
_RESERVED_DB_USERS: Final = frozenset({"rdsadmin", "rdsrepladmin", "admin", "postgres", "root"})


class InvalidConfig(pulumi.RunError, ValueError):
    """The stack's config is invalid. Lists every problem, each naming its key.

    Subclasses `pulumi.RunError` so the Pulumi CLI prints just the message, without
    a Python traceback.
    """

    def __init__(self, stack: str, problems: list[str]) -> None:
        self.stack = stack
        self.problems = tuple(problems)
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"invalid Pulumi config for stack '{stack}' ({count}):\n{lines}\n"
            f"Fix with `pulumi config set <key> <value> --stack {stack}` "
            f"or edit Pulumi.{stack}.yaml; docs/infra.md lists every key."
        )


Environment = Literal["dev", "prod"]
NatMode = Literal["none", "single", "per-az"]
CpuArchitecture = Literal["X86_64", "ARM64"]


@dataclass(frozen=True)
class NetworkConfig:
    vpc_cidr: str
    az_count: int
    nat_gateways: NatMode


@dataclass(frozen=True)
class DatabaseConfig:
    engine_version: str
    instance_class: str
    allocated_storage_gb: int
    max_allocated_storage_gb: int
    backup_retention_days: int
    multi_az: bool
    deletion_protection: bool
    slow_statement_ms: int
    db_name: str
    username: str
    auto_minor_version_upgrade: bool = True
    #: Per-service roles (the master user is for migrations only).
    app_username: str = "rollgate_app"
    audit_username: str = "rollgate_audit"
    port: int = 5432

    @property
    def major_version(self) -> int:
        return int(self.engine_version.split(".")[0])

    @property
    def parameter_group_family(self) -> str:
        return f"postgres{self.major_version}"


@dataclass(frozen=True)
class QueueConfig:
    worker_timeout_seconds: int
    max_receive_count: int
    retention_days: int
    #: The worker holds ECS task scale-in protection while it works on a message.
    worker_task_protection: bool = True

    @property
    def worker_stop_timeout_seconds(self) -> int:
        """The worker's stopTimeout: as long as Fargate allows, up to its task timeout."""
        return min(self.worker_timeout_seconds, MAX_STOP_TIMEOUT_SECONDS)

    @property
    def worker_protection_minutes(self) -> int:
        """How long one protection call must last to cover one message (whole minutes)."""
        return math.ceil(self.worker_timeout_seconds / 60)

    @property
    def visibility_timeout_seconds(self) -> int:
        """Derived from the worker's timeout (see `VISIBILITY_TIMEOUT_FACTOR`)."""
        return self.worker_timeout_seconds * VISIBILITY_TIMEOUT_FACTOR

    @property
    def retention_seconds(self) -> int:
        return self.retention_days * 24 * 3600


@dataclass(frozen=True)
class TaskSize:
    cpu: int
    memory: int


@dataclass(frozen=True)
class EcrRepository:
    account: str
    region: str
    name: str


@dataclass(frozen=True)
class ServiceConfig:
    image: str
    certificate_arn: str | None
    cpu_architecture: CpuArchitecture
    container_port: int
    health_check_path: str
    web: TaskSize
    web_desired_count: int
    worker: TaskSize
    worker_min_count: int
    worker_max_count: int
    worker_backlog_per_task: int
    web_max_count: int = 4
    web_requests_per_target: int = 1000
    #: The app's public DNS name (the certificate's name); None: the ALB's own name.
    domain_name: str | None = None
    hosted_zone_id: str | None = None
    waf_web_acl_arn: str | None = None
    #: The tools image (the rollgate CLI) the migrate and audit tasks run; None: ``image``
    #: (only for configs built in code; the stack config always sets or derives it).
    tools_image: str | None = None

    @property
    def task_tools_image(self) -> str:
        """The image of the one-off tasks that run the ``rollgate`` CLI (migrate, audit)."""
        return self.tools_image or self.image

    @property
    def https(self) -> bool:
        return self.certificate_arn is not None

    @property
    def image_pinned(self) -> bool:
        return "@" in self.image and bool(_DIGEST_RE.match(self.image.rsplit("@", 1)[1]))

    @property
    def ecr_repository(self) -> EcrRepository | None:
        """The ECR repository the image lives in, or None for another registry."""
        match = _ECR_RE.match(_repository_of(self.image))
        if match is None:
            return None
        return EcrRepository(match["account"], match["region"], match["name"])


@dataclass(frozen=True)
class ArtifactsConfig:
    noncurrent_version_days: int


@dataclass(frozen=True)
class AuditConfig:
    interval_minutes: int
    command: tuple[str, ...] = AUDIT_COMMAND

    @property
    def schedule_expression(self) -> str:
        return f"rate({self.interval_minutes} minutes)"


@dataclass(frozen=True)
class AlarmsConfig:
    max_snapshot_age_hours: int
    #: Recovery time objective: a restore longer than this is an incident.
    rto_seconds: int = 3600


@dataclass(frozen=True)
class StackConfig:
    """Everything the program needs to know about one stack, validated."""

    project: str
    stack: str
    environment: Environment
    network: NetworkConfig
    database: DatabaseConfig
    queue: QueueConfig
    service: ServiceConfig
    artifacts: ArtifactsConfig
    audit: AuditConfig
    alarms: AlarmsConfig
    log_retention_days: int

    @property
    def is_prod(self) -> bool:
        return self.environment == ENV_PROD

    @property
    def name_prefix(self) -> str:
        """Prefix of every logical resource name, e.g. ``rollgate-prod``."""
        return f"{self.project}-{self.stack}"

    @property
    def log_group_prefix(self) -> str:
        """Prefix of every CloudWatch log group, e.g. ``/rollgate/prod``."""
        return f"/{self.project}/{self.stack}"

    @property
    def tags(self) -> dict[str, str]:
        return {
            TAG_PROJECT: self.project,
            TAG_STACK: self.stack,
            TAG_ENVIRONMENT: self.environment,
            TAG_MANAGED_BY: "pulumi",
        }


# --- reading ---------------------------------------------------------------------

T = TypeVar("T")


class _Reader:
    """Reads raw string values by key and collects problems instead of raising."""

    def __init__(self, raw: Mapping[str, str]) -> None:
        self._raw = raw
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{NAMESPACE}:{key}: {message}")

    def _get(self, key: str) -> str | None:
        if key not in CONFIG_KEYS:  # a programming error, not a config error
            raise KeyError(f"{key} is not declared in CONFIG_KEYS")
        value = self._raw.get(key)
        return None if value is None else str(value).strip()

    def text(self, key: str, default: str) -> str:
        value = self._get(key)
        return default if value is None or value == "" else value

    def optional_text(self, key: str) -> str | None:
        value = self._get(key)
        return None if value is None or value == "" else value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self._get(key)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            self.problem(key, f"must be a whole number, got {value!r}")
            return default
        if not low <= number <= high:
            self.problem(key, f"must be between {low} and {high}, got {number}")
        return number

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in {"true", "false"}:
            return lowered == "true"
        self.problem(key, f"must be true or false, got {value!r}")
        return default

    def choice(self, key: str, default: T, choices: Mapping[str, T]) -> T:
        value = self._get(key)
        if value is None:
            return default
        if value in choices:
            return choices[value]
        self.problem(key, f"must be one of {', '.join(sorted(choices))}, got {value!r}")
        return default

    def matching(self, key: str, default: str, pattern: re.Pattern[str], what: str) -> str:
        value = self.text(key, default)
        if not pattern.match(value):
            self.problem(key, f"{what}, got {value!r}")
        return value


def _repository_of(image: str) -> str:
    """The repository part of an image reference (no tag, no digest)."""
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > last_slash else name


def _check_image(
    reader: _Reader, image: str | None, prod: bool, nat: NatMode, key: str = "image"
) -> str:
    if image is None:
        reader.problem(
            key,
            "is required, e.g. <account>.dkr.ecr.<region>.amazonaws.com/rollgate@sha256:<digest>",
        )
        return "missing"
    name, _, digest = image.partition("@")
    repository = _repository_of(image)
    tag = name[len(repository) + 1 :] if len(name) > len(repository) else ""
    if not _REPOSITORY_RE.match(repository):
        reader.problem(key, f"is not a registry/repository reference: {image!r}")
    if digest and not _DIGEST_RE.match(digest):
        reader.problem(key, f"digest must be sha256:<64 lowercase hex>, got {digest!r}")
    if tag and not _TAG_RE.match(tag):
        reader.problem(key, f"tag {tag!r} is not a valid image tag")
    if not digest and not tag:
        reader.problem(key, "names no tag or digest (an implicit :latest is never deployed)")
    if prod and not digest:
        reader.problem(
            key, "must be pinned by digest in prod (repo@sha256:<64 hex>), a tag can move"
        )
    if nat == "none" and _ECR_RE.match(repository) is None:
        reader.problem(
            key,
            "must be in ECR when natGateways is none (tasks reach only AWS endpoints); "
            "push it to ECR or set natGateways",
        )
    return image


def _check_task_size(reader: _Reader, prefix: str, cpu_default: int, mem_default: int) -> TaskSize:
    cpu = reader.integer(f"{prefix}Cpu", cpu_default, 256, 4096)
    memory = reader.integer(f"{prefix}Memory", mem_default, 512, 30720)
    allowed = FARGATE_MEMORY.get(cpu)
    if allowed is None:
        reader.problem(
            f"{prefix}Cpu", f"must be one of {sorted(FARGATE_MEMORY)} on Fargate, got {cpu}"
        )
    elif memory not in allowed:
        reader.problem(
            f"{prefix}Memory",
            f"{memory} MiB is not a Fargate size for {cpu} CPU units "
            f"({min(allowed)}-{max(allowed)} in 1024 MiB steps)",
        )
    return TaskSize(cpu, memory)


def parse_config(raw: Mapping[str, str], *, stack: str, project: str = NAMESPACE) -> StackConfig:
    """Validate raw ``rollgate:`` config values (keys without the namespace).

    Raises `InvalidConfig` listing every problem; returns a `StackConfig` otherwise.
    """
    reader = _Reader(raw)
    for key in sorted(set(raw) - set(CONFIG_KEYS)):
        close = difflib.get_close_matches(key, list(CONFIG_KEYS), n=1)
        hint = f" (did you mean {NAMESPACE}:{close[0]}?)" if close else ""
        reader.problem(key, f"unknown key{hint}")
    if not _STACK_NAME_RE.match(stack):
        reader.problems.append(
            f"stack name {stack!r}: must be 1-10 characters of a-z, 0-9 and '-', starting with "
            "a letter (it prefixes AWS names that have length limits)"
        )
    else:
        reader.problems.extend(derived_name_problems(project, stack))

    environment = _read_environment(reader, stack)
    prod = environment == ENV_PROD
    network = _read_network(reader, prod)
    queue = _read_queue(reader)
    log_retention = reader.integer("logRetentionDays", 90 if prod else 30, 1, 3653)
    if log_retention not in LOG_RETENTION_DAYS:
        reader.problem(
            "logRetentionDays", f"must be one of {sorted(LOG_RETENTION_DAYS)}, got {log_retention}"
        )
    result = StackConfig(
        project=project,
        stack=stack,
        environment=environment,
        network=network,
        database=_read_database(reader, prod),
        queue=queue,
        service=_read_service(reader, prod, network.nat_gateways),
        artifacts=ArtifactsConfig(reader.integer("artifactNoncurrentVersionDays", 90, 1, 3650)),
        audit=AuditConfig(reader.integer("auditIntervalMinutes", 60, 15, 720)),
        alarms=AlarmsConfig(
            max_snapshot_age_hours=reader.integer("maxSnapshotAgeHours", 26, 1, 168),
            rto_seconds=reader.integer("rtoSeconds", 3600, 60, 86400),
        ),
        log_retention_days=log_retention,
    )
    if reader.problems:
        raise InvalidConfig(stack, reader.problems)
    return result


def _read_environment(reader: _Reader, stack: str) -> Environment:
    value = reader.optional_text("environment")
    if value is None:
        reader.problem("environment", "is required: dev or prod")
        return ENV_DEV
    if value not in (ENV_DEV, ENV_PROD):
        reader.problem("environment", f"must be dev or prod, got {value!r}")
        return ENV_DEV
    if stack.startswith("prod") and value != ENV_PROD:
        reader.problem("environment", f"stack {stack!r} looks like production but is {value!r}")
    return ENV_PROD if value == ENV_PROD else ENV_DEV


def _read_network(reader: _Reader, prod: bool) -> NetworkConfig:
    vpc_cidr = reader.text("vpcCidr", "10.40.0.0/16")
    try:
        network = ipaddress.IPv4Network(vpc_cidr)
    except ValueError:
        reader.problem("vpcCidr", f"must be an IPv4 network like 10.40.0.0/16, got {vpc_cidr!r}")
    else:
        if not 16 <= network.prefixlen <= 20:
            reader.problem("vpcCidr", f"prefix must be /16 to /20, got /{network.prefixlen}")
        if not network.is_private:
            reader.problem("vpcCidr", f"must be a private (RFC 1918) range, got {vpc_cidr}")
    nat: NatMode = reader.choice(
        "natGateways", "none", {"none": "none", "single": "single", "per-az": "per-az"}
    )
    return NetworkConfig(
        vpc_cidr=vpc_cidr,
        az_count=reader.integer("azCount", 3 if prod else 2, 2, 4),
        nat_gateways=nat,
    )


def _read_database(reader: _Reader, prod: bool) -> DatabaseConfig:
    engine_version = reader.text("dbEngineVersion", str(DEFAULT_POSTGRES_MAJOR))
    version_match = _ENGINE_VERSION_RE.match(engine_version)
    if version_match is None:
        reader.problem("dbEngineVersion", f"must look like 18 or 18.1, got {engine_version!r}")
        engine_version = str(DEFAULT_POSTGRES_MAJOR)
    elif int(version_match["major"]) < MIN_POSTGRES_MAJOR:
        reader.problem(
            "dbEngineVersion",
            f"major version must be >= {MIN_POSTGRES_MAJOR}, got {engine_version}",
        )
    allocated = reader.integer("dbAllocatedStorageGb", 20, 20, MAX_STORAGE_GB)
    lowest_ceiling = min_max_allocated_storage(allocated)
    max_allocated = reader.integer(
        "dbMaxAllocatedStorageGb", max(100, lowest_ceiling), 20, MAX_STORAGE_GB
    )
    if max_allocated < lowest_ceiling:
        reader.problem(
            "dbMaxAllocatedStorageGb",
            f"must be >= {lowest_ceiling}, at least 10 % above dbAllocatedStorageGb "
            f"({allocated}); RDS rejects a closer storage-autoscaling ceiling, got {max_allocated}",
        )
    auto_minor = reader.boolean("dbAutoMinorVersionUpgrade", True)
    if version_match is not None and "." in engine_version and auto_minor:
        # Refused rather than ignore_changes'd: ignoring engineVersion would also swallow
        # a deliberate change of the pinned version, and the config would stop saying
        # which version runs.
        reader.problem(
            "dbEngineVersion",
            f"{engine_version} pins a minor version while dbAutoMinorVersionUpgrade is true: "
            "after RDS upgrades the minor, the next `up` would try to downgrade it. "
            f"Use the major alone ({engine_version.split('.')[0]}) or set "
            "dbAutoMinorVersionUpgrade false",
        )
    multi_az = reader.boolean("dbMultiAz", prod)
    if prod and not multi_az:
        reader.problem(
            "dbMultiAz", "must be true in prod (a single-AZ database is a single point of failure)"
        )
    deletion_protection = reader.boolean("dbDeletionProtection", True)
    if prod and not deletion_protection:
        reader.problem("dbDeletionProtection", "must be true in prod")
    username = reader.matching(
        "dbUsername", "rollgate", _IDENTIFIER_RE, "must be a PostgreSQL identifier"
    )
    if username.lower() in _RESERVED_DB_USERS:
        reader.problem("dbUsername", f"{username!r} is reserved by RDS or PostgreSQL")
    instance_class = reader.matching(
        "dbInstanceClass",
        "db.t4g.medium",
        _INSTANCE_CLASS_RE,
        "must look like db.<family>.<size>, e.g. db.m7g.large",
    )
    if instance_class.rsplit(".", 1)[-1] in _NO_PERFORMANCE_INSIGHTS_SIZES:
        reader.problem(
            "dbInstanceClass",
            f"{instance_class} has no Performance Insights (always on here); use medium or larger",
        )
    app_username = reader.matching(
        "dbAppUsername", "rollgate_app", _IDENTIFIER_RE, "must be a PostgreSQL identifier"
    )
    audit_username = reader.matching(
        "dbAuditUsername", "rollgate_audit", _IDENTIFIER_RE, "must be a PostgreSQL identifier"
    )
    for key, role in (("dbAppUsername", app_username), ("dbAuditUsername", audit_username)):
        if role.lower() in _RESERVED_DB_USERS:
            reader.problem(key, f"{role!r} is reserved by RDS or PostgreSQL")
    if len({username.lower(), app_username.lower(), audit_username.lower()}) < 3:
        reader.problem(
            "dbAppUsername",
            "dbUsername, dbAppUsername and dbAuditUsername must be three different roles "
            f"(got {username}, {app_username}, {audit_username})",
        )
    return DatabaseConfig(
        engine_version=engine_version,
        instance_class=instance_class,
        allocated_storage_gb=allocated,
        max_allocated_storage_gb=max_allocated,
        backup_retention_days=reader.integer("dbBackupRetentionDays", 14 if prod else 7, 7, 35),
        multi_az=multi_az,
        deletion_protection=deletion_protection,
        slow_statement_ms=reader.integer("dbSlowStatementMs", 500, 10, 600_000),
        db_name=reader.matching(
            "dbName", "rollgate", _IDENTIFIER_RE, "must be a PostgreSQL identifier"
        ),
        username=username,
        auto_minor_version_upgrade=auto_minor,
        app_username=app_username,
        audit_username=audit_username,
    )


def _read_queue(reader: _Reader) -> QueueConfig:
    config = QueueConfig(
        worker_timeout_seconds=reader.integer(
            "workerTimeoutSeconds", 300, 10, SQS_MAX_VISIBILITY_SECONDS // VISIBILITY_TIMEOUT_FACTOR
        ),
        max_receive_count=reader.integer("queueMaxReceiveCount", 5, 1, 1000),
        retention_days=reader.integer(
            "queueRetentionDays", 4, 1, DLQ_RETENTION_SECONDS // 86400 - 1
        ),
        worker_task_protection=reader.boolean("workerTaskProtection", True),
    )
    # A stopped worker must be able to finish its message: either the stop timeout
    # covers the whole task timeout, or the worker holds scale-in protection while it
    # works (deployments and scale-in then wait for it) for up to the ECS maximum.
    timeout = config.worker_timeout_seconds
    if not config.worker_task_protection and timeout > MAX_STOP_TIMEOUT_SECONDS:
        reader.problem(
            "workerTimeoutSeconds",
            f"{timeout} s does not fit the worker's stop timeout (at most "
            f"{MAX_STOP_TIMEOUT_SECONDS} s on Fargate) and workerTaskProtection is false: "
            "a scale-in or deploy would kill work in flight. Lower it or turn protection on",
        )
    if config.worker_protection_minutes > MAX_TASK_PROTECTION_MINUTES:
        reader.problem(
            "workerTimeoutSeconds",
            f"{timeout} s exceeds the longest ECS task protection "
            f"({MAX_TASK_PROTECTION_MINUTES} minutes)",
        )
    return config


def _default_tools_image(image: str) -> str | None:
    """Dev's tools image: ``image``'s repository, tag ``tools-<tag>``; None for a digest."""
    name = image.split("@", 1)[0]
    repository = _repository_of(image)
    tag = name[len(repository) + 1 :] if len(name) > len(repository) else ""
    if "@" in image or not tag:
        return None
    return f"{repository}:tools-{tag}"[: len(repository) + 1 + 128]


def _check_tools_image(reader: _Reader, image: str, prod: bool, nat: NatMode) -> str:
    key = "toolsImage"
    tools_image = reader.optional_text(key)
    if tools_image is None and not prod and image != "missing":
        tools_image = _default_tools_image(image)
    if tools_image is None:
        reader.problem(
            key,
            "is required"
            + (" in prod" if prod else " when image is pinned by digest")
            + ": the tools image (tools/image/build.sh) the migrate and audit tasks run, "
            "e.g. <account>.dkr.ecr.<region>.amazonaws.com/rollgate@sha256:<digest>",
        )
        return "missing"
    checked = _check_image(reader, tools_image, prod, nat, key=key)
    # One repository for both images: the execution roles and the ECR endpoint
    # policy name exactly one repository (least privilege), so a second one
    # would fail to pull at run time, not at preview.
    if image != "missing" and _repository_of(tools_image) != _repository_of(image):
        reader.problem(
            key,
            f"must be in image's repository ({_repository_of(image)}), got "
            f"{_repository_of(tools_image)}: push the tools image there under its own "
            "tag or digest (the task roles may pull from that one repository only)",
        )
    return checked


def _read_service(reader: _Reader, prod: bool, nat: NatMode) -> ServiceConfig:
    image = _check_image(reader, reader.optional_text("image"), prod, nat)
    tools_image = _check_tools_image(reader, image, prod, nat)
    certificate_arn = reader.optional_text("certificateArn")
    if certificate_arn is not None and not _CERTIFICATE_ARN_RE.match(certificate_arn):
        reader.problem("certificateArn", f"must be an ACM certificate ARN, got {certificate_arn!r}")
    if prod and certificate_arn is None:
        reader.problem("certificateArn", "is required in prod (the load balancer must serve HTTPS)")
    domain_name = reader.optional_text("domainName")
    if domain_name is not None and not _DOMAIN_RE.match(domain_name):
        reader.problem("domainName", f"must be a lowercase DNS name, got {domain_name!r}")
    if certificate_arn is not None and domain_name is None:
        reader.problem(
            "domainName",
            "is required with certificateArn: the certificate names your domain, not the "
            "load balancer's DNS name, so clients that verify TLS need the domain",
        )
    hosted_zone_id = reader.optional_text("hostedZoneId")
    if hosted_zone_id is not None:
        if not _HOSTED_ZONE_RE.match(hosted_zone_id):
            reader.problem(
                "hostedZoneId", f"must be a Route 53 zone id (Z...), got {hosted_zone_id!r}"
            )
        if domain_name is None:
            reader.problem("hostedZoneId", "needs domainName (the record to create in the zone)")
    waf_web_acl_arn = reader.optional_text("wafWebAclArn")
    if waf_web_acl_arn is not None and not _WAF_ACL_RE.match(waf_web_acl_arn):
        reader.problem(
            "wafWebAclArn",
            "must be a regional WAFv2 web ACL ARN (...:regional/webacl/...), "
            f"got {waf_web_acl_arn!r}",
        )
    web_desired = reader.integer("webDesiredCount", 2 if prod else 1, 1, 50)
    if prod and web_desired < 2:
        reader.problem(
            "webDesiredCount",
            f"must be at least 2 in prod (one task per AZ failure), got {web_desired}",
        )
    web_max = reader.integer("webMaxCount", max(10 if prod else 4, web_desired), 1, 100)
    if web_max < web_desired:
        reader.problem("webMaxCount", f"must be >= webDesiredCount ({web_desired}), got {web_max}")
    worker_min = reader.integer("workerMinCount", 2 if prod else 1, 1, 100)
    worker_max = reader.integer("workerMaxCount", max(10 if prod else 4, worker_min), 1, 100)
    if worker_max < worker_min:
        reader.problem(
            "workerMaxCount", f"must be >= workerMinCount ({worker_min}), got {worker_max}"
        )
    return ServiceConfig(
        image=image,
        tools_image=tools_image,
        certificate_arn=certificate_arn,
        cpu_architecture=reader.choice(
            "cpuArchitecture", "X86_64", {"X86_64": "X86_64", "ARM64": "ARM64"}
        ),
        container_port=reader.integer("containerPort", 8000, 1024, 65535),
        health_check_path=reader.matching(
            "healthCheckPath",
            outputs.APP_HEALTH_PATH,
            _HEALTH_PATH_RE,
            "must be an absolute URL path",
        ),
        web=_check_task_size(reader, "web", 512, 1024),
        web_desired_count=web_desired,
        worker=_check_task_size(reader, "worker", 512, 1024),
        worker_min_count=worker_min,
        worker_max_count=worker_max,
        worker_backlog_per_task=reader.integer("workerBacklogPerTask", 10, 1, 10_000),
        web_max_count=web_max,
        web_requests_per_target=reader.integer("webRequestsPerTarget", 1000, 10, 100_000),
        domain_name=domain_name,
        hosted_zone_id=hosted_zone_id,
        waf_web_acl_arn=waf_web_acl_arn,
    )


def min_max_allocated_storage(allocated_gb: int) -> int:
    """The lowest storage-autoscaling ceiling RDS accepts for `allocated_gb` (10 % above)."""
    return -(-allocated_gb * MIN_STORAGE_HEADROOM_PERCENT // 100)  # integer ceiling


def derived_names(project: str, stack: str) -> dict[str, tuple[str, str]]:
    """AWS names the program derives from the stack name: what -> (name, kind of rule)."""
    prefix = f"{project}-{stack}"
    return {
        "RDS instance identifier": (prefix, "rds"),
        "RDS final snapshot identifier": (f"{prefix}-final", "rds"),
        "artifact bucket name": (f"{prefix}-artifacts-bucket{AUTONAME_SUFFIX}", "s3"),
        "access-log bucket name": (f"{prefix}-access-logs-bucket{AUTONAME_SUFFIX}", "s3"),
        "load balancer name": (f"{prefix}-alb{AUTONAME_SUFFIX}", "elb"),
        "target group name": (f"{prefix}-web{AUTONAME_SUFFIX}", "elb"),
    }


def _rds_name_problem(name: str) -> str | None:
    if not _RDS_IDENTIFIER_RE.match(name):
        return "must be 1-63 letters, digits or hyphens, starting with a letter"
    if name.endswith("-") or "--" in name:
        return "must not end with a hyphen or contain two consecutive hyphens"
    return None


def _bucket_name_problem(name: str) -> str | None:
    if not _BUCKET_NAME_RE.match(name):
        return "must be 3-63 lowercase letters, digits, dots or hyphens, alphanumeric at both ends"
    if ".." in name or ".-" in name or "-." in name:
        return "must not contain '..', '.-' or '-.'"
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        return "must not look like an IP address"
    return None


def _elb_name_problem(name: str) -> str | None:
    if not _ELB_NAME_RE.match(name):
        return "must be 1-32 letters, digits or hyphens, not starting or ending with a hyphen"
    if name.startswith("internal-"):
        return "must not start with 'internal-'"
    return None


_NAME_RULES: Final[Mapping[str, Callable[[str], str | None]]] = {
    "rds": _rds_name_problem,
    "s3": _bucket_name_problem,
    "elb": _elb_name_problem,
}


def aws_name_problem(name: str, kind: str) -> str | None:
    """Why AWS would reject `name` as a `kind` (rds, s3, elb) name, or None."""
    return _NAME_RULES[kind](name)


def derived_name_problems(project: str, stack: str) -> list[str]:
    """One problem per derived AWS name that AWS would reject, naming the stack name."""
    found = []
    for what, (name, kind) in derived_names(project, stack).items():
        problem = aws_name_problem(name, kind)
        if problem is not None:
            found.append(f"stack name {stack!r}: the {what} {name!r} {problem}")
    return found


def region_problems(config: StackConfig, region: str) -> list[str]:
    """Config that only the stack's region can rule out (the account lookup calls this)."""
    found = []
    repository = config.service.ecr_repository
    if (
        repository is not None
        and repository.region != region
        and config.network.nat_gateways == "none"
    ):
        found.append(
            f"{NAMESPACE}:image: is in ECR in {repository.region}, but the stack is in {region} "
            "without NAT: the VPC endpoints reach only this region's ECR. Replicate the image "
            f"to {region} (ECR replication) or set natGateways"
        )
    certificate = config.service.certificate_arn
    match = _CERTIFICATE_ARN_RE.match(certificate) if certificate else None
    if match is not None and match["region"] != region:
        found.append(
            f"{NAMESPACE}:certificateArn: is in {match['region']}; an ALB needs a certificate "
            f"in its own region ({region})"
        )
    acl = config.service.waf_web_acl_arn
    acl_match = _WAF_ACL_RE.match(acl) if acl else None
    if acl_match is not None and acl_match["region"] != region:
        found.append(
            f"{NAMESPACE}:wafWebAclArn: is in {acl_match['region']}; a regional web ACL must be "
            f"in the load balancer's region ({region})"
        )
    return found


def raw_namespace_config(namespace: str = NAMESPACE) -> dict[str, str]:
    """Every ``<namespace>:<key>`` value the Pulumi engine passed in, keyed by ``<key>``.

    `pulumi.Config` can only look keys up, not list them, and listing is what
    unknown-key detection needs; so this reads the same sources it does: values set
    on the runtime (mocks, policy hosts) and the ``PULUMI_CONFIG`` bag the CLI sets.
    """
    merged: dict[str, object] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{namespace}:"
    return {
        key[len(prefix) :]: _as_text(value)
        for key, value in merged.items()
        if key.startswith(prefix)
    }


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def load_config() -> StackConfig:
    """Read and validate this stack's config. Call once, at program start."""
    return parse_config(raw_namespace_config(), stack=pulumi.get_stack())
