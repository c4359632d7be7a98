"""Artifacts: the bucket rollback snapshots and release artifacts live in.

Creates:
- a customer-managed KMS key for the bucket;
- the bucket (never force-destroyed; `protect`-ed in prod) with
  - ownership controls set to bucket-owner-enforced (ACLs off),
  - every public-access block on,
  - versioning enabled,
  - default SSE-KMS encryption with the key and S3 bucket keys,
  - a bucket policy that denies any request not made over TLS,
  - a lifecycle rule that expires old (noncurrent) versions and aborts stale
    multipart uploads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_aws as aws

from infra.config import ArtifactsConfig
from infra.encryption import customer_managed_key
from infra.iam import policy_document, statement

ABORT_MULTIPART_AFTER_DAYS: Final = 7


@dataclass(frozen=True)
class ArtifactsArgs:
    config: ArtifactsConfig
    alias: str
    prod: bool
    tags: Mapping[str, str]


class Artifacts(pulumi.ComponentResource):
    bucket: aws.s3.Bucket
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: ArtifactsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rollgate:infra:Artifacts", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        key = customer_managed_key(
            name,
            alias=args.alias,
            description=f"Rollgate {args.alias}: rollback artifact bucket",
            tags=tags,
            parent=self,
            protect=args.prod,
        )
        # Versioned, encrypted bucket for rollback snapshots and release artifacts.
        self.bucket = aws.s3.Bucket(
            f"{name}-bucket",
            force_destroy=False,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=args.prod),
        )
        # Bucket-owner-enforced ownership: ACLs are disabled, the account owns every object.
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=self.bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        # Every public-access block on.
        public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        # Versioning, so an overwritten or deleted artifact can be recovered.
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=self.bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                status="Enabled"
            ),
            opts=child,
        )
        # Default SSE-KMS with the bucket's own key (bucket keys cut KMS calls).
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="aws:kms",
                        kms_master_key_id=key.arn,
                    ),
                    bucket_key_enabled=True,
                )
            ],
            opts=child,
        )
        # TLS-only bucket policy; applied after the public-access block settles.
        aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=self.bucket.id,
            policy=policy_document(
                [
                    {
                        **statement(
                            ["s3:*"],
                            [self.bucket.arn, self.bucket.arn.apply(lambda arn: f"{arn}/*")],
                            sid="DenyInsecureTransport",
                            effect="Deny",
                            condition={"Bool": {"aws:SecureTransport": "false"}},
                        ),
                        "Principal": "*",
                    }
                ]
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access_block]),
        )
        # Lifecycle for old versions; needs versioning in place first.
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=self.bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-noncurrent-versions",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=args.config.noncurrent_version_days,
                    ),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=ABORT_MULTIPART_AFTER_DAYS,
                    ),
                )
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )

        self.bucket_name = self.bucket.bucket
        self.bucket_arn = self.bucket.arn
        self.kms_key_arn = key.arn
        self.register_outputs(
            {
                "bucketName": self.bucket_name,
                "bucketArn": self.bucket_arn,
                "kmsKeyArn": self.kms_key_arn,
            }
        )
