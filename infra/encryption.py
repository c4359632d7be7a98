"""Customer-managed KMS keys (one per data family), each with a readable alias."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_aws as aws

from infra.iam import policy_document

#: Scheduled deletion waits the maximum 30 days: a deleted key makes its data unreadable.
KEY_DELETION_WINDOW_DAYS = 30


def log_key_policy(
    *, account_id: str, partition: str, region: str, log_group_names: Sequence[str]
) -> pulumi.Output[str]:
    """Key policy: the account administers the key; CloudWatch Logs in this region may use
    it only for the named log groups (the ``kms:EncryptionContext:aws:logs:arn`` condition).
    """
    log_group_arns = [
        f"arn:{partition}:logs:{region}:{account_id}:log-group:{name}" for name in log_group_names
    ]
    return policy_document(
        [
            {
                "Sid": "AccountAdministers",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchLogsEncryptsTheseGroups",
                "Effect": "Allow",
                "Principal": {"Service": f"logs.{region}.amazonaws.com"},
                "Action": [
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                "Resource": "*",
                "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_group_arns}},
            },
        ]
    )


def customer_managed_key(
    name: str,
    *,
    alias: str,
    description: str,
    tags: Mapping[str, str],
    parent: pulumi.Resource,
    protect: bool,
    policy: pulumi.Input[str] | None = None,
) -> aws.kms.Key:
    """A rotating symmetric key and its alias; `policy` None keeps the account-root default."""
    # Customer-managed key with yearly rotation, so access is auditable and revocable.
    key = aws.kms.Key(
        f"{name}-key",
        description=description,
        enable_key_rotation=True,
        deletion_window_in_days=KEY_DELETION_WINDOW_DAYS,
        policy=policy,
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=parent, protect=protect),
    )
    # Alias, so operators find the key by purpose rather than by UUID.
    aws.kms.Alias(
        f"{name}-key-alias",
        name=f"alias/{alias}",
        target_key_id=key.key_id,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return key
