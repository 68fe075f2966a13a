"""The topology's S3 buckets: private, encrypted, with lifecycle, CORS and topic notifications."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from eventforge.policies import POLICY_VERSION, bucket_notifications_topic_policy
from eventforge.topology import Bucket, ResolvedTopology, Topology

ABORT_MULTIPART_AFTER_DAYS = 2
CORS_MAX_AGE_SECONDS = 3000


@dataclass
class BucketsArgs:
    """The declared buckets, their physical names, and the topics their notifications feed."""

    topology: Topology
    names: ResolvedTopology
    topic_arns: Mapping[str, pulumi.Input[str]]
    account_id: pulumi.Input[str]
    cors_allowed_origins: Sequence[str]
    noncurrent_version_days: int
    versioned: frozenset[str] = field(default_factory=lambda: frozenset({"receipts"}))
    """Receipts are customer documents: keep overwritten or deleted versions for a while."""


class Buckets(pulumi.ComponentResource):
    """Every bucket of the topology, and the topic policies that let them notify."""

    arns: dict[str, pulumi.Output[str]]
    bucket_names: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: BucketsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("eventforge:infra:Buckets", name, None, opts)
        self.arns = {}
        self.bucket_names = {}
        buckets: dict[str, aws.s3.Bucket] = {}
        for spec in args.topology.buckets:
            bucket = self._bucket(f"{name}-{spec.name}", spec, args)
            buckets[spec.name] = bucket
            self.arns[spec.name] = bucket.arn
            self.bucket_names[spec.name] = bucket.bucket
        topic_policies = self._topic_policies(name, args, buckets)
        for spec in args.topology.buckets:
            if spec.notifications:
                self._notifications(
                    f"{name}-{spec.name}", spec, buckets[spec.name], args, topic_policies
                )
        self.register_outputs({"arns": self.arns, "bucket_names": self.bucket_names})

    def _bucket(self, name: str, spec: Bucket, args: BucketsArgs) -> aws.s3.Bucket:
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(name, bucket=args.names.buckets[spec.name], opts=child)
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"
                    )
                )
            ],
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=bucket.arn.apply(_deny_insecure_transport),
            # S3 rejects concurrent changes to a bucket's policy and its public access block.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access_block]),
        )
        versioned = spec.name in args.versioned
        if versioned:
            aws.s3.BucketVersioning(
                f"{name}-versioning",
                bucket=bucket.id,
                versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                    status="Enabled"
                ),
                opts=child,
            )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=_lifecycle_rules(spec, versioned, args.noncurrent_version_days),
            opts=child,
        )
        if spec.cors_for_presigned_uploads and args.cors_allowed_origins:
            aws.s3.BucketCorsConfiguration(
                f"{name}-cors",
                bucket=bucket.id,
                cors_rules=[
                    aws.s3.BucketCorsConfigurationCorsRuleArgs(
                        id="presigned-uploads",
                        allowed_methods=["PUT", "POST"],
                        allowed_origins=list(args.cors_allowed_origins),
                        allowed_headers=["content-type", "content-md5", "x-amz-*"],
                        expose_headers=["ETag"],
                        max_age_seconds=CORS_MAX_AGE_SECONDS,
                    )
                ],
                opts=child,
            )
        return bucket

    def _topic_policies(
        self, name: str, args: BucketsArgs, buckets: Mapping[str, aws.s3.Bucket]
    ) -> dict[str, aws.sns.TopicPolicy]:
        """One policy per notified topic: only its buckets, in this account, may publish."""
        policies: dict[str, aws.sns.TopicPolicy] = {}
        for topic in args.topology.topics:
            sources = args.topology.notifying_buckets(topic.name)
            if not sources:
                continue
            topic_arn = args.topic_arns[topic.name]
            policy = pulumi.Output.all(
                topic_arn, args.account_id, *[buckets[b.name].arn for b in sources]
            ).apply(
                lambda values: json.dumps(
                    bucket_notifications_topic_policy(values[0], values[2:], values[1])
                )
            )
            policies[topic.name] = aws.sns.TopicPolicy(
                f"{name}-{topic.name}-topic-policy",
                arn=topic_arn,
                policy=policy,
                opts=pulumi.ResourceOptions(parent=self),
            )
        return policies

    def _notifications(
        self,
        name: str,
        spec: Bucket,
        bucket: aws.s3.Bucket,
        args: BucketsArgs,
        topic_policies: Mapping[str, aws.sns.TopicPolicy],
    ) -> None:
        policies = [topic_policies[n.topic] for n in spec.notifications]
        aws.s3.BucketNotification(
            f"{name}-notifications",
            bucket=bucket.id,
            topics=[
                aws.s3.BucketNotificationTopicArgs(
                    id=f"{n.topic}-{n.prefix.rstrip('/')}",
                    topic_arn=args.topic_arns[n.topic],
                    events=list(n.events),
                    filter_prefix=n.prefix,
                )
                for n in spec.notifications
            ],
            # S3 verifies that it may publish when the configuration is written.
            opts=pulumi.ResourceOptions(parent=self, depends_on=policies),
        )


def _lifecycle_rules(
    spec: Bucket, versioned: bool, noncurrent_version_days: int
) -> list[aws.s3.BucketLifecycleConfigurationRuleArgs]:
    rules = [
        aws.s3.BucketLifecycleConfigurationRuleArgs(
            id=f"expire-{rule.prefix.rstrip('/')}",
            status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=rule.prefix),
            expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=rule.days),
        )
        for rule in spec.expiry
    ]
    rules.append(
        aws.s3.BucketLifecycleConfigurationRuleArgs(
            id="abort-incomplete-multipart-uploads",
            status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
            abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                days_after_initiation=ABORT_MULTIPART_AFTER_DAYS
            ),
        )
    )
    if versioned:
        rules.append(
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="expire-noncurrent-versions",
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=noncurrent_version_days
                ),
            )
        )
    return rules


def _deny_insecure_transport(bucket_arn: str) -> str:
    return json.dumps(
        {
            "Version": POLICY_VERSION,
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )
