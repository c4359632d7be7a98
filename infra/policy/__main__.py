"""Serve Rollgate's policy pack: ``pulumi preview --policy-pack infra/policy``.

Building a `PolicyPack` starts the analyzer server and blocks, so this is the only
place one is built. Every policy is mandatory: a violation fails `preview` and
stops `up`. Prod-only rules scope themselves by the ``rollgate:environment`` tag.
"""

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

try:
    from infra.policy.policies import POLICIES
except ModuleNotFoundError:  # the pack's own virtualenv, without the project installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from infra.policy.policies import POLICIES

PolicyPack(
    name="rollgate",
    description="Security and reliability properties of Rollgate's AWS stack.",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
