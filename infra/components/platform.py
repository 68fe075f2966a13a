"""What every service's processes share: the ECS cluster and the Cloud Map namespace."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass
class PlatformArgs:
    """The stack's name prefix and the VPC the private DNS namespace serves."""

    name_prefix: str
    vpc_id: pulumi.Input[str]
    container_insights: bool = False
    """Per-task metrics in CloudWatch (billed per metric): prod's, not dev's."""


@dataclass
class Placement:
    """Where and how a process runs: handed to every service component."""

    name_prefix: str
    region: str
    account_id: pulumi.Input[str]
    partition: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    namespace_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    """The tasks' subnets: private behind NAT gateways, public with `egress: public`."""
    assign_public_ip: bool
    security_group_id: pulumi.Input[str]
    log_retention_days: int
    database_secret_arn: pulumi.Input[str]
    """The RDS-managed master secret: injected into migration containers only."""
    cpu_architecture: str
    """ECS's name of the image's architecture: ARM64 or X86_64."""
    function_subnet_ids: Sequence[pulumi.Input[str]] = ()
    """Functions' subnets: always private (a function never gets a public IP)."""

    def log_group(
        self, resource_name: str, name: str, *, parent: pulumi.Resource
    ) -> aws.cloudwatch.LogGroup:
        """A log group kept for the stack's `logRetentionDays`."""
        return aws.cloudwatch.LogGroup(
            resource_name,
            name=name,
            retention_in_days=self.log_retention_days,
            opts=pulumi.ResourceOptions(parent=parent),
        )


class Platform(pulumi.ComponentResource):
    """The shared Fargate cluster and the private DNS namespace the APIs register in."""

    cluster_arn: pulumi.Output[str]
    cluster_name: pulumi.Output[str]
    namespace_id: pulumi.Output[str]
    namespace_name: str

    def __init__(
        self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("eventforge:infra:Platform", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            name=args.name_prefix,
            settings=[
                aws.ecs.ClusterSettingArgs(
                    name="containerInsights",
                    value="enabled" if args.container_insights else "disabled",
                )
            ],
            opts=child,
        )
        self.namespace_name = namespace_name(args.name_prefix)
        namespace = aws.servicediscovery.PrivateDnsNamespace(
            f"{name}-namespace",
            name=self.namespace_name,
            vpc=args.vpc_id,
            description="gRPC addresses of the EventForge APIs",
            opts=child,
        )
        self.cluster_arn = cluster.arn
        self.cluster_name = cluster.name
        self.namespace_id = namespace.id
        self.register_outputs(
            {
                "cluster_arn": self.cluster_arn,
                "cluster_name": self.cluster_name,
                "namespace_id": self.namespace_id,
            }
        )


def namespace_name(name_prefix: str) -> str:
    """The private DNS domain of one stack's APIs, e.g. `eventforge-dev.internal`."""
    return f"{name_prefix}.internal"
