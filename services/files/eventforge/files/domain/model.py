"""The File aggregate: uploads and receipts, their status transitions and the events they record."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime

from eventforge.topology import UPLOADS_INCOMING_PREFIX, UPLOADS_QUARANTINE_PREFIX

# Logical bucket names (the topology's); physical names add the environment's prefix.
UPLOADS = "uploads"
PROCESSED = "processed"
RECEIPTS = "receipts"

RECEIPT_CONTENT_TYPE = "application/pdf"
_INCOMING_KEY = re.compile(
    "^"
    + re.escape(UPLOADS_INCOMING_PREFIX)
    + r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)


class FileStatus(enum.Enum):
    PENDING_UPLOAD = "PENDING_UPLOAD"
    PROCESSING = "PROCESSING"
    PROCESSED = "PROCESSED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


class FileKind(enum.Enum):
    UPLOAD = "UPLOAD"
    RECEIPT = "RECEIPT"


class InvalidTransition(Exception):
    """A transition that the file's current status does not allow."""


class NotDownloadable(Exception):
    """The file is not processed, so nothing of it may be downloaded."""


class UnknownVariant(Exception):
    """The file has no output of the requested variant."""


@dataclass(frozen=True)
class Location:
    """Where an object is: a logical bucket and a key."""

    bucket: str
    key: str


def incoming_location(file_id: str) -> Location:
    """Where the client uploads the bytes (the only prefix that notifies the files worker)."""
    return Location(UPLOADS, f"{UPLOADS_INCOMING_PREFIX}{file_id}")


def quarantine_location(file_id: str) -> Location:
    """Where a rejected upload is kept, out of the notified prefix."""
    return Location(UPLOADS, f"{UPLOADS_QUARANTINE_PREFIX}{file_id}")


def original_location(file_id: str) -> Location:
    """Where the verified bytes of a processed upload are served from."""
    return Location(PROCESSED, f"processed/{file_id}/original")


def output_location(file_id: str, file_name: str) -> Location:
    return Location(PROCESSED, f"processed/{file_id}/{file_name}")


def receipt_location(order_id: str) -> Location:
    return Location(RECEIPTS, f"receipts/{order_id}.pdf")


def file_id_of(key: str) -> str | None:
    """The file id of an `incoming/{uuid}` key; None for any other key."""
    match = _INCOMING_KEY.match(key)
    return match.group(1) if match else None


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int


@dataclass(frozen=True)
class FileOutput:
    """Something processing produced from a file, e.g. its thumbnail."""

    variant: str
    content_type: str
    size_bytes: int
    location: Location


@dataclass(frozen=True)
class Findings:
    """What verification and processing learnt about the bytes of an upload."""

    size_bytes: int
    sha256: str
    detected_content_type: str
    image: ImageInfo | None = None
    page_count: int | None = None
    outputs: tuple[FileOutput, ...] = ()


# Domain events, past tense; the service layer turns them into published events.
@dataclass(frozen=True)
class FileUploaded:
    file_id: str


@dataclass(frozen=True)
class FileProcessed:
    file_id: str


@dataclass(frozen=True)
class FileRejected:
    file_id: str
    reason: str


@dataclass(frozen=True)
class ReceiptReady:
    file_id: str
    order_id: str
    customer_email: str
    total_minor: int
    currency: str


Event = FileUploaded | FileProcessed | FileRejected | ReceiptReady


