"""The whole deployment of one stack, built from its settings and the topology declaration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from eventforge.runtime.settings import SERVICES, ServiceName
from eventforge.topology import TOPOLOGY, Topic, Topology
from infra.access import ServiceResources
from infra.components.alerts import AlertsTopic, AlertsTopicArgs
from infra.components.buckets import Buckets, BucketsArgs
from infra.components.certificates import Certificates, CertificatesArgs
from infra.components.database import Database, DatabaseArgs
from infra.components.lambda_consumer import ConsumedQueue
from infra.components.network import Network, NetworkArgs
from infra.components.platform import Placement, Platform, PlatformArgs
from infra.components.queue import ServiceQueue, ServiceQueueArgs
from infra.components.service import Service, ServiceArgs
from infra.components.topic import EventTopic, EventTopicArgs
from infra.config import Role, StackSettings
from infra.environment import DatabaseEndpoint, grpc_port, process_environment


@dataclass(frozen=True)
class StackOutputs:
    """What a stack exports: names and addresses, never a secret's value."""

    values: Mapping[str, Any]

    def export(self) -> None:
        """Export every value as a stack output."""
        for key, value in self.values.items():
            pulumi.export(key, value)


def service_roles(topology: Topology, service: ServiceName) -> tuple[Role, ...]:
    """The roles a service runs: its API, a worker if it consumes, a relay if it publishes."""
    roles: list[Role] = ["api"]
    if topology.queues_consumed_by(service):
        roles.append("worker")
    if _published_topic(topology, service) is not None:
        roles.append("relay")
    return tuple(roles)


