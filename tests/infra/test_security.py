"""Graph-wide guarantees: DLQs and alarms, locked-down queues, encryption, private buckets,
no wildcard grants beyond the justified list, and no secret in the stack's outputs."""

# pulumi.runtime.test is untyped; the tests under it are still checked.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import pulumi
import pytest

from eventforge.runtime.settings import SERVICES
from infra.components.certificates import tls_secret_name
from infra.iam import EVERY_RESOURCE, Grant
from infra.policy_exceptions import KEY_POLICY_ADMIN_ACTION, WILDCARD_RESOURCE_ACTIONS
from tests.infra.cloud import ACCOUNT, PARTITION
from tests.infra.conftest import STACKS, Deploy
from tests.infra.graph import (
    ALARM,
    BUCKET,
    BUCKET_ENCRYPTION,
    BUCKET_POLICY,
    CERT_REQUEST,
    CERTIFICATE,
    DB,
    FUNCTION,
    KEY,
    PUBLIC_ACCESS_BLOCK,
    QUEUE,
    QUEUE_POLICY,
    ROLE,
    SCHEDULE_GROUP,
    SECRET,
    SECRET_VERSION,
    SELF_SIGNED,
    SUBSCRIPTION,
    TASK_DEFINITION,
    TOPIC,
    container,
    containers,
    environment,
    migrate_container,
    statements,
)

SECRET_LIKE = re.compile(r"password|passwd|secret(?!s?_?arn)|private.?key|token", re.IGNORECASE)
"""Names of values that would hold a secret itself (a secret's ARN is fine)."""


@pytest.mark.parametrize("stack", STACKS)
@pulumi.runtime.test
def test_every_queue_has_a_dlq_and_alarms_that_notify_the_alerts_topic(
    deploy: Deploy, stack: str
) -> pulumi.Output[None]:
    deployment = deploy(stack)
    cloud = deployment.cloud
    alarms = deployment.settings.alarms

    def check() -> None:
        alerts_arn = cloud.by_state(TOPIC, "name", f"{deployment.settings.name_prefix}-alerts")
        queues = [q for q in cloud.of_type(QUEUE) if "redrivePolicy" in q.inputs]
        dlqs = [q for q in cloud.of_type(QUEUE) if "redrivePolicy" not in q.inputs]
        assert len(queues) == len(dlqs) == len(deployment.names.queues)
        by_metric: dict[tuple[str, str], Mapping[str, Any]] = {
            (a.inputs["metricName"], a.inputs["dimensions"]["QueueName"]): a.inputs
            for a in cloud.of_type(ALARM)
            if a.inputs["namespace"] == "AWS/SQS"
        }
        for queue in queues:
            dlq = cloud.by_state(QUEUE, "arn", queue.json("redrivePolicy")["deadLetterTargetArn"])
            assert dlq.inputs["name"] == f"{queue.inputs['name']}-dlq"
            depth = by_metric[("ApproximateNumberOfMessagesVisible", dlq.inputs["name"])]
            assert depth["comparisonOperator"] == "GreaterThanThreshold"
            assert depth["threshold"] == alarms.dlq_depth
            age = by_metric[("ApproximateAgeOfOldestMessage", queue.inputs["name"])]
            assert age["threshold"] == alarms.oldest_message_age_seconds
            for alarm in (depth, age):
                assert alarm["namespace"] == "AWS/SQS"
                assert alarm["alarmActions"] == [alerts_arn.state["arn"]]

    return deployment.settled(check)


@pulumi.runtime.test
def test_only_the_subscribed_topic_may_send_to_each_queue(deploy: Deploy) -> pulumi.Output[None]:
    deployment = deploy("prod")  # no stack setting changes this
    cloud = deployment.cloud

    def check() -> None:
        subscriptions = [s for s in cloud.of_type(SUBSCRIPTION) if s.inputs["protocol"] == "sqs"]
        assert subscriptions
        for subscription in subscriptions:
            queue = cloud.by_state(QUEUE, "arn", subscription.inputs["endpoint"])
            [policy] = [p for p in cloud.of_type(QUEUE_POLICY) if p.inputs["queueUrl"] == queue.id]
            [statement] = policy.json("policy")["Statement"]
            assert statement == {
                "Sid": "AllowTopic",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue.state["arn"],
                "Condition": {"ArnEquals": {"aws:SourceArn": subscription.inputs["topic"]}},
            }
        # DLQs accept no message except by redrive: no policy lets anyone send to them.
        dlq_urls = {q.id for q in cloud.of_type(QUEUE) if "redrivePolicy" not in q.inputs}
        assert not [p for p in cloud.of_type(QUEUE_POLICY) if p.inputs["queueUrl"] in dlq_urls]

    return deployment.settled(check)


