"""Run the real Pulumi program (`infra/__main__.py`) under Pulumi mocks.

`run_program(config, stack)` does what `pulumi preview` does minus the cloud: it
runs the program's directory as a script, with the stack's config, and records
every resource registration: type, name, parent, inputs, mocked outputs and the
resource options (`protect`, explicit `depends_on`, `ignore_changes`) that
`MockResourceArgs` does not carry. `CapturingMonitor` is the `MockMonitor`
subclass that records them.

The mocks answer like AWS would, with deterministic values (account
123456789012, region eu-west-1), so the captured graph is stable enough to
snapshot.
"""

from __future__ import annotations

import asyncio
import runpy
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks
from pulumi.runtime.settings import get_root_resource, reset_options

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"
PROJECT = "rollgate"
ACCOUNT_ID = "123456789012"
REGION = "eu-west-1"
ZONES = ("eu-west-1a", "eu-west-1b", "eu-west-1c")


@dataclass
class CapturedResource:
    """One resource registration, as the engine (or a policy pack) would see it."""

    type: str
    name: str
    urn: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    protect: bool
    #: Explicit `depends_on` (dependencies that no input property explains).
    depends_on: list[str]
    property_dependencies: dict[str, list[str]]
    ignore_changes: list[str]

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.inputs.get("tags") or {})


@dataclass
class ProgramRun:
    stack: str
    config: dict[str, str]
    resources: list[CapturedResource]
    exports: dict[str, Any] = field(default_factory=dict)

    @property
    def by_urn(self) -> dict[str, CapturedResource]:
        return {r.urn: r for r in self.resources}

    def of_type(self, type_: str) -> list[CapturedResource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name_suffix: str = "") -> CapturedResource:
        """The single resource of `type_` whose name ends with `name_suffix`."""
        found = [r for r in self.of_type(type_) if r.name.endswith(name_suffix)]
        assert len(found) == 1, (
            f"expected one {type_} ending {name_suffix!r}, got {[r.name for r in found]}"
        )
        return found[0]

    def children_of(self, component_type: str) -> list[CapturedResource]:
        parents = {r.urn for r in self.of_type(component_type)}
        return [r for r in self.resources if r.parent in parents]

    def parent_of(self, resource: CapturedResource) -> CapturedResource | None:
        return self.by_urn.get(resource.parent) if resource.parent else None


def _arn(service: str, resource: str, *, region: bool = True) -> str:
    return f"arn:aws:{service}:{REGION if region else ''}:{ACCOUNT_ID}:{resource}"


def _queue(name: str, _inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "url": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{name}",
        "arn": _arn("sqs", name),
    }