def build(settings: StackSettings, topology: Topology = TOPOLOGY) -> StackOutputs:
    """Declare every resource of the stack; the topology decides topics, queues and buckets."""
    topology.validate()
    idle = sorted(s for s in settings.lambda_consumers if not topology.queues_consumed_by(s))
    if idle:
        raise ValueError(f"lambdaConsumers {idle} consume no queue")
    names = topology.resolve(settings.name_prefix)
    account_id = aws.get_caller_identity_output().account_id
    partition = aws.get_partition_output().partition

    alerts = AlertsTopic(
        "alerts",
        AlertsTopicArgs(
            name=f"{settings.name_prefix}-alerts",
            account_id=account_id,
            partition=partition,
            emails=settings.alert_emails,
        ),
    )
    topics = {
        topic.name: EventTopic(
            f"topic-{topic.name}",
            EventTopicArgs(
                name=names.topics[topic.name],
                account_id=account_id,
                partition=partition,
                service_publishers=(
                    ("s3.amazonaws.com",) if topology.notifying_buckets(topic.name) else ()
                ),
            ),
        )
        for topic in topology.topics
    }
    queues = {
        queue.name: ServiceQueue(
            f"queue-{queue.name}",
            ServiceQueueArgs(
                queue=names.queues[queue.name],
                topic_arn=topics[queue.topic].arn,
                max_receives=(
                    queue.max_receives
                    if settings.dlq_max_receives is None
                    else settings.dlq_max_receives
                ),
                alerts_topic_arn=alerts.arn,
                dlq_depth_threshold=settings.alarms.dlq_depth,
                oldest_message_age_seconds=settings.alarms.oldest_message_age_seconds,
            ),
        )
        for queue in topology.queues
    }
    buckets = Buckets(
        "buckets",
        BucketsArgs(
            topology=topology,
            names=names,
            topic_arns={name: topic.arn for name, topic in topics.items()},
            account_id=account_id,
            cors_allowed_origins=settings.cors_allowed_origins,
            noncurrent_version_days=settings.noncurrent_version_days,
        ),
    )
    network = Network(
        "network",
        NetworkArgs(
            name_prefix=settings.name_prefix,
            region=settings.region,
            cidr=settings.network.cidr,
            az_count=settings.network.az_count,
            availability_zones=aws.get_availability_zones_output(state="available").names,
            grpc_ports=[grpc_port(service) for service in SERVICES],
            nat_gateway=settings.network.nat_gateway,
        ),
    )
    database = Database(
        "database",
        DatabaseArgs(
            name_prefix=settings.name_prefix,
            settings=settings.database,
            vpc_id=network.vpc_id,
            subnet_ids=network.private_subnet_ids,
            services_security_group_id=network.services_security_group_id,
        ),
    )
    platform = Platform("platform", PlatformArgs(settings.name_prefix, network.vpc_id))
    placement = Placement(
        name_prefix=settings.name_prefix,
        region=settings.region,
        account_id=account_id,
        partition=partition,
        cluster_arn=platform.cluster_arn,
        cluster_name=platform.cluster_name,
        namespace_id=platform.namespace_id,
        subnet_ids=network.private_subnet_ids,
        security_group_id=network.services_security_group_id,
        log_retention_days=settings.log_retention_days,
        database_secret_arn=database.secret_arn,
    )
    certificates = (
        Certificates(
            "grpc-tls",
            CertificatesArgs(
                name_prefix=settings.name_prefix,
                namespace=platform.namespace_name,
                clients=settings.grpc_clients,
            ),
        )
        if settings.grpc_mtls
        else None
    )
    endpoint = DatabaseEndpoint(
        address=database.address,
        port=database.port,
        name=database.database_name,
        username=database.username,
    )
    ses_identity_arn = pulumi.Output.format(
        "arn:{0}:ses:{1}:{2}:identity/{3}",
        partition,
        settings.region,
        account_id,
        settings.ses_identity,
    )
    services: dict[ServiceName, Service] = {}
    for service in SERVICES:
        published = _published_topic(topology, service)
        consumed = topology.queues_consumed_by(service)
        roles = service_roles(topology, service)
        services[service] = Service(
            service,
            ServiceArgs(
                service=service,
                roles=roles,
                sizes=settings.roles,
                image_tag=settings.image_tag,
                placement=placement,
                environments={
                    role: process_environment(settings, endpoint, service, role) for role in roles
                },
                resources=ServiceResources(
                    service=service,
                    topic_arn=None if published is None else topics[published.name].arn,
                    topic_key_arn=None if published is None else topics[published.name].key_arn,
                    queue_arns=[queues[q.name].arn for q in consumed],
                    bucket_arns=buckets.arns,
                    ses_identity_arn=ses_identity_arn,
                ),
                queues=[
                    ConsumedQueue(
                        arn=queues[q.name].arn,
                        name=queues[q.name].queue_name,
                        visibility_timeout_seconds=q.visibility_timeout_seconds,
                    )
                    for q in consumed
                ],
                grpc_port=grpc_port(service),
                lambda_consumer_environment=(
                    process_environment(settings, endpoint, service, None)
                    if service in settings.lambda_consumers
                    else None
                ),
                tls_secret_arn=None if certificates is None else certificates.secret_arns[service],
            ),
        )
    return StackOutputs(
        {
            "region": settings.region,
            "namePrefix": settings.name_prefix,
            "vpcId": network.vpc_id,
            "clusterName": platform.cluster_name,
            "serviceDiscoveryNamespace": platform.namespace_name,
            "repositoryUrls": {name: s.repository_url for name, s in services.items()},
            "topicArns": {name: t.arn for name, t in topics.items()},
            "queueUrls": {name: q.url for name, q in queues.items()},
            "bucketNames": buckets.bucket_names,
            "alertsTopicArn": alerts.arn,
            "databaseAddress": database.address,
            "databaseSecretArn": database.secret_arn,
            "lambdaConsumers": sorted(settings.lambda_consumers),
            # Public: clients outside the stack trust the APIs' certificates with it.
            "grpcCaCertificate": None if certificates is None else certificates.ca_cert_pem,
            # The clients' certificates and keys, for whoever may read these secrets.
            "grpcClientSecretArns": (
                {}
                if certificates is None
                else {c: certificates.secret_arns[c] for c in settings.grpc_clients}
            ),
        }
    )


def _published_topic(topology: Topology, service: ServiceName) -> Topic | None:
    return next((t for t in topology.topics if t.publisher == service), None)
