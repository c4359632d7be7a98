"""Artifacts: the rollback bucket is versioned, KMS-encrypted, private, TLS-only, pruned."""

from __future__ import annotations

import json

from tests.infra.harness import CapturedResource, ProgramRun


def artifacts(run: ProgramRun, type_: str) -> CapturedResource:
    """The artifact bucket's resource of `type_` (the ALB's access-log bucket has its own)."""
    found = [r for r in run.of_type(type_) if "-artifacts-" in r.name]
    assert len(found) == 1, [r.name for r in found]
    return found[0]


def bucket(run: ProgramRun) -> CapturedResource:
    return artifacts(run, "aws:s3/bucket:Bucket")


def companion(run: ProgramRun, type_: str) -> CapturedResource:
    found = artifacts(run, type_)
    assert found.property_dependencies["bucket"] == [bucket(run).urn]
    return found


def test_versioned(run: ProgramRun) -> None:
    versioning = companion(run, "aws:s3/bucketVersioning:BucketVersioning")
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"


def test_kms_encrypted_with_its_own_key(run: ProgramRun) -> None:
    encryption = companion(
        run,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    )
    [rule] = encryption.inputs["rules"]
    default = rule["applyServerSideEncryptionByDefault"]
    assert default["sseAlgorithm"] == "aws:kms"
    key = run.one("aws:kms/key:Key", "-artifacts-key")
    assert default["kmsMasterKeyId"] == key.outputs["arn"]
    assert rule["bucketKeyEnabled"] is True
    assert key.inputs["enableKeyRotation"] is True


def test_public_access_blocked_and_owner_enforced(run: ProgramRun) -> None:
    block = companion(run, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(
        block[k] is True
        for k in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        )
    )
    ownership = companion(run, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership.inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}


def test_policy_allows_tls_only_after_the_public_access_block(run: ProgramRun) -> None:
    policy = companion(run, "aws:s3/bucketPolicy:BucketPolicy")
    [statement] = json.loads(policy.inputs["policy"])["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    bucket_arn = bucket(run).outputs["arn"]
    assert statement["Resource"] == [bucket_arn, f"{bucket_arn}/*"]
    block = artifacts(run, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert policy.depends_on == [block.urn]


def test_old_versions_expire(run: ProgramRun) -> None:
    lifecycle = companion(run, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    [rule] = lifecycle.inputs["rules"]
    assert rule["status"] == "Enabled"
    assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == 90
    assert rule["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 7
    versioning = artifacts(run, "aws:s3/bucketVersioning:BucketVersioning")
    assert lifecycle.depends_on == [versioning.urn]


def test_never_force_destroyed_and_protected_in_prod(dev: ProgramRun, prod: ProgramRun) -> None:
    for run in (dev, prod):
        assert bucket(run).inputs["forceDestroy"] is False
    assert bucket(prod).protect is True
    assert prod.one("aws:kms/key:Key", "-artifacts-key").protect is True
    assert bucket(dev).protect is False
