"""Each process's role names exactly its own queues, topic, key, buckets, logs and secret."""

# pulumi.runtime.test is untyped; the tests under it are still checked.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

import pulumi
import pytest

from eventforge.runtime.settings import SERVICES, ServiceName
from eventforge.topology import TOPOLOGY
from infra.access import SQS_CONSUMER_ACTIONS
from infra.components.certificates import tls_secret_name
from tests.infra.cloud import ACCOUNT
from tests.infra.conftest import Deploy, Deployment
from tests.infra.graph import (
    BUCKET,
    DB,
    KEY,
    LOG_GROUP,
    QUEUE,
    REPOSITORY,
    SECRET,
    TOPIC,
    grants,
)


def _queue_arns(deployment: Deployment, service: ServiceName) -> set[str]:
    return {
        deployment.cloud.by_state(QUEUE, "name", deployment.names.queues[q.name].name).state["arn"]
        for q in TOPOLOGY.queues_consumed_by(service)
    }


def _objects(deployment: Deployment, bucket: str, prefix: str = "") -> str:
    name = deployment.names.buckets[bucket]
    arn = deployment.cloud.by_state(BUCKET, "bucket", name).state["arn"]
    return f"{arn}/{prefix}*"


@pytest.mark.parametrize("stack", ["dev", "staging"])
@pulumi.runtime.test
def test_task_roles_grant_exactly_what_each_role_does(
    deploy: Deploy, stack: str
) -> pulumi.Output[None]:
    deployment = deploy(stack)
    cloud = deployment.cloud
    on_lambda = deployment.settings.lambda_consumers

    def check() -> None:
        for service in SERVICES:
            topic = cloud.by_state(TOPIC, "name", deployment.names.topics[service])
            key = cloud.by_state(KEY, "arn", topic.inputs["kmsMasterKeyId"])
            assert grants(cloud, f"{service}-relay-task") == {
                "sns:Publish": {topic.state["arn"]},
                "kms:GenerateDataKey": {key.state["arn"]},
                "kms:Decrypt": {key.state["arn"]},
            }
            worker = (
                f"{service}-consumer-role" if service in on_lambda else f"{service}-worker-task"
            )
            worker_grants = grants(cloud, worker)
            for action in SQS_CONSUMER_ACTIONS:
                assert worker_grants[action] == _queue_arns(deployment, service), (worker, action)
        assert grants(cloud, "orders-api-task") == {}
        assert grants(cloud, "notifier-api-task") == {}
        assert grants(cloud, "files-api-task") == {
            "s3:PutObject": {_objects(deployment, "uploads", "incoming/")},
            "s3:GetObject": {_objects(deployment, "processed"), _objects(deployment, "receipts")},
        }
        files_worker = grants(cloud, "files-worker-task")
        uploads = cloud.by_state(BUCKET, "bucket", deployment.names.buckets["uploads"])
        assert files_worker["s3:ListBucket"] == {uploads.state["arn"]}
        assert files_worker["s3:DeleteObject"] == {_objects(deployment, "uploads", "incoming/")}
        assert files_worker["s3:GetObject"] == {
            _objects(deployment, "uploads", "incoming/"),
            _objects(deployment, "uploads", "quarantine/"),
            _objects(deployment, "processed"),
            _objects(deployment, "receipts"),
        }
        assert files_worker["s3:PutObject"] == {
            _objects(deployment, "uploads", "quarantine/"),
            _objects(deployment, "processed"),
            _objects(deployment, "receipts"),
        }
        assert set(grants(cloud, "orders-worker-task")) == set(SQS_CONSUMER_ACTIONS)
        identity = f"arn:aws:ses:{deployment.settings.region}:{ACCOUNT}:identity/"
        identity += deployment.settings.ses_identity
        notifier = "notifier-consumer-role" if "notifier" in on_lambda else "notifier-worker-task"
        assert grants(cloud, notifier)["ses:SendEmail"] == {identity}

    return deployment.settled(check)


@pulumi.runtime.test
def test_execution_roles_pull_their_own_image_and_read_only_their_own_secrets(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("prod")
    cloud = deployment.cloud
    assert deployment.settings.grpc_mtls

    def check() -> None:
        [database] = cloud.of_type(DB)
        secret = database.state["masterUserSecrets"][0]["secretArn"]
        for service in SERVICES:
            tls_secret = cloud.by_state(
                SECRET, "name", tls_secret_name(deployment.settings.name_prefix, service)
            )
            repository = cloud.by_state(
                REPOSITORY, "name", f"{deployment.settings.name_prefix}/{service}"
            )
            for role in ("api", "worker", "relay"):
                log_group = cloud.by_state(
                    LOG_GROUP,
                    "name",
                    f"/eventforge/{deployment.settings.name_prefix}/{service}-{role}",
                )
                assert grants(cloud, f"{service}-{role}-execution") == {
                    "ecr:GetAuthorizationToken": {"*"},
                    "ecr:BatchCheckLayerAvailability": {repository.state["arn"]},
                    "ecr:GetDownloadUrlForLayer": {repository.state["arn"]},
                    "ecr:BatchGetImage": {repository.state["arn"]},
                    "logs:CreateLogStream": {f"{log_group.state['arn']}:*"},
                    "logs:PutLogEvents": {f"{log_group.state['arn']}:*"},
                    "secretsmanager:GetSecretValue": {secret, tls_secret.state["arn"]},
                }

    return deployment.settled(check)
