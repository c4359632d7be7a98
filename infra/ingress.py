"""Ingress: the public application load balancer in front of the web service.

Creates:
- an internet-facing ALB in the public subnets (the only thing there), dropping
  invalid headers, with deletion protection in prod;
- the web target group (Fargate tasks by IP) with an HTTP health check;
- with a certificate: an HTTPS listener (TLS 1.2+ policy) and an HTTP listener
  that only redirects to HTTPS; without one (dev only, config enforces this):
  a plain HTTP listener.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_aws as aws

from infra.iam import policy_document, statement
from infra.tagging import ROLE_ACCESS_LOGS, with_role

#: TLS 1.3 and 1.2 only, forward-secret ciphers.
TLS_POLICY: Final = "ELBSecurityPolicy-TLS13-1-2-2021-06"
DEREGISTRATION_DELAY_SECONDS: Final = 30
#: Key prefix of the access logs in their bucket.
ACCESS_LOG_PREFIX: Final = "alb"
#: Region-agnostic principal ELB delivers access logs as (see docs/infra.md for older Regions).
ELB_LOG_DELIVERY_PRINCIPAL: Final = "logdelivery.elasticloadbalancing.amazonaws.com"
NONCURRENT_LOG_DAYS: Final = 1


@dataclass(frozen=True)
class IngressArgs:
    vpc_id: pulumi.Input[str]
    public_subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    container_port: int
    health_check_path: str
    certificate_arn: str | None
    prod: bool
    tags: Mapping[str, str]
    account_id: str
    log_retention_days: int
    domain_name: str | None = None
    hosted_zone_id: str | None = None
    waf_web_acl_arn: str | None = None


class Ingress(pulumi.ComponentResource):
    load_balancer: aws.lb.LoadBalancer
    target_group: aws.lb.TargetGroup
    access_log_bucket: aws.s3.Bucket
    #: The listener that forwards to the target group (ECS needs it before the service).
    listener: aws.lb.Listener
    dns_name: pulumi.Output[str]
    url: pulumi.Output[str]

    def __init__(
        self, name: str, args: IngressArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rollgate:infra:Ingress", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        log_bucket_policy = self._access_log_bucket(name, args, tags)
        # Internet-facing ALB; the public subnets hold nothing else. ELB test-writes to the
        # log bucket when logging is turned on, so the bucket policy must exist first.
        self.load_balancer = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=False,
            subnets=list(args.public_subnet_ids),
            security_groups=[args.security_group_id],
            drop_invalid_header_fields=True,
            enable_deletion_protection=args.prod,
            access_logs=aws.lb.LoadBalancerAccessLogsArgs(
                bucket=self.access_log_bucket.bucket,
                prefix=ACCESS_LOG_PREFIX,
                enabled=True,
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_bucket_policy]),
        )
        if args.waf_web_acl_arn is not None:
            # The configured WAF web ACL filters every request before the listeners.
            aws.wafv2.WebAclAssociation(
                f"{name}-waf",
                resource_arn=self.load_balancer.arn,
                web_acl_arn=args.waf_web_acl_arn,
                opts=child,
            )
        # Web target group: Fargate tasks registered by IP, health-checked over HTTP.
        self.target_group = aws.lb.TargetGroup(
            f"{name}-web",
            port=args.container_port,
            protocol="HTTP",
            target_type="ip",
            vpc_id=args.vpc_id,
            deregistration_delay=DEREGISTRATION_DELAY_SECONDS,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                enabled=True,
                path=args.health_check_path,
                protocol="HTTP",
                port="traffic-port",
                matcher="200",
                interval=15,
                timeout=5,
                healthy_threshold=2,
                unhealthy_threshold=3,
            ),
            tags=tags,
            opts=child,
        )
        forward = aws.lb.ListenerDefaultActionArgs(
            type="forward", target_group_arn=self.target_group.arn
        )
        if args.certificate_arn is not None:
            # HTTPS listener: TLS terminates here with the configured certificate.
            self.listener = aws.lb.Listener(
                f"{name}-https",
                load_balancer_arn=self.load_balancer.arn,
                port=443,
                protocol="HTTPS",
                ssl_policy=TLS_POLICY,
                certificate_arn=args.certificate_arn,
                default_actions=[forward],
                tags=tags,
                opts=child,
            )
            # HTTP listener that only redirects to HTTPS.
            aws.lb.Listener(
                f"{name}-http-redirect",
                load_balancer_arn=self.load_balancer.arn,
                port=80,
                protocol="HTTP",
                default_actions=[
                    aws.lb.ListenerDefaultActionArgs(
                        type="redirect",
                        redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                            protocol="HTTPS", port="443", status_code="HTTP_301"
                        ),
                    )
                ],
                tags=tags,
                opts=child,
            )
            scheme = "https"
        else:
            # Plain HTTP listener: dev stacks without a certificate only.
            self.listener = aws.lb.Listener(
                f"{name}-http",
                load_balancer_arn=self.load_balancer.arn,
                port=80,
                protocol="HTTP",
                default_actions=[forward],
                tags=tags,
                opts=child,
            )
            scheme = "http"

        self.dns_name = self.load_balancer.dns_name
        if args.domain_name is not None and args.hosted_zone_id is not None:
            # Alias record: the app's domain resolves to the ALB (no TTL, follows its IPs).
            aws.route53.Record(
                f"{name}-alias",
                zone_id=args.hosted_zone_id,
                name=args.domain_name,
                type="A",
                aliases=[
                    aws.route53.RecordAliasArgs(
                        name=self.load_balancer.dns_name,
                        zone_id=self.load_balancer.zone_id,
                        evaluate_target_health=True,
                    )
                ],
                opts=child,
            )
        if args.domain_name is not None:
            self.url = pulumi.Output.from_input(f"{scheme}://{args.domain_name}")
        else:
            self.url = self.load_balancer.dns_name.apply(lambda dns: f"{scheme}://{dns}")
        self.register_outputs(
            {
                "dnsName": self.dns_name,
                "url": self.url,
                "loadBalancerArnSuffix": self.load_balancer.arn_suffix,
                "targetGroupArn": self.target_group.arn,
                "accessLogBucket": self.access_log_bucket.bucket,
            }
        )

    def _access_log_bucket(
        self, name: str, args: IngressArgs, tags: dict[str, str]
    ) -> aws.s3.BucketPolicy:
        """The access-log bucket and its guards; returns its policy (the ALB waits for it)."""
        child = pulumi.ResourceOptions(parent=self)
        # Access-log bucket: private, versioned, SSE-S3 (the only encryption ELB can write).
        bucket = aws.s3.Bucket(
            f"{name}-access-logs-bucket",
            force_destroy=False,
            tags=with_role(tags, ROLE_ACCESS_LOGS),
            opts=pulumi.ResourceOptions(parent=self, protect=args.prod),
        )
        self.access_log_bucket = bucket
        # Bucket-owner-enforced ownership: ACLs off, the account owns every log object.
        aws.s3.BucketOwnershipControls(
            f"{name}-access-logs-ownership",
            bucket=bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        # Every public-access block on.
        public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-access-logs-public-access-block",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        # Versioning, so a deleted or overwritten log is recoverable until it expires.
        versioning = aws.s3.BucketVersioning(
            f"{name}-access-logs-versioning",
            bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                status="Enabled"
            ),
            opts=child,
        )
        # SSE-S3: ELB access-log delivery does not support SSE-KMS.
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-access-logs-encryption",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256",
                    ),
                )
            ],
            opts=child,
        )
        # Logs expire with the other logs; old versions a day later.
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-access-logs-lifecycle",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-access-logs",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(
                        days=args.log_retention_days,
                    ),
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=NONCURRENT_LOG_DAYS,
                    ),
                )
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        objects = bucket.arn.apply(lambda arn: f"{arn}/*")
        log_objects = bucket.arn.apply(
            lambda arn: f"{arn}/{ACCESS_LOG_PREFIX}/AWSLogs/{args.account_id}/*"
        )
        # TLS only; ELB log delivery may write under its prefix for this account only.
        return aws.s3.BucketPolicy(
            f"{name}-access-logs-policy",
            bucket=bucket.id,
            policy=policy_document(
                [
                    {
                        **statement(
                            ["s3:*"],
                            [bucket.arn, objects],
                            sid="DenyInsecureTransport",
                            effect="Deny",
                            condition={"Bool": {"aws:SecureTransport": "false"}},
                        ),
                        "Principal": "*",
                    },
                    {
                        **statement(
                            ["s3:PutObject"],
                            [log_objects],
                            sid="ElbLogDelivery",
                        ),
                        "Principal": {"Service": ELB_LOG_DELIVERY_PRINCIPAL},
                    },
                ]
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access_block]),
        )