@pulumi.runtime.test
def test_topics_queues_buckets_and_the_database_are_encrypted(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("staging")  # no stack setting changes this
    cloud = deployment.cloud

    def check() -> None:
        keys = {k.state["arn"]: k for k in cloud.of_type(KEY)}
        own_keys = 0
        for topic in cloud.of_type(TOPIC):
            master_key = topic.inputs["kmsMasterKeyId"]
            if master_key == "alias/aws/sns":
                continue
            assert keys[master_key].inputs["enableKeyRotation"] is True
            own_keys += 1
        # A key of its own only where an AWS service publishes: uploads, email and alerts.
        assert own_keys == len(keys) == 3
        for queue in cloud.of_type(QUEUE):
            assert queue.inputs["sqsManagedSseEnabled"] is True
        encrypted = {e.inputs["bucket"]: e for e in cloud.of_type(BUCKET_ENCRYPTION)}
        for bucket in cloud.of_type(BUCKET):
            [rule] = encrypted[bucket.id].inputs["rules"]
            algorithm = rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"]
            assert algorithm in ("AES256", "aws:kms")
        [database] = cloud.of_type(DB)
        assert database.inputs["storageEncrypted"] is True

    return deployment.settled(check)


@pulumi.runtime.test
def test_services_that_publish_into_an_encrypted_topic_may_use_its_key(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("dev")
    cloud = deployment.cloud
    prefix = deployment.settings.name_prefix

    def check() -> None:
        keys = {k.state["arn"]: k for k in cloud.of_type(KEY)}
        publishers = {
            f"{prefix}-uploads-events": ["s3.amazonaws.com"],
            f"{prefix}-email-events": ["ses.amazonaws.com"],
            f"{prefix}-alerts": ["cloudwatch.amazonaws.com"],
        }
        for topic in cloud.of_type(TOPIC):
            if topic.inputs["name"] not in publishers:
                assert topic.inputs["kmsMasterKeyId"] == "alias/aws/sns"
                continue
            policy = keys[topic.inputs["kmsMasterKeyId"]].json("policy")
            services = [s["Principal"]["Service"] for s in policy["Statement"][1:]]
            assert services == publishers[topic.inputs["name"]]
            for statement in policy["Statement"][1:]:
                assert statement["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"]
                assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}

    return deployment.settled(check)


@pulumi.runtime.test
def test_buckets_are_private_and_refuse_plain_http(deploy: Deploy) -> pulumi.Output[None]:
    deployment = deploy("dev")  # no stack setting changes this
    cloud = deployment.cloud

    def check() -> None:
        blocks = {b.inputs["bucket"]: b.inputs for b in cloud.of_type(PUBLIC_ACCESS_BLOCK)}
        policies = {p.inputs["bucket"]: p.json("policy") for p in cloud.of_type(BUCKET_POLICY)}
        for bucket in cloud.of_type(BUCKET):
            block = blocks[bucket.id]
            for setting in (
                "blockPublicAcls",
                "blockPublicPolicy",
                "ignorePublicAcls",
                "restrictPublicBuckets",
            ):
                assert block[setting] is True, setting
            [deny] = policies[bucket.id]["Statement"]
            assert deny["Effect"] == "Deny"
            assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}

    return deployment.settled(check)


@pytest.mark.parametrize("stack", STACKS)
@pulumi.runtime.test
def test_no_grant_uses_a_wildcard_outside_the_justified_list_and_roles_trust_one_service(
    deploy: Deploy, stack: str
) -> pulumi.Output[None]:
    deployment = deploy(stack)
    cloud = deployment.cloud

    def check() -> None:
        allows = [s for s in statements(cloud) if s.effect == "Allow"]
        assert allows
        for statement in allows:
            where = f"{statement.owner.type} {statement.owner.name}"
            is_key_policy = statement.owner.type == KEY
            for action in statement.actions:
                if "*" in action:
                    assert is_key_policy, where
                    assert action == KEY_POLICY_ADMIN_ACTION, where
                    assert statement.principal == {"AWS": f"arn:{PARTITION}:iam::{ACCOUNT}:root"}, (
                        where
                    )
            for resource in statement.resources:
                if _is_broad(resource) and not is_key_policy:
                    unlisted = set(statement.actions) - WILDCARD_RESOURCE_ACTIONS.keys()
                    assert not unlisted, f"{where}: {unlisted} on {resource}"
            if statement.principal == "*" or statement.principal == {"AWS": "*"}:
                raise AssertionError(f"{where} allows everyone")
        assert all(reason.strip() for reason in WILDCARD_RESOURCE_ACTIONS.values())
        [group] = cloud.of_type(SCHEDULE_GROUP)
        for role in cloud.of_type(ROLE):
            [trust] = role.json("assumeRolePolicy")["Statement"]
            principal = trust["Principal"]["Service"]
            assert principal in (
                "ecs-tasks.amazonaws.com",
                "lambda.amazonaws.com",
                "scheduler.amazonaws.com",
            )
            assert trust["Action"] == "sts:AssumeRole"
            if principal == "ecs-tasks.amazonaws.com":
                assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
            if principal == "scheduler.amazonaws.com":
                assert trust["Condition"] == {
                    "StringEquals": {
                        "aws:SourceAccount": ACCOUNT,
                        "aws:SourceArn": group.state["arn"],
                    }
                }

    return deployment.settled(check)


