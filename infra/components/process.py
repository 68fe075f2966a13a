"""One process role (api, worker or relay) of one service, as an autoscaled Fargate service."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from eventforge.runtime.settings import ServiceName
from infra.access import execution_grants
from infra.components.autoscaling import ScalingArgs, autoscale
from infra.components.platform import Placement
from infra.config import Role, RoleSize
from infra.environment import SCRATCH_DIR
from infra.iam import Grant, service_role

TASKS_PRINCIPAL = "ecs-tasks.amazonaws.com"
SCRATCH_VOLUME = "scratch"

HEALTH_PROBE = (
    "import sys,grpc;from grpc_health.v1 import health_pb2 as h,health_pb2_grpc as g;"
    "from eventforge.runtime.settings import Settings;"
    "from eventforge.runtime.grpc.tls import Identity;"
    "t=Identity.configured(Settings(),'{service}');a='127.0.0.1:{port}';"
    "c=grpc.secure_channel(a,t.channel_credentials(),"
    "[('grpc.ssl_target_name_override','{service}')]) if t else grpc.insecure_channel(a);"
    "r=g.HealthStub(c).Check(h.HealthCheckRequest(),timeout=3);"
    "sys.exit(r.status!=h.HealthCheckResponse.SERVING)"
)
"""The container health check: grpc.health.v1 Check on the API's port, SERVING or exit 1.

It reads the same settings as the server, so with mTLS on (EVENTFORGE_TLS_BUNDLE) it presents
the service's own certificate (health is open to any verified peer).
"""


def health_check_command(service: ServiceName, port: int) -> list[str]:
    """The ECS health check of the API container of `service`, listening on `port`."""
    return ["CMD", "python", "-c", HEALTH_PROBE.format(service=service, port=port)]


@dataclass
class ServiceProcessArgs:
    """One (service, role) pair: its image, size, environment, grants and queues."""

    service: ServiceName
    role: Role
    size: RoleSize
    image: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    placement: Placement
    environment: Mapping[str, pulumi.Input[str]]
    grants: Sequence[Grant]
    """The task role's grants, from `infra.access`."""
    grpc_port: int | None = None
    """APIs only: the port they serve, registered in Cloud Map and probed by the health check."""
    scaling_queue_names: Sequence[pulumi.Input[str]] = ()
    tls_secret_arn: pulumi.Input[str] | None = None
    """With mTLS on: the service's certificate bundle, injected as EVENTFORGE_TLS_BUNDLE."""
    """Workers only: the queues whose depth scales the service."""


