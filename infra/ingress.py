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

#: TLS 1.3 and 1.2 only, forward-secret ciphers.
TLS_POLICY: Final = "ELBSecurityPolicy-TLS13-1-2-2021-06"
DEREGISTRATION_DELAY_SECONDS: Final = 30


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


class Ingress(pulumi.ComponentResource):
    load_balancer: aws.lb.LoadBalancer
    target_group: aws.lb.TargetGroup
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

        # Internet-facing ALB; the public subnets hold nothing else.
        self.load_balancer = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=False,
            subnets=list(args.public_subnet_ids),
            security_groups=[args.security_group_id],
            drop_invalid_header_fields=True,
            enable_deletion_protection=args.prod,
            tags=tags,
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
        self.url = self.load_balancer.dns_name.apply(lambda dns: f"{scheme}://{dns}")
        self.register_outputs(
            {
                "dnsName": self.dns_name,
                "url": self.url,
                "loadBalancerArnSuffix": self.load_balancer.arn_suffix,
                "targetGroupArn": self.target_group.arn,
            }
        )
