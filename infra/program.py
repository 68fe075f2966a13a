"""The whole deployment of one stack, built from its settings and the topology declaration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pulumi
import pulumi_aws as aws

from eventforge.runtime.db import database_role
from eventforge.runtime.settings import SERVICES, ServiceName
from eventforge.topology import TOPOLOGY, Topic, Topology
from infra.access import EMAIL_SENDER, ServiceResources
from infra.components.alerts import AlertsTopic, AlertsTopicArgs
from infra.components.buckets import Buckets, BucketsArgs
from infra.components.certificates import Certificates, CertificatesArgs
from infra.components.database import Database, DatabaseArgs
from infra.components.ingress import Ingress, IngressArgs
from infra.components.lambda_consumer import ConsumedQueue, lambda_visibility_timeout
from infra.components.log_metrics import LogMetric, metric_namespace
from infra.components.mail_events import (
    SES_PUBLISHER,
    MailEventPublishing,
    MailEventPublishingArgs,
)
from infra.components.network import HTTPS, Network, NetworkArgs
from infra.components.platform import Placement, Platform, PlatformArgs
from infra.components.queue import ServiceQueue, ServiceQueueArgs
from infra.components.schedules import JobsQueue, Schedules, SchedulesArgs
from infra.components.service import EnvironmentOf, Service, ServiceArgs, Webhooks
from infra.components.topic import EventTopic, EventTopicArgs
from infra.components.webhooks import webhook_secret
from infra.config import ALL_SERVICES, Role, StackSettings
from infra.environment import (
    HEALTH_HTTP_PORT,
    DatabaseEndpoint,
    Process,
    grpc_port,
    migrate_environment,
    process_environment,
)

ECS_ARCHITECTURES = {"arm64": "ARM64", "x86_64": "X86_64"}
S3_PUBLISHER = "s3.amazonaws.com"
EMAIL_OUTCOME_UNSETTLED = (
    '{ ($.email_outcome = "resent") || ($.email_outcome = "duplicate") '
    '|| ($.email_outcome = "abandoned") }'
)
"""The email sender's JSON log line of an email it sent again: its first send's outcome stayed
unknown (a crash, a lost reply) and SES published no Send event for it in time."""
EMAIL_UNSETTLED_METRIC = "EmailsUnsettled"
OUTBOX_AGE_PATTERN = "{ $.outbox_oldest_age_seconds >= 0 }"
"""The relay's backlog line, logged every minute (`eventforge.runtime.messaging.relay`)."""
OUTBOX_AGE_VALUE = "$.outbox_oldest_age_seconds"
SAGA_SERVICE: ServiceName = "orders"
COMPENSATION_FAILED_PATTERN = '{ $.saga_outcome = "COMPENSATION_FAILED" }'
"""The saga's line of an order whose compensation failed for good (it needs an operator)."""
COMPENSATION_FAILED_METRIC = "SagaCompensationFailed"
WEBHOOK_SERVICE: ServiceName = "ingest"
"""The service that answers the inbound webhooks (HTTP API → its function)."""
WEBHOOK_FUNCTION_APIS = ("secretsmanager",)
"""What the webhook function calls on AWS: its sources' secrets, read at start."""


@dataclass(frozen=True)
class StackOutputs:
    """What a stack exports: names and addresses, never a secret's value."""

    values: Mapping[str, Any]

    def export(self) -> None:
        """Export every value as a stack output."""
        for key, value in self.values.items():
            pulumi.export(key, value)


def service_roles(topology: Topology, service: ServiceName) -> tuple[Role, ...]:
    """The roles a service runs: its gRPC API (if it has one), a worker if it consumes, a relay
    if it publishes."""
    roles: list[Role] = ["api"] if service in SERVICES else []
    if topology.queues_consumed_by(service):
        roles.append("worker")
    if _published_topic(topology, service) is not None:
        roles.append("relay")
    return tuple(roles)


