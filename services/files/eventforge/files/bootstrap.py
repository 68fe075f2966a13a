"""Wire the files service: engine, units of work, S3 storage, decoders and the orders client."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from eventforge.files.adapters.orders_client import GrpcOrdersClient
from eventforge.files.adapters.storage import S3Storage
from eventforge.files.service_layer.ports import (
    Limits,
    MediaProcessor,
    OrdersClient,
    ReceiptRenderer,
    Storage,
)
from eventforge.files.service_layer.unit_of_work import SqlUnitOfWork
from eventforge.orders.v1 import orders_pb2_grpc
from eventforge.runtime import aws
from eventforge.runtime.db import create_service_engine, session_factory
from eventforge.runtime.grpc.client import channel
from eventforge.runtime.settings import Settings
from eventforge.topology import TOPOLOGY

ORDERS_SERVICE = "eventforge.orders.v1.OrdersService"


def limits_of(settings: Settings) -> Limits:
    return Limits(
        max_upload_bytes=settings.files_max_upload_bytes,
        upload_expiry=timedelta(seconds=settings.files_upload_expiry_seconds),
        download_expiry=timedelta(seconds=settings.files_download_expiry_seconds),
    )


@dataclass
class FilesApp:
    """Everything the files entrypoints need, created once per process."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    storage: Storage
    limits: Limits

    def uow(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.sessions)

    # The worker's adapters are imported on first use: Pillow, pypdf and fpdf2 add seconds to
    # the start of an API process that never needs them.
    @cached_property
    def media(self) -> MediaProcessor:
        """Image and PDF decoders."""
        from eventforge.files.adapters.media import PillowPdfProcessor

        return PillowPdfProcessor()

    @cached_property
    def renderer(self) -> ReceiptRenderer:
        """The PDF receipt renderer."""
        from eventforge.files.adapters.receipt_pdf import FpdfReceiptRenderer

        return FpdfReceiptRenderer()

    @cached_property
    def orders(self) -> OrdersClient:
        """Client of the orders service (created on first use)."""
        target = self.settings.address_of("orders")
        stub = orders_pb2_grpc.OrdersServiceStub(
            channel(self.settings, target, ORDERS_SERVICE, ["GetOrder"], identity="files")
        )
        return GrpcOrdersClient(stub)


def bootstrap(settings: Settings, *, pre_ping: bool = True) -> FilesApp:
    """The files application on real adapters (`pre_ping`: see `create_service_engine`)."""
    engine = create_service_engine(settings, "files", pre_ping=pre_ping)
    return FilesApp(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        storage=S3Storage(aws.s3(settings), TOPOLOGY.resolve_for(settings).buckets),
        limits=limits_of(settings),
    )
