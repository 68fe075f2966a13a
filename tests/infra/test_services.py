"""The services' processes: images, commands, environment, discovery, health and scaling."""

# pulumi.runtime.test is untyped; the tests under it are still checked.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

import os
import subprocess
import sys
from concurrent import futures
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import pulumi
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from eventforge.runtime import certs
from eventforge.runtime.grpc.tls import Identity
from eventforge.runtime.settings import SERVICES
from eventforge.topology import TOPOLOGY
from infra.components.network import INTERFACE_ENDPOINTS
from infra.components.process import health_check_command
from infra.environment import grpc_port
from infra.program import service_roles
from tests.infra.conftest import Deploy, stack_config
from tests.infra.graph import (
    DB,
    DISCOVERY_SERVICE,
    ECS_SERVICE,
    EGRESS_RULE,
    INGRESS_RULE,
    INTERNET_GATEWAY,
    NAT_GATEWAY,
    QUEUE,
    REPOSITORY,
    SCALING_POLICY,
    SCALING_TARGET,
    TASK_DEFINITION,
    VPC_ENDPOINT,
    container,
    environment,
)


@pulumi.runtime.test
def test_each_process_runs_its_role_from_its_service_image_with_the_runtime_settings(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("staging")
    cloud = deployment.cloud
    settings = deployment.settings
    prefix = settings.name_prefix

    def check() -> None:
        [database] = cloud.of_type(DB)
        for service in SERVICES:
            repository = cloud.by_state(REPOSITORY, "name", f"{prefix}/{service}")
            assert repository.inputs["imageTagMutability"] == "IMMUTABLE"
            assert repository.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
            for role in service_roles(TOPOLOGY, service):
                task = cloud.by_state(TASK_DEFINITION, "family", f"{prefix}-{service}-{role}")
                definition = container(task)
                assert definition["image"] == (
                    f"{repository.state['repositoryUrl']}:{settings.image_tag}"
                )
                assert definition["command"] == ["serve", service, role]
                assert definition["readonlyRootFilesystem"] is True
                env = environment(definition)
                url = urlsplit(env["DATABASE_URL"])
                assert url.password is None
                assert (url.username, url.hostname, url.port) == (
                    "eventforge",
                    database.state["address"],
                    5432,
                )
                assert env["EVENTFORGE_NAME_PREFIX"] == prefix
                assert env["AWS_REGION"] == settings.region
                assert env["OTEL_SERVICE_NAME"] == f"eventforge-{service}"
                assert env["EVENTFORGE_SPAN_FILE_ENABLED"] == "false"
                sender = env.get("EVENTFORGE_NOTIFIER_EMAIL_SENDER")
                assert sender == (settings.email_sender if service == "notifier" else None)
                for other in SERVICES:
                    address = env[f"EVENTFORGE_{other.upper()}_ADDR"]
                    if role == "api" and other == service:
                        assert address == f"0.0.0.0:{grpc_port(service)}"
                    else:
                        assert address == f"{other}.{prefix}.internal:{grpc_port(other)}"

    return deployment.settled(check)


@pulumi.runtime.test
def test_apis_register_in_cloud_map_and_are_health_checked_over_grpc(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("prod")
    cloud = deployment.cloud
    prefix = deployment.settings.name_prefix

    def check() -> None:
        registries = {r.inputs["name"]: r for r in cloud.of_type(DISCOVERY_SERVICE)}
        assert set(registries) == set(SERVICES)
        for service in SERVICES:
            api = cloud.by_state(ECS_SERVICE, "name", f"{service}-api")
            registry = registries[service]
            assert api.inputs["serviceRegistries"] == {"registryArn": registry.state["arn"]}
            assert registry.inputs["dnsConfig"]["dnsRecords"] == [{"ttl": 10, "type": "A"}]
            definition = container(
                cloud.by_state(TASK_DEFINITION, "family", f"{prefix}-{service}-api")
            )
            assert definition["healthCheck"]["command"] == health_check_command(
                service, grpc_port(service)
            )
            assert definition["portMappings"][0]["containerPort"] == grpc_port(service)
            for role in ("worker", "relay"):
                other = cloud.by_state(ECS_SERVICE, "name", f"{service}-{role}")
                assert "serviceRegistries" not in other.inputs
        grpc_in = {
            (r.inputs["fromPort"], r.inputs["referencedSecurityGroupId"])
            for r in cloud.of_type(INGRESS_RULE)
            if r.name.startswith("network-services-grpc")
        }
        assert grpc_in == {(grpc_port(s), "network-services-id") for s in SERVICES}

    return deployment.settled(check)


@pulumi.runtime.test
def test_apis_scale_on_cpu_and_workers_on_the_depth_of_their_queues(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("prod")
    cloud = deployment.cloud
    roles = deployment.settings.roles

    def check() -> None:
        targets = {
            t.inputs["resourceId"].rsplit("/", 1)[1]: t for t in cloud.of_type(SCALING_TARGET)
        }
        assert set(targets) == {f"{s}-{r}" for s in SERVICES for r in ("api", "worker")}
        for process, target in targets.items():
            role = process.rsplit("-", 1)[1]
            assert target.inputs["minCapacity"] == roles[role].desired_count
            assert target.inputs["maxCapacity"] == roles[role].max_count
        policies = cloud.of_type(SCALING_POLICY)
        for service in SERVICES:
            resource_id = targets[f"{service}-api"].inputs["resourceId"]
            [cpu] = [p for p in policies if p.inputs["resourceId"] == resource_id]
            tracking = cpu.inputs["targetTrackingScalingPolicyConfiguration"]
            assert tracking["predefinedMetricSpecification"] == {
                "predefinedMetricType": "ECSServiceAverageCPUUtilization"
            }
            assert tracking["targetValue"] == roles["api"].scaling_target
            resource_id = targets[f"{service}-worker"].inputs["resourceId"]
            depth = [p for p in policies if p.inputs["resourceId"] == resource_id]
            queues = {
                metric["customizedMetricSpecification"]["dimensions"][0]["value"]
                for metric in (p.inputs["targetTrackingScalingPolicyConfiguration"] for p in depth)
            }
            assert queues == {
                cloud.by_state(QUEUE, "name", deployment.names.queues[q.name].name).inputs["name"]
                for q in TOPOLOGY.queues_consumed_by(service)
            }

    return deployment.settled(check)


@pulumi.runtime.test
def test_aws_apis_are_reached_through_vpc_endpoints_without_any_internet_route(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("dev", {"eventforge:network": {**_network("dev"), "natGateway": False}})
    cloud = deployment.cloud
    region = deployment.settings.region

    def check() -> None:
        assert not cloud.of_type(NAT_GATEWAY)
        assert not cloud.of_type(INTERNET_GATEWAY)
        assert not [r for r in cloud.of_type(EGRESS_RULE) if r.inputs.get("cidrIpv4")]
        endpoints = {e.inputs["serviceName"]: e.inputs for e in cloud.of_type(VPC_ENDPOINT)}
        assert endpoints[f"com.amazonaws.{region}.s3"]["vpcEndpointType"] == "Gateway"
        for service in INTERFACE_ENDPOINTS:
            endpoint = endpoints[f"com.amazonaws.{region}.{service}"]
            assert endpoint["vpcEndpointType"] == "Interface"
            assert endpoint["privateDnsEnabled"] is True
        assert {"sqs", "sns", "secretsmanager", "ecr.api", "ecr.dkr", "logs", "sts"} <= set(
            INTERFACE_ENDPOINTS
        )

    return deployment.settled(check)


@pytest.mark.parametrize(
    ("mtls", "status", "exit_code"),
    [
        (False, health_pb2.HealthCheckResponse.SERVING, 0),
        (False, health_pb2.HealthCheckResponse.NOT_SERVING, 1),
        (True, health_pb2.HealthCheckResponse.SERVING, 0),
    ],
)
@pulumi.runtime.test
def test_the_container_health_check_asks_the_api_for_its_grpc_health(
    tmp_path: Path,
    mtls: bool,
    status: health_pb2.HealthCheckResponse.ServingStatus.ValueType,
    exit_code: int,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTFORGE_")}
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    if mtls:
        certs.issue(tmp_path, "files")
        credentials = Identity.load(tmp_path, "files").server_credentials()
        port = server.add_secure_port("127.0.0.1:0", credentials)
        env["EVENTFORGE_TLS_DIR"] = str(tmp_path)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        servicer.set("", status)
        kind, interpreter, *argv = health_check_command("files", port)
        assert (kind, interpreter) == ("CMD", "python")
        probe = subprocess.run(
            [sys.executable, *argv], capture_output=True, env=env, timeout=60, check=False
        )
        assert probe.returncode == exit_code, probe.stderr
    finally:
        server.stop(None)


def _network(stack: str) -> dict[str, object]:
    network: dict[str, object] = stack_config(stack)["eventforge:network"]
    return network