def build(settings: StackSettings, topology: Topology = TOPOLOGY) -> StackOutputs:
    """Declare every resource of the stack; the topology decides topics, queues and buckets.

    Without `imageTag` this is the backbone phase: everything but what runs an image (tasks,
    functions), so that the image repositories exist before anything pulls from them.
    """
    topology.validate()
    idle = sorted(s for s in settings.lambda_consumers if not topology.queues_consumed_by(s))
    if idle:
        raise ValueError(f"lambdaConsumers {idle} consume no queue")
    # A plain (not Output) value: bucket names are qualified by it, and a missing account
    # (no credentials) fails here, loudly, before any resource is declared.
    account_id = aws.get_caller_identity().account_id
    names = topology.resolve(settings.name_prefix, account_id=account_id, region=settings.region)
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
                service_publishers=_service_publishers(topology, topic.name),
            ),
        )
        for topic in topology.topics
    }
    lambda_queues = {
        q.name for s in settings.lambda_consumers for q in topology.queues_consumed_by(s)
    }
    queues = {
        queue.name: ServiceQueue(
            f"queue-{queue.name}",
            ServiceQueueArgs(
                queue=names.queues[queue.name],
                topic_arn=None if queue.topic is None else topics[queue.topic].arn,
                max_receives=(
                    queue.max_receives
                    if settings.dlq_max_receives is None
                    else settings.dlq_max_receives
                ),
                alerts_topic_arn=alerts.arn,
                dlq_depth_threshold=settings.alarms.dlq_depth,
                oldest_message_age_seconds=settings.alarms.oldest_message_age_seconds,
                visibility_timeout_seconds=(
                    lambda_visibility_timeout(queue.visibility_timeout_seconds)
                    if queue.name in lambda_queues
                    else queue.visibility_timeout_seconds
                ),
            ),
        )
        for queue in topology.queues
    }
    # Each job's ticks, sent to its service's jobs queue (which has no topic).
    schedules = Schedules(
        "schedules",
        SchedulesArgs(
            name_prefix=settings.name_prefix,
            account_id=account_id,
            jobs=topology.jobs,
            queues={
                q.name: JobsQueue(arn=queues[q.name].arn, dlq_arn=queues[q.name].dlq_arn)
                for q in topology.queues
                if q.topic is None
            },
        ),
    )
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
    otlp_port = _otlp_port(settings.otel_exporter_endpoint)
    network = Network(
        "network",
        NetworkArgs(
            name_prefix=settings.name_prefix,
            region=settings.region,
            cidr=settings.network.cidr,
            az_count=settings.network.az_count,
            availability_zones=aws.get_availability_zones_output(state="available").names,
            grpc_ports=[grpc_port(service) for service in SERVICES],
            egress=settings.network.egress,
            vpc_endpoints=settings.network.vpc_endpoints,
            egress_ports=() if otlp_port is None else (otlp_port,),
            function_endpoints=WEBHOOK_FUNCTION_APIS,
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
    platform = Platform(
        "platform",
        PlatformArgs(settings.name_prefix, network.vpc_id, settings.container_insights),
    )
    ingress = (
        None
        if settings.ingress is None
        else Ingress(
            "ingress",
            IngressArgs(
                name_prefix=settings.name_prefix,
                vpc_id=network.vpc_id,
                subnet_ids=network.private_subnet_ids,
                settings=settings.ingress,
                services_security_group_id=network.services_security_group_id,
                grpc_ports={service: grpc_port(service) for service in SERVICES},
                health_port=HEALTH_HTTP_PORT,
            ),
        )
    )
    ses_identity = aws.sesv2.EmailIdentity("ses-identity", email_identity=settings.ses_identity)
    mail_events = (
        None
        if topology.mail_events is None or names.configuration_set is None
        else MailEventPublishing(
            "mail-events",
            MailEventPublishingArgs(
                spec=topology.mail_events,
                configuration_set_name=names.configuration_set,
                topic_arn=topics[topology.mail_events.topic].arn,
                account_id=account_id,
            ),
        )
    )
    placement = Placement(
        name_prefix=settings.name_prefix,
        region=settings.region,
        account_id=account_id,
        partition=partition,
        cluster_arn=platform.cluster_arn,
        cluster_name=platform.cluster_name,
        namespace_id=platform.namespace_id,
        subnet_ids=network.task_subnet_ids,
        assign_public_ip=network.assign_public_ip,
        security_group_id=network.services_security_group_id,
        log_retention_days=settings.log_retention_days,
        database_secret_arn=database.secret_arn,
        cpu_architecture=ECS_ARCHITECTURES[settings.architecture],
        function_subnet_ids=network.private_subnet_ids,
    )
    certificates = (
        Certificates(
            "grpc-tls",
            CertificatesArgs(
                name_prefix=settings.name_prefix,
                namespace=platform.namespace_name,
                clients=settings.grpc_clients,
                load_balancer_dns_name=None if ingress is None else ingress.dns_name,
            ),
        )
        if settings.grpc_mtls
        else None
    )
    endpoint = DatabaseEndpoint(
        address=database.address, port=database.port, name=database.database_name
    )
    migrate_env = migrate_environment(settings, endpoint, database.master_username)
    # The sources' shared secrets, which the webhook function reads at start.
    webhook_secrets = webhook_secret(
        f"{WEBHOOK_SERVICE}-webhook-secrets",
        name_prefix=settings.name_prefix,
        service=WEBHOOK_SERVICE,
        value=settings.ingest_secrets,
    )
    services: dict[ServiceName, Service] = {}
    for service in ALL_SERVICES:
        published = _published_topic(topology, service)
        consumed = topology.queues_consumed_by(service)
        grpc = service in SERVICES
        services[service] = Service(
            service,
            ServiceArgs(
                service=service,
                roles=service_roles(topology, service),
                sizes=settings.roles,
                image_tag=settings.image_tag,
                combined=settings.combined_roles,
                placement=placement,
                environment_of=_environment_of(settings, endpoint, service, account_id),
                migrate_environment=migrate_env,
                resources=ServiceResources(
                    service=service,
                    topic_arn=None if published is None else topics[published.name].arn,
                    topic_key_arn=None if published is None else topics[published.name].key_arn,
                    queue_arns=[queues[q.name].arn for q in consumed],
                    bucket_arns=buckets.arns,
                    ses_identity_arn=ses_identity.arn,
                    ses_configuration_set_arn=(
                        None
                        if mail_events is None or service != EMAIL_SENDER
                        else mail_events.configuration_set_arn
                    ),
                    database_user_arn=pulumi.Output.format(
                        "arn:{0}:rds-db:{1}:{2}:dbuser:{3}/{4}",
                        partition,
                        settings.region,
                        account_id,
                        database.resource_id,
                        database_role(service),
                    ),
                ),
                queues=[
                    ConsumedQueue(
                        arn=queues[q.name].arn,
                        name=queues[q.name].queue_name,
                        visibility_timeout_seconds=queues[q.name].visibility_timeout_seconds,
                    )
                    for q in consumed
                ],
                grpc_port=grpc_port(service) if grpc else None,
                on_lambda=service in settings.lambda_consumers,
                tls_secret_arn=(
                    None if certificates is None or not grpc else certificates.secret_arns[service]
                ),
                target_group_arn=(
                    None if ingress is None or not grpc else ingress.target_group_arns[service]
                ),
                listener=None if ingress is None or not grpc else ingress.listeners[service],
                webhooks=(
                    Webhooks(
                        secrets_arn=webhook_secrets.arn,
                        settings=settings.ingest,
                        alerts_topic_arn=alerts.arn,
                    )
                    if service == WEBHOOK_SERVICE
                    else None
                ),
                log_metrics=_log_metrics(
                    settings, topology, service, alerts.arn, mail_events=mail_events is not None
                ),
            ),
        )
    return StackOutputs(
        {
            "region": settings.region,
            "namePrefix": settings.name_prefix,
            "phase": "backbone" if settings.image_tag is None else "services",
            "imageTag": settings.image_tag,
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
            # Webhook senders POST to `<ingestUrl>/<source>` (services phase only).
            "ingestUrl": services[WEBHOOK_SERVICE].webhook_url,
            # The sources' secrets (`pulumi config set --secret ingestSecrets`), by ARN only.
            "ingestSecretArn": webhook_secrets.arn,
            "scheduleGroup": schedules.group_name,
            # Where internal clients dial each API (host:port), through the load balancer.
            "grpcEndpoints": (
                {}
                if ingress is None
                else {
                    s: pulumi.Output.concat(ingress.dns_name, f":{grpc_port(s)}") for s in SERVICES
                }
            ),
            "endpointServiceName": None if ingress is None else ingress.endpoint_service_name,
            "sesIdentity": settings.ses_identity,
            # The configuration set the notifier sends with (SES publishes its email events).
            "sesConfigurationSet": (
                None if mail_events is None else mail_events.configuration_set_name
            ),
            # The DNS records (CNAME) that verify a domain identity; none for an address.
            "sesDkimRecords": ses_identity.dkim_signing_attributes.apply(
                lambda attributes: _dkim_records(settings.ses_identity, attributes)
            ),
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


def _service_publishers(topology: Topology, topic: str) -> tuple[str, ...]:
    """The AWS services that publish into a topic: S3 for bucket notifications, SES for mail
    events. Each needs the topic's key, hence a customer-managed one (see `EventTopic`)."""
    publishers: list[str] = []
    if topology.notifying_buckets(topic):
        publishers.append(S3_PUBLISHER)
    if topology.fed_by_mail_events(topic):
        if publishers:
            # Each feeding writes the topic's whole policy: one would replace the other's.
            raise ValueError(f"topic {topic} is fed by both buckets and mail events")
        publishers.append(SES_PUBLISHER)
    return tuple(publishers)


def _log_metrics(
    settings: StackSettings,
    topology: Topology,
    service: ServiceName,
    alerts_topic_arn: pulumi.Input[str],
    *,
    mail_events: bool,
) -> dict[Role, list[LogMetric]]:
    """What a service's logs are watched for, by the role whose processes log it."""
    metrics: dict[Role, list[LogMetric]] = {}
    if mail_events and service == EMAIL_SENDER:
        metrics.setdefault("worker", []).append(
            _emails_unsettled(settings.name_prefix, alerts_topic_arn)
        )
    if _published_topic(topology, service) is not None:
        metrics.setdefault("relay", []).append(_outbox_age(settings, service, alerts_topic_arn))
    if service == SAGA_SERVICE:
        # The worker runs the saga; the API compensates a cancelled order itself.
        failed = _compensation_failed(settings.name_prefix, alerts_topic_arn)
        saga_roles: tuple[Role, ...] = ("api", "worker")
        for role in saga_roles:
            metrics.setdefault(role, []).append(failed)
    return metrics


def _outbox_age(
    settings: StackSettings, service: ServiceName, alerts_topic_arn: pulumi.Input[str]
) -> LogMetric:
    """The age of the oldest unpublished outbox row, which each relay logs every minute."""
    prefix, threshold = settings.name_prefix, settings.alarms.outbox_oldest_age_seconds
    return LogMetric(
        key="outbox-age",
        pattern=OUTBOX_AGE_PATTERN,
        namespace=metric_namespace(prefix),
        metric_name=f"{service.capitalize()}OutboxOldestAge",
        alarm_name=f"{prefix}-{service}-outbox-age",
        description=(
            f"An event of {service} has waited more than {threshold} s in its outbox, or no "
            f"relay of {service} logged its backlog for 5 minutes (stopped, stuck, or without "
            "its database): events are not reaching SNS. Search the relay's logs for "
            "outbox_backlog."
        ),
        alerts_topic_arn=alerts_topic_arn,
        threshold=threshold,
        period_seconds=300,
        value=OUTBOX_AGE_VALUE,
        unit="Seconds",
        statistic="Maximum",
        comparison="GreaterThanThreshold",
        # The relays log every minute, idle or not: a silent period is a relay that is gone.
        missing_data="breaching",
    )


def _compensation_failed(name_prefix: str, alerts_topic_arn: pulumi.Input[str]) -> LogMetric:
    """Orders the saga could not compensate: a refund or release failed for good."""
    return LogMetric(
        key="saga-compensation-failed",
        pattern=COMPENSATION_FAILED_PATTERN,
        namespace=metric_namespace(name_prefix),
        metric_name=COMPENSATION_FAILED_METRIC,
        alarm_name=f"{name_prefix}-{SAGA_SERVICE}-saga-compensation-failed",
        description=(
            "An order ended COMPENSATION_FAILED: a compensation (its refund) failed for good "
            "and the order waits for an operator. Search the orders logs for "
            'saga_outcome = "COMPENSATION_FAILED".'
        ),
        alerts_topic_arn=alerts_topic_arn,
        threshold=1,
        period_seconds=300,
    )


def _emails_unsettled(name_prefix: str, alerts_topic_arn: pulumi.Input[str]) -> LogMetric:
    """Emails whose exactly-once sending could not be settled by SES's Send event."""
    return LogMetric(
        key="emails-unsettled",
        pattern=EMAIL_OUTCOME_UNSETTLED,
        namespace=metric_namespace(name_prefix),
        metric_name=EMAIL_UNSETTLED_METRIC,
        alarm_name=f"{name_prefix}-{EMAIL_SENDER}-emails-unsettled",
        description=(
            f"The {EMAIL_SENDER} could not settle an email with SES's Send event: sent again "
            "because a send's outcome was unknown and no Send event came within the lease "
            "(resent), SES reported a second acceptance (duplicate), or the last attempt's "
            "outcome stayed unknown (abandoned, FAILED). Search the notifier's logs for "
            "email_outcome."
        ),
        alerts_topic_arn=alerts_topic_arn,
        threshold=1,
        period_seconds=300,
    )


def _environment_of(
    settings: StackSettings, endpoint: DatabaseEndpoint, service: ServiceName, account_id: str
) -> EnvironmentOf:
    def environment(process: Process) -> dict[str, pulumi.Input[str]]:
        return process_environment(settings, endpoint, service, process, account_id)

    return environment


def _dkim_records(
    identity: str, attributes: aws.sesv2.outputs.EmailIdentityDkimSigningAttributes | None
) -> list[str]:
    """`<name> CNAME <value>` for each Easy DKIM token SES hands out for a domain."""
    tokens = [] if attributes is None or "@" in identity else list(attributes.tokens or [])
    return [f"{token}._domainkey.{identity} CNAME {token}.dkim.amazonses.com" for token in tokens]


def _otlp_port(endpoint: str | None) -> int | None:
    """The port tasks export spans to, when it is not HTTPS's (OTLP/gRPC's 4317, say)."""
    if not endpoint:
        return None
    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    return None if port == HTTPS else port


def _published_topic(topology: Topology, service: ServiceName) -> Topic | None:
    return next((t for t in topology.topics if t.publisher == service), None)
