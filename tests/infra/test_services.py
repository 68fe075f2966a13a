"""The services' processes: images, commands, environment, discovery, health and scaling."""

# pulumi.runtime.test is untyped; the tests under it are still checked.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

from urllib.parse import urlsplit

import pulumi

from eventforge.runtime.db import database_role
from eventforge.runtime.settings import SERVICES
from eventforge.topology import TOPOLOGY
from infra.components.network import INTERFACE_ENDPOINTS
from infra.components.process import health_check_command
from infra.config import ALL_SERVICES
from infra.environment import HEALTH_HTTP_PORT, grpc_port
from infra.program import service_roles
from tests.infra.cloud import ACCOUNT
from tests.infra.conftest import IMAGE_TAG, Deploy, stack_config
from tests.infra.graph import (
    DB,
    DISCOVERY_SERVICE,
    ECS_SERVICE,
    INGRESS_RULE,
    NAT_GATEWAY,
    QUEUE,
    REPOSITORY,
    SCALING_POLICY,
    SCALING_TARGET,
    SUBNET,
    TASK_DEFINITION,
    VPC_ENDPOINT,
    container,
    containers,
    environment,
    migrate_container,
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
        for service in ALL_SERVICES:
            repository = cloud.by_state(REPOSITORY, "name", f"{prefix}/{service}")
            assert repository.inputs["imageTagMutability"] == "IMMUTABLE"
            assert repository.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
            for role in service_roles(TOPOLOGY, service):
                if role == "worker" and service in settings.lambda_consumers:
                    continue
                task = cloud.by_state(TASK_DEFINITION, "family", f"{prefix}-{service}-{role}")
                definition = container(task)
                assert definition["image"] == (
                    f"{repository.state['repositoryUrl']}:{settings.image_tag}"
                )
                assert definition["command"] == ["serve", service, role]
                assert definition["readonlyRootFilesystem"] is True
                assert definition["image"] == f"{repository.state['repositoryUrl']}:{IMAGE_TAG}"
                # The schema is migrated first, as the master user, by a one-shot container.
                migrate = migrate_container(task)
                assert containers(task)[0]["name"] == "migrate"
                assert migrate["command"] == ["migrate", service, "--service-roles"]
                assert migrate["image"] == definition["image"]
                assert definition["dependsOn"] == [
                    {"containerName": "migrate", "condition": "SUCCESS"}
                ]
                master = urlsplit(environment(migrate)["DATABASE_URL"])
                assert (master.username, master.password) == ("eventforge", None)
                assert [s["name"] for s in migrate["secrets"]] == ["PGPASSWORD"]
                env = environment(definition)
                url = urlsplit(env["DATABASE_URL"])
                assert url.password is None
                # The service's own role, with an IAM token per connection.
                assert (url.username, url.hostname, url.port) == (
                    database_role(service),
                    database.state["address"],
                    5432,
                )
                assert env["EVENTFORGE_DATABASE_AUTH"] == "iam"
                assert env["EVENTFORGE_AWS_ACCOUNT_ID"] == ACCOUNT
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
def test_apis_register_in_cloud_map_and_are_health_checked_over_http(
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
            assert definition["healthCheck"]["command"] == health_check_command()
            assert definition["healthCheck"]["command"][:2] == ["CMD", "bash"]
            assert environment(definition)["EVENTFORGE_HEALTH_HTTP_ADDR"] == (
                f"0.0.0.0:{HEALTH_HTTP_PORT}"
            )
            ports = [m["containerPort"] for m in definition["portMappings"]]
            assert ports == [grpc_port(service), HEALTH_HTTP_PORT]
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
        assert set(targets) == {
            *(f"{s}-{r}" for s in SERVICES for r in ("api", "worker")),
            "ingest-worker",  # no API: it answers HTTP with a function
        }
        for process, target in targets.items():
            role = process.rsplit("-", 1)[1]
            assert target.inputs["minCapacity"] == roles[role].desired_count
            assert target.inputs["maxCapacity"] == roles[role].max_count
        policies = cloud.of_type(SCALING_POLICY)
        for service in ALL_SERVICES:
            if service in SERVICES:
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
def test_with_vpc_endpoints_aws_apis_are_reached_privately_from_the_tasks_subnets(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("prod")
    cloud = deployment.cloud
    region = deployment.settings.region
    assert deployment.settings.network.vpc_endpoints

    def check() -> None:
        endpoints = {e.inputs["serviceName"]: e.inputs for e in cloud.of_type(VPC_ENDPOINT)}
        assert endpoints[f"com.amazonaws.{region}.s3"]["vpcEndpointType"] == "Gateway"
        tasks = {s.id for s in cloud.of_type(SUBNET) if "private" in s.name}
        for service in INTERFACE_ENDPOINTS:
            endpoint = endpoints[f"com.amazonaws.{region}.{service}"]
            assert endpoint["vpcEndpointType"] == "Interface"
            assert endpoint["privateDnsEnabled"] is True
            assert set(endpoint["subnetIds"]) == tasks
        assert {"sqs", "sns", "secretsmanager", "ecr.api", "ecr.dkr", "logs", "sts"} <= set(
            INTERFACE_ENDPOINTS
        )

    return deployment.settled(check)


@pulumi.runtime.test
def test_dev_tasks_reach_out_through_public_ips_and_admit_nothing_from_outside(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("dev")
    cloud = deployment.cloud
    cidr = deployment.settings.network.cidr

    def check() -> None:
        assert not cloud.of_type(NAT_GATEWAY)
        # Only the webhook function's Secrets Manager endpoint (tested with the function).
        kinds = sorted(e.inputs["vpcEndpointType"] for e in cloud.of_type(VPC_ENDPOINT))
        assert kinds == ["Gateway", "Interface"]
        public = {s.id for s in cloud.of_type(SUBNET) if "public" in s.name}
        for service in cloud.of_type(ECS_SERVICE):
            network = service.inputs["networkConfiguration"]
            assert network["assignPublicIp"] is True
            assert set(network["subnets"]) == public
        # Inbound: only the services themselves and the load balancer, whose own rules admit
        # the VPC's range alone.
        for rule in cloud.of_type(INGRESS_RULE):
            assert rule.inputs.get("cidrIpv4") in (None, cidr), rule.name
        [database] = cloud.of_type(DB)
        assert database.inputs["publiclyAccessible"] is False

    return deployment.settled(check)


def _network(stack: str) -> dict[str, object]:
    network: dict[str, object] = stack_config(stack)["eventforge:network"]
    return network
