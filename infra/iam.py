"""IAM policy documents as plain data, so least privilege is readable and testable.

Every statement names its resources; the only ``"Resource": "*"`` statements are for
actions AWS does not scope to a resource (see `UNSCOPED_ACTIONS`, and
`CLUSTER_CONDITIONED_ACTIONS` under an ``ecs:cluster`` condition), which the
CrossGuard pack also allows and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import pulumi

#: Actions that AWS only authorises against ``"*"``.
UNSCOPED_ACTIONS: Final = frozenset(
    {
        "ecr:GetAuthorizationToken",
        "cloudwatch:PutMetricData",  # scoped by a cloudwatch:namespace condition instead
        # Read-only, and AWS has no resource type for them (the audit's checks).
        "cloudwatch:GetMetricStatistics",
        "ecs:DescribeTaskDefinition",
    }
)

#: Actions AWS authorises against ``"*"`` (no resource type for the call) that an
#: ``ArnEquals`` ``ecs:cluster`` condition limits to one cluster: allowed on ``"*"`` only
#: with that condition.
CLUSTER_CONDITIONED_ACTIONS: Final = frozenset({"ecs:ListTasks"})

Statement = dict[str, Any]


def cluster_services_arn_pattern(cluster_arn: str) -> str:
    """``...:cluster/NAME`` -> ``...:service/NAME/*`` (every service of that cluster)."""
    return cluster_arn.replace(":cluster/", ":service/", 1) + "/*"


def cluster_tasks_arn_pattern(cluster_arn: str) -> str:
    """``...:cluster/NAME`` -> ``...:task/NAME/*`` (every task of that cluster)."""
    return cluster_arn.replace(":cluster/", ":task/", 1) + "/*"


def statement(
    actions: Sequence[str],
    resources: Sequence[pulumi.Input[str]] | pulumi.Input[str],
    *,
    sid: str | None = None,
    condition: Mapping[str, Any] | None = None,
    effect: str = "Allow",
) -> Statement:
    """One policy statement."""
    result: Statement = {"Effect": effect, "Action": list(actions), "Resource": resources}
    if sid is not None:
        result = {"Sid": sid, **result}
    if condition is not None:
        result["Condition"] = dict(condition)
    return result


def policy_document(statements: Sequence[Statement]) -> pulumi.Output[str]:
    """A JSON policy document; resolves any Outputs inside the statements."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def service_trust_policy(service: str, *, source_account: str | None = None) -> str:
    """Trust policy letting one AWS service principal assume a role.

    With `source_account`, the service may assume the role only on behalf of this
    account (the confused-deputy guard AWS recommends for Scheduler and ECS).
    """
    trust: Statement = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    if source_account is not None:
        trust["Condition"] = {"StringEquals": {"aws:SourceAccount": source_account}}
    return json.dumps({"Version": "2012-10-17", "Statement": [trust]})
