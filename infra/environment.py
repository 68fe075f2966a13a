"""The environment variables of every process, as `eventforge.runtime.settings` reads them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi

from eventforge.runtime.db import database_role
from eventforge.runtime.settings import SERVICES, ServiceName, Settings
from infra.components.platform import namespace_name
from infra.config import Role, StackSettings

HEALTH_HTTP_PORT = 8081
"""Port of every API's HTTP health endpoint (`/healthz`, mirrors gRPC health): probed by the
container health check and the load balancer, since the gRPC port speaks mTLS."""
SCRATCH_DIR = "/tmp"  # noqa: S108 (a private volume of the task: its root filesystem is read-only)
DATA_DIR = f"{SCRATCH_DIR}/eventforge"
BIND_ALL = "0.0.0.0"
# Reserved by Lambda, which sets it itself.
LAMBDA_RESERVED = frozenset({"AWS_REGION", "AWS_DEFAULT_REGION"})

FunctionKind = Literal["lambda-consumer", "lambda-http"]
"""A service's Lambda function: its queue consumer, or the HTTP handler behind an API."""
Process = Sequence[Role] | FunctionKind
"""What a process runs: ECS roles, or one of the service's functions."""


def grpc_port(service: ServiceName) -> int:
    """The gRPC port of a service: the port of its default address in the runtime settings."""
    default = Settings.model_fields[f"{service}_addr"].default
    return int(str(default).rsplit(":", 1)[1])


@dataclass(frozen=True)
class DatabaseEndpoint:
    """Where PostgreSQL answers; no URL carries a password."""

    address: pulumi.Input[str]
    port: pulumi.Input[int]
    name: str

    def url(self, username: str) -> pulumi.Output[str]:
        """A URL without a password, logging in as `username`."""
        return pulumi.Output.format(
            "postgresql://{0}@{1}:{2}/{3}", username, self.address, self.port, self.name
        )


def migrate_environment(
    settings: StackSettings, database: DatabaseEndpoint, master_username: str
) -> dict[str, pulumi.Input[str]]:
    """The one-shot migration container's variables: the master user, whose password ECS
    injects from the RDS-managed secret when the container starts (so a rotation is picked
    up at the next start, and no long-lived process holds it)."""
    return {
        "DATABASE_URL": database.url(master_username),
        "PGSSLMODE": "require",
        "EVENTFORGE_DATABASE_AUTH": "password",
        "AWS_REGION": settings.region,
        "EVENTFORGE_DATA_DIR": DATA_DIR,
        "EVENTFORGE_SPAN_FILE_ENABLED": "false",
    }


def process_environment(
    settings: StackSettings,
    database: DatabaseEndpoint,
    service: ServiceName,
    process: Process,
    account_id: str,
) -> dict[str, pulumi.Input[str]]:
    """The variables of one process: an ECS task running roles, or a function.

    Every process logs in as its service's own database role with an RDS IAM token made for
    each new connection (no password to inject, nothing for a rotation to break).
    """
    serves = not isinstance(process, str) and "api" in process
    environment: dict[str, pulumi.Input[str]] = {
        "DATABASE_URL": database.url(database_role(service)),
        "PGSSLMODE": "require",
        "EVENTFORGE_DATABASE_AUTH": "iam",
        "AWS_REGION": settings.region,
        "EVENTFORGE_AWS_ACCOUNT_ID": account_id,
        "EVENTFORGE_NAME_PREFIX": settings.name_prefix,
        "EVENTFORGE_DATA_DIR": DATA_DIR,
        # Spans go to OTLP (otelExporterEndpoint); a span file would only fill the task's disk.
        "EVENTFORGE_SPAN_FILE_ENABLED": "false",
        "OTEL_SERVICE_NAME": f"eventforge-{service}",
        "OTEL_RESOURCE_ATTRIBUTES": (
            f"deployment.environment={settings.stack},service.namespace=eventforge,"
            f"eventforge.role={process if isinstance(process, str) else '+'.join(process)}"
        ),
        **_addresses(settings.name_prefix, service if serves else None),
    }
    if serves:
        environment["EVENTFORGE_HEALTH_HTTP_ADDR"] = f"{BIND_ALL}:{HEALTH_HTTP_PORT}"
    if settings.grpc_mtls and service in SERVICES:
        # The certificate itself comes as EVENTFORGE_TLS_BUNDLE, from its secret.
        environment["EVENTFORGE_AUTHZ_CLIENTS"] = ",".join(settings.grpc_clients)
    if service == "notifier":
        environment["EVENTFORGE_NOTIFIER_EMAIL_SENDER"] = settings.email_sender
    if settings.otel_exporter_endpoint:
        environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = settings.otel_exporter_endpoint
    if isinstance(process, str):
        environment = {k: v for k, v in environment.items() if k not in LAMBDA_RESERVED}
        environment["EVENTFORGE_SERVICE"] = service
    return environment


def _addresses(name_prefix: str, serving: ServiceName | None) -> Mapping[str, str]:
    """Each API's address: its Cloud Map name, or all interfaces for the API that listens."""
    domain = namespace_name(name_prefix)
    return {
        f"EVENTFORGE_{other.upper()}_ADDR": (
            f"{BIND_ALL if other == serving else f'{other}.{domain}'}:{grpc_port(other)}"
        )
        for other in SERVICES
    }
