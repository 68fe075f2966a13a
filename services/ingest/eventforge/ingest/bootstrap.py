"""Wire ingest: engines, units of work, and the declared sources with their secrets."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from eventforge.ingest.domain.sources import Source, declared_sources
from eventforge.ingest.service_layer.receive import Inbound
from eventforge.ingest.service_layer.unit_of_work import AsyncSqlUnitOfWork
from eventforge.runtime.db import create_async_service_engine, create_service_engine, relay_waker
from eventforge.runtime.messaging.wakeup import RelayWaker
from eventforge.runtime.settings import Settings

LOCAL_SECRETS = {"payments": "whsec_local_payments", "acquirer": "local-acquirer-secret"}
"""The development secrets of the local stack (the README's examples sign with them); refused
against real AWS."""
MIN_SECRET_LENGTH = 16


class SecretsError(ValueError):
    """INGEST_SECRETS is missing, unreadable, or not fit for where ingest runs."""


@dataclass
class IngestApp:
    """Everything the ingest entrypoints need, created once per process."""

    settings: Settings
    engine: Engine
    """The threaded engine: the worker's jobs, and the relays' wake-ups."""
    waker: RelayWaker | None = None
    """Wakes the relays after commits that recorded events (None on SQLite: they poll)."""
    api_pool_size: int | None = None

    @cached_property
    def async_engine(self) -> AsyncEngine:
        """The asyncio engine of the HTTP API (created on first use, by the API)."""
        return create_async_service_engine(self.settings, "ingest", self.api_pool_size)

    def async_uow(self) -> AsyncSqlUnitOfWork:
        wake = None if self.waker is None else self.waker.wake
        return AsyncSqlUnitOfWork(self.async_engine, wake)


def bootstrap(settings: Settings, *, api_pool_size: int | None = None) -> IngestApp:
    """Ingest on its database; nothing connects until first used. `api_pool_size`: the asyncio
    pool's connections (GRPC_MAX_WORKERS by default; one for a Lambda function)."""
    engine = create_service_engine(settings, "ingest", pool_size=2)
    return IngestApp(settings, engine, relay_waker(engine), api_pool_size)


def inbound(settings: Settings) -> Inbound:
    """The declared sources with their secrets; raises SecretsError when they are not fit."""
    sources = declared_sources(settings.ingest_tolerance_seconds)
    return Inbound(
        sources=sources,
        secrets=source_secrets(settings, sources),
        retention=timedelta(days=settings.ingest_retention_days),
    )


def source_secrets(settings: Settings, sources: dict[str, Source]) -> dict[str, tuple[str, ...]]:
    """Each source's secrets (several during a rotation) from INGEST_SECRETS.

    Unset, the local stack (an AWS emulator: AWS_ENDPOINT_URL) gets `LOCAL_SECRETS`; against
    real AWS it is an error, as are the development secrets and short ones.
    """
    local = settings.aws_endpoint_url is not None
    if settings.ingest_secrets is None:
        if not local:
            raise SecretsError(
                "ingest needs its sources' secrets against AWS: set EVENTFORGE_INGEST_SECRETS "
                "(or EVENTFORGE_INGEST_SECRETS_ARN, the Secrets Manager secret holding them)"
            )
        return {name: (secret,) for name, secret in LOCAL_SECRETS.items()}
    return checked_secrets(settings.ingest_secrets.get_secret_value(), sources, local=local)


def checked_secrets(
    raw: str, sources: Mapping[str, Source], *, local: bool
) -> dict[str, tuple[str, ...]]:
    """The secrets JSON `raw` parsed and checked: exactly the declared sources, and (`local`
    False: real AWS) none a development secret or shorter than MIN_SECRET_LENGTH. The Pulumi
    program checks its `ingestSecrets` with it too. No message quotes a secret."""
    secrets = _parse(raw)
    if set(secrets) != set(sources):
        raise SecretsError(
            f"the secrets name the sources {sorted(secrets)}; the declared sources are "
            f"{sorted(sources)}"
        )
    if not local:
        for name, values in secrets.items():
            if LOCAL_SECRETS.get(name) in values or min(map(len, values)) < MIN_SECRET_LENGTH:
                raise SecretsError(
                    f"the {name} secret is the development one or shorter than "
                    f"{MIN_SECRET_LENGTH} characters: refused against AWS"
                )
    return secrets


def _parse(raw: str) -> dict[str, tuple[str, ...]]:
    problem = 'the secrets must be JSON {"<source>": "<secret>" or ["<secret>", ...]}'
    try:
        document = json.loads(raw)
    except ValueError:
        raise SecretsError(problem) from None
    if not isinstance(document, dict):
        raise SecretsError(problem)
    secrets: dict[str, tuple[str, ...]] = {}
    for name, value in document.items():
        values = (value,) if isinstance(value, str) else value
        if not isinstance(values, list | tuple) or not values:
            raise SecretsError(problem)
        if not all(isinstance(v, str) and v for v in values):
            raise SecretsError(problem)
        secrets[name] = tuple(values)
    return secrets
