"""The AWS account, region and availability zones the stack deploys into.

Looked up once through the provider (so `pulumi preview` against real AWS sees the
real values, and the test mocks answer the same three calls).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi_aws as aws

from infra.config import InvalidConfig, StackConfig, region_problems


@dataclass(frozen=True)
class AwsAccount:
    account_id: str
    region: str
    partition: str
    availability_zones: tuple[str, ...]

    def arn(
        self, service: str, resource: str, *, regional: bool = True, account: bool = True
    ) -> str:
        """Build an ARN in this account, e.g. ``arn("logs", "log-group:/x:*")``."""
        region = self.region if regional else ""
        account_id = self.account_id if account else ""
        return f"arn:{self.partition}:{service}:{region}:{account_id}:{resource}"


def lookup_account(config: StackConfig) -> AwsAccount:
    """Ask the provider where we are; fail with the config key if the region is too small."""
    identity = aws.get_caller_identity()
    region = aws.get_region()
    partition = aws.get_partition()
    zones = aws.get_availability_zones(
        state="available",
        filters=[
            aws.GetAvailabilityZonesFilterArgs(name="opt-in-status", values=["opt-in-not-required"])
        ],
    )
    names = tuple(sorted(zones.names))
    wanted = config.network.az_count
    problems = region_problems(config, region.region)
    if len(names) < wanted:
        problems.append(
            f"rollgate:azCount: region {region.region} has {len(names)} "
            f"availability zones, need {wanted}"
        )
    if problems:
        raise InvalidConfig(config.stack, problems)
    return AwsAccount(
        account_id=identity.account_id,
        region=region.region,
        partition=partition.partition,
        availability_zones=names[:wanted],
    )
