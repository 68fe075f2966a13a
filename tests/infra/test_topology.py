"""The resource graph builds exactly the topology declared in `eventforge.topology`."""

# pulumi.runtime.test is untyped; the tests under it are still checked.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

import json

import pulumi
import pytest

from eventforge.policies import bucket_notifications_topic_policy
from eventforge.topology import TOPOLOGY, UPLOADS_INCOMING_PREFIX
from infra.components.lambda_consumer import TIMEOUT_SECONDS as LAMBDA_TIMEOUT_SECONDS
from tests.infra.cloud import ACCOUNT
from tests.infra.conftest import STACKS, Deploy
from tests.infra.graph import (
    BUCKET,
    BUCKET_NOTIFICATION,
    LIFECYCLE,
    QUEUE,
    SUBSCRIPTION,
    TOPIC,
    TOPIC_POLICY,
)


@pytest.mark.parametrize("stack", STACKS)
@pulumi.runtime.test
def test_topics_queues_and_buckets_are_the_declared_ones(
    deploy: Deploy, stack: str
) -> pulumi.Output[None]:
    deployment = deploy(stack)
    names = deployment.names
    cloud = deployment.cloud

    def check() -> None:
        alerts = f"{deployment.settings.name_prefix}-alerts"
        assert {r.inputs["name"] for r in cloud.of_type(TOPIC)} == {*names.topics.values(), alerts}
        queues = {n for q in names.queues.values() for n in (q.name, q.dlq_name)}
        assert {r.inputs["name"] for r in cloud.of_type(QUEUE)} == queues
        assert {r.inputs["bucket"] for r in cloud.of_type(BUCKET)} == set(names.buckets.values())

    return deployment.settled(check)


