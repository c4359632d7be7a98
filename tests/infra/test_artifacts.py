"""Artifacts: the rollback bucket is versioned, KMS-encrypted, private, TLS-only, pruned."""

from __future__ import annotations

import json

from tests.infra.harness import CapturedResource, ProgramRun


def companion(run: ProgramRun, type_: str) -> CapturedResource:
    found = run.one(type_)
    assert found.property_dependencies["bucket"] == [run.one("aws:s3/bucket:Bucket").urn]
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
    bucket_arn = run.one("aws:s3/bucket:Bucket").outputs["arn"]
    assert statement["Resource"] == [bucket_arn, f"{bucket_arn}/*"]
    block = run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert policy.depends_on == [block.urn]


def test_old_versions_expire(run: ProgramRun) -> None:
    lifecycle = companion(run, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    [rule] = lifecycle.inputs["rules"]
    assert rule["status"] == "Enabled"
    assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == 90
    assert rule["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 7
    versioning = run.one("aws:s3/bucketVersioning:BucketVersioning")
    assert lifecycle.depends_on == [versioning.urn]


def test_never_force_destroyed_and_protected_in_prod(dev: ProgramRun, prod: ProgramRun) -> None:
    for run in (dev, prod):
        assert run.one("aws:s3/bucket:Bucket").inputs["forceDestroy"] is False
    assert prod.one("aws:s3/bucket:Bucket").protect is True
    assert prod.one("aws:kms/key:Key", "-artifacts-key").protect is True
    assert dev.one("aws:s3/bucket:Bucket").protect is False
