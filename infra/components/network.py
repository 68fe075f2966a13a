"""The VPC: public and private subnets, the stack's egress shape, endpoints, security groups."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.config import Egress

HTTPS = 443
INTERFACE_ENDPOINTS = ("sqs", "sns", "secretsmanager", "ecr.api", "ecr.dkr", "logs", "sts")
"""Every AWS API the tasks call, when `vpcEndpoints` keeps those calls off the internet.

S3 always has its (free) gateway endpoint. SNS encrypts with the topic key on the publisher's
behalf and SQS uses its own managed keys, so no task calls KMS itself.
"""
_SUBNET_BITS = 4  # a /16 VPC gives /20 subnets: 4096 addresses per AZ


@dataclass
class NetworkArgs:
    """The VPC's address range, its AZs, its egress shape and the ports tasks use."""

    name_prefix: str
    region: str
    cidr: str
    az_count: int
    availability_zones: pulumi.Input[Sequence[str]]
    grpc_ports: Sequence[int]
    egress: Egress
    vpc_endpoints: bool
    egress_ports: Sequence[int] = field(default_factory=tuple)
    """Ports beyond HTTPS that tasks may reach on the internet (the OTLP exporter's)."""
    function_endpoints: Sequence[str] = field(default_factory=tuple)
    """The AWS APIs (of `INTERFACE_ENDPOINTS`) the functions call. Functions always run in
    the private subnets: with `egress: public` (no NAT gateway) and no `vpcEndpoints`, these get
    interface endpoints of their own there, or the functions could not reach them."""


