"""A service's queue consumer as a Lambda function, fed by one SQS event source per queue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from eventforge.runtime.settings import ServiceName
from infra.access import ServiceResources, lambda_grants
from infra.components.functions import ImageFunctionArgs, image_function, service_function_name
from infra.components.log_metrics import LogMetric, count_in_log_group
from infra.components.platform import Placement
from infra.config import RoleSize

LAMBDA_HANDLER = "eventforge.runtime.messaging.lambda_entry.handler"
BATCH_SIZE = 10
BATCHING_WINDOW_SECONDS = 1
MIN_CONCURRENCY = 2  # the lowest maximum concurrency SQS event sources accept
TIMEOUT_SECONDS = 30
"""The function's timeout: a batch, then the dispatch it queued (emails, webhooks)."""
VISIBILITY_PER_TIMEOUT = 6
"""AWS advises a queue's visibility timeout of at least six times its function's timeout, so a
batch that Lambda retries after a throttle or a timeout is not received twice at once."""


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
    The service's scheduled jobs reach it like any message, through its jobs queue.
    """

    function_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: LambdaConsumerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("eventforge:infra:LambdaConsumer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        environment = dict(args.environment)
        if args.tls_secret_arn is not None:
            # No secret injection in Lambda: the handler fetches its certificate itself.
            environment["EVENTFORGE_TLS_SECRET_ARN"] = args.tls_secret_arn
        built = image_function(
            name,
            ImageFunctionArgs(
                function_name=consumer_function_name(args.placement.name_prefix, args.service),
                handler=LAMBDA_HANDLER,
                image=args.image,
                placement=args.placement,
                environment=environment,
                grants_for=lambda log_group_arn: lambda_grants(
                    args.resources, log_group_arn, args.tls_secret_arn
                ),
                memory=args.size.memory,
                timeout_seconds=_timeout(args.queues),
            ),
            parent=self,
        )
        for metric in args.log_metrics:
            count_in_log_group(f"{name}-{metric.key}", metric, built.log_group.name, parent=self)
        for index, queue in enumerate(args.queues):
            aws.lambda_.EventSourceMapping(
                f"{name}-queue-{index}",
                event_source_arn=queue.arn,
                function_name=built.function.arn,
                batch_size=BATCH_SIZE,
                maximum_batching_window_in_seconds=BATCHING_WINDOW_SECONDS,
                function_response_types=["ReportBatchItemFailures"],
                # Bounds the database connections the consumer may open at once.
                scaling_config=aws.lambda_.EventSourceMappingScalingConfigArgs(
                    maximum_concurrency=max(MIN_CONCURRENCY, args.size.max_count)
                ),
                opts=child,
            )
        self.function_arn = built.function.arn
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
    return service_function_name(name_prefix, service, "consumer")
