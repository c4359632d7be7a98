"""Customer-managed KMS keys (one per data family), each with a readable alias."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

#: Scheduled deletion waits the maximum 30 days: a deleted key makes its data unreadable.
KEY_DELETION_WINDOW_DAYS = 30


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
