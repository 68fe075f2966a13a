"""One stack's settings: the typed, validated view of its `Pulumi.<stack>.yaml`."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar, cast, get_args

import pulumi

from eventforge.ingest.bootstrap import SecretsError, checked_secrets
from eventforge.ingest.domain.sources import declared_sources
from eventforge.runtime.settings import SERVICES, ServiceName

Role = Literal["api", "worker", "relay"]
ROLES: tuple[Role, ...] = get_args(Role)
Egress = Literal["public", "nat", "nat-per-az"]
EGRESS: tuple[Egress, ...] = get_args(Egress)
Architecture = Literal["arm64", "x86_64"]
ARCHITECTURES: tuple[Architecture, ...] = get_args(Architecture)

PROJECT = "eventforge"
ALL_SERVICES: tuple[ServiceName, ...] = get_args(ServiceName)
"""Every service: the gRPC ones (`SERVICES`) and ingest, which answers HTTP."""
INGEST_SECRETS_KEY = "ingestSecrets"
T = TypeVar("T")

_IDENTITY = re.compile(r"[a-z][a-z0-9-]{0,62}")
# CloudWatch Logs accepts only these retention periods.
_LOG_RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557}
    | {2922, 3288, 3653}
)
# Fargate's task sizes: CPU units -> allowed memory (MiB), inclusive range and step.
_FARGATE_MEMORY = {
    256: (512, 2048, 512),
    512: (1024, 4096, 1024),
    1024: (2048, 8192, 1024),
    2048: (4096, 16384, 1024),
    4096: (8192, 30720, 1024),
}


class ConfigError(ValueError):
    """A stack's configuration is missing a value or holds an invalid one."""


@dataclass(frozen=True)
class NetworkSettings:
    """The VPC: its address range, how many AZs, and how tasks reach the internet and AWS."""

    cidr: str
    az_count: int
    egress: Egress
    """How tasks reach the internet (webhooks, SES) and AWS APIs: `public` runs them in public
    subnets with public IPs and no inbound rule (no NAT: the cheap dev shape), `nat` through one
    NAT gateway, `nat-per-az` through a NAT gateway in every AZ (no AZ single point of failure)."""
    vpc_endpoints: bool
    """Interface endpoints for the AWS APIs the tasks call (private traffic, $0.01/h per AZ
    each); without them those calls go through the NAT gateway or the public IPs."""


@dataclass(frozen=True)
class IngressSettings:
    """Who may reach the APIs through the internal Network Load Balancer."""

    allowed_cidrs: tuple[str, ...]
    """Client address ranges allowed to the gRPC listeners (default: the VPC's own range)."""
    endpoint_service_principals: tuple[str, ...]
    """IAM principals (ARNs) allowed to connect through a PrivateLink endpoint service; empty:
    no endpoint service."""


@dataclass(frozen=True)
class DatabaseSettings:
    """The RDS PostgreSQL instance's size, durability and protection."""

    instance_class: str
    allocated_storage_gb: int
    max_allocated_storage_gb: int
    backup_retention_days: int
    multi_az: bool
    deletion_protection: bool


@dataclass(frozen=True)
class IngestSettings:
    """The inbound webhooks' HTTP API and function: how much traffic they admit."""

    burst_limit: int
    """The API's throttling burst (requests at once) before it answers 429."""
    rate_limit: float
    """The API's steady throttling rate (requests per second)."""
    reserved_concurrency: int
    """The function's reserved (and so maximum) concurrency: each instance holds database
    connections, so a burst of webhooks queues at the API instead of exhausting them."""
    memory: int
    """The function's memory (MiB), which also sets its CPU share."""


INGEST_DEFAULTS = IngestSettings(burst_limit=50, rate_limit=25, reserved_concurrency=5, memory=512)
"""`ingest` when the stack file leaves it (or any of its keys) out."""


@dataclass(frozen=True)
class RoleSize:
    """Size and scaling of one process role (api, worker or relay) of every service."""

    cpu: int
    memory: int
    desired_count: int
    max_count: int
    scaling_target: float | None
    """api: average CPU %; worker: visible messages per queue; None: not autoscaled."""


@dataclass(frozen=True)
class AlarmSettings:
    """Thresholds of the queue and outbox alarms."""

    dlq_depth: int
    """Alarm when a DLQ holds more than this many messages."""
    oldest_message_age_seconds: int
    """Alarm when a queue's oldest message is older than this."""
    outbox_oldest_age_seconds: int
    """Alarm when a service's oldest unpublished outbox row is older than this (as its relays
    log it every minute), or when they log nothing for 5 minutes."""


