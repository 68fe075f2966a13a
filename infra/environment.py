"""The environment variables of every process, as `eventforge.runtime.settings` reads them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi

from eventforge.runtime.settings import SERVICES, ServiceName, Settings
from infra.components.platform import namespace_name
from infra.config import Role, StackSettings

SCRATCH_DIR = "/tmp"  # noqa: S108 (a private volume of the task: its root filesystem is read-only)
DATA_DIR = f"{SCRATCH_DIR}/eventforge"
BIND_ALL = "0.0.0.0"
# Reserved by Lambda, which sets it itself.
LAMBDA_RESERVED = frozenset({"AWS_REGION", "AWS_DEFAULT_REGION"})


def grpc_port(service: ServiceName) -> int:
    """The gRPC port of a service: the port of its default address in the runtime settings."""
    default = Settings.model_fields[f"{service}_addr"].default
    return int(str(default).rsplit(":", 1)[1])


@dataclass(frozen=True)
class DatabaseEndpoint:
    """Where PostgreSQL answers; the password is injected separately, from its secret."""

    address: pulumi.Input[str]
    port: pulumi.Input[int]
    name: str
    username: str

    def url(self) -> pulumi.Output[str]:
        """A URL without a password: libpq takes it from PGPASSWORD (the injected secret)."""
        return pulumi.Output.format(
            "postgresql://{0}@{1}:{2}/{3}", self.username, self.address, self.port, self.name
        )


def process_environment(
    settings: StackSettings,
    database: DatabaseEndpoint,
    service: ServiceName,
    role: Role | None,
) -> dict[str, pulumi.Input[str]]:
    """The variables of one process (`role` None: the service's Lambda consumer)."""
    environment: dict[str, pulumi.Input[str]] = {
        "DATABASE_URL": database.url(),
        "PGSSLMODE": "require",
        "AWS_REGION": settings.region,
        "EVENTFORGE_NAME_PREFIX": settings.name_prefix,
        "EVENTFORGE_DATA_DIR": DATA_DIR,
        # Spans go to OTLP (otelExporterEndpoint); a span file would only fill the task's disk.
        "EVENTFORGE_SPAN_FILE_ENABLED": "false",
        "OTEL_SERVICE_NAME": f"eventforge-{service}",
        "OTEL_RESOURCE_ATTRIBUTES": (
            f"deployment.environment={settings.stack},service.namespace=eventforge,"
            f"eventforge.role={role or 'lambda-consumer'}"
        ),
        **_addresses(settings.name_prefix, service if role == "api" else None),
    }
    if settings.grpc_mtls:
        # The certificate itself comes as EVENTFORGE_TLS_BUNDLE, from its secret.
        environment["EVENTFORGE_AUTHZ_CLIENTS"] = ",".join(settings.grpc_clients)
    if service == "notifier":
        environment["EVENTFORGE_NOTIFIER_EMAIL_SENDER"] = settings.email_sender
    if settings.otel_exporter_endpoint:
        environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = settings.otel_exporter_endpoint
    if role is None:
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
