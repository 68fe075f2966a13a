"""One consumer's SQS queue on one topic: DLQ, redrive, queue policy, subscription and alarms."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from eventforge.policies import queue_policy
from eventforge.topology import ResolvedQueue

ALARM_PERIOD_SECONDS = 60


@dataclass
class ServiceQueueArgs:
    """A queue of the topology, the topic it subscribes to and its stack-specific limits."""

    queue: ResolvedQueue
    topic_arn: pulumi.Input[str] | None
    """None for a jobs queue: only its schedules' role sends to it (IAM), no topic does."""
    max_receives: int
    """Receives before a message moves to the DLQ (the stack's setting or the topology's)."""
    alerts_topic_arn: pulumi.Input[str]
    dlq_depth_threshold: int
    oldest_message_age_seconds: int
    visibility_timeout_seconds: int
    """The topology's, or longer when a Lambda function consumes the queue."""


class ServiceQueue(pulumi.ComponentResource):
    """A queue that only its topic may send to, with a DLQ that raises an alarm when it fills."""

    arn: pulumi.Output[str]
    url: pulumi.Output[str]
    queue_name: pulumi.Output[str]
    dlq_arn: pulumi.Output[str]
    visibility_timeout_seconds: int

    def __init__(
        self, name: str, args: ServiceQueueArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("eventforge:infra:ServiceQueue", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        spec = args.queue.spec
        dlq = aws.sqs.Queue(
            f"{name}-dlq",
            name=args.queue.dlq_name,
            message_retention_seconds=spec.dlq_retention_seconds,
            sqs_managed_sse_enabled=True,
            opts=child,
        )
        queue = aws.sqs.Queue(
            name,
            name=args.queue.name,
            visibility_timeout_seconds=args.visibility_timeout_seconds,
            message_retention_seconds=spec.retention_seconds,
            sqs_managed_sse_enabled=True,
            redrive_policy=dlq.arn.apply(
                lambda arn: json.dumps(
                    {"deadLetterTargetArn": arn, "maxReceiveCount": args.max_receives}
                )
            ),
            opts=child,
        )
        # Only this queue may redrive into (and, with the DLQ tooling, back out of) its DLQ.
        aws.sqs.RedriveAllowPolicy(
            f"{name}-dlq-redrive-allow",
            queue_url=dlq.url,
            redrive_allow_policy=queue.arn.apply(
                lambda arn: json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [arn]})
            ),
            opts=child,
        )
        if args.topic_arn is not None:
            self._subscribe(name, queue, args.topic_arn, spec.filter_policy())
        _alarm(
            f"{name}-dlq-depth",
            alarm_name=f"{args.queue.dlq_name}-not-empty",
            description=f"Messages of {args.queue.name} failed {args.max_receives} times.",
            metric="ApproximateNumberOfMessagesVisible",
            queue_name=dlq.name,
            threshold=args.dlq_depth_threshold,
            evaluation_periods=1,
            alerts_topic_arn=args.alerts_topic_arn,
            parent=self,
        )
        _alarm(
            f"{name}-oldest-message",
            alarm_name=f"{args.queue.name}-oldest-message-age",
            description=f"{args.queue.name} is not keeping up: its oldest message is too old.",
            metric="ApproximateAgeOfOldestMessage",
            queue_name=queue.name,
            threshold=args.oldest_message_age_seconds,
            evaluation_periods=3,
            alerts_topic_arn=args.alerts_topic_arn,
            parent=self,
        )
        self.arn = queue.arn
        self.visibility_timeout_seconds = args.visibility_timeout_seconds
        self.url = queue.url
        self.queue_name = queue.name
        self.dlq_arn = dlq.arn
        self.register_outputs(
            {
                "arn": self.arn,
                "url": self.url,
                "queue_name": self.queue_name,
                "dlq_arn": self.dlq_arn,
            }
        )

    def _subscribe(
        self,
        name: str,
        queue: aws.sqs.Queue,
        topic_arn: pulumi.Input[str],
        filter_policy: dict[str, list[str]] | None,
    ) -> None:
        """The queue policy letting only the topic send, then the subscription."""
        child = pulumi.ResourceOptions(parent=self)
        policy = aws.sqs.QueuePolicy(
            f"{name}-policy",
            queue_url=queue.url,
            policy=pulumi.Output.all(queue.arn, topic_arn).apply(
                lambda arns: json.dumps(queue_policy(arns[0], arns[1]))
            ),
            opts=child,
        )
        aws.sns.TopicSubscription(
            f"{name}-subscription",
            topic=topic_arn,
            protocol="sqs",
            endpoint=queue.arn,
            raw_message_delivery=True,
            filter_policy=None if filter_policy is None else json.dumps(filter_policy),
            filter_policy_scope=None if filter_policy is None else "MessageAttributes",
            # Messages published before the policy exists would be refused by the queue.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )


def _alarm(
    resource_name: str,
    *,
    alarm_name: str,
    description: str,
    metric: str,
    queue_name: pulumi.Input[str],
    threshold: int,
    evaluation_periods: int,
    alerts_topic_arn: pulumi.Input[str],
    parent: pulumi.Resource,
) -> aws.cloudwatch.MetricAlarm:
    return aws.cloudwatch.MetricAlarm(
        resource_name,
        name=alarm_name,
        alarm_description=description,
        namespace="AWS/SQS",
        metric_name=metric,
        dimensions={"QueueName": queue_name},
        statistic="Maximum",
        period=ALARM_PERIOD_SECONDS,
        evaluation_periods=evaluation_periods,
        threshold=threshold,
        comparison_operator="GreaterThanThreshold",
        # SQS sends no data points for an idle queue: that is the healthy state.
        treat_missing_data="notBreaching",
        alarm_actions=[alerts_topic_arn],
        ok_actions=[alerts_topic_arn],
        opts=pulumi.ResourceOptions(parent=parent),
    )
