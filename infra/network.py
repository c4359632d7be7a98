"""Network: the VPC every other component lives in.

Creates:
- a VPC across the configured availability zones, with its default security group
  stripped of all rules;
- per AZ, three subnet tiers: public (the load balancer only), app (the ECS tasks)
  and database (RDS), the last two with no route to the internet;
- an internet gateway and public route table; optional NAT gateways (none, one,
  or one per AZ) for task egress to the internet;
- interface VPC endpoints for what the tasks call (ECR, CloudWatch Logs and
  metrics, Secrets Manager, SQS, RDS) and an S3 gateway endpoint (ECR image
  layers and the artifact bucket), so tasks need no NAT at all;
- endpoint policies (`Network.restrict_endpoints`, once the resources they name
  exist): each endpoint reaches only this stack's resources, plus ECR's layer
  bucket through the S3 gateway, so a compromised task cannot move data to a
  bucket, queue or secret of another account through them;
- the stack's log key (KMS), usable by CloudWatch Logs for this stack's log
  groups only, and VPC flow logs to a group encrypted with it;
- least-privilege security groups: load balancer, web, worker, audit, database,
  endpoints. The database accepts 5432 only from web, worker and audit; the web
  tasks accept the container port only from the load balancer and the audit task
  (its API probe, inside the VPC).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_aws as aws

from infra.config import NatMode
from infra.encryption import customer_managed_key, log_key_policy
from infra.iam import (
    Statement,
    cluster_services_arn_pattern,
    cluster_tasks_arn_pattern,
    policy_document,
    service_trust_policy,
    statement,
)
from infra.tagging import (
    ROLE_AUDIT,
    ROLE_DATABASE,
    ROLE_ENDPOINTS,
    ROLE_LOAD_BALANCER,
    ROLE_WEB,
    ROLE_WORKER,
    with_role,
)

#: Interface endpoints the tasks need when they have no NAT.
INTERFACE_ENDPOINT_SERVICES: Final = (
    "ecr.api",  # image manifest + auth token
    "ecr.dkr",  # image pull
    "ecs",  # audit: describe the services, tasks and task definitions it checks
    "logs",  # awslogs driver
    "monitoring",  # custom metrics (PutMetricData)
    "rds",  # audit: describe the instance, its parameters and snapshots
    "secretsmanager",  # task-definition secrets
    "sqs",  # the task queue
)
HTTPS_PORT: Final = 443
HTTP_PORT: Final = 80
ANYWHERE_IPV4: Final = "0.0.0.0/0"
#: S3 actions the tasks may use on the artifact bucket through the gateway endpoint.
ARTIFACT_BUCKET_ACTIONS: Final = (
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:PutObject",
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:GetBucketVersioning",
    # The audit's security posture and its log's Object Lock: bucket settings, read only.
    # Denied here, the audit would report the bucket unchecked (or, for Object Lock,
    # write its log entries unlocked).
    "s3:GetBucketObjectLockConfiguration",
    "s3:GetBucketPublicAccessBlock",
    "s3:GetBucketAcl",
    "s3:GetBucketPolicy",
)
#: SQS actions the web, worker and audit tasks use.
QUEUE_ACTIONS: Final = (
    "sqs:SendMessage",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
)
ECR_PULL_ACTIONS: Final = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
)
#: Subnet tiers, in order of their offset inside the VPC range.
_TIER_OFFSET: Final = {"public": 0, "app": 4, "db": 8}


@dataclass(frozen=True)
class NetworkArgs:
    cidr: str
    availability_zones: Sequence[str]
    region: str
    account_id: str
    nat_gateways: NatMode
    app_port: int
    db_port: int
    https: bool
    log_retention_days: int
    log_group_prefix: str
    tags: Mapping[str, str]
    partition: str
    #: Log groups (names, ``*`` allowed) the log key may encrypt.
    log_group_names: Sequence[str]


@dataclass(frozen=True)
class EndpointScope:
    """What this stack's tasks may reach through the VPC endpoints."""

    account_id: str
    partition: str
    region: str
    ecr_repository_arn: str | None
    log_group_prefix: str
    artifact_bucket_arn: pulumi.Input[str]
    secret_arns: Sequence[pulumi.Input[str]]
    queue_arns: Sequence[pulumi.Input[str]]
    db_instance_arn: pulumi.Input[str]
    db_parameter_group_arn: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    metric_namespace: str


