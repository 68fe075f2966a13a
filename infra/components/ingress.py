"""The APIs' entry point for internal clients: an internal NLB, optionally behind PrivateLink."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from eventforge.runtime.settings import ServiceName
from infra.config import IngressSettings

DEREGISTRATION_DELAY_SECONDS = 30
"""Longer than the APIs' graceful stop, so calls in flight finish before a target leaves."""
HEALTH_CHECK_INTERVAL_SECONDS = 10


@dataclass
class IngressArgs:
    """Where the load balancer lives, who may connect, and each API's ports."""

    name_prefix: str
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    settings: IngressSettings
    services_security_group_id: pulumi.Input[str]
    grpc_ports: Mapping[ServiceName, int]
    health_port: int


class Ingress(pulumi.ComponentResource):
    """An internal Network Load Balancer with a TCP listener per API on the API's own port.

    TCP pass-through keeps mTLS end to end (the load balancer never holds a key); targets are
    the API tasks' addresses, health-checked on their HTTP health endpoint, which mirrors gRPC
    health. With `endpointServicePrincipals`, a VPC endpoint service lets other VPCs and
    accounts connect through PrivateLink (each connection accepted by hand).
    """

    dns_name: pulumi.Output[str]
    target_group_arns: dict[ServiceName, pulumi.Output[str]]
    listeners: dict[ServiceName, aws.lb.Listener]
    endpoint_service_name: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: IngressArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("eventforge:infra:Ingress", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        group = aws.ec2.SecurityGroup(
            f"{name}-security-group",
            vpc_id=args.vpc_id,
            description="The APIs' load balancer: gRPC from the allowed ranges only",
            revoke_rules_on_delete=True,
            opts=child,
        )
        self._rules(name, group, args)
        private_link = bool(args.settings.endpoint_service_principals)
        balancer = aws.lb.LoadBalancer(
            name,
            name=f"{args.name_prefix}-grpc",
            internal=True,
            load_balancer_type="network",
            subnets=list(args.subnet_ids),
            security_groups=[group.id],
            enable_cross_zone_load_balancing=True,
            # PrivateLink clients are admitted by the endpoint service's principals instead.
            enforce_security_group_inbound_rules_on_private_link_traffic=(
                "off" if private_link else "on"
            ),
            opts=child,
        )
        self.target_group_arns = {}
        self.listeners = {}
        for service, port in args.grpc_ports.items():
            targets = aws.lb.TargetGroup(
                f"{name}-{service}",
                name=f"{args.name_prefix}-{service}",
                port=port,
                protocol="TCP",
                target_type="ip",
                vpc_id=args.vpc_id,
                deregistration_delay=DEREGISTRATION_DELAY_SECONDS,
                health_check=aws.lb.TargetGroupHealthCheckArgs(
                    protocol="HTTP",
                    port=str(args.health_port),
                    path="/healthz",
                    matcher="200",
                    interval=HEALTH_CHECK_INTERVAL_SECONDS,
                    healthy_threshold=2,
                    unhealthy_threshold=2,
                ),
                opts=child,
            )
            self.listeners[service] = aws.lb.Listener(
                f"{name}-{service}",
                load_balancer_arn=balancer.arn,
                port=port,
                protocol="TCP",
                default_actions=[
                    aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=targets.arn)
                ],
                opts=child,
            )
            self.target_group_arns[service] = targets.arn
        self.endpoint_service_name = None
        if private_link:
            endpoint_service = aws.ec2.VpcEndpointService(
                f"{name}-endpoint-service",
                acceptance_required=True,
                network_load_balancer_arns=[balancer.arn],
                allowed_principals=list(args.settings.endpoint_service_principals),
                opts=child,
            )
            self.endpoint_service_name = endpoint_service.service_name
        self.dns_name = balancer.dns_name
        self.register_outputs(
            {"dns_name": self.dns_name, "target_group_arns": self.target_group_arns}
        )

    def _rules(self, name: str, group: aws.ec2.SecurityGroup, args: IngressArgs) -> None:
        child = pulumi.ResourceOptions(parent=self)
        for service, port in args.grpc_ports.items():
            for index, cidr in enumerate(args.settings.allowed_cidrs):
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-{service}-from-{index}",
                    security_group_id=group.id,
                    description=f"gRPC to {service} from an allowed range",
                    ip_protocol="tcp",
                    from_port=port,
                    to_port=port,
                    cidr_ipv4=cidr,
                    opts=child,
                )
        for port, what in [
            *((p, f"gRPC to the {s} tasks") for s, p in args.grpc_ports.items()),
            (args.health_port, "health checks of the API tasks"),
        ]:
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-to-tasks-{port}",
                security_group_id=group.id,
                description=what,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                referenced_security_group_id=args.services_security_group_id,
                opts=child,
            )
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-tasks-from-balancer-{port}",
                security_group_id=args.services_security_group_id,
                description=f"{what}, from the load balancer",
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                referenced_security_group_id=group.id,
                opts=child,
            )
