"""A service's Lambda function from its container image, in the VPC: log group, role, function."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from eventforge.runtime.settings import ServiceName
from infra.components.platform import Placement
from infra.iam import Grant, service_role

LAMBDA_PRINCIPAL = "lambda.amazonaws.com"
# The image's ENTRYPOINT is the `eventforge` CLI; a Lambda runs the runtime interface client.
LAMBDA_ENTRY_POINT = ("/app/.venv/bin/python", "-m", "awslambdaric")


@dataclass(frozen=True)
class ImageFunctionArgs:
    """One function of a service: its image and handler, size, environment and grants."""

    function_name: str
    handler: str
    """The dotted path of the handler awslambdaric imports and calls."""
    image: pulumi.Input[str]
    placement: Placement
    environment: Mapping[str, pulumi.Input[str]]
    grants_for: Callable[[pulumi.Output[str]], Sequence[Grant]]
    """The role's grants, given the function's log group ARN."""
    memory: int
    timeout_seconds: int
    reserved_concurrency: int | None = None
    """None: the account's unreserved pool, no cap of its own."""


@dataclass(frozen=True)
class ImageFunction:
    """The function and its log group (metric filters count lines in it)."""

    function: aws.lambda_.Function
    log_group: aws.cloudwatch.LogGroup


def image_function(name: str, args: ImageFunctionArgs, *, parent: pulumi.Resource) -> ImageFunction:
    """The function in the private subnets with the services' security group (it reaches the
    database like the tasks do), logging to a log group with the stack's retention."""
    placement = args.placement
    log_group = placement.log_group(
        f"{name}-logs", f"/aws/lambda/{args.function_name}", parent=parent
    )
    role = service_role(
        f"{name}-role",
        principal=LAMBDA_PRINCIPAL,
        grants=args.grants_for(log_group.arn),
        account_id=None,
        parent=parent,
    )
    function = aws.lambda_.Function(
        name,
        name=args.function_name,
        package_type="Image",
        image_uri=args.image,
        image_config=aws.lambda_.FunctionImageConfigArgs(
            entry_points=list(LAMBDA_ENTRY_POINT),
            commands=[args.handler],
            working_directory="/app",
        ),
        role=role.role.arn,
        # Lambda names the architectures arm64 and x86_64, ECS ARM64 and X86_64.
        architectures=[placement.cpu_architecture.lower()],
        memory_size=args.memory,
        timeout=args.timeout_seconds,
        reserved_concurrent_executions=args.reserved_concurrency,
        environment=aws.lambda_.FunctionEnvironmentArgs(variables=dict(args.environment)),
        vpc_config=aws.lambda_.FunctionVpcConfigArgs(
            subnet_ids=list(placement.function_subnet_ids),
            security_group_ids=[placement.security_group_id],
        ),
        logging_config=aws.lambda_.FunctionLoggingConfigArgs(
            log_format="Text", log_group=log_group.name
        ),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=role.dependencies()),
    )
    return ImageFunction(function, log_group)


def function_arn(placement: Placement, function_name: str) -> pulumi.Output[str]:
    """A function's ARN from its name, before it exists (the image repository's policy names it)."""
    return pulumi.Output.format(
        "arn:{0}:lambda:{1}:{2}:function:{3}",
        placement.partition,
        placement.region,
        placement.account_id,
        function_name,
    )


def service_function_name(name_prefix: str, service: ServiceName, kind: str) -> str:
    """A service's function name, e.g. `eventforge-dev-notifier-consumer`."""
    return f"{name_prefix}-{service}-{kind}"