def ecr_layer_bucket_arn(partition: str, region: str) -> str:
    """The bucket ECR serves image layers from, in `region` (reached via the S3 gateway)."""
    return f"arn:{partition}:s3:::prod-{region}-starport-layer-bucket/*"


def _from_this_account(
    actions: Sequence[str], resources: Sequence[pulumi.Input[str]] | str, scope: EndpointScope
) -> Statement:
    return {
        "Effect": "Allow",
        "Principal": "*",
        "Action": list(actions),
        "Resource": resources,
        "Condition": {"StringEquals": {"aws:PrincipalAccount": scope.account_id}},
    }


def _cluster_condition(item: Statement, cluster_arn: pulumi.Input[str]) -> Statement:
    """`item`, further limited to calls naming this cluster (``ecs:cluster``)."""
    return {
        **item,
        "Condition": {**item["Condition"], "ArnEquals": {"ecs:cluster": cluster_arn}},
    }


def endpoint_policy_statements(scope: EndpointScope) -> dict[str, list[Statement]]:
    """Endpoint policy statements per endpoint service (``s3`` is the gateway endpoint).

    Each endpoint allows only calls from this account on this stack's resources; the S3
    gateway also lets ECR's layer downloads through (ECR signs those, so no account
    condition there).
    """
    ecr: list[Statement] = [
        _from_this_account(["ecr:GetAuthorizationToken"], "*", scope),
    ]
    if scope.ecr_repository_arn is not None:
        ecr.append(_from_this_account(ECR_PULL_ACTIONS, [scope.ecr_repository_arn], scope))
    bucket_objects = pulumi.Output.from_input(scope.artifact_bucket_arn).apply(
        lambda arn: f"{arn}/*"
    )
    log_groups = (
        f"arn:{scope.partition}:logs:{scope.region}:{scope.account_id}:log-group:"
        f"{scope.log_group_prefix}/*"
    )
    metrics = _from_this_account(["cloudwatch:PutMetricData"], "*", scope)
    metrics["Condition"] = {
        "StringEquals": {
            "aws:PrincipalAccount": scope.account_id,
            "cloudwatch:namespace": scope.metric_namespace,
        }
    }
    return {
        "ecr.api": ecr,
        "ecr.dkr": ecr,
        "logs": [
            _from_this_account(
                ["logs:CreateLogStream", "logs:PutLogEvents"],
                [log_groups, f"{log_groups}:log-stream:*"],
                scope,
            )
        ],
        "ecs": [
            # DescribeTaskDefinition has no resource type: AWS authorises it against "*".
            _from_this_account(["ecs:DescribeTaskDefinition"], "*", scope),
            _from_this_account(
                ["ecs:DescribeServices"],
                [pulumi.Output.from_input(scope.cluster_arn).apply(cluster_services_arn_pattern)],
                scope,
            ),
            # The audit's API probe finds a running web task's private address: list this
            # cluster's tasks (no resource type: scoped by the ecs:cluster condition) and
            # describe them (this cluster's tasks only).
            _cluster_condition(
                _from_this_account(["ecs:ListTasks"], "*", scope), scope.cluster_arn
            ),
            _from_this_account(
                ["ecs:DescribeTasks"],
                [pulumi.Output.from_input(scope.cluster_arn).apply(cluster_tasks_arn_pattern)],
                scope,
            ),
            # The worker's scale-in protection (through the ECS agent, which calls the ECS
            # API with the task's role): with private DNS on, a call that leaves through
            # the task's network interface reaches this endpoint, so it must be allowed
            # here as it is in the worker's role (this cluster's tasks only).
            _from_this_account(
                ["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"],
                [pulumi.Output.from_input(scope.cluster_arn).apply(cluster_tasks_arn_pattern)],
                scope,
            ),
        ],
        "monitoring": [
            metrics,
            # The audit reads queue age and the app's rejected webhooks (no resource type).
            _from_this_account(["cloudwatch:GetMetricStatistics"], "*", scope),
        ],
        "rds": [
            _from_this_account(
                ["rds:DescribeDBInstances", "rds:DescribeDBSnapshots"],
                [
                    scope.db_instance_arn,
                    f"arn:{scope.partition}:rds:{scope.region}:{scope.account_id}:snapshot:*",
                ],
                scope,
            ),
            _from_this_account(["rds:DescribeDBParameters"], [scope.db_parameter_group_arn], scope),
        ],
        "secretsmanager": [
            _from_this_account(["secretsmanager:GetSecretValue"], list(scope.secret_arns), scope)
        ],
        "sqs": [_from_this_account(QUEUE_ACTIONS, list(scope.queue_arns), scope)],
        "s3": [
            {
                "Sid": "EcrImageLayers",
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObject"],
                "Resource": [ecr_layer_bucket_arn(scope.partition, scope.region)],
            },
            _from_this_account(
                ARTIFACT_BUCKET_ACTIONS, [scope.artifact_bucket_arn, bucket_objects], scope
            ),
        ],
    }


