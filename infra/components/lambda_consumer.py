"""A service's queue consumer as a Lambda function, fed by one SQS event source per queue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from eventforge.runtime.settings import ServiceName
from infra.access import ServiceResources, lambda_grants
from infra.components.log_metrics import LogMetric, count_in_log_group
from infra.components.platform import Placement
from infra.config import RoleSize
from infra.iam import service_role

LAMBDA_HANDLER = "eventforge.runtime.messaging.lambda_entry.handler"
# The image's ENTRYPOINT is the `eventforge` CLI; a Lambda runs the runtime interface client.
LAMBDA_ENTRY_POINT = ("/app/.venv/bin/python", "-m", "awslambdaric")
BATCH_SIZE = 10
BATCHING_WINDOW_SECONDS = 1
MIN_CONCURRENCY = 2  # the lowest maximum concurrency SQS event sources accept
TIMEOUT_SECONDS = 30
"""The function's timeout: a batch, then the dispatch it queued (emails, webhooks)."""
VISIBILITY_PER_TIMEOUT = 6
"""AWS advises a queue's visibility timeout of at least six times its function's timeout, so a
batch that Lambda retries after a throttle or a timeout is not received twice at once."""
HOUSEKEEPING_SCHEDULE = "rate(1 minute)"
"""How often EventBridge invokes the function for the worker's housekeeping (sweeps, retries)."""


@dataclass(frozen=True)
class ConsumedQueue:
    """A queue a service consumes, and how long a message stays hidden once received."""

    arn: pulumi.Input[str]
    name: pulumi.Input[str]
    visibility_timeout_seconds: int


@dataclass
class LambdaConsumerArgs:
    """The service, its image, its queues, and the worker size the function inherits."""

    service: ServiceName
    image: pulumi.Input[str]
    placement: Placement
    environment: Mapping[str, pulumi.Input[str]]
    resources: ServiceResources
    queues: Sequence[ConsumedQueue]
    size: RoleSize
    tls_secret_arn: pulumi.Input[str] | None = None
    """With mTLS on: the service's certificate bundle, which the handler reads at start."""
    log_metrics: Sequence[LogMetric] = ()
    """Log lines of the function counted into metrics (its service alarms on them)."""


class LambdaConsumer(pulumi.ComponentResource):
    """The function, its role and log group, and an event source mapping per queue.

    Mappings report partial batch failures (`ReportBatchItemFailures`): the handler returns the
    ids of the messages it failed, so only those return to the queue (and, in the end, the DLQ).
    An EventBridge schedule invokes the same handler for the worker's periodic housekeeping.
    """

    function_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: LambdaConsumerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("eventforge:infra:LambdaConsumer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        placement = args.placement
        function_name = consumer_function_name(placement.name_prefix, args.service)
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/aws/lambda/{function_name}",
            retention_in_days=placement.log_retention_days,
            opts=child,
        )
        for metric in args.log_metrics:
            count_in_log_group(f"{name}-{metric.key}", metric, log_group.name, parent=self)
        role = service_role(
            f"{name}-role",
            principal="lambda.amazonaws.com",
            grants=lambda_grants(args.resources, log_group.arn, args.tls_secret_arn),
            account_id=None,
            parent=self,
        )
        environment = dict(args.environment)
        if args.tls_secret_arn is not None:
            # No secret injection in Lambda: the handler fetches its certificate itself.
            environment["EVENTFORGE_TLS_SECRET_ARN"] = args.tls_secret_arn
        function = aws.lambda_.Function(
            name,
            name=function_name,
            package_type="Image",
            image_uri=args.image,
            image_config=aws.lambda_.FunctionImageConfigArgs(
                entry_points=list(LAMBDA_ENTRY_POINT),
                commands=[LAMBDA_HANDLER],
                working_directory="/app",
            ),
            role=role.role.arn,
            # Lambda names the architectures arm64 and x86_64, ECS ARM64 and X86_64.
            architectures=[placement.cpu_architecture.lower()],
            memory_size=args.size.memory,
            timeout=_timeout(args.queues),
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=environment),
            vpc_config=aws.lambda_.FunctionVpcConfigArgs(
                subnet_ids=list(placement.function_subnet_ids),
                security_group_ids=[placement.security_group_id],
            ),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                log_format="Text", log_group=log_group.name
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=role.dependencies()),
        )
        for index, queue in enumerate(args.queues):
            aws.lambda_.EventSourceMapping(
                f"{name}-queue-{index}",
                event_source_arn=queue.arn,
                function_name=function.arn,
                batch_size=BATCH_SIZE,
                maximum_batching_window_in_seconds=BATCHING_WINDOW_SECONDS,
                function_response_types=["ReportBatchItemFailures"],
                # Bounds the database connections the consumer may open at once.
                scaling_config=aws.lambda_.EventSourceMappingScalingConfigArgs(
                    maximum_concurrency=max(MIN_CONCURRENCY, args.size.max_count)
                ),
                opts=child,
            )
        # No worker process runs its periodic tasks: a schedule invokes the function for them.
        schedule = aws.cloudwatch.EventRule(
            f"{name}-housekeeping",
            name=f"{function_name}-housekeeping",
            description=f"Housekeeping of the {args.service} consumer (lambda_entry)",
            schedule_expression=HOUSEKEEPING_SCHEDULE,
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-housekeeping-target", rule=schedule.name, arn=function.arn, opts=child
        )
        aws.lambda_.Permission(
            f"{name}-housekeeping-invoke",
            action="lambda:InvokeFunction",
            function=function.name,
            principal="events.amazonaws.com",
            source_arn=schedule.arn,
            opts=child,
        )
        self.function_arn = function.arn
        self.register_outputs({"function_arn": self.function_arn})


def lambda_visibility_timeout(declared_seconds: int) -> int:
    """A queue's visibility timeout under a Lambda consumer: at least 6 times its timeout."""
    return max(declared_seconds, VISIBILITY_PER_TIMEOUT * TIMEOUT_SECONDS)


def _timeout(queues: Sequence[ConsumedQueue]) -> int:
    shortest = min(q.visibility_timeout_seconds for q in queues)
    if shortest < VISIBILITY_PER_TIMEOUT * TIMEOUT_SECONDS:
        raise ValueError(
            f"a Lambda-consumed queue's visibility timeout ({shortest} s) is under "
            f"{VISIBILITY_PER_TIMEOUT} times the function's {TIMEOUT_SECONDS} s"
        )
    return TIMEOUT_SECONDS


def consumer_function_name(name_prefix: str, service: ServiceName) -> str:
    """The Lambda consumer's function name, e.g. `eventforge-dev-notifier-consumer`."""
    return f"{name_prefix}-{service}-consumer"