@dataclass(frozen=True)
class StackSettings:
    """Everything that differs between stacks; the program reads nothing else."""

    stack: str
    region: str
    name_prefix: str
    image_tag: str | None
    """The image every task and function runs; None: the backbone phase, with no compute."""
    architecture: Architecture
    """CPU architecture of the image, the tasks and the functions (arm64: Graviton)."""
    combined_roles: bool
    """Run each service's roles (api, worker, relay) in one task, as `make up` does locally,
    sized and scaled as the `api` role; False: one ECS service per role."""
    container_insights: bool
    network: NetworkSettings
    ingress: IngressSettings | None
    database: DatabaseSettings
    roles: Mapping[Role, RoleSize]
    log_retention_days: int
    dlq_max_receives: int | None
    """Overrides every queue's max receives; None keeps the topology's per-queue value."""
    alarms: AlarmSettings
    lambda_consumers: frozenset[ServiceName]
    """Services whose queue consumer runs as a Lambda function instead of an ECS worker."""
    ingest: IngestSettings
    ingest_secrets: pulumi.Output[str]
    """The webhook sources' shared secrets, `{"<source>": "<secret>"}` as JSON: a secret
    Output, only ever written into its Secrets Manager secret."""
    grpc_mtls: bool
    """mTLS between every process, with certificates from the stack's own CA."""
    grpc_clients: tuple[str, ...]
    """Certificate names the APIs accept as clients (AUTHZ_CLIENTS); each gets a certificate."""
    cors_allowed_origins: tuple[str, ...]
    ses_identity: str
    """The verified SES identity (a domain or an address) the notifier sends from."""
    email_sender: str
    """The notifier's From address: the identity itself or an address of its domain."""
    alert_emails: tuple[str, ...]
    otel_exporter_endpoint: str | None
    noncurrent_version_days: int
    """How long versioned buckets keep overwritten or deleted object versions."""


def load_settings() -> StackSettings:
    """Read and validate the current stack's configuration."""
    config = pulumi.Config(PROJECT)
    region = pulumi.Config("aws").require("region")
    settings = StackSettings(
        stack=pulumi.get_stack(),
        region=region,
        name_prefix=config.require("namePrefix"),
        image_tag=config.get("imageTag") or None,
        architecture=_choice(config.get("architecture") or "arm64", ARCHITECTURES, "architecture"),
        combined_roles=config.get_bool("combinedRoles") or False,
        container_insights=config.get_bool("containerInsights") or False,
        network=_network(_object(config, "network")),
        ingress=_ingress(config.get_object("ingress")),
        database=_database(_object(config, "database")),
        roles=_roles(_object(config, "roles")),
        log_retention_days=config.require_int("logRetentionDays"),
        dlq_max_receives=config.get_int("dlqMaxReceives"),
        alarms=_alarms(_object(config, "alarms")),
        lambda_consumers=frozenset(_services(config.get_object("lambdaConsumers") or [])),
        ingest=_ingest(config.get_object("ingest")),
        ingest_secrets=_ingest_secrets(config),
        grpc_mtls=config.require_bool("grpcMtls"),
        grpc_clients=_strings(config.get_object("grpcClients") or ["operator"], "grpcClients"),
        cors_allowed_origins=_strings(
            config.get_object("corsAllowedOrigins") or [], "corsAllowedOrigins"
        ),
        ses_identity=config.require("sesIdentity"),
        email_sender=config.require("emailSender"),
        alert_emails=_strings(config.get_object("alertEmails") or [], "alertEmails"),
        otel_exporter_endpoint=config.get("otelExporterEndpoint"),
        noncurrent_version_days=config.get_int("noncurrentVersionDays") or 30,
    )
    _validate(settings)
    return settings


def _object(config: pulumi.Config, key: str) -> Mapping[str, object]:
    value = config.require_object(key)
    if not isinstance(value, dict):
        raise ConfigError(f"{PROJECT}:{key} must be an object")
    return cast("Mapping[str, object]", value)


def _fields(
    value: Mapping[str, object], where: str, required: set[str], optional: set[str]
) -> None:
    missing = required - value.keys()
    unknown = value.keys() - required - optional
    if missing or unknown:
        raise ConfigError(f"{where}: missing {sorted(missing)}, unknown {sorted(unknown)}")


def _int(value: Mapping[str, object], key: str, where: str) -> int:
    item = value[key]
    if isinstance(item, bool) or not isinstance(item, int):
        raise ConfigError(f"{where}.{key} must be an integer")
    return item


def _bool(value: Mapping[str, object], key: str, where: str) -> bool:
    item = value[key]
    if not isinstance(item, bool):
        raise ConfigError(f"{where}.{key} must be true or false")
    return item


def _str(value: Mapping[str, object], key: str, where: str) -> str:
    item = value[key]
    if not isinstance(item, str) or not item:
        raise ConfigError(f"{where}.{key} must be a non-empty string")
    return item


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} must be a list of non-empty strings")
    return tuple(value)