@pytest.mark.parametrize("stack", STACKS)
@pulumi.runtime.test
def test_no_password_is_an_input_an_environment_variable_or_an_output(
    deploy: Deploy, stack: str
) -> pulumi.Output[None]:
    deployment = deploy(stack)
    cloud = deployment.cloud
    outputs = pulumi.Output.from_input(dict(deployment.outputs.values))

    def check(values: dict[str, Any]) -> None:
        [database] = cloud.of_type(DB)
        assert database.inputs["manageMasterUserPassword"] is True
        assert not {"password", "passwordWo"} & database.inputs.keys()
        for record in cloud.records:
            assert not [k for k in _keys(record.inputs) if k.lower() == "password"], record.name
        prefix = deployment.settings.name_prefix
        password = f"{database.state['masterUserSecrets'][0]['secretArn']}:password::"
        for task in cloud.of_type(TASK_DEFINITION):
            definition = container(task)
            service = task.inputs["family"].removeprefix(f"{prefix}-").split("-")[0]
            for each in containers(task):
                assert not [k for k in environment(each) if SECRET_LIKE.search(k)], task.name
                assert "PRIVATE KEY" not in json.dumps(environment(each)), task.name
            # The master password reaches the one-shot migration container only; a gRPC
            # service's gets its certificate, ingest's (no gRPC) nothing.
            if service in SERVICES:
                tls = cloud.by_state(SECRET, "name", tls_secret_name(prefix, service))
                assert definition["secrets"] == [
                    {"name": "EVENTFORGE_TLS_BUNDLE", "valueFrom": tls.state["arn"]}
                ]
            else:
                assert "secrets" not in definition
            assert migrate_container(task)["secrets"] == [
                {"name": "PGPASSWORD", "valueFrom": password}
            ]
        for function in cloud.of_type(FUNCTION):
            variables = function.inputs["environment"]["variables"]
            assert not [k for k in variables if SECRET_LIKE.search(k)], function.name
            assert "PRIVATE KEY" not in json.dumps(variables), function.name
        assert not [k for k in _keys(values) if SECRET_LIKE.search(k)]
        assert "PRIVATE KEY" not in json.dumps(values)
        # Keys are only in the secrets' values, never in a plain input of another resource.
        holders = {
            r.type for r in cloud.records if "PRIVATE KEY" in json.dumps(r.inputs, default=str)
        }
        assert holders <= {SECRET_VERSION, CERT_REQUEST, SELF_SIGNED, CERTIFICATE}
        assert values["databaseSecretArn"] == database.state["masterUserSecrets"][0]["secretArn"]
        assert "postgresql://" not in json.dumps(values)

    settled = deployment.settled(lambda: None)
    return pulumi.Output.all(settled, outputs).apply(lambda both: check(both[1]))


def _is_broad(resource: str) -> bool:
    """`*`, or an ARN whose resource part is only a wildcard (e.g. `arn:aws:sqs:r:a:*`)."""
    if resource == "*":
        return True
    parts = resource.split(":", 5)
    return len(parts) == 6 and parts[5].startswith("*")


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [k for key, item in value.items() for k in (key, *_keys(item))]
    if isinstance(value, list):
        return [k for item in value for k in _keys(item)]
    return []


@pulumi.runtime.test
def test_a_grant_with_a_wildcard_outside_the_list_is_refused_when_declared() -> None:
    with pytest.raises(ValueError, match="wildcard actions"):
        Grant("Everything", ("s3:*",), ("arn:aws:s3:::bucket/*",))
    with pytest.raises(ValueError, match="may not apply to every resource"):
        Grant("AnyQueue", ("sqs:ReceiveMessage",), (EVERY_RESOURCE,))
    Grant("RegistryToken", ("ecr:GetAuthorizationToken",), (EVERY_RESOURCE,))
