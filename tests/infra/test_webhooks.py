"""The inbound webhooks' door: one route of an HTTP API, its function, its secret and limits."""

# pulumi.runtime.test is untyped; the tests under it are still checked.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

import importlib
import json
from typing import Any

import pulumi
import pytest

from eventforge.runtime.db import database_role
from infra.components.functions import LAMBDA_ENTRY_POINT
from infra.components.webhooks import (
    SECRETS_ARN_VARIABLE,
    WEBHOOK_HANDLER,
    WEBHOOK_ROUTE,
    webhook_function_name,
)
from infra.config import INGEST_DEFAULTS, ConfigError, load_settings
from tests.infra.conftest import INGEST_SECRETS, INGEST_SECRETS_KEY, STACKS, Deploy, configure_stack
from tests.infra.graph import (
    ALARM,
    API_INTEGRATION,
    API_ROUTE,
    API_STAGE,
    DB,
    ECS_SERVICE,
    FUNCTION,
    HTTP_API,
    LAMBDA_PERMISSION,
    LOG_GROUP,
    REPOSITORY,
    REPOSITORY_POLICY,
    SECRET,
    SECRET_VERSION,
    SUBNET,
    TASK_DEFINITION,
    TOPIC,
    VPC_ENDPOINT,
    container,
    grants,
)

SECRET_MARKER = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}
"""How the Pulumi engine receives an input marked secret (its value travels beside it)."""


@pytest.mark.parametrize("stack", STACKS)
@pulumi.runtime.test
def test_the_api_has_one_route_proxied_to_the_webhook_function_with_payload_2(
    deploy: Deploy, stack: str
) -> pulumi.Output[None]:
    deployment = deploy(stack)
    cloud = deployment.cloud
    settings = deployment.settings
    outputs = pulumi.Output.from_input(dict(deployment.outputs.values))

    def check(values: dict[str, Any]) -> None:
        [api] = cloud.of_type(HTTP_API)
        assert api.inputs["protocolType"] == "HTTP"
        [route] = cloud.of_type(API_ROUTE)
        assert route.inputs["routeKey"] == WEBHOOK_ROUTE == "POST /webhooks/{source}"
        assert route.inputs["apiId"] == api.id
        [integration] = cloud.of_type(API_INTEGRATION)
        assert route.inputs["target"] == f"integrations/{integration.id}"
        function = cloud.by_state(
            FUNCTION, "name", webhook_function_name(settings.name_prefix, "ingest")
        )
        assert integration.inputs["integrationType"] == "AWS_PROXY"
        assert integration.inputs["integrationUri"] == function.state["arn"]
        assert integration.inputs["payloadFormatVersion"] == "2.0"
        [stage] = cloud.of_type(API_STAGE)
        assert (stage.inputs["name"], stage.inputs["autoDeploy"]) == ("$default", True)
        assert stage.inputs["defaultRouteSettings"] == {
            "throttlingBurstLimit": settings.ingest.burst_limit,
            "throttlingRateLimit": settings.ingest.rate_limit,
        }
        access = stage.inputs["accessLogSettings"]
        log_group = cloud.by_state(LOG_GROUP, "arn", access["destinationArn"])
        assert log_group.inputs["retentionInDays"] == settings.log_retention_days
        assert json.loads(access["format"])["status"] == "$context.status"
        # Only this API may invoke the function, and only through its route.
        [permission] = [
            p for p in cloud.of_type(LAMBDA_PERMISSION) if p.inputs["function"] == function.id
        ]
        assert permission.inputs["principal"] == "apigateway.amazonaws.com"
        assert permission.inputs["action"] == "lambda:InvokeFunction"
        assert permission.inputs["sourceArn"] == (f"{api.state['executionArn']}/*/POST/webhooks/*")
        assert values["ingestUrl"] == f"{api.state['apiEndpoint']}/webhooks"

    settled = deployment.settled(lambda: None)
    return pulumi.Output.all(settled, outputs).apply(lambda both: check(both[1]))