def _services(value: object) -> tuple[ServiceName, ...]:
    names = _strings(value, "lambdaConsumers")
    unknown = [n for n in names if n not in ALL_SERVICES]
    if unknown:
        raise ConfigError(f"lambdaConsumers: unknown services {unknown}")
    return cast("tuple[ServiceName, ...]", names)


def _choice(value: object, choices: tuple[T, ...], where: str) -> T:
    for choice in choices:
        if value == choice:
            return choice
    raise ConfigError(f"{where} must be one of {', '.join(map(str, choices))}, not {value!r}")


def _ingest(value: object) -> IngestSettings:
    """The `ingest` object; absent, or a key left out: `INGEST_DEFAULTS`."""
    if value is None:
        return INGEST_DEFAULTS
    if not isinstance(value, dict):
        raise ConfigError(f"{PROJECT}:ingest must be an object")
    keys = {"burstLimit", "rateLimit", "reservedConcurrency", "memory"}
    _fields(value, "ingest", set(), keys)
    rate = value.get("rateLimit", INGEST_DEFAULTS.rate_limit)
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise ConfigError("ingest.rateLimit must be a number")
    defaults = {
        "burstLimit": INGEST_DEFAULTS.burst_limit,
        "reservedConcurrency": INGEST_DEFAULTS.reserved_concurrency,
        "memory": INGEST_DEFAULTS.memory,
    }
    given = {**defaults, **{k: v for k, v in value.items() if k in defaults}}
    return IngestSettings(
        burst_limit=_int(given, "burstLimit", "ingest"),
        rate_limit=float(rate),
        reserved_concurrency=_int(given, "reservedConcurrency", "ingest"),
        memory=_int(given, "memory", "ingest"),
    )


def _ingest_secrets(config: pulumi.Config) -> pulumi.Output[str]:
    """The required secret `ingestSecrets`, checked here and handed on only as a secret.

    It is checked before anything is declared, by ingest's own rules (`checked_secrets`); no
    message ever quotes a value.
    """
    value = config.get_object(INGEST_SECRETS_KEY)
    if value is None:
        raise ConfigError(
            f"{PROJECT}:{INGEST_SECRETS_KEY} is required: the inbound webhook sources' shared "
            'secrets, a JSON object {"<source>": "<secret>"}; set it encrypted: '
            f"pulumi config set --secret {INGEST_SECRETS_KEY} '<that JSON>'"
        )
    raw = json.dumps(value, sort_keys=True)
    try:
        # The rules ingest itself applies against AWS: exactly its declared sources, each with
        # one or more secrets (a rotation), none a development secret or a short one.
        checked_secrets(raw, declared_sources(), local=False)
    except SecretsError as error:
        raise ConfigError(f"{PROJECT}:{INGEST_SECRETS_KEY}: {error}") from None
    return pulumi.Output.secret(raw)


def _network(value: Mapping[str, object]) -> NetworkSettings:
    _fields(value, "network", {"cidr", "azCount", "egress", "vpcEndpoints"}, set())
    return NetworkSettings(
        cidr=_str(value, "cidr", "network"),
        az_count=_int(value, "azCount", "network"),
        egress=_choice(value["egress"], EGRESS, "network.egress"),
        vpc_endpoints=_bool(value, "vpcEndpoints", "network"),
    )


