"""Tag keys and role values the program stamps on resources.

The CrossGuard pack (`infra/policy/`) decides "is this prod?" and "is this the
database security group?" from these tags, so the program and the policies share
them from here. Plain constants: no pulumi import.
"""

from collections.abc import Mapping
from typing import Final

TAG_PROJECT: Final = "rollgate:project"
TAG_STACK: Final = "rollgate:stack"
TAG_ENVIRONMENT: Final = "rollgate:environment"
TAG_ROLE: Final = "rollgate:role"
TAG_MANAGED_BY: Final = "managed-by"

ENV_PROD: Final = "prod"
ENV_DEV: Final = "dev"

# Security-group roles.
ROLE_LOAD_BALANCER: Final = "load-balancer"
ROLE_WEB: Final = "web"
ROLE_WORKER: Final = "worker"
ROLE_AUDIT: Final = "audit"
ROLE_DATABASE: Final = "database"
ROLE_ENDPOINTS: Final = "vpc-endpoints"

ROLE_MIGRATOR: Final = "migrator"

#: The only security-group roles allowed to reach the database.
DATABASE_CLIENT_ROLES: Final[frozenset[str]] = frozenset({ROLE_WEB, ROLE_WORKER, ROLE_AUDIT})

# Queue roles.
ROLE_TASK_QUEUE: Final = "task-queue"
ROLE_DEAD_LETTER_QUEUE: Final = "dead-letter-queue"
#: Dead-letter queue of the audit schedule (failed RunTask calls).
ROLE_SCHEDULE_DEAD_LETTER_QUEUE: Final = "schedule-dead-letter-queue"

# Bucket roles.
ROLE_ARTIFACTS: Final = "artifacts"
#: ALB access logs: ELB log delivery writes only SSE-S3, so this bucket cannot use SSE-KMS.
ROLE_ACCESS_LOGS: Final = "access-logs"


def with_role(tags: Mapping[str, str], role: str) -> dict[str, str]:
    """Return `tags` plus the role tag."""
    return {**tags, TAG_ROLE: role}