class ServiceProcess(pulumi.ComponentResource):
    """Log group, execution and task roles, task definition, ECS service and autoscaling."""

    service_name: pulumi.Output[str]
    task_role_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: ServiceProcessArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("eventforge:infra:ServiceProcess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        placement = args.placement
        process = f"{args.service}-{args.role}"
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/eventforge/{placement.name_prefix}/{process}",
            retention_in_days=placement.log_retention_days,
            opts=child,
        )
        execution_role = service_role(
            f"{name}-execution",
            principal=TASKS_PRINCIPAL,
            grants=execution_grants(
                args.repository_arn,
                log_group.arn,
                placement.database_secret_arn,
                args.tls_secret_arn,
            ),
            account_id=placement.account_id,
            parent=self,
        )
        task_role = service_role(
            f"{name}-task",
            principal=TASKS_PRINCIPAL,
            grants=args.grants,
            account_id=placement.account_id,
            parent=self,
        )
        task_definition = aws.ecs.TaskDefinition(
            f"{name}-task",
            family=f"{placement.name_prefix}-{process}",
            cpu=str(args.size.cpu),
            memory=str(args.size.memory),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
                operating_system_family="LINUX", cpu_architecture="X86_64"
            ),
            execution_role_arn=execution_role.role.arn,
            task_role_arn=task_role.role.arn,
            volumes=[aws.ecs.TaskDefinitionVolumeArgs(name=SCRATCH_VOLUME)],
            container_definitions=pulumi.Output.json_dumps(
                [_container(process, args, log_group.name)]
            ),
            opts=child,
        )
        registry = None
        if args.grpc_port is not None:
            registry = aws.servicediscovery.Service(
                f"{name}-discovery",
                name=args.service,
                dns_config=aws.servicediscovery.ServiceDnsConfigArgs(
                    namespace_id=placement.namespace_id,
                    dns_records=[
                        aws.servicediscovery.ServiceDnsConfigDnsRecordArgs(ttl=10, type="A")
                    ],
                    routing_policy="MULTIVALUE",
                ),
                # Tasks leave DNS when ECS sees their container health check fail.
                health_check_custom_config=aws.servicediscovery.ServiceHealthCheckCustomConfigArgs(),
                opts=child,
            )
        scaling_target = args.size.scaling_target
        autoscaled = scaling_target is not None
        ecs_service = aws.ecs.Service(
            f"{name}-service",
            name=process,
            cluster=placement.cluster_arn,
            task_definition=task_definition.arn,
            desired_count=args.size.desired_count,
            launch_type="FARGATE",
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=list(placement.subnet_ids),
                security_groups=[placement.security_group_id],
                assign_public_ip=False,
            ),
            service_registries=(
                None
                if registry is None
                else aws.ecs.ServiceServiceRegistriesArgs(registry_arn=registry.arn)
            ),
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(
                enable=True, rollback=True
            ),
            propagate_tags="SERVICE",
            enable_ecs_managed_tags=True,
            # Autoscaling owns the running count once the service exists.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*execution_role.dependencies(), *task_role.dependencies()],
                ignore_changes=["desiredCount"] if autoscaled else None,
            ),
        )
        if scaling_target is not None:
            autoscale(
                f"{name}-scaling",
                ScalingArgs(
                    policy_prefix=f"{placement.name_prefix}-{process}",
                    cluster_name=placement.cluster_name,
                    service_name=ecs_service.name,
                    min_count=args.size.desired_count,
                    max_count=args.size.max_count,
                    target_value=scaling_target,
                    queue_names=args.scaling_queue_names if args.role == "worker" else None,
                ),
                parent=self,
            )
        self.service_name = ecs_service.name
        self.task_role_arn = task_role.role.arn
        self.register_outputs(
            {"service_name": self.service_name, "task_role_arn": self.task_role_arn}
        )


def _container(
    process: str, args: ServiceProcessArgs, log_group_name: pulumi.Input[str]
) -> dict[str, Any]:
    placement = args.placement
    container: dict[str, Any] = {
        "name": process,
        "image": args.image,
        "essential": True,
        "command": ["serve", args.service, args.role],
        "environment": [
            {"name": key, "value": value} for key, value in sorted(args.environment.items())
        ],
        "secrets": _secrets(placement.database_secret_arn, args.tls_secret_arn),
        "readonlyRootFilesystem": True,
        "mountPoints": [{"sourceVolume": SCRATCH_VOLUME, "containerPath": SCRATCH_DIR}],
        "linuxParameters": {"initProcessEnabled": True},
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group_name,
                "awslogs-region": placement.region,
                "awslogs-stream-prefix": args.role,
            },
        },
    }
    if args.grpc_port is not None:
        container["portMappings"] = [
            {"name": "grpc", "containerPort": args.grpc_port, "protocol": "tcp"}
        ]
        container["healthCheck"] = {
            "command": health_check_command(args.service, args.grpc_port),
            "interval": 15,
            "timeout": 5,
            "retries": 3,
            "startPeriod": 30,
        }
    return container


def _secrets(
    database_secret_arn: pulumi.Input[str], tls_secret_arn: pulumi.Input[str] | None
) -> list[dict[str, Any]]:
    """What ECS injects from Secrets Manager when the container starts."""
    # libpq reads PGPASSWORD, from the RDS-managed secret.
    secrets: list[dict[str, Any]] = [
        {
            "name": "PGPASSWORD",
            "valueFrom": pulumi.Output.concat(database_secret_arn, ":password::"),
        }
    ]
    if tls_secret_arn is not None:
        # The whole JSON document: the runtime's TLS_BUNDLE.
        secrets.append({"name": "EVENTFORGE_TLS_BUNDLE", "valueFrom": tls_secret_arn})
    return secrets