def _ingress(value: object) -> IngressSettings | None:
    """The `ingress` object; absent or null: no load balancer, the APIs are for the stack only."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{PROJECT}:ingress must be an object")
    _fields(value, "ingress", set(), {"allowedCidrs", "endpointServicePrincipals"})
    return IngressSettings(
        allowed_cidrs=_strings(value.get("allowedCidrs", []), "ingress.allowedCidrs"),
        endpoint_service_principals=_strings(
            value.get("endpointServicePrincipals", []), "ingress.endpointServicePrincipals"
        ),
    )


def _database(value: Mapping[str, object]) -> DatabaseSettings:
    keys = {
        "instanceClass",
        "allocatedStorageGb",
        "maxAllocatedStorageGb",
        "backupRetentionDays",
        "multiAz",
        "deletionProtection",
    }
    _fields(value, "database", keys, set())
    return DatabaseSettings(
        instance_class=_str(value, "instanceClass", "database"),
        allocated_storage_gb=_int(value, "allocatedStorageGb", "database"),
        max_allocated_storage_gb=_int(value, "maxAllocatedStorageGb", "database"),
        backup_retention_days=_int(value, "backupRetentionDays", "database"),
        multi_az=_bool(value, "multiAz", "database"),
        deletion_protection=_bool(value, "deletionProtection", "database"),
    )


def _roles(value: Mapping[str, object]) -> dict[Role, RoleSize]:
    _fields(value, "roles", {"api"}, {"worker", "relay"})
    sizes: dict[Role, RoleSize] = {}
    for role in (r for r in ROLES if r in value):
        where = f"roles.{role}"
        size = value[role]
        if not isinstance(size, dict):
            raise ConfigError(f"{where} must be an object")
        required = {"cpu", "memory", "desiredCount", "maxCount"}
        _fields(size, where, required, {"scalingTarget"})
        target = size.get("scalingTarget")
        if target is not None and (isinstance(target, bool) or not isinstance(target, int | float)):
            raise ConfigError(f"{where}.scalingTarget must be a number")
        sizes[role] = RoleSize(
            cpu=_int(size, "cpu", where),
            memory=_int(size, "memory", where),
            desired_count=_int(size, "desiredCount", where),
            max_count=_int(size, "maxCount", where),
            scaling_target=None if target is None else float(target),
        )
    return sizes


def _alarms(value: Mapping[str, object]) -> AlarmSettings:
    _fields(
        value, "alarms", {"dlqDepth", "oldestMessageAgeSeconds", "outboxOldestAgeSeconds"}, set()
    )
    return AlarmSettings(
        dlq_depth=_int(value, "dlqDepth", "alarms"),
        oldest_message_age_seconds=_int(value, "oldestMessageAgeSeconds", "alarms"),
        outbox_oldest_age_seconds=_int(value, "outboxOldestAgeSeconds", "alarms"),
    )


def _validate(settings: StackSettings) -> None:
    problems: list[str] = []
    if not 2 <= settings.network.az_count <= 3:
        # RDS needs a subnet group in at least two AZs, Multi-AZ or not.
        problems.append("network.azCount must be 2..3")
    if settings.lambda_consumers and settings.network.egress == "public":
        # A function in a VPC never gets a public IP: it needs a NAT gateway.
        problems.append("lambdaConsumers need network.egress nat or nat-per-az")
    if settings.ingress is not None:
        for cidr in settings.ingress.allowed_cidrs:
            try:
                ipaddress.IPv4Network(cidr)
            except ValueError:
                problems.append(f"ingress.allowedCidrs: {cidr!r} is not an IPv4 range")
    if settings.log_retention_days not in _LOG_RETENTION_DAYS:
        problems.append(f"logRetentionDays {settings.log_retention_days} is not a CloudWatch value")
    ingest = settings.ingest
    if ingest.burst_limit < 1 or ingest.rate_limit <= 0:
        problems.append("ingest.burstLimit and ingest.rateLimit must be positive")
    if ingest.reserved_concurrency < 1:
        problems.append("ingest.reservedConcurrency must be at least 1")
    if not 128 <= ingest.memory <= 10240:
        problems.append("ingest.memory must be 128..10240 MiB")
    if settings.dlq_max_receives is not None and not 1 <= settings.dlq_max_receives <= 1000:
        problems.append("dlqMaxReceives must be 1..1000")
    if settings.alarms.outbox_oldest_age_seconds < 1:
        problems.append("alarms.outboxOldestAgeSeconds must be at least 1")
    taken = sorted(set(settings.grpc_clients) & set(SERVICES))
    if taken:
        problems.append(f"grpcClients {taken} are service names")
    if any(not _IDENTITY.fullmatch(name) for name in settings.grpc_clients):
        problems.append("grpcClients must be lowercase names (letters, digits, -)")
    database = settings.database
    if database.max_allocated_storage_gb < database.allocated_storage_gb:
        problems.append("database.maxAllocatedStorageGb is below allocatedStorageGb")
    if not 0 <= database.backup_retention_days <= 35:
        problems.append("database.backupRetentionDays must be 0..35")
    missing = [r for r in ROLES if r not in settings.roles]
    if not settings.combined_roles and missing:
        problems.append(f"roles: {missing} are required unless combinedRoles is true")
    if settings.lambda_consumers and "worker" not in settings.roles:
        problems.append("roles.worker is required with lambdaConsumers (the functions' size)")
    for role, size in settings.roles.items():
        memory = _FARGATE_MEMORY.get(size.cpu)
        if memory is None or size.memory not in range(memory[0], memory[1] + 1, memory[2]):
            problems.append(f"roles.{role}: {size.cpu} CPU / {size.memory} MiB is no Fargate size")
        if not 0 <= size.desired_count <= size.max_count:
            problems.append(f"roles.{role}: desiredCount must be 0..maxCount")
        if role != "relay" and size.scaling_target is None:
            problems.append(f"roles.{role}: scalingTarget is required")
    identity = settings.ses_identity
    if settings.email_sender not in (identity, f"{settings.email_sender.split('@')[0]}@{identity}"):
        problems.append(f"emailSender {settings.email_sender} is not of sesIdentity {identity}")
    if problems:
        raise ConfigError(f"stack {settings.stack}: " + "; ".join(problems))
