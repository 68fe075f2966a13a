"""The VPC: private subnets only, AWS APIs through VPC endpoints, and the security groups."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

HTTPS = 443
INTERFACE_ENDPOINTS = ("sqs", "sns", "secretsmanager", "ecr.api", "ecr.dkr", "logs", "sts")
"""Every AWS API the tasks call, reached without a NAT gateway (S3 has a gateway endpoint).

SNS encrypts with the topic key on the publisher's behalf and SQS uses its own managed keys, so
no task calls KMS itself.
"""
_SUBNET_BITS = 4  # a /16 VPC gives /20 subnets: 4096 addresses per AZ


@dataclass
class NetworkArgs:
    """The VPC's address range, its AZs, and the gRPC ports services use between them."""

    name_prefix: str
    region: str
    cidr: str
    az_count: int
    availability_zones: pulumi.Input[Sequence[str]]
    grpc_ports: Sequence[int]
    nat_gateway: bool
    """Give tasks internet egress over HTTPS (webhooks, SES) through one NAT gateway."""


class Network(pulumi.ComponentResource):
    """Private subnets in `az_count` AZs, VPC endpoints, and the services' security group."""

    vpc_id: pulumi.Output[str]
    private_subnet_ids: list[pulumi.Output[str]]
    services_security_group_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("eventforge:infra:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ranges = list(ipaddress.IPv4Network(args.cidr).subnets(prefixlen_diff=_SUBNET_BITS))
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            # Interface endpoints answer on the services' public DNS names only with these on.
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": args.name_prefix},
            opts=child,
        )
        zones = pulumi.Output.from_input(args.availability_zones)
        private_routes = aws.ec2.RouteTable(
            f"{name}-private-routes",
            vpc_id=vpc.id,
            tags={"Name": f"{args.name_prefix}-private"},
            opts=child,
        )
        subnets = []
        for index in range(args.az_count):
            subnet = aws.ec2.Subnet(
                f"{name}-private-{index}",
                vpc_id=vpc.id,
                cidr_block=str(ranges[index]),
                availability_zone=zones.apply(_zone(index)),
                map_public_ip_on_launch=False,
                tags={"Name": f"{args.name_prefix}-private-{index}"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{index}-routes",
                subnet_id=subnet.id,
                route_table_id=private_routes.id,
                opts=child,
            )
            subnets.append(subnet)
        services = aws.ec2.SecurityGroup(
            f"{name}-services",
            vpc_id=vpc.id,
            description="EventForge tasks and functions",
            revoke_rules_on_delete=True,
            opts=child,
        )
        endpoints = aws.ec2.SecurityGroup(
            f"{name}-endpoints",
            vpc_id=vpc.id,
            description="VPC interface endpoints, reachable from the services only",
            revoke_rules_on_delete=True,
            opts=child,
        )
        s3 = aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[private_routes.id],
            opts=child,
        )
        for service in INTERFACE_ENDPOINTS:
            aws.ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}",
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{args.region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=[s.id for s in subnets],
                security_group_ids=[endpoints.id],
                opts=child,
            )
        self._rules(name, services, endpoints, s3, args)
        if args.nat_gateway:
            self._nat(name, vpc, private_routes, ranges[len(ranges) - 1], zones, args.name_prefix)
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-services-to-internet-https",
                security_group_id=services.id,
                description="Webhook deliveries and SES through the NAT gateway",
                ip_protocol="tcp",
                from_port=HTTPS,
                to_port=HTTPS,
                cidr_ipv4="0.0.0.0/0",
                opts=child,
            )
        self.vpc_id = vpc.id
        self.private_subnet_ids = [s.id for s in subnets]
        self.services_security_group_id = services.id
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "private_subnet_ids": self.private_subnet_ids,
                "services_security_group_id": self.services_security_group_id,
            }
        )

    def _rules(
        self,
        name: str,
        services: aws.ec2.SecurityGroup,
        endpoints: aws.ec2.SecurityGroup,
        s3: aws.ec2.VpcEndpoint,
        args: NetworkArgs,
    ) -> None:
        child = pulumi.ResourceOptions(parent=self)
        for port in args.grpc_ports:
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-services-grpc-{port}-in",
                security_group_id=services.id,
                description="gRPC between the services",
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                referenced_security_group_id=services.id,
                opts=child,
            )
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-services-grpc-{port}-out",
                security_group_id=services.id,
                description="gRPC between the services",
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                referenced_security_group_id=services.id,
                opts=child,
            )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-services-to-endpoints",
            security_group_id=services.id,
            description="AWS APIs through the interface endpoints",
            ip_protocol="tcp",
            from_port=HTTPS,
            to_port=HTTPS,
            referenced_security_group_id=endpoints.id,
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-services-to-s3",
            security_group_id=services.id,
            description="S3 through the gateway endpoint",
            ip_protocol="tcp",
            from_port=HTTPS,
            to_port=HTTPS,
            prefix_list_id=s3.prefix_list_id,
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-endpoints-from-services",
            security_group_id=endpoints.id,
            description="HTTPS from the services",
            ip_protocol="tcp",
            from_port=HTTPS,
            to_port=HTTPS,
            referenced_security_group_id=services.id,
            opts=child,
        )

    def _nat(
        self,
        name: str,
        vpc: aws.ec2.Vpc,
        private_routes: aws.ec2.RouteTable,
        public_range: ipaddress.IPv4Network,
        zones: pulumi.Output[Sequence[str]],
        name_prefix: str,
    ) -> None:
        child = pulumi.ResourceOptions(parent=self)
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, opts=child)
        public = aws.ec2.Subnet(
            f"{name}-public",
            vpc_id=vpc.id,
            cidr_block=str(public_range),
            availability_zone=zones.apply(_zone(0)),
            tags={"Name": f"{name_prefix}-public"},
            opts=child,
        )
        public_routes = aws.ec2.RouteTable(
            f"{name}-public-routes",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
            opts=child,
        )
        aws.ec2.RouteTableAssociation(
            f"{name}-public-association",
            subnet_id=public.id,
            route_table_id=public_routes.id,
            opts=child,
        )
        address = aws.ec2.Eip(f"{name}-nat", domain="vpc", opts=child)
        nat = aws.ec2.NatGateway(
            f"{name}-nat", allocation_id=address.id, subnet_id=public.id, opts=child
        )
        aws.ec2.Route(
            f"{name}-private-default",
            route_table_id=private_routes.id,
            destination_cidr_block="0.0.0.0/0",
            nat_gateway_id=nat.id,
            opts=child,
        )


def _zone(index: int) -> Callable[[Sequence[str]], str]:
    """The index-th AZ of the region's available ones."""
    return lambda names: names[index]