@pulumi.runtime.test
def test_the_webhook_function_runs_the_image_in_the_vpc_capped_and_reads_only_its_secret(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("prod", {"eventforge:ingest": {"reservedConcurrency": 8}})
    cloud = deployment.cloud
    settings = deployment.settings
    prefix = settings.name_prefix
    assert settings.ingest.reserved_concurrency == 8
    assert settings.ingest.memory == INGEST_DEFAULTS.memory

    def check() -> None:
        function = cloud.by_state(FUNCTION, "name", webhook_function_name(prefix, "ingest"))
        inputs = function.inputs
        repository = cloud.by_state(REPOSITORY, "name", f"{prefix}/ingest")
        assert inputs["imageUri"] == f"{repository.state['repositoryUrl']}:{settings.image_tag}"
        assert inputs["imageConfig"]["entryPoints"] == list(LAMBDA_ENTRY_POINT)
        assert inputs["imageConfig"]["commands"] == [WEBHOOK_HANDLER]
        assert inputs["reservedConcurrentExecutions"] == 8
        assert inputs["memorySize"] == INGEST_DEFAULTS.memory
        private = {s.id for s in cloud.of_type(SUBNET) if "private" in s.name}
        assert set(inputs["vpcConfig"]["subnetIds"]) == private
        variables = inputs["environment"]["variables"]
        [secret] = [
            s for s in cloud.of_type(SECRET) if s.inputs["name"].endswith("/webhook-secrets")
        ]
        assert secret.inputs["name"] == f"{prefix}/ingest/webhook-secrets"
        assert variables[SECRETS_ARN_VARIABLE] == secret.state["arn"]
        assert variables["EVENTFORGE_SERVICE"] == "ingest"
        assert variables["EVENTFORGE_DATABASE_AUTH"] == "iam"
        assert variables["DATABASE_URL"].startswith(f"postgresql://{database_role('ingest')}@")
        assert "AWS_REGION" not in variables
        assert "lambda-http" in variables["OTEL_RESOURCE_ATTRIBUTES"]
        [database] = cloud.of_type(DB)
        log_group = cloud.by_state(LOG_GROUP, "name", f"/aws/lambda/{inputs['name']}")
        role = grants(cloud, "ingest-webhooks-function-role")
        assert role["secretsmanager:GetSecretValue"] == {secret.state["arn"]}
        assert role["rds-db:connect"] == {
            f"arn:aws:rds-db:{settings.region}:123456789012:dbuser:"
            f"{database.state['resourceId']}/{database_role('ingest')}"
        }
        assert role["logs:PutLogEvents"] == {f"{log_group.state['arn']}:*"}
        assert not [a for a in role if a.startswith(("sqs:", "sns:", "s3:", "kms:"))]
        # Its value is the stack's `ingestSecrets`, kept secret in the state.
        [version] = [v for v in cloud.of_type(SECRET_VERSION) if v.inputs["secretId"] == secret.id]
        secret_string = version.inputs["secretString"]
        assert SECRET_MARKER.items() <= secret_string.items(), "not sent as a secret"
        assert json.loads(secret_string["value"]) == INGEST_SECRETS
        # Lambda pulls the image for this function (the repository's only one).
        [pull] = [
            p for p in cloud.of_type(REPOSITORY_POLICY) if p.inputs["repository"] == repository.id
        ]
        [statement] = pull.json("policy")["Statement"]
        assert statement["Condition"]["StringLike"]["aws:sourceArn"].endswith(
            f":function:{inputs['name']}"
        )

    return deployment.settled(check)


@pulumi.runtime.test
def test_ingest_runs_its_worker_and_relay_on_ecs_with_no_grpc_api(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("prod")
    cloud = deployment.cloud
    prefix = deployment.settings.name_prefix

    def check() -> None:
        names = {s.inputs["name"] for s in cloud.of_type(ECS_SERVICE)}
        assert {"ingest-worker", "ingest-relay"} <= names
        assert "ingest-api" not in names
        for role in ("worker", "relay"):
            task = cloud.by_state(TASK_DEFINITION, "family", f"{prefix}-ingest-{role}")
            definition = container(task)
            assert definition["command"] == ["serve", "ingest", role]
            assert "portMappings" not in definition
            assert "secrets" not in definition  # no gRPC, so no certificate
        topic_arn = cloud.by_state(
            "aws:sns/topic:Topic", "name", deployment.names.topics["inbound"]
        ).state["arn"]
        assert grants(cloud, "ingest-relay-task")["sns:Publish"] == {topic_arn}

    return deployment.settled(check)


@pulumi.runtime.test
def test_without_a_nat_gateway_the_function_reaches_secrets_manager_through_an_endpoint(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("dev")
    cloud = deployment.cloud
    region = deployment.settings.region
    assert deployment.settings.network.egress == "public"

    def check() -> None:
        [endpoint] = [
            e for e in cloud.of_type(VPC_ENDPOINT) if e.inputs["vpcEndpointType"] != "Gateway"
        ]
        assert endpoint.inputs["serviceName"] == f"com.amazonaws.{region}.secretsmanager"
        private = {s.id for s in cloud.of_type(SUBNET) if "private" in s.name}
        assert set(endpoint.inputs["subnetIds"]) == private

    return deployment.settled(check)


@pulumi.runtime.test
def test_the_backbone_phase_holds_the_secret_but_no_api_or_function(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("staging", {"eventforge:imageTag": None})
    cloud = deployment.cloud

    def check() -> None:
        assert not cloud.of_type(HTTP_API)
        assert not cloud.of_type(FUNCTION)
        assert [s for s in cloud.of_type(SECRET) if s.inputs["name"].endswith("/webhook-secrets")]

    return deployment.settled(check)


@pulumi.runtime.test
def test_a_stack_without_ingest_secrets_is_refused_with_how_to_set_them() -> None:
    configure_stack("prod", {INGEST_SECRETS_KEY: None})
    with pytest.raises(ConfigError, match=r"ingestSecrets is required.*pulumi config set --secret"):
        load_settings()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({}, r"declared sources are \['acquirer', 'payments'\]"),
        (["payments"], "must be JSON"),
        ({"payments": "whsec_test_payments_0123"}, "declared sources"),
        ({"payments": "", "acquirer": "test-acquirer-secret-0123"}, "must be JSON"),
        ({"payments": "whsec_short", "acquirer": "test-acquirer-secret-0123"}, "shorter than 16"),
        (
            {"payments": "whsec_local_payments", "acquirer": "test-acquirer-secret-0123"},
            "development one",
        ),
    ],
)
@pulumi.runtime.test
def test_bad_ingest_secrets_are_refused_without_quoting_a_secret(
    value: object, message: str
) -> None:
    configure_stack("dev", {INGEST_SECRETS_KEY: value})
    with pytest.raises(ConfigError, match=message) as refused:
        load_settings()
    assert "whsec" not in str(refused.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"burstLimit": 0}, "burstLimit"),
        ({"reservedConcurrency": 0}, "reservedConcurrency"),
        ({"memory": 64}, "ingest.memory"),
        ({"rateLimit": "fast"}, "rateLimit"),
        ({"concurrency": 3}, "unknown"),
    ],
)
@pulumi.runtime.test
def test_bad_ingest_limits_are_refused(value: object, message: str) -> None:
    configure_stack("dev", {"eventforge:ingest": value})
    with pytest.raises(ConfigError, match=message):
        load_settings()


