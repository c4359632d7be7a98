"""The policy pack loads and answers the way the Pulumi CLI drives it.

`pulumi preview --policy-pack infra/policy` reads ``infra/policy/PulumiPolicy.yaml``,
asks the Python language host to run the pack directory (``python infra/policy
<engine address>``, with the pack's virtualenv), reads the port the pack prints on
its first stdout line, and talks to it over gRPC (the Analyzer service). These
tests do the same with the protos the `pulumi` package ships: start the pack in a
subprocess, read its port, call GetAnalyzerInfo, then Analyze / AnalyzeStack with
the resources the mocks captured, and stop it.

Not proven here (no Pulumi CLI, no cloud): that the CLI builds the pack's
virtualenv from requirements.txt, the engine's exact serialisation of a real
preview (unknown values, secrets, provider references), and that a violation
fails a real `preview`. See docs/infra.md, "What is proven here".
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc, plugin_pb2

from infra.policy.policies import POLICIES
from tests.infra.harness import REPO_ROOT, CapturedResource, ProgramRun

PACK_DIR = REPO_ROOT / "infra" / "policy"
MANDATORY = analyzer_pb2.EnforcementLevel.Value("MANDATORY")
START_TIMEOUT_SECONDS = 60


def test_pack_carries_a_python_pulumi_policy_yaml() -> None:
    manifest = yaml.safe_load((PACK_DIR / "PulumiPolicy.yaml").read_text())
    assert manifest["runtime"]["name"] == "python"
    assert manifest["runtime"]["options"]["virtualenv"] == ".venv"
    assert manifest["version"]
    requirements = (PACK_DIR / "requirements.txt").read_text()
    assert "pulumi-policy" in requirements
    assert (PACK_DIR / "__main__.py").is_file()


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """The pack, started as the language host starts it, and a client connected to it."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-u", str(PACK_DIR), "127.0.0.1:1"],  # the engine's address
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()  # type: ignore[union-attr]
    try:
        try:
            port_line = lines.get(timeout=START_TIMEOUT_SECONDS)
        except queue.Empty:
            pytest.fail("the pack printed no port")
        if not port_line.strip().isdigit():
            process.kill()
            _, stderr = process.communicate(timeout=10)
            pytest.fail(f"the pack did not start: {port_line!r}\n{stderr}")
        channel = grpc.insecure_channel(f"127.0.0.1:{int(port_line)}")
        grpc.channel_ready_future(channel).result(timeout=START_TIMEOUT_SECONDS)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.kill()
        process.wait(timeout=10)


def as_struct(properties: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    json_format.ParseDict(properties, struct)
    return struct


def options(resource: CapturedResource) -> analyzer_pb2.AnalyzerResourceOptions:
    return analyzer_pb2.AnalyzerResourceOptions(
        protect=resource.protect,
        ignoreChanges=resource.ignore_changes,
        parent=resource.parent or "",
    )


def analyze(stub: analyzer_pb2_grpc.AnalyzerStub, resource: CapturedResource) -> Any:
    return stub.Analyze(
        analyzer_pb2.AnalyzeRequest(
            type=resource.type,
            properties=as_struct(resource.inputs),
            urn=resource.urn,
            name=resource.name,
            options=options(resource),
        )
    )


def analyze_stack(stub: analyzer_pb2_grpc.AnalyzerStub, resources: list[CapturedResource]) -> Any:
    return stub.AnalyzeStack(
        analyzer_pb2.AnalyzeStackRequest(
            resources=[
                analyzer_pb2.AnalyzerResource(
                    type=r.type,
                    properties=as_struct(r.inputs),
                    urn=r.urn,
                    name=r.name,
                    options=options(r),
                    parent=r.parent or "",
                    dependencies=r.depends_on,
                    propertyDependencies={
                        key: analyzer_pb2.AnalyzerPropertyDependencies(urns=urns)
                        for key, urns in r.property_dependencies.items()
                    },
                )
                for r in resources
            ]
        )
    )


@pytest.mark.slow
def test_served_pack_describes_every_policy_as_mandatory(
    analyzer: analyzer_pb2_grpc.AnalyzerStub,
) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "rollgate"
    assert [p.name for p in info.policies] == [p.name for p in POLICIES]
    assert {p.enforcementLevel for p in info.policies} == {MANDATORY}
    assert analyzer.GetPluginInfo(empty_pb2.Empty()).version
    assert isinstance(plugin_pb2.PluginInfo(), plugin_pb2.PluginInfo)


@pytest.mark.slow
def test_served_pack_passes_the_program(
    analyzer: analyzer_pb2_grpc.AnalyzerStub, prod: ProgramRun
) -> None:
    diagnostics = [d for r in prod.resources for d in analyze(analyzer, r).diagnostics]
    diagnostics += list(analyze_stack(analyzer, prod.resources).diagnostics)
    assert diagnostics == [], [f"{d.policyName}: {d.message}" for d in diagnostics]


@pytest.mark.slow
def test_served_pack_fails_an_endpoint_without_a_policy_and_a_plain_log_group(
    analyzer: analyzer_pb2_grpc.AnalyzerStub, prod: ProgramRun
) -> None:
    without_endpoint_policies = [
        r for r in prod.resources if r.type != "aws:ec2/vpcEndpointPolicy:VpcEndpointPolicy"
    ]
    stack = analyze_stack(analyzer, without_endpoint_policies).diagnostics
    assert {d.policyName for d in stack} == {"vpc-endpoint-policies"}
    assert len(stack) == 9  # every endpoint, each named
    assert {d.enforcementLevel for d in stack} == {MANDATORY}

    log_group = next(r for r in prod.resources if r.type == "aws:cloudwatch/logGroup:LogGroup")
    plain = CapturedResource(
        **{
            **log_group.__dict__,
            "inputs": {k: v for k, v in log_group.inputs.items() if k != "kmsKeyId"},
        }
    )
    [diagnostic] = analyze(analyzer, plain).diagnostics
    assert diagnostic.policyName == "logs-encrypted"
    assert diagnostic.enforcementLevel == MANDATORY
