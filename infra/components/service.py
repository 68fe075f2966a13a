"""One service: its image repository and its processes (ECS services, or a Lambda consumer)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from eventforge.policies import POLICY_VERSION
from eventforge.runtime.settings import ServiceName
from infra.access import ServiceResources, task_grants
from infra.components.lambda_consumer import (
    ConsumedQueue,
    LambdaConsumer,
    LambdaConsumerArgs,
    consumer_function_name,
)
from infra.components.platform import Placement
from infra.components.process import ServiceProcess, ServiceProcessArgs
from infra.config import Role, RoleSize

UNTAGGED_IMAGE_DAYS = 14
LAMBDA_PULL_ACTIONS = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")


@dataclass
class ServiceArgs:
    """A service's roles, sizes, environments, queues and the ARNs its grants name."""

    service: ServiceName
    roles: Sequence[Role]
    """The roles the service runs: api, plus worker if it consumes, relay if it publishes."""
    sizes: Mapping[Role, RoleSize]
    image_tag: str
    placement: Placement
    environments: Mapping[Role, Mapping[str, pulumi.Input[str]]]
    resources: ServiceResources
    queues: Sequence[ConsumedQueue]
    grpc_port: int
    lambda_consumer_environment: Mapping[str, pulumi.Input[str]] | None = None
    """Set: the worker runs as a Lambda function with this environment, not on ECS."""
    tls_secret_arn: pulumi.Input[str] | None = None
    """With mTLS on: the secret with the service's certificate bundle."""


class Service(pulumi.ComponentResource):
    """The service's ECR repository, one ECS service per role, and its optional Lambda."""

    repository_url: pulumi.Output[str]

    def __init__(
        self, name: str, args: ServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("eventforge:infra:Service", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        placement = args.placement
        repository = aws.ecr.Repository(
            f"{name}-repository",
            name=f"{placement.name_prefix}/{args.service}",
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                scan_on_push=True
            ),
            encryption_configurations=[
                aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="AES256")
            ],
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-repository-lifecycle",
            repository=repository.name,
            policy=json.dumps({"rules": [_expire_untagged_images()]}),
            opts=child,
        )
        image = pulumi.Output.concat(repository.repository_url, ":", args.image_tag)
        on_lambda = args.lambda_consumer_environment is not None
        for role in args.roles:
            if role == "worker" and on_lambda:
                continue
            ServiceProcess(
                f"{name}-{role}",
                ServiceProcessArgs(
                    service=args.service,
                    role=role,
                    size=args.sizes[role],
                    image=image,
                    repository_arn=repository.arn,
                    placement=placement,
                    environment=args.environments[role],
                    grants=task_grants(args.resources, role),
                    grpc_port=args.grpc_port if role == "api" else None,
                    scaling_queue_names=[q.name for q in args.queues] if role == "worker" else (),
                    tls_secret_arn=args.tls_secret_arn,
                ),
                opts=child,
            )
        if args.lambda_consumer_environment is not None:
            policy = aws.ecr.RepositoryPolicy(
                f"{name}-repository-lambda-pull",
                repository=repository.name,
                policy=_lambda_pull_policy(placement, args.service),
                opts=child,
            )
            LambdaConsumer(
                f"{name}-consumer",
                LambdaConsumerArgs(
                    service=args.service,
                    image=image,
                    placement=placement,
                    environment=args.lambda_consumer_environment,
                    resources=args.resources,
                    queues=args.queues,
                    size=args.sizes["worker"],
                    tls_secret_arn=args.tls_secret_arn,
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
            )
        self.repository_url = repository.repository_url
        self.register_outputs({"repository_url": self.repository_url})


def _expire_untagged_images() -> dict[str, object]:
    return {
        "rulePriority": 1,
        "description": f"Expire untagged images after {UNTAGGED_IMAGE_DAYS} days",
        "selection": {
            "tagStatus": "untagged",
            "countType": "sinceImagePushed",
            "countUnit": "days",
            "countNumber": UNTAGGED_IMAGE_DAYS,
        },
        "action": {"type": "expire"},
    }


def _lambda_pull_policy(placement: Placement, service: ServiceName) -> pulumi.Output[str]:
    """Lambda pulls a function's image with its service principal, for that function only."""
    function_arn = pulumi.Output.format(
        "arn:{0}:lambda:{1}:{2}:function:{3}",
        placement.partition,
        placement.region,
        placement.account_id,
        consumer_function_name(placement.name_prefix, service),
    )
    return pulumi.Output.json_dumps(
        {
            "Version": POLICY_VERSION,
            "Statement": [
                {
                    "Sid": "LambdaPullsConsumerImage",
                    "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": list(LAMBDA_PULL_ACTIONS),
                    "Condition": {"StringLike": {"aws:sourceArn": function_arn}},
                }
            ],
        }
    )
