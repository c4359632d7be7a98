"""Network: multi-AZ VPC, tiered subnets, endpoints instead of NAT, least-privilege groups."""

from __future__ import annotations

import ipaddress

from infra.network import INTERFACE_ENDPOINT_SERVICES
from infra.tagging import DATABASE_CLIENT_ROLES, TAG_ROLE
from tests.infra.harness import REGION, CapturedResource, ProgramRun

VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
ROUTE = "aws:ec2/route:Route"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
NAT = "aws:ec2/natGateway:NatGateway"


def tier(run: ProgramRun, name: str) -> list[CapturedResource]:
    return [s for s in run.of_type(SUBNET) if s.tags.get("rollgate:tier") == name]


def group(run: ProgramRun, role: str) -> CapturedResource:
    found = [g for g in run.of_type(SG) if g.tags.get(TAG_ROLE) == role]
    assert len(found) == 1
    return found[0]


def rules_of(run: ProgramRun, type_: str, role: str) -> list[CapturedResource]:
    urn = group(run, role).urn
    return [
        r for r in run.of_type(type_) if r.property_dependencies.get("securityGroupId") == [urn]
    ]


def source_role(run: ProgramRun, rule: CapturedResource) -> str | None:
    urns = rule.property_dependencies.get("referencedSecurityGroupId", [])
    return run.by_urn[urns[0]].tags.get(TAG_ROLE) if urns else None


def test_vpc_spans_at_least_two_zones(run: ProgramRun) -> None:
    zones = {s.inputs["availabilityZone"] for s in run.of_type(SUBNET)}
    assert len(zones) >= 2
    assert len(run.of_type(VPC)) == 1
    for name in ("public", "app", "db"):
        assert {s.inputs["availabilityZone"] for s in tier(run, name)} == zones


def test_prod_spans_three_zones(prod: ProgramRun) -> None:
    assert len({s.inputs["availabilityZone"] for s in prod.of_type(SUBNET)}) == 3


def test_subnets_do_not_overlap_and_hand_out_no_public_ips(run: ProgramRun) -> None:
    networks = [ipaddress.IPv4Network(s.inputs["cidrBlock"]) for s in run.of_type(SUBNET)]
    vpc = ipaddress.IPv4Network(run.one(VPC).inputs["cidrBlock"])
    assert all(n.subnet_of(vpc) for n in networks)
    assert not any(a.overlaps(b) for i, a in enumerate(networks) for b in networks[i + 1 :])
    assert all(s.inputs["mapPublicIpOnLaunch"] is False for s in run.of_type(SUBNET))


def test_only_the_public_tier_routes_to_the_internet_gateway(run: ProgramRun) -> None:
    igw_routes = [r for r in run.of_type(ROUTE) if "gatewayId" in r.inputs]
    assert len(igw_routes) == 1
    public_rt = run.by_urn[igw_routes[0].property_dependencies["routeTableId"][0]]
    associations = run.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")
    public_subnets = {
        a.property_dependencies["subnetId"][0]
        for a in associations
        if a.property_dependencies["routeTableId"] == [public_rt.urn]
    }
    assert public_subnets == {s.urn for s in tier(run, "public")}


def test_public_subnets_hold_the_load_balancer_only(run: ProgramRun) -> None:
    public = {s.urn for s in tier(run, "public")}
    alb = run.one("aws:lb/loadBalancer:LoadBalancer")
    assert set(alb.property_dependencies["subnets"]) == public
    users = [
        r
        for r in run.resources
        if r is not alb
        and r.type != "aws:ec2/routeTableAssociation:RouteTableAssociation"
        and any(urn in public for urns in r.property_dependencies.values() for urn in urns)
    ]
    assert all(r.type == NAT for r in users), [r.name for r in users]


def test_tasks_and_database_live_in_private_tiers(run: ProgramRun) -> None:
    app = {s.urn for s in tier(run, "app")}
    db = {s.urn for s in tier(run, "db")}
    for service in run.of_type("aws:ecs/service:Service"):
        assert set(service.property_dependencies["networkConfiguration"]) >= app
        assert service.inputs["networkConfiguration"]["assignPublicIp"] is False
    subnet_group = run.one("aws:rds/subnetGroup:SubnetGroup")
    assert set(subnet_group.property_dependencies["subnetIds"]) == db


def test_endpoints_cover_what_the_tasks_call(run: ProgramRun) -> None:
    services = {
        e.inputs["serviceName"].removeprefix(f"com.amazonaws.{REGION}.")
        for e in run.of_type(ENDPOINT)
    }
    assert {"sqs", "secretsmanager", "ecr.api", "ecr.dkr", "logs", "s3"} <= services
    assert set(INTERFACE_ENDPOINT_SERVICES) <= services
    for endpoint in run.of_type(ENDPOINT):
        if endpoint.inputs["vpcEndpointType"] == "Interface":
            assert endpoint.inputs["privateDnsEnabled"] is True
            assert set(endpoint.property_dependencies["subnetIds"]) == {
                s.urn for s in tier(run, "app")
            }


def test_no_nat_by_default(run: ProgramRun) -> None:
    assert run.of_type(NAT) == []
    assert [r for r in run.of_type(ROUTE) if "natGatewayId" in r.inputs] == []


def test_nat_gateways_when_configured(variant: ProgramRun) -> None:
    run = variant  # natGateways: per-az
    assert len(run.of_type(NAT)) == len(tier(run, "public"))
    nat_routes = [r for r in run.of_type(ROUTE) if "natGatewayId" in r.inputs]
    assert len(nat_routes) == len(tier(run, "app"))
    for nat in run.of_type(NAT):
        assert any("InternetGateway" in urn for urn in nat.depends_on)
    # With NAT, tasks may reach the internet on 443 only.
    internet = [r for r in run.of_type(EGRESS) if r.inputs.get("cidrIpv4") == "0.0.0.0/0"]
    assert {r.inputs["fromPort"] for r in internet} == {443}
    assert {r.tags[TAG_ROLE] for r in internet} == {"web", "worker", "audit"}


def test_database_accepts_postgres_only_from_web_worker_and_audit(run: ProgramRun) -> None:
    rules = rules_of(run, INGRESS, "database")
    assert {source_role(run, r) for r in rules} == set(DATABASE_CLIENT_ROLES)
    for rule in rules:
        assert rule.inputs["fromPort"] == rule.inputs["toPort"] == 5432
        assert "cidrIpv4" not in rule.inputs
        assert "cidrIpv6" not in rule.inputs
    assert rules_of(run, EGRESS, "database") == []
    db = run.one("aws:rds/instance:Instance")
    assert db.property_dependencies["vpcSecurityGroupIds"] == [group(run, "database").urn]


def test_only_the_load_balancer_is_open_to_the_internet(run: ProgramRun) -> None:
    open_rules = [r for r in run.of_type(INGRESS) if r.inputs.get("cidrIpv4") == "0.0.0.0/0"]
    assert {r.tags[TAG_ROLE] for r in open_rules} == {"load-balancer"}
    assert {r.inputs["fromPort"] for r in open_rules} <= {80, 443}
    web_ingress = rules_of(run, INGRESS, "web")
    assert sorted(source_role(run, r) or "" for r in web_ingress) == ["audit", "load-balancer"]
    for role in ("worker", "audit", "vpc-endpoints"):
        assert all(source_role(run, r) for r in rules_of(run, INGRESS, role))
    assert rules_of(run, INGRESS, "worker") == []
    assert rules_of(run, INGRESS, "audit") == []


def test_tasks_egress_is_named_destinations_only(run: ProgramRun) -> None:
    for role in ("web", "worker", "audit"):
        egress = rules_of(run, EGRESS, role)
        destinations = {
            (
                source_role(run, r) or r.inputs.get("prefixListId") or r.inputs.get("cidrIpv4"),
                r.inputs["fromPort"],
            )
            for r in egress
        }
        expected = {("database", 5432), ("vpc-endpoints", 443), ("pl-6da54004", 443)}
        if role == "audit":  # its API probe, to a web task's private address
            expected.add(("web", 8000))
        assert destinations == expected


def test_web_tasks_accept_the_audit_probe_on_the_container_port_only(run: ProgramRun) -> None:
    """The scheduled audit probes a web task inside the VPC: one port, from one group."""
    container_port = run.exports["webContainerPort"]
    from_audit = [r for r in rules_of(run, INGRESS, "web") if source_role(run, r) == "audit"]
    [rule] = from_audit
    assert rule.inputs["fromPort"] == rule.inputs["toPort"] == container_port
    assert rule.inputs["ipProtocol"] == "tcp"
    for address_range in ("cidrIpv4", "cidrIpv6", "prefixListId"):
        assert address_range not in rule.inputs
    # The audit may reach the web tasks and nothing else of the app tier: no other role
    # accepts it, and its only egress to a task group is the web one on that port.
    for role in ("worker", "audit", "load-balancer"):
        assert "audit" not in {source_role(run, r) for r in rules_of(run, INGRESS, role)}
    to_web = [r for r in rules_of(run, EGRESS, "audit") if source_role(run, r) == "web"]
    assert [(r.inputs["fromPort"], r.inputs["toPort"]) for r in to_web] == [
        (container_port, container_port)
    ]


def test_https_is_open_only_with_a_certificate(dev: ProgramRun, prod: ProgramRun) -> None:
    def open_ports(run: ProgramRun) -> set[int]:
        return {r.inputs["fromPort"] for r in rules_of(run, INGRESS, "load-balancer")}

    assert open_ports(dev) == {80}
    assert open_ports(prod) == {80, 443}


def test_default_security_group_is_emptied(run: ProgramRun) -> None:
    default = run.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert default.inputs.get("ingress", []) == []
    assert default.inputs.get("egress", []) == []


def test_vpc_flow_logs_are_on(run: ProgramRun) -> None:
    flow_log = run.one("aws:ec2/flowLog:FlowLog")
    assert flow_log.inputs["trafficType"] == "ALL"
    assert flow_log.property_dependencies["vpcId"] == [run.one(VPC).urn]
