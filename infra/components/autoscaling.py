"""Target-tracking autoscaling of an ECS service: on CPU, or on the depth of its queues."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

API_CPU_METRIC = "ECSServiceAverageCPUUtilization"
SCALE_IN_COOLDOWN_SECONDS = 300
SCALE_OUT_COOLDOWN_SECONDS = 60


@dataclass
class ScalingArgs:
    """The service to scale, its bounds, and what to track."""

    policy_prefix: str
    cluster_name: pulumi.Input[str]
    service_name: pulumi.Input[str]
    min_count: int
    max_count: int
    target_value: float
    """Average CPU % without queues; visible messages per queue with them."""
    queue_names: Sequence[pulumi.Input[str]] | None = None
    """A worker's queues: scale on their depth instead of on CPU."""


def autoscale(name: str, args: ScalingArgs, parent: pulumi.Resource) -> aws.appautoscaling.Target:
    """Register the service as a scalable target with its tracking policies."""
    child = pulumi.ResourceOptions(parent=parent)
    target = aws.appautoscaling.Target(
        name,
        service_namespace="ecs",
        scalable_dimension="ecs:service:DesiredCount",
        resource_id=pulumi.Output.format("service/{0}/{1}", args.cluster_name, args.service_name),
        min_capacity=args.min_count,
        max_capacity=args.max_count,
        opts=child,
    )
    if args.queue_names is None:
        trackings = {"cpu": _cpu(args.target_value)}
    else:
        # One policy per queue: scale out when any queue is deep, in only when all are shallow.
        trackings = {
            f"queue-{index}": _queue_depth(queue_name, args.target_value)
            for index, queue_name in enumerate(args.queue_names)
        }
    for suffix, tracking in trackings.items():
        aws.appautoscaling.Policy(
            f"{name}-{suffix}",
            name=f"{args.policy_prefix}-{suffix}",
            policy_type="TargetTrackingScaling",
            service_namespace=target.service_namespace,
            scalable_dimension=target.scalable_dimension,
            resource_id=target.resource_id,
            target_tracking_scaling_policy_configuration=tracking,
            opts=child,
        )
    return target


def _cpu(
    target_value: float,
) -> aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs:
    return aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
        target_value=target_value,
        predefined_metric_specification=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
            predefined_metric_type=API_CPU_METRIC
        ),
        scale_in_cooldown=SCALE_IN_COOLDOWN_SECONDS,
        scale_out_cooldown=SCALE_OUT_COOLDOWN_SECONDS,
    )


def _queue_depth(
    queue_name: pulumi.Input[str], target_value: float
) -> aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs:
    return aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
        target_value=target_value,
        customized_metric_specification=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationArgs(
            namespace="AWS/SQS",
            metric_name="ApproximateNumberOfMessagesVisible",
            statistic="Average",
            dimensions=[
                aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationDimensionArgs(
                    name="QueueName", value=queue_name
                )
            ],
        ),
        scale_in_cooldown=SCALE_IN_COOLDOWN_SECONDS,
        scale_out_cooldown=SCALE_OUT_COOLDOWN_SECONDS,
    )
