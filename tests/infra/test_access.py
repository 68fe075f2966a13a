"""Each process's role names exactly its own queues, topic, key, buckets, logs and secret."""

# pulumi.runtime.test is untyped; the tests under it are still checked.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

import pulumi
import pytest

from eventforge.runtime.db import database_role
from eventforge.runtime.settings import SERVICES, ServiceName
from eventforge.topology import TOPOLOGY
from infra.access import SQS_CONSUMER_ACTIONS
from infra.components.certificates import tls_secret_name
from infra.config import ALL_SERVICES
from tests.infra.cloud import ACCOUNT
from tests.infra.conftest import Deploy, Deployment
from tests.infra.graph import (
    BUCKET,
    CONFIGURATION_SET,
    DB,
    EMAIL_IDENTITY,
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


def _login(deployment: Deployment, service: ServiceName) -> dict[str, set[str]]:
    [database] = deployment.cloud.of_type(DB)
    user = f"arn:aws:rds-db:{deployment.settings.region}:{ACCOUNT}:dbuser:"
    return {"rds-db:connect": {f"{user}{database.state['resourceId']}/{database_role(service)}"}}


@pytest.mark.parametrize("stack", ["staging", "prod"])
@pulumi.runtime.test
def test_task_roles_grant_exactly_what_each_role_does(
    deploy: Deploy, stack: str
) -> pulumi.Output[None]:
    deployment = deploy(stack)
    cloud = deployment.cloud
    on_lambda = deployment.settings.lambda_consumers

    def check() -> None:
        for service in ALL_SERVICES:
            published = TOPOLOGY.topic_published_by(service).name
            topic = cloud.by_state(TOPIC, "name", deployment.names.topics[published])
            # Relays publish into topics under SNS's AWS-managed key: no key grant needed.
            assert topic.inputs["kmsMasterKeyId"] == "alias/aws/sns"
            assert grants(cloud, f"{service}-relay-task") == {
                "sns:Publish": {topic.state["arn"]},
                **_login(deployment, service),
            }
            worker = (
                f"{service}-consumer-role" if service in on_lambda else f"{service}-worker-task"
            )
            worker_grants = grants(cloud, worker)
            for action in SQS_CONSUMER_ACTIONS:
                assert worker_grants[action] == _queue_arns(deployment, service), (worker, action)
            assert worker_grants["rds-db:connect"] == _login(deployment, service)["rds-db:connect"]
        assert grants(cloud, "orders-api-task") == _login(deployment, "orders")
        assert grants(cloud, "notifier-api-task") == _login(deployment, "notifier")
        assert grants(cloud, "files-api-task") == {
            "s3:PutObject": {_objects(deployment, "uploads", "incoming/")},
            "s3:GetObject": {_objects(deployment, "processed"), _objects(deployment, "receipts")},
            **_login(deployment, "files"),
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
        assert set(grants(cloud, "orders-worker-task")) == {*SQS_CONSUMER_ACTIONS, "rds-db:connect"}
        [ses] = cloud.of_type(EMAIL_IDENTITY)
        assert ses.inputs["emailIdentity"] == deployment.settings.ses_identity
        identity = ses.state["arn"]
        [configuration_set] = cloud.of_type(CONFIGURATION_SET)
        notifier = "notifier-consumer-role" if "notifier" in on_lambda else "notifier-worker-task"
        assert grants(cloud, notifier)["ses:SendEmail"] == {
            identity,
            configuration_set.state["arn"],
        }

    return deployment.settled(check)


@pulumi.runtime.test
def test_a_task_running_every_role_holds_the_union_of_their_grants(
    deploy: Deploy,
) -> pulumi.Output[None]:
    combined = deploy("dev")
    assert combined.settings.combined_roles

    def check() -> None:
        for service in SERVICES:
            task = grants(combined.cloud, f"{service}-all-task")
            topic = combined.cloud.by_state(TOPIC, "name", combined.names.topics[service])
            assert task["sns:Publish"] == {topic.state["arn"]}
            for action in SQS_CONSUMER_ACTIONS:
                assert task[action] == _queue_arns(combined, service)
            assert task["rds-db:connect"] == _login(combined, service)["rds-db:connect"]
        assert "s3:ListBucket" in grants(combined.cloud, "files-all-task")
        assert "ses:SendEmail" in grants(combined.cloud, "notifier-all-task")
        assert "ses:SendEmail" not in grants(combined.cloud, "orders-all-task")

    return combined.settled(check)


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