class Network(pulumi.ComponentResource):
    """Subnets in `az_count` AZs, internet egress as configured, and the services' group.

    Private subnets hold the database, the load balancer and (behind NAT gateways) the tasks;
    with `egress: public` the tasks run in the public subnets with a public IP each, and no
    inbound rule admits anything from outside the VPC.
    """

    vpc_id: pulumi.Output[str]
    private_subnet_ids: list[pulumi.Output[str]]
    task_subnet_ids: list[pulumi.Output[str]]
    assign_public_ip: bool
    services_security_group_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("eventforge:infra:Network", name, None, opts)
        self._child = pulumi.ResourceOptions(parent=self)
        self._name = name
        ranges = list(ipaddress.IPv4Network(args.cidr).subnets(prefixlen_diff=_SUBNET_BITS))
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            # Interface endpoints and Cloud Map answer on private DNS only with these on.
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": args.name_prefix},
            opts=self._child,
        )
        zones = pulumi.Output.from_input(args.availability_zones)
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, opts=self._child)
        public_routes = aws.ec2.RouteTable(
            f"{name}-public-routes",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
            tags={"Name": f"{args.name_prefix}-public"},
            opts=self._child,
        )
        public = [
            self._subnet(vpc, f"public-{i}", ranges[-1 - i], zones, i, public_routes, args)
            for i in range(args.az_count)
        ]
        private_routes = self._private_routes(vpc, public, args)
        private = [
            self._subnet(vpc, f"private-{i}", ranges[i], zones, i, private_routes[i], args)
            for i in range(args.az_count)
        ]
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[public_routes.id, *{id(t): t.id for t in private_routes}.values()],
            opts=self._child,
        )
        services = aws.ec2.SecurityGroup(
            f"{name}-services",
            vpc_id=vpc.id,
            description="EventForge tasks and functions",
            revoke_rules_on_delete=True,
            opts=self._child,
        )
        self.assign_public_ip = args.egress == "public"
        tasks = public if self.assign_public_ip else private
        if args.vpc_endpoints:
            self._interface_endpoints(vpc, tasks, services, args, INTERFACE_ENDPOINTS)
        elif args.egress == "public" and args.function_endpoints:
            self._interface_endpoints(vpc, private, services, args, args.function_endpoints)
        self._rules(services, args)
        self.vpc_id = vpc.id
        self.private_subnet_ids = [s.id for s in private]
        self.task_subnet_ids = [s.id for s in tasks]
        self.services_security_group_id = services.id
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "private_subnet_ids": self.private_subnet_ids,
                "task_subnet_ids": self.task_subnet_ids,
                "services_security_group_id": self.services_security_group_id,
            }
        )

    def _subnet(
        self,
        vpc: aws.ec2.Vpc,
        suffix: str,
        cidr: ipaddress.IPv4Network,
        zones: pulumi.Output[Sequence[str]],
        index: int,
        routes: aws.ec2.RouteTable,
        args: NetworkArgs,
    ) -> aws.ec2.Subnet:
        subnet = aws.ec2.Subnet(
            f"{self._name}-{suffix}",
            vpc_id=vpc.id,
            cidr_block=str(cidr),
            availability_zone=zones.apply(_zone(index)),
            map_public_ip_on_launch=False,
            tags={"Name": f"{args.name_prefix}-{suffix}"},
            opts=self._child,
        )
        aws.ec2.RouteTableAssociation(
            f"{self._name}-{suffix}-routes",
            subnet_id=subnet.id,
            route_table_id=routes.id,
            opts=self._child,
        )
        return subnet

    def _private_routes(
        self, vpc: aws.ec2.Vpc, public: Sequence[aws.ec2.Subnet], args: NetworkArgs
    ) -> list[aws.ec2.RouteTable]:
        """The route table of each private subnet: isolated, or to its AZ's (or the) NAT."""
        nat_count = {"public": 0, "nat": 1, "nat-per-az": args.az_count}[args.egress]
        tables = []
        for index in range(max(nat_count, 1)):
            table = aws.ec2.RouteTable(
                f"{self._name}-private-routes" + (f"-{index}" if index else ""),
                vpc_id=vpc.id,
                tags={"Name": f"{args.name_prefix}-private-{index}"},
                opts=self._child,
            )
            if index < nat_count:
                self._nat(index, public[index], table)
            tables.append(table)
        return [tables[i % len(tables)] for i in range(args.az_count)]

    def _nat(self, index: int, subnet: aws.ec2.Subnet, table: aws.ec2.RouteTable) -> None:
        suffix = f"-{index}" if index else ""
        address = aws.ec2.Eip(f"{self._name}-nat{suffix}", domain="vpc", opts=self._child)
        nat = aws.ec2.NatGateway(
            f"{self._name}-nat{suffix}",
            allocation_id=address.id,
            subnet_id=subnet.id,
            opts=self._child,
        )
        aws.ec2.Route(
            f"{self._name}-private-default{suffix}",
            route_table_id=table.id,
            destination_cidr_block="0.0.0.0/0",
            nat_gateway_id=nat.id,
            opts=self._child,
        )

    def _interface_endpoints(
        self,
        vpc: aws.ec2.Vpc,
        subnets: Sequence[aws.ec2.Subnet],
        services: aws.ec2.SecurityGroup,
        args: NetworkArgs,
        apis: Sequence[str],
    ) -> None:
        unknown = sorted(set(apis) - set(INTERFACE_ENDPOINTS))
        if unknown:
            raise ValueError(f"no interface endpoint is declared for {unknown}")
        endpoints = aws.ec2.SecurityGroup(
            f"{self._name}-endpoints",
            vpc_id=vpc.id,
            description="VPC interface endpoints, reachable from the services only",
            revoke_rules_on_delete=True,
            opts=self._child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{self._name}-endpoints-from-services",
            security_group_id=endpoints.id,
            description="HTTPS from the services",
            ip_protocol="tcp",
            from_port=HTTPS,
            to_port=HTTPS,
            referenced_security_group_id=services.id,
            opts=self._child,
        )
        for service in apis:
            aws.ec2.VpcEndpoint(
                f"{self._name}-{service.replace('.', '-')}",
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{args.region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=[s.id for s in subnets],
                security_group_ids=[endpoints.id],
                opts=self._child,
            )

    def _rules(self, services: aws.ec2.SecurityGroup, args: NetworkArgs) -> None:
        for port in args.grpc_ports:
            for direction, rule in (
                ("in", aws.vpc.SecurityGroupIngressRule),
                ("out", aws.vpc.SecurityGroupEgressRule),
            ):
                rule(
                    f"{self._name}-services-grpc-{port}-{direction}",
                    security_group_id=services.id,
                    description="gRPC between the services",
                    ip_protocol="tcp",
                    from_port=port,
                    to_port=port,
                    referenced_security_group_id=services.id,
                    opts=self._child,
                )
        for port in sorted({HTTPS, *args.egress_ports}):
            aws.vpc.SecurityGroupEgressRule(
                f"{self._name}-services-to-internet-{port}",
                security_group_id=services.id,
                description=(
                    "AWS APIs, SES and webhook deliveries" if port == HTTPS else "OTLP exporter"
                ),
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                cidr_ipv4="0.0.0.0/0",
                opts=self._child,
            )


def _zone(index: int) -> Callable[[Sequence[str]], str]:
    """The index-th AZ of the region's available ones."""
    return lambda names: names[index]
