"""The Lambda consumer option: a function per listed service, fed by its queues, no ECS worker."""

# pulumi.runtime.test is untyped; the tests under it are still checked.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

import importlib

import pulumi

from eventforge.topology import TOPOLOGY
from infra.components.certificates import tls_secret_name
from infra.components.lambda_consumer import LAMBDA_HANDLER, consumer_function_name
from tests.infra.conftest import Deploy
from tests.infra.graph import (
    ECS_SERVICE,
    EVENT_RULE,
    EVENT_SOURCE_MAPPING,
    FUNCTION,
    QUEUE,
    REPOSITORY,
    REPOSITORY_POLICY,
    SECRET,
    grants,
)


@pulumi.runtime.test
def test_a_lambda_consumer_reads_every_queue_of_its_service_with_partial_batch_responses(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("staging")
    cloud = deployment.cloud
    assert deployment.settings.lambda_consumers == {"notifier"}
    prefix = deployment.settings.name_prefix

    def check() -> None:
        function = cloud.by_state(FUNCTION, "name", consumer_function_name(prefix, "notifier"))
        repository = cloud.by_state(REPOSITORY, "name", f"{prefix}/notifier")
        assert function.inputs["packageType"] == "Image"
        assert function.inputs["imageUri"] == (
            f"{repository.state['repositoryUrl']}:{deployment.settings.image_tag}"
        )
        assert function.inputs["imageConfig"]["commands"] == [LAMBDA_HANDLER]
        variables = function.inputs["environment"]["variables"]
        assert variables["EVENTFORGE_SERVICE"] == "notifier"
        assert variables["EVENTFORGE_SPAN_FILE_ENABLED"] == "false"
        assert variables["EVENTFORGE_NAME_PREFIX"] == prefix
        assert "AWS_REGION" not in variables  # reserved: Lambda sets it
        assert function.inputs["architectures"] == ["arm64"]
        assert variables["EVENTFORGE_DATABASE_AUTH"] == "iam"
        assert "EVENTFORGE_DATABASE_SECRET_ARN" not in variables
        queues = TOPOLOGY.queues_consumed_by("notifier")
        for queue in queues:
            physical = cloud.by_state(QUEUE, "name", deployment.names.queues[queue.name].name)
            # AWS: a queue's visibility timeout at least six times its function's timeout.
            assert physical.inputs["visibilityTimeoutSeconds"] >= 6 * function.inputs["timeout"]
        mappings = cloud.of_type(EVENT_SOURCE_MAPPING)
        assert {m.inputs["eventSourceArn"] for m in mappings} == {
            cloud.by_state(QUEUE, "name", deployment.names.queues[q.name].name).state["arn"]
            for q in queues
        }
        for mapping in mappings:
            assert mapping.inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
            assert mapping.inputs["functionName"] == function.state["arn"]
        ecs_services = {s.inputs["name"] for s in cloud.of_type(ECS_SERVICE)}
        assert "notifier-worker" not in ecs_services
        assert {"notifier-api", "notifier-relay", "orders-worker", "files-worker"} <= ecs_services
        [pull] = [
            p for p in cloud.of_type(REPOSITORY_POLICY) if p.inputs["repository"] == repository.id
        ]
        [statement] = pull.json("policy")["Statement"]
        assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
        assert statement["Condition"]["StringLike"]["aws:sourceArn"].endswith(
            f":function:{function.inputs['name']}"
        )
        # Its scheduled jobs come through its jobs queue like any message: no rule invokes it.
        assert "notifier-jobs" in {q.name for q in queues}
        assert not cloud.of_type(EVENT_RULE)
        # With mTLS on, the function reads its own certificate bundle, and no other.
        tls = cloud.by_state(SECRET, "name", tls_secret_name(prefix, "notifier"))
        assert variables["EVENTFORGE_TLS_SECRET_ARN"] == tls.state["arn"]
        role = grants(cloud, "notifier-consumer-role")
        # Its certificate only: the database takes an IAM token as its own role.
        assert role["secretsmanager:GetSecretValue"] == {tls.state["arn"]}
        assert [a.split("/")[-1] for a in role["rds-db:connect"]] == ["eventforge_notifier"]

    return deployment.settled(check)


@pulumi.runtime.test
def test_without_lambda_consumers_every_worker_runs_on_ecs(deploy: Deploy) -> pulumi.Output[None]:
    deployment = deploy("staging", {"eventforge:lambdaConsumers": []})
    cloud = deployment.cloud

    def check() -> None:
        consumers = [f for f in cloud.of_type(FUNCTION) if f.inputs["name"].endswith("-consumer")]
        assert not consumers
        assert not cloud.of_type(EVENT_SOURCE_MAPPING)
        # Only the webhook function pulls an image: ingest's.
        [pull] = cloud.of_type(REPOSITORY_POLICY)
        ingest = cloud.by_state(REPOSITORY, "name", f"{deployment.settings.name_prefix}/ingest")
        assert pull.inputs["repository"] == ingest.id
        ecs_services = {s.inputs["name"] for s in cloud.of_type(ECS_SERVICE)}
        assert {"orders-worker", "files-worker", "notifier-worker"} <= ecs_services

    return deployment.settled(check)


def test_the_functions_handler_is_the_runtimes_lambda_entry_point() -> None:
    module, _, name = LAMBDA_HANDLER.rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))