@dataclass
class File:
    """A file the service tracks: where its bytes are, its status and what processing found."""

    file_id: str
    kind: FileKind
    file_name: str
    content_type: str
    declared_size_bytes: int
    location: Location
    created_at: datetime
    updated_at: datetime
    status: FileStatus = FileStatus.PENDING_UPLOAD
    notify_email: str = ""
    upload_expires_at: datetime | None = None
    rejection_reason: str = ""
    size_bytes: int = 0
    sha256: str = ""
    detected_content_type: str = ""
    image: ImageInfo | None = None
    page_count: int | None = None
    outputs: list[FileOutput] = field(default_factory=list)
    order_id: str | None = None
    events: list[Event] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def expect_upload(
        cls,
        *,
        file_id: str,
        file_name: str,
        content_type: str,
        size_bytes: int,
        notify_email: str,
        expires_at: datetime,
        now: datetime,
    ) -> File:
        """A file whose bytes the client is about to upload (PENDING_UPLOAD)."""
        return cls(
            file_id=file_id,
            kind=FileKind.UPLOAD,
            file_name=file_name,
            content_type=content_type,
            declared_size_bytes=size_bytes,
            location=incoming_location(file_id),
            created_at=now,
            updated_at=now,
            notify_email=notify_email,
            upload_expires_at=expires_at,
        )

    @classmethod
    def receipt(
        cls,
        *,
        file_id: str,
        order_id: str,
        customer_email: str,
        total_minor: int,
        currency: str,
        findings: Findings,
        now: datetime,
    ) -> File:
        """The stored PDF receipt of an order (PROCESSED); records ReceiptReady."""
        receipt = cls(
            file_id=file_id,
            kind=FileKind.RECEIPT,
            file_name=f"receipt-{order_id}.pdf",
            content_type=RECEIPT_CONTENT_TYPE,
            declared_size_bytes=findings.size_bytes,
            location=receipt_location(order_id),
            created_at=now,
            updated_at=now,
            status=FileStatus.PROCESSED,
            order_id=order_id,
        )
        receipt._record_findings(findings)
        receipt.events.append(
            ReceiptReady(file_id, order_id, customer_email, total_minor, currency)
        )
        return receipt

    def _move(self, allowed: set[FileStatus], to: FileStatus, now: datetime) -> None:
        if self.status not in allowed:
            raise InvalidTransition(f"file {self.file_id}: {self.status.value} → {to.value}")
        self.status = to
        self.updated_at = now

    def start_processing(self, now: datetime) -> None:
        """The object arrived; records FileUploaded.

        From EXPIRED too: the sweep may run before the notification of an upload that arrived
        just in time; verification rejects objects that really arrived late.
        """
        self._move({FileStatus.PENDING_UPLOAD, FileStatus.EXPIRED}, FileStatus.PROCESSING, now)
        self.events.append(FileUploaded(self.file_id))

    def processed(self, findings: Findings, now: datetime) -> None:
        """Verified and processed: downloadable from now on; records FileProcessed."""
        self._move({FileStatus.PROCESSING}, FileStatus.PROCESSED, now)
        self._record_findings(findings)
        self.location = original_location(self.file_id)
        self.events.append(FileProcessed(self.file_id))

    def reject(self, reason: str, now: datetime, *, quarantined: bool) -> None:
        """Failed verification; records FileRejected."""
        self._move({FileStatus.PROCESSING}, FileStatus.REJECTED, now)
        self.rejection_reason = reason
        if quarantined:
            self.location = quarantine_location(self.file_id)
        self.events.append(FileRejected(self.file_id, reason))

    def expire(self, now: datetime) -> None:
        """The upload URL expired before any object arrived."""
        if self.upload_expires_at is None or now < self.upload_expires_at:
            raise InvalidTransition(f"file {self.file_id}: its upload has not expired")
        self._move({FileStatus.PENDING_UPLOAD}, FileStatus.EXPIRED, now)

    @property
    def settled(self) -> bool:
        """Processing is over (PROCESSED or REJECTED): later notifications change nothing."""
        return self.status in (FileStatus.PROCESSED, FileStatus.REJECTED)

    def download(self, variant: str) -> tuple[Location, str]:
        """Where a downloadable variant ("" for the original) is, and its content type."""
        if self.status is not FileStatus.PROCESSED:
            raise NotDownloadable(f"file {self.file_id} is {self.status.value}")
        if not variant:
            return self.location, self.content_type
        for output in self.outputs:
            if output.variant == variant:
                return output.location, output.content_type
        raise UnknownVariant(f"file {self.file_id} has no {variant!r} output")

    def _record_findings(self, findings: Findings) -> None:
        self.size_bytes = findings.size_bytes
        self.sha256 = findings.sha256
        self.detected_content_type = findings.detected_content_type
        self.image = findings.image
        self.page_count = findings.page_count
        self.outputs = list(findings.outputs)
