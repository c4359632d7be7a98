"""Component conventions: every resource has a component parent, a prefixed name and tags."""

from __future__ import annotations

import importlib
import inspect
import typing

import pytest

from infra.tagging import TAG_ENVIRONMENT, TAG_STACK
from tests.infra.harness import ProgramRun

COMPONENTS = {
    "rollgate:infra:Network": "rollgate-{stack}",
    "rollgate:infra:Database": "rollgate-{stack}-db",
    "rollgate:infra:Messaging": "rollgate-{stack}-queue",
    "rollgate:infra:Artifacts": "rollgate-{stack}-artifacts",
    "rollgate:infra:Ingress": "rollgate-{stack}",
    "rollgate:infra:Alarms": "rollgate-{stack}-alarms",
    "rollgate:infra:AppService": "rollgate-{stack}-app",
    "rollgate:infra:AuditJob": "rollgate-{stack}-audit",
}


def test_each_component_exists_once(run: ProgramRun) -> None:
    components = [r for r in run.resources if not r.custom]
    assert sorted(r.type for r in components) == sorted(COMPONENTS)
    for component in components:
        assert component.name == COMPONENTS[component.type].format(stack=run.stack)
        assert component.parent is not None and "pulumi:pulumi:Stack" in component.parent


def test_every_cloud_resource_is_a_named_child_of_a_component(run: ProgramRun) -> None:
    for resource in (r for r in run.resources if r.custom):
        parent = run.parent_of(resource)
        assert parent is not None and parent.type in COMPONENTS, resource.name
        assert resource.name.startswith(f"{parent.name}-"), (resource.name, parent.name)


def test_every_component_has_children(run: ProgramRun) -> None:
    for type_ in COMPONENTS:
        assert run.children_of(type_), type_


def _accepts_tags(type_token: str) -> bool:
    _, module_and_file, name = type_token.split(":")
    module = module_and_file.split("/", maxsplit=1)[0]
    cls = getattr(importlib.import_module(f"pulumi_aws.{module}"), name)
    overloads = typing.get_overloads(cls.__init__) or [cls.__init__]
    return any("tags" in inspect.signature(o).parameters for o in overloads)


def test_every_taggable_resource_carries_stack_and_environment(run: ProgramRun) -> None:
    custom = [r for r in run.resources if r.custom]
    taggable = [r for r in custom if _accepts_tags(r.type)]
    assert len(taggable) > len(custom) // 2  # the check itself works
    assert [r.name for r in taggable if TAG_ENVIRONMENT not in r.tags] == []
    for resource in custom:
        if resource.tags:
            assert resource.tags[TAG_ENVIRONMENT] == run.config["environment"]
            assert resource.tags[TAG_STACK] == run.stack


@pytest.mark.parametrize("stack_fixture", ["dev", "prod"])
def test_prod_protects_state_and_dev_does_not(
    stack_fixture: str, request: pytest.FixtureRequest
) -> None:
    run: ProgramRun = request.getfixturevalue(stack_fixture)
    protected = sorted(f"{r.type}::{r.name}" for r in run.resources if r.protect)
    if stack_fixture == "dev":
        assert protected == []
    else:
        assert protected == [
            "aws:kms/key:Key::rollgate-prod-artifacts-key",
            "aws:kms/key:Key::rollgate-prod-db-key",
            "aws:rds/instance:Instance::rollgate-prod-db-instance",
            "aws:s3/bucket:Bucket::rollgate-prod-access-logs-bucket",
            "aws:s3/bucket:Bucket::rollgate-prod-artifacts-bucket",
            "aws:secretsmanager/secret:Secret::rollgate-prod-app-stripe-webhook-secret",
        ]
