"""Wire the notifier: engine, units of work, resolver, templates, mailer, HTTP and files clients."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from eventforge.files.v1 import files_pb2_grpc
from eventforge.notifier.adapters.dns import SystemResolver
from eventforge.notifier.adapters.files import GrpcFilesClient
from eventforge.notifier.adapters.http import HttpxWebhookTransport
from eventforge.notifier.adapters.mailer import SesMailer
from eventforge.notifier.adapters.templates import JinjaEmailRenderer
from eventforge.notifier.domain.retry import Backoff
from eventforge.notifier.service_layer.deliveries import DeliveryPolicy
from eventforge.notifier.service_layer.notifications import EmailPolicy
from eventforge.notifier.service_layer.ports import (
    EmailRenderer,
    FilesClient,
    Mailer,
    Resolver,
    WebhookTransport,
)
from eventforge.notifier.service_layer.unit_of_work import SessionUnitOfWork, SqlUnitOfWork
from eventforge.runtime import aws
from eventforge.runtime.db import create_service_engine, session_factory
from eventforge.runtime.grpc.client import channel
from eventforge.runtime.settings import Settings
from eventforge.topology import TOPOLOGY

FILES_SERVICE = "eventforge.files.v1.FilesService"


@dataclass
class NotifierApp:
    """Everything the notifier entrypoints need, created once per process."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    resolver: Resolver
    renderer: EmailRenderer
    mailer: Mailer
    transport: WebhookTransport
    files: FilesClient

    def uow(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.sessions)

    def uow_in(self, session: Session) -> SessionUnitOfWork:
        """A unit of work inside the consumer's transaction."""
        return SessionUnitOfWork(session)

    @property
    def allowed_hosts(self) -> frozenset[str]:
        return self.settings.webhook_allowed_hosts

    @property
    def delivery_policy(self) -> DeliveryPolicy:
        settings = self.settings
        return DeliveryPolicy(
            max_attempts=settings.notifier_webhook_max_attempts,
            failing_after=settings.notifier_webhook_failing_after,
            backoff=self.backoff,
            allowed_hosts=settings.webhook_allowed_hosts,
            # Connect, write and read each get the timeout; a margin covers DNS and the record.
            lease=timedelta(seconds=4 * settings.notifier_webhook_timeout_seconds + 30),
        )

    @property
    def email_policy(self) -> EmailPolicy:
        return EmailPolicy(
            backoff=self.backoff,
            lease=timedelta(seconds=self.settings.notifier_email_lease_seconds),
        )

    @property
    def backoff(self) -> Backoff:
        return Backoff(
            base_seconds=self.settings.notifier_webhook_backoff_seconds,
            max_seconds=self.settings.notifier_webhook_backoff_max_seconds,
        )


def bootstrap(
    settings: Settings,
    *,
    resolver: Resolver | None = None,
    mailer: Mailer | None = None,
    transport: WebhookTransport | None = None,
    files: FilesClient | None = None,
    pre_ping: bool = True,
) -> NotifierApp:
    """The notifier on real adapters (or the given ones). Nothing connects until first used.

    `pre_ping`: see `create_service_engine`.
    """
    engine = create_service_engine(settings, "notifier", pre_ping=pre_ping)
    if files is None:
        stub = files_pb2_grpc.FilesServiceStub(
            channel(
                settings,
                settings.address_of("files"),
                FILES_SERVICE,
                ["GetDownloadUrl"],
                identity="notifier",
            )
        )
        files = GrpcFilesClient(stub, settings.grpc_deadline_seconds)
    return NotifierApp(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        resolver=resolver or SystemResolver(),
        renderer=JinjaEmailRenderer(),
        mailer=mailer
        or SesMailer(
            aws.ses(settings, single_attempt=True),
            settings.notifier_email_sender,
            TOPOLOGY.resolve_for(settings).configuration_set,
        ),
        transport=transport or HttpxWebhookTransport(settings.notifier_webhook_timeout_seconds),
        files=files,
    )