@dataclass(frozen=True)
class SecurityGroups:
    load_balancer: pulumi.Output[str]
    web: pulumi.Output[str]
    worker: pulumi.Output[str]
    audit: pulumi.Output[str]
    database: pulumi.Output[str]
    endpoints: pulumi.Output[str]


def subnet_cidrs(cidr: str, tier: str, az_count: int) -> list[str]:
    """CIDRs of one tier: the VPC range cut in 16, tiers 4 blocks apart (<= 4 AZs)."""
    blocks = list(ipaddress.IPv4Network(cidr).subnets(prefixlen_diff=4))
    offset = _TIER_OFFSET[tier]
    return [str(blocks[offset + index]) for index in range(az_count)]


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    app_subnet_ids: list[pulumi.Output[str]]
    db_subnet_ids: list[pulumi.Output[str]]
    security_groups: SecurityGroups
    #: Endpoint service (``s3`` for the gateway) -> its endpoint.
    endpoints: dict[str, aws.ec2.VpcEndpoint]
    #: The stack's log key: every log group is encrypted with it.
    log_kms_key_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rollgate:infra:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        zones = list(args.availability_zones)
        self._name = name

        log_key = customer_managed_key(
            f"{name}-logs",
            alias=f"{name}-logs",
            description=f"Rollgate {name}: CloudWatch log groups",
            tags=tags,
            parent=self,
            protect=False,
            policy=log_key_policy(
                account_id=args.account_id,
                partition=args.partition,
                region=args.region,
                log_group_names=args.log_group_names,
            ),
        )
        self.log_kms_key_arn = log_key.arn

        # VPC with DNS, which private endpoints and RDS endpoints resolve through.
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags={**tags, "Name": f"{name}-vpc"},
            opts=child,
        )
        # Default security group with every rule removed, so nothing can use it by accident.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=vpc.id,
            ingress=[],
            egress=[],
            tags={**tags, "Name": f"{name}-default-do-not-use"},
            opts=child,
        )
        # Internet gateway for the public (load balancer) tier.
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags, opts=child)

        public = self._subnets(name, vpc, "public", zones=zones, args=args, tags=tags)
        app = self._subnets(name, vpc, "app", zones=zones, args=args, tags=tags)
        db = self._subnets(name, vpc, "db", zones=zones, args=args, tags=tags)

        # Public route table: the only one with a route to the internet gateway.
        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt", vpc_id=vpc.id, tags={**tags, "Name": f"{name}-public"}, opts=child
        )
        # Default route of the public tier.
        aws.ec2.Route(
            f"{name}-public-default-route",
            route_table_id=public_rt.id,
            destination_cidr_block=ANYWHERE_IPV4,
            gateway_id=igw.id,
            opts=child,
        )
        for index, subnet in enumerate(public):
            # Public subnet association.
            aws.ec2.RouteTableAssociation(
                f"{name}-public-rta-{index}",
                subnet_id=subnet.id,
                route_table_id=public_rt.id,
                opts=child,
            )

        nat_ids = self._nat_gateways(name, args, public, igw, tags)
        app_route_tables: list[aws.ec2.RouteTable] = []
        for index, subnet in enumerate(app):
            # App route table per AZ, so each AZ can use its own NAT gateway.
            rt = aws.ec2.RouteTable(
                f"{name}-app-rt-{index}",
                vpc_id=vpc.id,
                tags={**tags, "Name": f"{name}-app-{zones[index]}"},
                opts=child,
            )
            app_route_tables.append(rt)
            # App subnet association.
            aws.ec2.RouteTableAssociation(
                f"{name}-app-rta-{index}", subnet_id=subnet.id, route_table_id=rt.id, opts=child
            )
            if nat_ids:
                # Default route of the app tier through NAT (only when NAT is configured).
                aws.ec2.Route(
                    f"{name}-app-default-route-{index}",
                    route_table_id=rt.id,
                    destination_cidr_block=ANYWHERE_IPV4,
                    nat_gateway_id=nat_ids[index % len(nat_ids)],
                    opts=child,
                )
        # Database route table: local routes only, the database tier is isolated.
        db_rt = aws.ec2.RouteTable(
            f"{name}-db-rt", vpc_id=vpc.id, tags={**tags, "Name": f"{name}-db"}, opts=child
        )
        for index, subnet in enumerate(db):
            # Database subnet association.
            aws.ec2.RouteTableAssociation(
                f"{name}-db-rta-{index}", subnet_id=subnet.id, route_table_id=db_rt.id, opts=child
            )

        groups = self._security_groups(name, vpc, tags)
        # S3 gateway endpoint: ECR image layers and the artifact bucket, without NAT.
        s3_endpoint = aws.ec2.VpcEndpoint(
            f"{name}-s3-endpoint",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in app_route_tables],
            tags=tags,
            opts=child,
        )
        self.endpoints = {"s3": s3_endpoint}
        for service in INTERFACE_ENDPOINT_SERVICES:
            # Interface endpoint with private DNS, so SDKs use it without configuration.
            self.endpoints[service] = aws.ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}-endpoint",
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{args.region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=[subnet.id for subnet in app],
                security_group_ids=[groups[ROLE_ENDPOINTS].id],
                tags=tags,
                opts=child,
            )
        self._rules(name, args, groups, s3_endpoint.prefix_list_id, tags)
        self._flow_logs(name, vpc, args, log_key.arn, tags)

        self.vpc_id = vpc.id
        self.public_subnet_ids = [subnet.id for subnet in public]
        self.app_subnet_ids = [subnet.id for subnet in app]
        self.db_subnet_ids = [subnet.id for subnet in db]
        self.security_groups = SecurityGroups(
            load_balancer=groups[ROLE_LOAD_BALANCER].id,
            web=groups[ROLE_WEB].id,
            worker=groups[ROLE_WORKER].id,
            audit=groups[ROLE_AUDIT].id,
            database=groups[ROLE_DATABASE].id,
            endpoints=groups[ROLE_ENDPOINTS].id,
        )
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "publicSubnetIds": self.public_subnet_ids,
                "appSubnetIds": self.app_subnet_ids,
                "dbSubnetIds": self.db_subnet_ids,
                "databaseSecurityGroupId": self.security_groups.database,
            }
        )

    def restrict_endpoints(self, scope: EndpointScope) -> None:
        """Attach an endpoint policy to every endpoint (call once the resources exist)."""
        statements = endpoint_policy_statements(scope)
        missing = set(self.endpoints) - set(statements)
        if missing:  # a programming error: a new endpoint without a policy
            raise ValueError(f"no endpoint policy for {sorted(missing)}")
        for service, endpoint in self.endpoints.items():
            # Endpoint policy: only this account's calls on this stack's resources.
            aws.ec2.VpcEndpointPolicy(
                f"{self._name}-{service.replace('.', '-')}-endpoint-policy",
                vpc_endpoint_id=endpoint.id,
                policy=policy_document(statements[service]),
                opts=pulumi.ResourceOptions(parent=self),
            )

    def _subnets(
        self,
        name: str,
        vpc: aws.ec2.Vpc,
        tier: str,
        *,
        zones: list[str],
        args: NetworkArgs,
        tags: dict[str, str],
    ) -> list[aws.ec2.Subnet]:
        subnets = []
        for index, (zone, cidr) in enumerate(
            zip(zones, subnet_cidrs(args.cidr, tier, len(zones)), strict=True)
        ):
            # One subnet per tier and AZ; none hands out public IPs, the ALB has its own.
            subnets.append(
                aws.ec2.Subnet(
                    f"{name}-{tier}-{index}",
                    vpc_id=vpc.id,
                    availability_zone=zone,
                    cidr_block=cidr,
                    map_public_ip_on_launch=False,
                    tags={**tags, "Name": f"{name}-{tier}-{zone}", "rollgate:tier": tier},
                    opts=pulumi.ResourceOptions(parent=self),
                )
            )
        return subnets

    def _nat_gateways(
        self,
        name: str,
        args: NetworkArgs,
        public: list[aws.ec2.Subnet],
        igw: aws.ec2.InternetGateway,
        tags: dict[str, str],
    ) -> list[pulumi.Output[str]]:
        count = {"none": 0, "single": 1, "per-az": len(public)}[args.nat_gateways]
        ids = []
        for index in range(count):
            # Elastic IP of one NAT gateway.
            eip = aws.ec2.Eip(
                f"{name}-nat-eip-{index}",
                domain="vpc",
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self),
            )
            # NAT gateway for task egress to the internet; needs the IGW attached first.
            nat = aws.ec2.NatGateway(
                f"{name}-nat-{index}",
                allocation_id=eip.allocation_id,
                subnet_id=public[index].id,
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
            )
            ids.append(nat.id)
        return ids

    def _security_groups(
        self, name: str, vpc: aws.ec2.Vpc, tags: dict[str, str]
    ) -> dict[str, aws.ec2.SecurityGroup]:
        descriptions = {
            ROLE_LOAD_BALANCER: "Rollgate ALB: HTTP(S) from the internet, to web tasks only",
            # A group's description cannot change in place (a new one replaces the group
            # and every task using it), so this one stays: the web group also accepts the
            # audit's API probe on the container port (rule web-from-audit below).
            ROLE_WEB: "Rollgate web tasks: from the ALB only",
            ROLE_WORKER: "Rollgate worker tasks: no inbound",
            ROLE_AUDIT: "Rollgate audit task: no inbound",
            ROLE_DATABASE: "Rollgate RDS: PostgreSQL from web, worker and audit only",
            ROLE_ENDPOINTS: "Rollgate VPC endpoints: HTTPS from the tasks only",
        }
        groups = {}
        for role, description in descriptions.items():
            # Security group with no inline rules: every rule is a separate, reviewable resource.
            groups[role] = aws.ec2.SecurityGroup(
                f"{name}-{role}-sg",
                vpc_id=vpc.id,
                description=description,
                tags={**with_role(tags, role), "Name": f"{name}-{role}"},
                opts=pulumi.ResourceOptions(parent=self),
            )
        return groups

    def _rules(
        self,
        name: str,
        args: NetworkArgs,
        groups: dict[str, aws.ec2.SecurityGroup],
        s3_prefix_list: pulumi.Output[str],
        tags: dict[str, str],
    ) -> None:
        def ingress(
            rule: str,
            role: str,
            port: int,
            description: str,
            *,
            source: str | None = None,
            cidr: str | None = None,
        ) -> None:
            # Ingress rule: one port from one named source.
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-{rule}",
                security_group_id=groups[role].id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                referenced_security_group_id=groups[source].id if source else None,
                cidr_ipv4=cidr,
                description=description,
                tags=with_role(tags, role),
                opts=pulumi.ResourceOptions(parent=self),
            )

        def egress(
            rule: str,
            role: str,
            port: int,
            description: str,
            *,
            target: str | None = None,
            prefix_list: pulumi.Input[str] | None = None,
            cidr: str | None = None,
        ) -> None:
            # Egress rule: one port to one named destination.
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-{rule}",
                security_group_id=groups[role].id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                referenced_security_group_id=groups[target].id if target else None,
                prefix_list_id=prefix_list,
                cidr_ipv4=cidr,
                description=description,
                tags=with_role(tags, role),
                opts=pulumi.ResourceOptions(parent=self),
            )

        lb = ROLE_LOAD_BALANCER
        if args.https:
            ingress("lb-https-in", lb, HTTPS_PORT, "HTTPS from the internet", cidr=ANYWHERE_IPV4)
        ingress(
            "lb-http-in",
            lb,
            HTTP_PORT,
            "HTTP from the internet (redirected to HTTPS)"
            if args.https
            else "HTTP from the internet",
            cidr=ANYWHERE_IPV4,
        )
        egress("lb-to-web", lb, args.app_port, "to web tasks", target=ROLE_WEB)
        ingress("web-from-lb", ROLE_WEB, args.app_port, "from the load balancer", source=lb)
        # The scheduled audit's API probe: the audit task has no route to the public load
        # balancer (no NAT by default), so it probes one web task's private address. Only
        # the container port, and only from the audit's own group (no address range).
        ingress(
            "web-from-audit",
            ROLE_WEB,
            args.app_port,
            "from the audit task (its API probe)",
            source=ROLE_AUDIT,
        )
        egress(
            "audit-to-web", ROLE_AUDIT, args.app_port, "to web tasks (API probe)", target=ROLE_WEB
        )

        for role in (ROLE_WEB, ROLE_WORKER, ROLE_AUDIT):
            ingress(
                f"db-from-{role}",
                ROLE_DATABASE,
                args.db_port,
                f"PostgreSQL from {role}",
                source=role,
            )
            egress(f"{role}-to-db", role, args.db_port, "PostgreSQL to RDS", target=ROLE_DATABASE)
            ingress(
                f"endpoints-from-{role}",
                ROLE_ENDPOINTS,
                HTTPS_PORT,
                f"HTTPS from {role}",
                source=role,
            )
            egress(
                f"{role}-to-endpoints",
                role,
                HTTPS_PORT,
                "HTTPS to VPC endpoints",
                target=ROLE_ENDPOINTS,
            )
            egress(
                f"{role}-to-s3",
                role,
                HTTPS_PORT,
                "HTTPS to S3 (gateway endpoint)",
                prefix_list=s3_prefix_list,
            )
            if args.nat_gateways != "none":
                egress(
                    f"{role}-to-internet",
                    role,
                    HTTPS_PORT,
                    "HTTPS to the internet via NAT",
                    cidr=ANYWHERE_IPV4,
                )

    def _flow_logs(
        self,
        name: str,
        vpc: aws.ec2.Vpc,
        args: NetworkArgs,
        kms_key_arn: pulumi.Input[str],
        tags: dict[str, str],
    ) -> None:
        child = pulumi.ResourceOptions(parent=self)
        # Flow-log group, kept as long as the other logs, encrypted with the log key.
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            name=f"{args.log_group_prefix}/vpc-flow-logs",
            retention_in_days=args.log_retention_days,
            kms_key_id=kms_key_arn,
            tags=tags,
            opts=child,
        )
        # Role the flow-log service assumes to write to that group only.
        role = aws.iam.Role(
            f"{name}-flow-logs-role",
            assume_role_policy=service_trust_policy(
                "vpc-flow-logs.amazonaws.com", source_account=args.account_id
            ),
            tags=tags,
            opts=child,
        )
        # Write access to the flow-log group.
        aws.iam.RolePolicy(
            f"{name}-flow-logs-policy",
            role=role.id,
            policy=policy_document(
                [
                    statement(
                        ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                        [log_group.arn, log_group.arn.apply(lambda arn: f"{arn}:*")],
                    )
                ]
            ),
            opts=child,
        )
        # Flow logs of all VPC traffic, for incident forensics.
        aws.ec2.FlowLog(
            f"{name}-flow-log",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=log_group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=600,
            tags=tags,
            opts=child,
        )
