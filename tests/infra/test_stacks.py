"""The stacks differ as their configuration says, and a bad configuration is refused."""

# pulumi.runtime.test is untyped; the tests under it are still checked.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from eventforge.cli.stack import ROLES as CLI_ROLES
from eventforge.runtime.settings import SERVICES
from infra.config import ROLES, ConfigError, Role, load_settings
from tests.infra.cloud import Record
from tests.infra.conftest import STACKS, Deploy, configure_stack, stack_config
from tests.infra.graph import (
    ALARM,
    CERTIFICATE,
    DB,
    ECS_SERVICE,
    FUNCTION,
    LOG_GROUP,
    NAT_GATEWAY,
    SECRET,
    SUBNET,
    TASK_DEFINITION,
    container,
    environment,
)


@pulumi.runtime.test
def test_prod_is_configured_larger_and_protected_where_dev_is_small_and_disposable() -> None:
    configure_stack("dev")
    dev = load_settings()
    configure_stack("prod")
    prod = load_settings()
    assert (dev.database.multi_az, prod.database.multi_az) == (False, True)
    assert (dev.database.deletion_protection, prod.database.deletion_protection) == (False, True)
    assert dev.database.instance_class != prod.database.instance_class
    assert dev.database.allocated_storage_gb < prod.database.allocated_storage_gb
    assert dev.database.backup_retention_days < prod.database.backup_retention_days
    assert dev.network.az_count < prod.network.az_count
    assert (dev.network.egress, prod.network.egress) == ("public", "nat-per-az")
    assert (dev.network.vpc_endpoints, prod.network.vpc_endpoints) == (False, True)
    assert (dev.combined_roles, prod.combined_roles) == (True, False)
    assert (dev.container_insights, prod.container_insights) == (False, True)
    assert dev.architecture == prod.architecture == "arm64"
    assert dev.log_retention_days < prod.log_retention_days
    assert set(dev.roles) == {"api"}
    assert set(prod.roles) == set(ROLES)
    assert dev.roles["api"].cpu < prod.roles["api"].cpu
    assert dev.roles["api"].desired_count < prod.roles["api"].desired_count
    assert dev.alarms.oldest_message_age_seconds > prod.alarms.oldest_message_age_seconds
    assert not dev.lambda_consumers
    assert not prod.lambda_consumers
    assert dev.image_tag is None, "the stack files start in the backbone phase"
    assert dev.name_prefix != prod.name_prefix
    assert dev.grpc_mtls
    assert prod.grpc_mtls


@pytest.mark.parametrize("stack", STACKS)
@pulumi.runtime.test
def test_database_network_sizes_retention_and_thresholds_follow_the_stack_config(
    deploy: Deploy, stack: str
) -> pulumi.Output[None]:
    deployment = deploy(stack)
    cloud = deployment.cloud
    settings = deployment.settings

    def check() -> None:
        database = _database(cloud.of_type(DB))
        assert database["instanceClass"] == settings.database.instance_class
        assert database["allocatedStorage"] == settings.database.allocated_storage_gb
        assert database["maxAllocatedStorage"] == settings.database.max_allocated_storage_gb
        assert database["backupRetentionPeriod"] == settings.database.backup_retention_days
        assert database["multiAz"] is settings.database.multi_az
        assert database["deletionProtection"] is settings.database.deletion_protection
        # Protected data gets a final snapshot when the stack is destroyed.
        assert database["skipFinalSnapshot"] is not settings.database.deletion_protection
        network = settings.network
        private = [s for s in cloud.of_type(SUBNET) if "private" in s.name]
        assert len(private) == network.az_count
        assert len({s.inputs["availabilityZone"] for s in private}) == network.az_count
        nat_gateways = {"public": 0, "nat": 1, "nat-per-az": network.az_count}[network.egress]
        assert len(cloud.of_type(NAT_GATEWAY)) == nat_gateways
        for service in cloud.of_type(ECS_SERVICE):
            role = _role(service.inputs["name"])
            assert service.inputs["desiredCount"] == settings.roles[role].desired_count
        for task in cloud.of_type(TASK_DEFINITION):
            role = _role(task.inputs["family"].removeprefix(f"{settings.name_prefix}-"))
            assert int(task.inputs["cpu"]) == settings.roles[role].cpu
            assert int(task.inputs["memory"]) == settings.roles[role].memory
            variables = environment(container(task))
            clients = variables.get("EVENTFORGE_AUTHZ_CLIENTS")
            # Only gRPC services authorize clients: ingest answers HTTP.
            grpc = variables["OTEL_SERVICE_NAME"].removeprefix("eventforge-") in SERVICES
            wanted = ",".join(settings.grpc_clients) if settings.grpc_mtls and grpc else None
            assert clients == wanted
        certified = {
            c.name.removeprefix("grpc-tls-").removesuffix("-cert")
            for c in cloud.of_type(CERTIFICATE)
        }
        assert certified == ({*SERVICES, *settings.grpc_clients} if settings.grpc_mtls else set())
        for log_group in cloud.of_type(LOG_GROUP):
            assert log_group.inputs["retentionInDays"] == settings.log_retention_days
        thresholds = {
            a.inputs["metricName"]: a.inputs["threshold"]
            for a in cloud.of_type(ALARM)
            if a.inputs["namespace"] == "AWS/SQS"
        }
        assert thresholds == {
            "ApproximateNumberOfMessagesVisible": settings.alarms.dlq_depth,
            "ApproximateAgeOfOldestMessage": settings.alarms.oldest_message_age_seconds,
        }

    return deployment.settled(check)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("eventforge:roles", {"api": {"cpu": 256, "memory": 512}}, "missing"),
        ("eventforge:logRetentionDays", 10, "logRetentionDays"),
        ("eventforge:lambdaConsumers", ["billing"], "unknown services"),
        ("eventforge:network", {"cidr": "10.0.0.0/16", "azCount": 2}, "egress"),
        (
            "eventforge:network",
            {"cidr": "10.0.0.0/16", "azCount": 1, "egress": "nat", "vpcEndpoints": False},
            "azCount must be 2",
        ),
        ("eventforge:lambdaConsumers", ["notifier"], "need network.egress nat"),
        ("eventforge:architecture", "sparc", "architecture must be one of"),
        ("eventforge:ingress", {"allowedCidrs": ["10.0.0.300/8"]}, "not an IPv4 range"),
        ("eventforge:emailSender", "noreply@elsewhere.example", "is not of sesIdentity"),
    ],
)
@pulumi.runtime.test
def test_a_bad_stack_config_is_refused_with_its_key(key: str, value: object, message: str) -> None:
    configure_stack("dev", {key: value})
    with pytest.raises(ConfigError, match=message):
        load_settings()


