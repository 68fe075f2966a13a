"""A fresh account's deploy: the backbone phase, then the services phase, each graph complete."""

# pulumi.runtime.test is untyped; the tests under it are still checked.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

import json
import re
from typing import Any

import pulumi
import pytest

from eventforge.runtime.settings import SERVICES
from infra.config import ALL_SERVICES
from infra.environment import HEALTH_HTTP_PORT, grpc_port
from tests.infra import cloud as mock_cloud
from tests.infra.cloud import ACCOUNT
from tests.infra.conftest import IMAGE_TAG, STACKS, Deploy
from tests.infra.graph import (
    BUCKET,
    CERT_REQUEST,
    CLUSTER,
    DB,
    ECS_SERVICE,
    EGRESS_RULE,
    EMAIL_IDENTITY,
    ENDPOINT_SERVICE,
    EVENT_SOURCE_MAPPING,
    FUNCTION,
    HTTP_API,
    LISTENER,
    LOAD_BALANCER,
    NAT_GATEWAY,
    REPOSITORY,
    ROUTE,
    SCALING_TARGET,
    TARGET_GROUP,
    TASK_DEFINITION,
    containers,
)

COMPUTE = (TASK_DEFINITION, ECS_SERVICE, FUNCTION, EVENT_SOURCE_MAPPING, SCALING_TARGET, HTTP_API)


IMAGE = re.compile(r"[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/[^\"\\\s]+")


def _image_references(value: Any) -> list[str]:
    """Every image of an ECR registry that a resource's inputs name (JSON documents too)."""
    return IMAGE.findall(json.dumps(value, default=str))


@pytest.mark.parametrize("stack", STACKS)
@pulumi.runtime.test
def test_the_backbone_phase_creates_the_repositories_and_nothing_that_runs_an_image(
    deploy: Deploy, stack: str
) -> pulumi.Output[None]:
    deployment = deploy(stack, {"eventforge:imageTag": None})
    cloud = deployment.cloud
    outputs = pulumi.Output.from_input(dict(deployment.outputs.values))

    def check(values: dict[str, Any]) -> None:
        for token in COMPUTE:
            assert not cloud.of_type(token), token
        assert not [r.name for r in cloud.records if _image_references(r.inputs)]
        repositories = {r.inputs["name"] for r in cloud.of_type(REPOSITORY)}
        assert repositories == {f"{deployment.settings.name_prefix}/{s}" for s in ALL_SERVICES}
        assert cloud.of_type(DB)
        assert values["phase"] == "backbone"
        assert set(values["repositoryUrls"]) == set(ALL_SERVICES)
        assert values["ingestUrl"] is None

    settled = deployment.settled(lambda: None)
    return pulumi.Output.all(settled, outputs).apply(lambda both: check(both[1]))


@pytest.mark.parametrize("stack", STACKS)
@pulumi.runtime.test
def test_the_services_phase_runs_only_the_tagged_image_of_its_own_repositories(
    deploy: Deploy, stack: str
) -> pulumi.Output[None]:
    deployment = deploy(stack)
    cloud = deployment.cloud

    def check() -> None:
        pushed = {f"{r.state['repositoryUrl']}:{IMAGE_TAG}" for r in cloud.of_type(REPOSITORY)}
        referenced = {i for r in cloud.records for i in _image_references(r.inputs)}
        assert referenced
        assert referenced <= pushed
        assert cloud.of_type(ECS_SERVICE)
        for service in cloud.of_type(ECS_SERVICE):
            # A failed deployment fails `pulumi up` instead of going unnoticed.
            assert service.inputs["waitForSteadyState"] is True
            breaker = service.inputs["deploymentCircuitBreaker"]
            assert breaker == {"enable": True, "rollback": True}
        for task in cloud.of_type(TASK_DEFINITION):
            assert task.inputs["runtimePlatform"]["cpuArchitecture"] == "ARM64"
            assert containers(task)[0]["name"] == "migrate"

    return deployment.settled(check)


def test_a_provider_answer_missing_fails_the_program_instead_of_shrinking_the_graph(
    monkeypatch: pytest.MonkeyPatch, deploy: Deploy
) -> None:
    computed = mock_cloud.MockCloud._computed

    def without_secret(
        self: mock_cloud.MockCloud, token: str, physical: str, inputs: Any
    ) -> tuple[str, dict[str, Any]]:
        resource_id, state = computed(self, token, physical, inputs)
        state.pop("masterUserSecrets", None)
        return resource_id, state

    monkeypatch.setattr(mock_cloud.MockCloud, "_computed", without_secret)

    @pulumi.runtime.test
    def build() -> None:
        deploy("dev")

    with pytest.raises(ValueError, match="RDS reported no master user secret"):
        build()


