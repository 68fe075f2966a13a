"""One settings object for every EventForge process, read from the environment."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ServiceName = Literal["orders", "files", "notifier", "ingest"]
"""Every service: each owns a database, publishes its events through an outbox, and consumes."""
SERVICES: tuple[ServiceName, ...] = ("orders", "files", "notifier")
"""The services with a gRPC API (`ingest` answers HTTP: the inbound webhooks)."""
ALL_SERVICES: tuple[ServiceName, ...] = (*SERVICES, "ingest")
"""Every service: each has a database to migrate and a worker and relay to run."""
DatabaseAuth = Literal["password", "iam", "secret"]
DEFAULT_DATABASE_ROLE_PREFIX = "eventforge"


class Settings(BaseSettings):
    """Configuration shared by all services; each field documents its variable in the README."""

    model_config = SettingsConfigDict(env_prefix="EVENTFORGE_", extra="ignore", frozen=True)

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "EVENTFORGE_DATABASE_URL"),
        description="SQLAlchemy URL of PostgreSQL; unset means one SQLite file per service.",
    )
    database_auth: DatabaseAuth = Field(
        default="password",
        description="Where PostgreSQL passwords come from: `password` (the URL or PGPASSWORD, "
        "as libpq reads them), `iam` (a fresh RDS IAM token per new connection, for the URL's "
        "user; needs TLS, e.g. PGSSLMODE=require) or `secret` (the Secrets Manager secret "
        "DATABASE_SECRET_ARN, read when connecting). SQLite ignores it.",
    )
    database_secret_arn: str | None = Field(
        default=None,
        description='With DATABASE_AUTH=secret: the secret holding JSON `{"username", '
        '"password"}` (as RDS-managed secrets do); its username, when present, replaces '
        "the URL's.",
    )
    database_secret_cache_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long a database secret read is reused for new connections; a "
        "refused password drops it at once (a rotation costs one failed attempt).",
    )
    database_role_prefix: str = Field(
        default=DEFAULT_DATABASE_ROLE_PREFIX,
        pattern=r"^[a-z_][a-z0-9_]{0,40}$",
        description="`migrate --service-roles` names each service's role `<prefix>_<service>`; "
        "change it only to keep several deployments (or test runs) apart on one server.",
    )
    data_dir: Path = Field(
        default=Path(".eventforge"),
        description="Where SQLite files, the local span file and process logs are kept.",
    )
    aws_endpoint_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_ENDPOINT_URL", "EVENTFORGE_AWS_ENDPOINT_URL"),
        description="AWS endpoint (the local emulator); unset means real AWS.",
    )
    aws_region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION", "EVENTFORGE_AWS_REGION"),
    )
    aws_account_id: str | None = Field(
        default=None,
        description="The AWS account the stack runs in (set by the cloud stacks): qualifies S3 "
        "bucket names as `<prefix>-<name>-<account>-<region>`, since bucket names are global.",
    )
    name_prefix: str = Field(
        default="eventforge",
        description="Prefix of every topic, queue and bucket name (one per environment).",
    )
    orders_addr: str = "127.0.0.1:50051"
    files_addr: str = "127.0.0.1:50052"
    notifier_addr: str = "127.0.0.1:50053"
    grpc_max_workers: int = Field(default=16, ge=1)
    api_processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="API processes `eventforge up` runs per service, all serving the service's "
        "port (SO_REUSEPORT: the kernel spreads client connections over them). In the cloud "
        "each task runs one, and the service scales by tasks.",
    )
    catalogue_cache_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How long an orders API process keeps the catalogue products it read (their "
        "names, prices and currencies, which CreateOrder checks requests against); 0 reads them "
        "for every call. A price change applies to new orders within this time.",
    )
    payment_pending_timeout_seconds: float = Field(
        default=900.0,
        gt=0,
        description='How long an order whose charge the payment provider answered "pending" '
        "waits for the provider's confirmation (payment.succeeded / payment.failed) before the "
        "order-recovery work asks the provider how the charge stands: settled confirms the "
        "order, refused fails it, still pending is voided and the order fails.",
    )
    grpc_max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    grpc_grace_seconds: float = Field(default=5.0, ge=0)
    grpc_deadline_seconds: float = Field(
        default=5.0, gt=0, description="Deadline of outgoing calls that set none."
    )
    grpc_max_connection_age_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Age after which a server asks a client connection to go away (GOAWAY): "
        "clients reconnect and re-resolve DNS, so long-lived callers spread onto new tasks.",
    )
    grpc_max_connection_age_grace_seconds: float = Field(
        default=30.0,
        ge=0,
        description="How long calls in flight on a connection past its maximum age may still "
        "run before the server closes it.",
    )
    health_probe_seconds: float = Field(
        default=2.0, gt=0, description="How often the API probes its database for health."
    )
    health_http_addr: str | None = Field(
        default=None,
        description="host:port of the API's plain-HTTP `GET /healthz` (200 SERVING, else 503), "
        "for container and load balancer health checks; unset means none is served.",
    )
    span_file: Path | None = Field(
        default=None,
        description="JSON-lines file of finished spans; defaults to DATA_DIR/spans.jsonl.",
    )
    trace_sql: bool = Field(
        default=False,
        description="A span per SQL statement and pool connect (SQLAlchemy's instrumentation); "
        "off by default, where each unit of work is one span: statement spans cost more CPU "
        "than the statements on the API's path.",
    )
    span_file_enabled: bool = Field(
        default=True,
        description="Whether to append finished spans to the span file; the cloud stacks turn "
        "it off (spans go to OTLP, and a container's disk must not fill up).",
    )
    worker_concurrency: int = Field(
        default=4, ge=1, description="Messages a worker processes at once, per queue."
    )
    worker_wait_seconds: int = Field(
        default=20, ge=0, le=20, description="Long-polling wait of each queue receive."
    )
    files_max_upload_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1, description="Largest upload CreateUpload accepts."
    )
    files_upload_expiry_seconds: int = Field(
        default=900, ge=60, le=7 * 24 * 3600, description="Lifetime of a presigned upload."
    )
    files_download_expiry_seconds: int = Field(
        default=300, ge=30, le=7 * 24 * 3600, description="Lifetime of a presigned download."
    )
    notifier_email_sender: str = Field(
        default="notifications@eventforge.example", description="From address of every email."
    )
    notifier_email_lease_seconds: float = Field(
        default=120.0,
        ge=1,
        le=3600,
        description="How long an email being sent waits for SES's answer or its Send event "
        "before it is sent again (longer than a send and than SES takes to publish the event).",
    )
    notifier_webhook_allowed_hosts: str = Field(
        default="",
        description="Comma-separated hosts that may be webhook targets over plain http and on "
        "private addresses (local development and tests only).",
    )
    notifier_webhook_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Connect and read timeout of one webhook attempt."
    )
    notifier_webhook_max_attempts: int = Field(
        default=6, ge=1, description="Attempts per webhook delivery before it is FAILED."
    )
    notifier_webhook_failing_after: int = Field(
        default=5, ge=1, description="Consecutive failures that mark an endpoint FAILING."
    )
    notifier_webhook_backoff_seconds: float = Field(
        default=1.0, gt=0, description="Delay ceiling after a delivery's first failed attempt."
    )
    notifier_webhook_backoff_max_seconds: float = Field(
        default=300.0, gt=0, description="Largest delay between two attempts of a delivery."
    )
    notifier_dispatch_concurrency: int = Field(
        default=8, ge=1, description="Webhook attempts and emails in flight at once, per worker."
    )
    notifier_retention_days: int = Field(
        default=30,
        ge=16,
        description="Days finished webhook deliveries and emails are kept; longer than the "
        "inbox keeps events (15 days), so a redelivered event still finds what it caused.",
    )
    ingest_addr: str = Field(
        default="127.0.0.1:8090",
        description="host:port of ingest's HTTP API (`POST /webhooks/{source}`, `GET /healthz`).",
    )
    ingest_secrets: SecretStr | None = Field(
        default=None,
        description='The webhook sources\' shared secrets as JSON, `{"<source>": "<secret>"}` (a '
        "list of secrets during a rotation). Unset, the local stack (AWS_ENDPOINT_URL set) uses "
        "the embedded development secrets, and ingest refuses to start against real AWS.",
    )
    ingest_max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest webhook body ingest reads (else 413)."
    )
    ingest_tolerance_seconds: int = Field(
        default=300,
        ge=1,
        le=3600,
        description="How far a signed timestamp may be from ingest's clock before the delivery "
        "is refused as stale (replay protection of the timestamped signature scheme).",
    )
    ingest_retention_days: int = Field(
        default=30,
        ge=4,
        description="Days the providers' event ids are kept to recognise redeliveries; longer "
        "than providers retry (3 days). Older events are refused, since they could be replays.",
    )
    tls_dir: Path | None = Field(
        default=None,
        description="Directory with ca.pem, <service>.pem and <service>-key.pem: turns on mTLS "
        "between services (servers require client certificates from that CA).",
    )
    tls_bundle: SecretStr | None = Field(
        default=None,
        description='The same material as JSON instead of TLS_DIR: `{"name", "ca", "cert", '
        '"key"}` with PEM values (how cloud processes get it, from Secrets Manager).',
    )
    tls_identity: str = Field(
        default="",
        description="Name of this process's certificate in TLS_DIR when it is not the service's "
        "own (e.g. an operator's client).",
    )
    authz_clients: str = Field(
        default="operator",
        description="Comma-separated certificate names of the API's client services.",
    )
    log_level: str = "INFO"
    emulator_port: int = Field(default=4566, description="Port of the embedded AWS emulator.")
    emulator: Literal["ministack", "moto"] = Field(
        default="ministack",
        description="Which AWS emulator `up` and the tests start: ministack (fast) or moto "
        "(both pass the backbone's fidelity suite; see the README).",
    )
    dashboard_addr: str = Field(
        default="127.0.0.1:8800",
        description="host:port of the local dashboard `eventforge up` serves; empty turns it "
        "off. A loopback address unless DASHBOARD_ALLOW_REMOTE is set.",
    )
    dashboard_allow_remote: bool = Field(
        default=False,
        description="Allow DASHBOARD_ADDR on a non-loopback interface: the dashboard has no "
        "login, and it can redrive and purge dead-letter queues.",
    )

    @model_validator(mode="after")
    def _secret_auth_names_its_secret(self) -> Self:
        if self.database_auth == "secret" and not self.database_secret_arn:
            raise ValueError(
                "EVENTFORGE_DATABASE_AUTH=secret needs EVENTFORGE_DATABASE_SECRET_ARN: the "
                "Secrets Manager secret that holds the database password"
            )
        return self

    @model_validator(mode="after")
    def _dashboard_on_loopback(self) -> Self:
        if not self.dashboard_addr:
            return self
        host, port = split_address(self.dashboard_addr)
        if not 0 < port < 65536:
            raise ValueError(f"EVENTFORGE_DASHBOARD_ADDR={self.dashboard_addr}: invalid port")
        if not self.dashboard_allow_remote and not is_loopback_host(host):
            raise ValueError(
                f"EVENTFORGE_DASHBOARD_ADDR={self.dashboard_addr} is not a loopback address; the "
                "dashboard has no login: set EVENTFORGE_DASHBOARD_ALLOW_REMOTE=true to serve it "
                "on other interfaces anyway"
            )
        return self

    @property
    def dashboard_url(self) -> str | None:
        """The dashboard's base URL (`http://127.0.0.1:8800`), or None when it is turned off."""
        if not self.dashboard_addr:
            return None
        host, port = split_address(self.dashboard_addr)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def address_of(self, service: ServiceName) -> str:
        """The host:port a service listens on and its clients dial (HTTP for ingest)."""
        return {
            "orders": self.orders_addr,
            "files": self.files_addr,
            "notifier": self.notifier_addr,
            "ingest": self.ingest_addr,
        }[service]

    @property
    def webhook_allowed_hosts(self) -> frozenset[str]:
        """The allow-list of NOTIFIER_WEBHOOK_ALLOWED_HOSTS, normalised."""
        hosts = self.notifier_webhook_allowed_hosts.split(",")
        return frozenset(host.strip().lower() for host in hosts if host.strip())

    @property
    def api_clients(self) -> frozenset[str]:
        """Identities allowed to call the public APIs (AUTHZ_CLIENTS)."""
        return frozenset(name.strip() for name in self.authz_clients.split(",") if name.strip())

    @property
    def spans_path(self) -> Path:
        """Where the local span file is written."""
        return self.span_file or self.data_dir / "spans.jsonl"


def split_address(address: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) as its host, without brackets, and its port."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{address!r} is not host:port")
    return host.removeprefix("[").removesuffix("]"), int(port)


def is_loopback_host(host: str) -> bool:
    """Whether `host` is `localhost` or a loopback IP address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