@pulumi.runtime.test
def test_a_task_size_fargate_does_not_offer_is_refused() -> None:
    roles = stack_config("dev")["eventforge:roles"]
    configure_stack("dev", {"eventforge:roles": {**roles, "api": {**roles["api"], "memory": 256}}})
    with pytest.raises(ConfigError, match="no Fargate size"):
        load_settings()


@pulumi.runtime.test
def test_the_program_knows_the_roles_the_cli_serves() -> None:
    assert set(ROLES) == set(CLI_ROLES)


def _role(process: str) -> Role:
    """The role whose size a process has: its own, or the API's when it runs every role."""
    suffix = process.rsplit("-", 1)[1] if "-" in process else "api"
    [role] = [r for r in ROLES if r == suffix]
    return role


def _database(records: list[Record]) -> dict[str, Any]:
    [database] = records
    return dict(database.inputs)


@pulumi.runtime.test
def test_every_grpc_client_of_the_stack_gets_a_certificate_in_its_own_secret(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("dev", {"eventforge:grpcClients": ["operator", "billing"]})
    assert deployment.settings.grpc_clients == ("operator", "billing")
    prefix = deployment.settings.name_prefix

    def check() -> None:
        names = {s.inputs["name"] for s in deployment.cloud.of_type(SECRET)}
        expected = {f"{prefix}/grpc-tls/{n}" for n in (*SERVICES, "operator", "billing")}
        assert expected <= names
        for task in deployment.cloud.of_type(TASK_DEFINITION):
            variables = environment(container(task))
            if variables["OTEL_SERVICE_NAME"] != "eventforge-ingest":
                assert variables["EVENTFORGE_AUTHZ_CLIENTS"] == "operator,billing"

    return deployment.settled(check)


@pulumi.runtime.test
def test_with_mtls_off_no_certificate_secret_or_tls_setting_exists(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("staging", {"eventforge:grpcMtls": False})
    cloud = deployment.cloud

    def check() -> None:
        assert cloud.of_type(CERTIFICATE) == []
        assert not [s for s in cloud.of_type(SECRET) if "/grpc-tls/" in s.inputs["name"]]
        for task in cloud.of_type(TASK_DEFINITION):
            definition = container(task)
            assert "secrets" not in definition
            assert "EVENTFORGE_AUTHZ_CLIENTS" not in environment(definition)
        for function in cloud.of_type(FUNCTION):
            assert "EVENTFORGE_TLS_SECRET_ARN" not in function.inputs["environment"]["variables"]

    return deployment.settled(check)