def _db_instance(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    identifier = inputs.get("identifier", name)
    port = int(inputs.get("port", 5432))
    address = f"{identifier}.abcdefghijkl.{REGION}.rds.amazonaws.com"
    return {
        "identifier": identifier,
        "address": address,
        "port": port,
        "endpoint": f"{address}:{port}",
        "arn": _arn("rds", f"db:{identifier}"),
        "resourceId": f"db-{identifier.upper()}",
        "masterUserSecrets": [
            {
                "secretArn": _arn("secretsmanager", f"secret:rds!db-{identifier}-AbCdEf"),
                "kmsKeyId": inputs.get("masterUserSecretKmsKeyId"),
                "secretStatus": "active",
            }
        ],
    }


def _task_definition(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    family = inputs.get("family", name)
    return {
        "arn": _arn("ecs", f"task-definition/{family}:1"),
        "arnWithoutRevision": _arn("ecs", f"task-definition/{family}"),
        "revision": 1,
    }


def _log_group(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    log_name = inputs.get("name", name)
    return {"name": log_name, "arn": _arn("logs", f"log-group:{log_name}")}


#: Outputs AWS computes, per resource type (inputs echo back for everything else).
_COMPUTED: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = {
    "aws:sqs/queue:Queue": _queue,
    "aws:rds/instance:Instance": _db_instance,
    "aws:ecs/taskDefinition:TaskDefinition": _task_definition,
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
    "aws:lb/loadBalancer:LoadBalancer": lambda name, _i: {
        "dnsName": f"{name}-1234567890.{REGION}.elb.amazonaws.com",
        "zoneId": "Z32O12XQLNTSW2",
        "arnSuffix": f"app/{name}/0123456789abcdef",
        "arn": _arn("elasticloadbalancing", f"loadbalancer/app/{name}/0123456789abcdef"),
    },
    "aws:lb/targetGroup:TargetGroup": lambda name, _i: {
        "arnSuffix": f"targetgroup/{name}/0123456789abcdef",
        "arn": _arn("elasticloadbalancing", f"targetgroup/{name}/0123456789abcdef"),
    },
    "aws:ec2/vpcEndpoint:VpcEndpoint": lambda name, _i: {"prefixListId": "pl-6da54004"},
    "aws:ec2/eip:Eip": lambda name, _i: {"allocationId": f"eipalloc-{name}"},
    "aws:s3/bucket:Bucket": lambda name, _i: {"bucket": name, "arn": f"arn:aws:s3:::{name}"},
    "aws:secretsmanager/secret:Secret": lambda name, _i: {
        "arn": _arn("secretsmanager", f"secret:{name}-AbCdEf")
    },
    "aws:iam/role:Role": lambda name, _i: {"arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"},
    "aws:kms/key:Key": lambda name, _i: {"keyId": f"key-{name}", "arn": _arn("kms", f"key/{name}")},
    "aws:ecs/cluster:Cluster": lambda name, _i: {"arn": _arn("ecs", f"cluster/{name}")},
    "aws:sns/topic:Topic": lambda name, _i: {"arn": _arn("sns", name)},
}


class RollgateMocks(Mocks):
    """Answers resource registrations and provider calls as AWS would, deterministically."""

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        service = args.typ.split(":")[1].split("/")[0]
        kind = args.typ.rsplit(":", 1)[-1].lower()
        state: dict[str, Any] = {
            **inputs,
            "name": inputs.get("name", args.name),
            "arn": _arn(service, f"{kind}/{args.name}"),
        }
        computed = _COMPUTED.get(args.typ)
        if computed is not None:
            state.update(computed(args.name, inputs))
        return f"{args.name}-id", state

    def call(self, args: MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        try:
            return dict(_CALLS[args.token])
        except KeyError:
            raise NotImplementedError(f"no mock for provider call {args.token}") from None


#: Provider functions the program calls, and what AWS would answer.
_CALLS: dict[str, dict[str, Any]] = {
    "aws:index/getCallerIdentity:getCallerIdentity": {
        "accountId": ACCOUNT_ID,
        "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/ci",
        "userId": "AIDAEXAMPLE",
        "id": ACCOUNT_ID,
    },
    "aws:index/getRegion:getRegion": {"region": REGION, "name": REGION, "id": REGION},
    "aws:index/getPartition:getPartition": {
        "partition": "aws",
        "dnsSuffix": "amazonaws.com",
        "reverseDnsPrefix": "com.amazonaws",
        "id": "aws",
    },
    "aws:secretsmanager/getRandomPassword:getRandomPassword": {
        "randomPassword": "mock-generated-password-not-a-secret",
        "id": "mock",
    },
    "aws:index/getAvailabilityZones:getAvailabilityZones": {
        "names": list(ZONES),
        "zoneIds": [f"euw1-az{i + 1}" for i in range(len(ZONES))],
        "id": REGION,
    },
}


class CapturingMonitor(MockMonitor):
    """A `MockMonitor` that also records each registration's resource options."""

    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.captured: list[CapturedResource] = []
        self._lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        property_dependencies = {
            key: sorted(value.urns) for key, value in request.propertyDependencies.items()
        }
        implicit = {urn for urns in property_dependencies.values() for urn in urns}
        registered = self.resources[response.urn]
        captured = CapturedResource(
            type=request.type,
            name=request.name,
            urn=response.urn,
            parent=request.parent or None,
            custom=request.custom,
            inputs=rpc.deserialize_properties(request.object),
            outputs=dict(registered.state),
            protect=bool(request.protect),
            depends_on=sorted(set(request.dependencies) - implicit),
            property_dependencies=property_dependencies,
            ignore_changes=list(request.ignoreChanges),
        )
        with self._lock:
            self.captured.append(captured)
        return response


def run_program(
    config: Mapping[str, str], stack: str, program_path: Path = INFRA_DIR
) -> ProgramRun:
    """Run `infra/` (or another program) as Pulumi would.

    `config` holds the stack's ``rollgate:`` values, keys without the namespace.
    """
    # Pulumi's runtime asks asyncio for "the current event loop". Any earlier
    # asyncio.run() in the session (the app's tests, schemathesis) leaves none
    # set, and get_event_loop() then raises: give it a fresh one.
    asyncio.set_event_loop(asyncio.new_event_loop())
    mocks = RollgateMocks()
    monitor = CapturingMonitor(mocks)
    reset_options(project=PROJECT, stack=stack)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    all_config = {f"{PROJECT}:{key}": value for key, value in config.items()}
    all_config["aws:region"] = REGION
    pulumi.runtime.set_all_config(all_config)
    exports: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        runpy.run_path(str(program_path), run_name="__main__")
        root = get_root_resource()
        assert root is not None
        stack_outputs: dict[str, Any] = dict(root.outputs)  # type: ignore[attr-defined]
        return pulumi.Output.all(**stack_outputs).apply(exports.update)

    program()
    resources = [r for r in monitor.captured if not r.type.startswith("pulumi:providers:")]
    return ProgramRun(stack=stack, config=dict(config), resources=resources, exports=exports)


def stack_config(stack: str) -> dict[str, str]:
    """The ``rollgate:`` keys of ``Pulumi.<stack>.yaml``, as the CLI hands them over (strings)."""
    document = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())
    prefix = f"{PROJECT}:"
    return {
        key[len(prefix) :]: _as_cli_string(value)
        for key, value in document["config"].items()
        if key.startswith(prefix)
    }


def _as_cli_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- policies over captured resources ----------------------------------------------


@dataclass(frozen=True)
class Violation:
    policy: str
    message: str
    resource: str | None

    def __str__(self) -> str:
        return f"[{self.policy}] {self.resource or 'stack'}: {self.message}"


def policy_options(resource: CapturedResource) -> Any:
    from pulumi_policy import PolicyCustomTimeouts, PolicyResourceOptions

    return PolicyResourceOptions(
        protect=resource.protect,
        ignore_changes=resource.ignore_changes,
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
        parent=resource.parent,
    )


def to_policy_resources(resources: list[CapturedResource]) -> list[Any]:
    """The captured resources as the engine hands them to a stack policy."""
    from pulumi_policy import PolicyResource

    by_urn = {
        r.urn: PolicyResource(
            r.type, r.inputs, r.urn, r.name, policy_options(r), None, None, [], {}
        )
        for r in resources
    }
    for r in resources:
        policy_resource = by_urn[r.urn]
        policy_resource.parent = by_urn.get(r.parent) if r.parent else None
        policy_resource.dependencies = [by_urn[u] for u in r.depends_on if u in by_urn]
        policy_resource.property_dependencies = {
            key: [by_urn[u] for u in urns if u in by_urn]
            for key, urns in r.property_dependencies.items()
        }
    return list(by_urn.values())


def run_policies(
    resources: list[CapturedResource], policies: list[Any] | None = None
) -> list[Violation]:
    """Run the CrossGuard pack (or `policies`) over resources, like `--policy-pack` does."""
    from pulumi_policy import (
        ResourceValidationArgs,
        ResourceValidationPolicy,
        StackValidationArgs,
        StackValidationPolicy,
    )

    from infra.policy.policies import POLICIES

    violations: list[Violation] = []
    for policy in POLICIES if policies is None else policies:

        def report(message: str, urn: str | None = None, *, _name: str = policy.name) -> None:
            violations.append(Violation(_name, message, urn.rsplit("::", 1)[-1] if urn else None))

        if isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                args = ResourceValidationArgs(
                    r.type, r.inputs, r.urn, r.name, policy_options(r), None
                )

                def report_resource(
                    message: str, urn: str | None = None, *, _r: CapturedResource = r
                ) -> None:
                    report(message, urn or _r.urn)

                policy.validate(args, report_resource)
        elif isinstance(policy, StackValidationPolicy):
            policy.validate(StackValidationArgs(to_policy_resources(resources)), report)
    return violations