@pulumi.runtime.test
def test_each_queue_subscribes_to_its_topic_with_its_filter_policy(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("staging")  # no stack setting changes this
    cloud = deployment.cloud

    def check() -> None:
        subscriptions = [s for s in cloud.of_type(SUBSCRIPTION) if s.inputs["protocol"] == "sqs"]
        assert len(subscriptions) == len([q for q in TOPOLOGY.queues if q.topic is not None])
        for resolved in deployment.names.queues.values():
            queue = cloud.by_state(QUEUE, "name", resolved.name)
            if resolved.topic_name is None:  # a jobs queue: its schedules send, no topic does
                assert not [s for s in subscriptions if s.inputs["endpoint"] == queue.state["arn"]]
                continue
            topic = cloud.by_state(TOPIC, "name", resolved.topic_name)
            [subscription] = [
                s for s in subscriptions if s.inputs["endpoint"] == queue.state["arn"]
            ]
            assert subscription.inputs["topic"] == topic.state["arn"]
            assert subscription.inputs["rawMessageDelivery"] is True
            wanted = resolved.spec.filter_policy()
            if wanted is None:
                assert "filterPolicy" not in subscription.inputs
            else:
                assert json.loads(subscription.inputs["filterPolicy"]) == wanted
                assert subscription.inputs["filterPolicyScope"] == "MessageAttributes"

    return deployment.settled(check)


@pytest.mark.parametrize("stack", STACKS)
@pulumi.runtime.test
def test_queues_keep_the_declared_timeouts_and_redrive_after_the_stack_max_receives(
    deploy: Deploy, stack: str
) -> pulumi.Output[None]:
    deployment = deploy(stack)
    cloud = deployment.cloud
    assert deployment.settings.dlq_max_receives is not None

    def check() -> None:
        for resolved in deployment.names.queues.values():
            spec = resolved.spec
            queue = cloud.by_state(QUEUE, "name", resolved.name)
            dlq = cloud.by_state(QUEUE, "name", resolved.dlq_name)
            declared = spec.visibility_timeout_seconds
            if spec.consumer in deployment.settings.lambda_consumers:
                # Six times the function's timeout, as AWS advises for Lambda event sources.
                declared = max(declared, 6 * LAMBDA_TIMEOUT_SECONDS)
            assert queue.inputs["visibilityTimeoutSeconds"] == declared
            assert queue.inputs["messageRetentionSeconds"] == spec.retention_seconds
            assert dlq.inputs["messageRetentionSeconds"] == spec.dlq_retention_seconds
            assert queue.json("redrivePolicy") == {
                "deadLetterTargetArn": dlq.state["arn"],
                "maxReceiveCount": deployment.settings.dlq_max_receives,
            }

    return deployment.settled(check)


@pulumi.runtime.test
def test_without_a_stack_setting_max_receives_default_to_the_topology(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("dev", {"eventforge:dlqMaxReceives": None})
    cloud = deployment.cloud

    def check() -> None:
        for resolved in deployment.names.queues.values():
            redrive = cloud.by_state(QUEUE, "name", resolved.name).json("redrivePolicy")
            assert redrive["maxReceiveCount"] == resolved.spec.max_receives

    return deployment.settled(check)


@pulumi.runtime.test
def test_uploads_notify_the_uploads_topic_for_incoming_keys_only(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("staging")
    cloud = deployment.cloud
    names = deployment.names

    def check() -> None:
        notifications = cloud.of_type(BUCKET_NOTIFICATION)
        notifying = [b for b in TOPOLOGY.buckets if b.notifications]
        assert {n.inputs["bucket"] for n in notifications} == {
            names.buckets[b.name] for b in notifying
        }
        for bucket in notifying:
            [record] = [
                n for n in notifications if n.inputs["bucket"] == names.buckets[bucket.name]
            ]
            assert [
                (t["topicArn"], t["filterPrefix"], tuple(t["events"]))
                for t in record.inputs["topics"]
            ] == [
                (
                    cloud.by_state(TOPIC, "name", names.topics[n.topic]).state["arn"],
                    n.prefix,
                    n.events,
                )
                for n in bucket.notifications
            ]
        assert TOPOLOGY.bucket("uploads").notifications[0].prefix == UPLOADS_INCOMING_PREFIX

    return deployment.settled(check)


@pulumi.runtime.test
def test_only_the_notifying_bucket_of_this_account_may_publish_to_its_topic(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("prod")
    cloud = deployment.cloud
    names = deployment.names

    def check() -> None:
        topic_arn = cloud.by_state(TOPIC, "name", names.topics["uploads"]).state["arn"]
        [policy] = [p for p in cloud.of_type(TOPIC_POLICY) if p.inputs["arn"] == topic_arn]
        bucket_arn = cloud.by_state(BUCKET, "bucket", names.buckets["uploads"]).state["arn"]
        assert policy.inputs["arn"] == topic_arn
        assert policy.json("policy") == bucket_notifications_topic_policy(
            topic_arn, [bucket_arn], ACCOUNT
        )

    return deployment.settled(check)


@pulumi.runtime.test
def test_lifecycle_expires_what_the_topology_says(deploy: Deploy) -> pulumi.Output[None]:
    deployment = deploy("dev")
    cloud = deployment.cloud
    names = deployment.names

    def check() -> None:
        for bucket in TOPOLOGY.buckets:
            bucket_id = cloud.by_state(BUCKET, "bucket", names.buckets[bucket.name]).id
            [lifecycle] = [r for r in cloud.of_type(LIFECYCLE) if r.inputs["bucket"] == bucket_id]
            rules = {r["id"]: r for r in lifecycle.inputs["rules"]}
            for expiry in bucket.expiry:
                rule = rules[f"expire-{expiry.prefix.rstrip('/')}"]
                assert rule["filter"] == {"prefix": expiry.prefix}
                assert rule["expiration"]["days"] == expiry.days
            assert "abort-incomplete-multipart-uploads" in rules
            assert ("expire-noncurrent-versions" in rules) == (bucket.name == "receipts")

    return deployment.settled(check)