@pytest.mark.parametrize(
    ("stack", "nat_gateways", "private_route_tables"),
    [("dev", 0, 1), ("staging", 1, 1), ("prod", 3, 3)],
)
@pulumi.runtime.test
def test_egress_follows_the_stack_with_a_nat_gateway_per_az_in_prod(
    deploy: Deploy, stack: str, nat_gateways: int, private_route_tables: int
) -> pulumi.Output[None]:
    deployment = deploy(stack, {"eventforge:otelExporterEndpoint": "http://collector:4317"})
    cloud = deployment.cloud

    def check() -> None:
        nats = cloud.of_type(NAT_GATEWAY)
        assert len(nats) == nat_gateways
        assert len({n.inputs["subnetId"] for n in nats}) == nat_gateways, "one per AZ"
        defaults = cloud.of_type(ROUTE)
        assert len({r.inputs["routeTableId"] for r in defaults}) == (
            nat_gateways and private_route_tables
        )
        tables = [t for t in cloud.records if t.type == "aws:ec2/routeTable:RouteTable"]
        assert len([t for t in tables if "private" in t.name]) == private_route_tables
        out = {
            r.inputs["fromPort"]
            for r in cloud.of_type(EGRESS_RULE)
            if r.inputs.get("cidrIpv4") == "0.0.0.0/0"
        }
        assert out == {443, 4317}, "HTTPS, and the OTLP exporter's port"

    return deployment.settled(check)


@pulumi.runtime.test
def test_internal_clients_reach_each_api_through_the_load_balancer_with_mtls_end_to_end(
    deploy: Deploy,
) -> pulumi.Output[None]:
    principal = "arn:aws:iam::210987654321:root"
    deployment = deploy(
        "staging",
        {
            "eventforge:ingress": {
                "allowedCidrs": ["10.99.0.0/16"],
                "endpointServicePrincipals": [principal],
            }
        },
    )
    cloud = deployment.cloud
    outputs = pulumi.Output.from_input(dict(deployment.outputs.values))

    def check(values: dict[str, Any]) -> None:
        [balancer] = cloud.of_type(LOAD_BALANCER)
        assert balancer.inputs["internal"] is True
        assert balancer.inputs["loadBalancerType"] == "network"
        groups = {g.state["arn"]: g for g in cloud.of_type(TARGET_GROUP)}
        listeners = {listener.inputs["port"]: listener for listener in cloud.of_type(LISTENER)}
        assert set(listeners) == {grpc_port(s) for s in SERVICES}
        for service in SERVICES:
            listener = listeners[grpc_port(service)]
            assert listener.inputs["protocol"] == "TCP", "pass-through: mTLS stays end to end"
            [action] = listener.inputs["defaultActions"]
            group = groups[action["targetGroupArn"]]
            assert (group.inputs["protocol"], group.inputs["targetType"]) == ("TCP", "ip")
            check_ = group.inputs["healthCheck"]
            assert (check_["protocol"], check_["port"], check_["path"]) == (
                "HTTP",
                str(HEALTH_HTTP_PORT),
                "/healthz",
            )
            api = cloud.by_state(ECS_SERVICE, "name", f"{service}-api")
            assert api.inputs["loadBalancers"] == [
                {
                    "targetGroupArn": group.state["arn"],
                    "containerName": f"{service}-api",
                    "containerPort": grpc_port(service),
                }
            ]
            endpoint = values["grpcEndpoints"][service]
            assert endpoint == f"{balancer.state['dnsName']}:{grpc_port(service)}"
        # The services' certificates name the balancer, so clients verify the host they dial.
        for request in cloud.of_type(CERT_REQUEST):
            if request.inputs["subject"]["commonName"] in SERVICES:
                assert balancer.state["dnsName"] in request.inputs["dnsNames"]
        [endpoint_service] = cloud.of_type(ENDPOINT_SERVICE)
        assert endpoint_service.inputs["allowedPrincipals"] == [principal]
        assert endpoint_service.inputs["acceptanceRequired"] is True
        assert values["endpointServiceName"] == endpoint_service.state["serviceName"]

    settled = deployment.settled(lambda: None)
    return pulumi.Output.all(settled, outputs).apply(lambda both: check(both[1]))


@pulumi.runtime.test
def test_without_endpoint_service_principals_there_is_no_private_link(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("dev")

    def check() -> None:
        assert deployment.cloud.of_type(LOAD_BALANCER)
        assert not deployment.cloud.of_type(ENDPOINT_SERVICE)

    return deployment.settled(check)


@pytest.mark.parametrize("stack", STACKS)
@pulumi.runtime.test
def test_names_ses_identity_iam_database_logins_and_insights_follow_the_stack(
    deploy: Deploy, stack: str
) -> pulumi.Output[None]:
    deployment = deploy(stack)
    cloud = deployment.cloud
    settings = deployment.settings

    def check() -> None:
        for bucket in cloud.of_type(BUCKET):
            assert bucket.inputs["bucket"].endswith(f"-{ACCOUNT}-{settings.region}")
        [identity] = cloud.of_type(EMAIL_IDENTITY)
        assert identity.inputs["emailIdentity"] == settings.ses_identity
        [database] = cloud.of_type(DB)
        assert database.inputs["iamDatabaseAuthenticationEnabled"] is True
        [cluster] = cloud.of_type(CLUSTER)
        [insights] = cluster.inputs["settings"]
        assert insights == {
            "name": "containerInsights",
            "value": "enabled" if settings.container_insights else "disabled",
        }

    return deployment.settled(check)