@pulumi.runtime.test
def test_ingest_limits_default_when_the_stack_leaves_them_out() -> None:
    configure_stack("dev", {"eventforge:ingest": None})
    assert load_settings().ingest == INGEST_DEFAULTS


def test_the_functions_handler_is_ingests_lambda_entry_point() -> None:
    module, _, name = WEBHOOK_HANDLER.rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))


@pulumi.runtime.test
def test_the_webhook_door_alarms_on_function_errors_and_api_5xx(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("staging")
    cloud = deployment.cloud
    name = webhook_function_name(deployment.settings.name_prefix, "ingest")

    def check() -> None:
        alerts = cloud.by_state(TOPIC, "name", f"{deployment.settings.name_prefix}-alerts")
        function = cloud.by_state(FUNCTION, "name", name)
        [api] = cloud.of_type(HTTP_API)
        by_name = {a.inputs["name"]: a.inputs for a in cloud.of_type(ALARM)}
        watched = {
            by_name[f"{name}-errors"]["metricName"]: by_name[f"{name}-errors"],
            by_name[f"{name}-throttles"]["metricName"]: by_name[f"{name}-throttles"],
            by_name[f"{name}-api-5xx"]["metricName"]: by_name[f"{name}-api-5xx"],
        }
        assert {m: (a["namespace"], a["dimensions"]) for m, a in watched.items()} == {
            "Errors": ("AWS/Lambda", {"FunctionName": function.state["name"]}),
            "Throttles": ("AWS/Lambda", {"FunctionName": function.state["name"]}),
            "5xx": ("AWS/ApiGateway", {"ApiId": api.id, "Stage": "$default"}),
        }
        for alarm in watched.values():
            assert alarm["alarmActions"] == alarm["okActions"] == [alerts.state["arn"]]
            assert (alarm["statistic"], alarm["threshold"]) == ("Sum", 0)
            assert alarm["comparisonOperator"] == "GreaterThanThreshold"
            assert (alarm["evaluationPeriods"], alarm["datapointsToAlarm"]) == (5, 1)
            assert alarm["treatMissingData"] == "notBreaching"

    return deployment.settled(check)
