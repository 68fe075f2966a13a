"""What the files use cases need from the outside world, as abstract ports."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from eventforge.files.domain.model import File, ImageInfo, Location


@dataclass(frozen=True)
class Limits:
    """Upload size and URL lifetimes (from the settings)."""

    max_upload_bytes: int
    upload_expiry: timedelta
    download_expiry: timedelta


class FileRepository(abc.ABC):
    @abc.abstractmethod
    def add(self, file: File) -> None:
        """Store a new file."""

    @abc.abstractmethod
    def get(self, file_id: str, *, for_update: bool = False) -> File | None:
        """Load a file; `for_update` locks it until the unit of work ends."""

    @abc.abstractmethod
    def save(self, file: File) -> None:
        """Persist changes to a loaded file (its outputs included)."""

    @abc.abstractmethod
    def receipt_for(self, order_id: str) -> File | None:
        """The receipt of an order, if one was stored."""

    @abc.abstractmethod
    def add_receipt(self, receipt: File) -> bool:
        """Store a receipt; False (and nothing stored) when the order already has one."""

    @abc.abstractmethod
    def expired_uploads(self, *, before: datetime, limit: int) -> list[File]:
        """Locked PENDING_UPLOAD files whose upload expired before `before` (others skip them)."""


# --- Object storage -------------------------------------------------------------------------


@dataclass(frozen=True)
class PresignedUpload:
    """A presigned request the client sends the bytes with."""

    method: str
    url: str
    fields: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredObject:
    size: int
    last_modified: datetime


class Storage(abc.ABC):
    """Object storage addressed by logical bucket names (`uploads`, `processed`, `receipts`)."""

    @abc.abstractmethod
    def bucket_of(self, physical_name: str) -> str | None:
        """The logical name of a physical bucket of this environment, or None."""

    @abc.abstractmethod
    def presign_upload(
        self,
        *,
        method: str,
        location: Location,
        content_type: str,
        size_bytes: int,
        expires_in: int,
    ) -> PresignedUpload:
        """A POST form or PUT request that stores exactly `size_bytes` of `content_type`."""

    @abc.abstractmethod
    def presign_download(
        self, *, location: Location, content_type: str, download_name: str, expires_in: int
    ) -> str:
        """A GET URL that serves the object as an attachment named `download_name`."""

    @abc.abstractmethod
    def head(self, location: Location) -> StoredObject | None:
        """Size and time of an object; None when there is none."""

    @abc.abstractmethod
    def read(self, location: Location, *, max_bytes: int) -> bytes | None:
        """At most `max_bytes` of an object; None when there is none."""

    @abc.abstractmethod
    def write(self, location: Location, data: bytes, content_type: str) -> None:
        """Store an object (replacing any at the same key)."""

    @abc.abstractmethod
    def move(self, source: Location, target: Location) -> None:
        """Copy an object to `target`, then delete it from `source`."""


# --- Content processing ---------------------------------------------------------------------


class UnreadableContent(Exception):
    """The bytes claim a format but cannot be decoded as it (corrupt, truncated, a bomb)."""


@dataclass(frozen=True)
class RenderedOutput:
    """An output made from a file's bytes, to be stored as `processed/{file_id}/{name}`."""

    variant: str
    name: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Inspection:
    image: ImageInfo | None = None
    page_count: int | None = None
    outputs: tuple[RenderedOutput, ...] = ()


class MediaProcessor(abc.ABC):
    @abc.abstractmethod
    def process(self, *, content_type: str, data: bytes) -> Inspection:
        """Decode verified bytes of `content_type`; raises UnreadableContent."""


# --- Receipts -------------------------------------------------------------------------------


class OrdersUnavailable(Exception):
    """The orders service could not answer; the receipt is retried later."""


@dataclass(frozen=True)
class ReceiptLine:
    sku: str
    quantity: int
    unit_price_minor: int
    line_total_minor: int


@dataclass(frozen=True)
class OrderSnapshot:
    """An order as the orders service reports it, with what a receipt shows."""

    order_id: str
    customer_id: str
    customer_email: str
    status: str
    currency: str
    lines: tuple[ReceiptLine, ...]
    total_minor: int
    confirmed_at: datetime


class OrdersClient(abc.ABC):
    @abc.abstractmethod
    def get_order(self, order_id: str) -> OrderSnapshot:
        """The order; raises OrdersUnavailable when the orders service cannot say."""


@dataclass(frozen=True)
class RenderedDocument:
    data: bytes
    page_count: int


class ReceiptRenderer(abc.ABC):
    @abc.abstractmethod
    def render(self, order: OrderSnapshot) -> RenderedDocument:
        """The PDF receipt of an order; the same order always gives the same bytes."""
