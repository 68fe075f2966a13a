"""One process role (api, worker or relay) of one service, as an autoscaled Fargate service."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from eventforge.runtime.grpc.health_http import probe_command
from eventforge.runtime.settings import ServiceName
from infra.access import execution_grants
from infra.components.autoscaling import ScalingArgs, autoscale
from infra.components.log_metrics import LogMetric, count_in_log_group
from infra.components.platform import Placement
from infra.config import Role, RoleSize
from infra.environment import HEALTH_HTTP_PORT, SCRATCH_DIR
from infra.iam import Grant, service_role

TASKS_PRINCIPAL = "ecs-tasks.amazonaws.com"
SCRATCH_VOLUME = "scratch"
LOAD_BALANCER_GRACE_SECONDS = 120
"""How long ECS ignores failing load balancer checks of a new task (migrations run first)."""

MIGRATE_CONTAINER = "migrate"
"""The one-shot container of every task that brings the service's schema to head first."""


def health_check_command() -> list[str]:
    """The ECS health check of an API container: a bash GET of its HTTP health endpoint.

    bash is already in the image; a Python probe would start an interpreter that imports
    grpc and pydantic on every check (≈0.4 CPU-seconds, ~11 % of a 0.25-vCPU task at 15 s).
    """
    return probe_command(HEALTH_HTTP_PORT)


@dataclass
class ServiceProcessArgs:
    """One (service, role) pair: its image, size, environment, grants and queues."""

    service: ServiceName
    process: str
    """The ECS service's name: `<service>-<role>`, or `<service>` when it runs every role."""
    roles: Sequence[Role]
    size: RoleSize
    image: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    placement: Placement
    environment: Mapping[str, pulumi.Input[str]]
    migrate_environment: Mapping[str, pulumi.Input[str]]
    grants: Sequence[Grant]
    """The task role's grants, from `infra.access`."""
    grpc_port: int | None = None
    """APIs only: the port they serve, registered in Cloud Map and behind the load balancer."""
    target_group_arn: pulumi.Input[str] | None = None
    """APIs with ingress: the load balancer's target group of the service."""
    scaling_queue_names: Sequence[pulumi.Input[str]] = ()
    """Workers only: the queues whose depth scales the service."""
    tls_secret_arn: pulumi.Input[str] | None = None
    """With mTLS on: the service's certificate bundle, injected as EVENTFORGE_TLS_BUNDLE."""
    depends_on: Sequence[pulumi.Resource] = ()
    """What must exist before the ECS service (the load balancer's listener)."""
    log_metrics: Sequence[LogMetric] = ()
    """Log lines of the process counted into metrics (its service alarms on them)."""


class ServiceProcess(pulumi.ComponentResource):
    """Log group, execution and task roles, task definition, ECS service and autoscaling.

    Each task runs the migration container first and the service's container only once that
    exited 0 (`dependsOn … SUCCESS`): no code serves before its schema is at head, and a first
    deployment converges by itself. `pulumi up` waits for the deployment to reach a steady
    state, so a deployment that fails (and is rolled back) fails the `up` too.
    """

    service_name: pulumi.Output[str]
    task_role_arn: pulumi.Output[str]
    ecs_service: aws.ecs.Service

    def __init__(
        self, name: str, args: ServiceProcessArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("eventforge:infra:ServiceProcess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        placement = args.placement
        process = args.process
        log_group = placement.log_group(
            f"{name}-logs", f"/eventforge/{placement.name_prefix}/{process}", parent=self
        )
        for metric in args.log_metrics:
            count_in_log_group(f"{name}-{metric.key}", metric, log_group.name, parent=self)
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
                operating_system_family="LINUX", cpu_architecture=placement.cpu_architecture
            ),
            execution_role_arn=execution_role.role.arn,
            task_role_arn=task_role.role.arn,
            volumes=[aws.ecs.TaskDefinitionVolumeArgs(name=SCRATCH_VOLUME)],
            container_definitions=pulumi.Output.json_dumps(
                [_migrate_container(args, log_group.name), _container(args, log_group.name)]
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
                assign_public_ip=placement.assign_public_ip,
            ),
            load_balancers=(
                None
                if args.target_group_arn is None or args.grpc_port is None
                else [
                    aws.ecs.ServiceLoadBalancerArgs(
                        target_group_arn=args.target_group_arn,
                        container_name=process,
                        container_port=args.grpc_port,
                    )
                ]
            ),
            health_check_grace_period_seconds=(
                None if args.target_group_arn is None else LOAD_BALANCER_GRACE_SECONDS
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
            wait_for_steady_state=True,
            # Autoscaling owns the running count once the service exists.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[
                    *execution_role.dependencies(),
                    *task_role.dependencies(),
                    *args.depends_on,
                ],
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
                    queue_names=list(args.scaling_queue_names) or None,
                ),
                parent=self,
            )
        self.ecs_service = ecs_service
        self.service_name = ecs_service.name
        self.task_role_arn = task_role.role.arn
        self.register_outputs(
            {"service_name": self.service_name, "task_role_arn": self.task_role_arn}
        )


def _migrate_container(
    args: ServiceProcessArgs, log_group_name: pulumi.Input[str]
) -> dict[str, Any]:
    """`eventforge migrate <service> --service-roles` as the master user, then exit."""
    return {
        **_common(args, log_group_name, MIGRATE_CONTAINER, args.migrate_environment),
        "essential": False,
        "command": ["migrate", args.service, "--service-roles"],
        # libpq reads PGPASSWORD: the master password, injected when the container starts.
        "secrets": [
            {
                "name": "PGPASSWORD",
                "valueFrom": pulumi.Output.concat(
                    args.placement.database_secret_arn, ":password::"
                ),
            }
        ],
    }


def _container(args: ServiceProcessArgs, log_group_name: pulumi.Input[str]) -> dict[str, Any]:
    container: dict[str, Any] = {
        **_common(args, log_group_name, args.process, args.environment),
        "essential": True,
        "command": ["serve", args.service, *args.roles],
        "dependsOn": [{"containerName": MIGRATE_CONTAINER, "condition": "SUCCESS"}],
    }
    if args.tls_secret_arn is not None:
        # The whole JSON document: the runtime's TLS_BUNDLE.
        container["secrets"] = [{"name": "EVENTFORGE_TLS_BUNDLE", "valueFrom": args.tls_secret_arn}]
    if args.grpc_port is not None:
        container["portMappings"] = [
            {"name": "grpc", "containerPort": args.grpc_port, "protocol": "tcp"},
            {"name": "health", "containerPort": HEALTH_HTTP_PORT, "protocol": "tcp"},
        ]
        container["healthCheck"] = {
            "command": health_check_command(),
            "interval": 15,
            "timeout": 5,
            "retries": 3,
            "startPeriod": 30,
        }
    return container


def _common(
    args: ServiceProcessArgs,
    log_group_name: pulumi.Input[str],
    name: str,
    environment: Mapping[str, pulumi.Input[str]],
) -> dict[str, Any]:
    """What both containers of a task share: image, read-only root, scratch volume, logs."""
    return {
        "name": name,
        "image": args.image,
        "environment": [
            {"name": key, "value": value} for key, value in sorted(environment.items())
        ],
        "readonlyRootFilesystem": True,
        "mountPoints": [{"sourceVolume": SCRATCH_VOLUME, "containerPath": SCRATCH_DIR}],
        "linuxParameters": {"initProcessEnabled": True},
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group_name,
                "awslogs-region": args.placement.region,
                "awslogs-stream-prefix": name,
            },
        },
    }
