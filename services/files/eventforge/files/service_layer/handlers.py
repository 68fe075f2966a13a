"""Files use cases of the API and the sweep: create uploads, read files, hand out downloads."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath

from eventforge.files.domain.commands import RequestDownload, RequestUpload
from eventforge.files.domain.model import File, NotDownloadable, UnknownVariant
from eventforge.files.service_layer.ports import Limits, PresignedUpload, Storage
from eventforge.files.service_layer.unit_of_work import UnitOfWork
from eventforge.files.service_layer.validation import check_download, check_upload, check_uuid
from eventforge.runtime.errors import FailedPrecondition, NotFound, Violations

log = logging.getLogger("eventforge.files")

EXPIRY_GRACE = timedelta(seconds=60)
"""How long after its URL expired a pending upload waits for a late notification."""
SWEEP_BATCH = 100


@dataclass(frozen=True)
class UploadTicket:
    """A registered file and how to send its bytes."""

    file: File
    upload: PresignedUpload
    expires_at: datetime


@dataclass(frozen=True)
class DownloadLink:
    url: str
    expires_at: datetime
    file_id: str


def create_upload(
    *,
    command: RequestUpload,
    uow: UnitOfWork,
    storage: Storage,
    limits: Limits,
    now: datetime | None = None,
) -> UploadTicket:
    """Register a PENDING_UPLOAD file and presign the request that uploads its bytes."""
    check_upload(command, max_bytes=limits.max_upload_bytes).raise_if_any()
    now = now or datetime.now(UTC)
    expires_at = now + limits.upload_expiry
    file = File.expect_upload(
        file_id=str(uuid.uuid4()),
        file_name=command.file_name,
        content_type=command.content_type,
        size_bytes=command.size_bytes,
        notify_email=command.notify_email,
        expires_at=expires_at,
        now=now,
    )
    upload = storage.presign_upload(
        method=command.method or "POST",
        location=file.location,
        content_type=file.content_type,
        size_bytes=file.declared_size_bytes,
        expires_in=int(limits.upload_expiry.total_seconds()),
    )
    with uow:
        uow.files.add(file)
        uow.commit()
    return UploadTicket(file, upload, expires_at)


def get_file(*, file_id: str, uow: UnitOfWork) -> File:
    """One file, or NotFound."""
    violations = Violations()
    check_uuid(violations, "file_id", file_id, "a file id")
    violations.raise_if_any()
    with uow:
        file = uow.files.get(file_id)
    if file is None:
        raise NotFound(f"file {file_id} not found")
    return file


def download_url(
    *,
    command: RequestDownload,
    uow: UnitOfWork,
    storage: Storage,
    limits: Limits,
    now: datetime | None = None,
) -> DownloadLink:
    """A short-lived GET URL of a processed file's original or output, or of a receipt."""
    check_download(command).raise_if_any()
    with uow:
        if command.file_id:
            file = uow.files.get(command.file_id)
            missing = f"file {command.file_id} not found"
        else:
            file = uow.files.receipt_for(command.receipt_order_id)
            missing = f"order {command.receipt_order_id} has no receipt (yet)"
    if file is None:
        raise NotFound(missing)
    try:
        location, content_type = file.download(command.variant)
    except NotDownloadable as error:
        raise FailedPrecondition(
            f"file {file.file_id} is {file.status.value}; only processed files can be downloaded"
        ) from error
    except UnknownVariant as error:
        raise NotFound(str(error)) from error
    expires_in = int(limits.download_expiry.total_seconds())
    url = storage.presign_download(
        location=location,
        content_type=content_type,
        download_name=_download_name(file, command.variant, location.key),
        expires_in=expires_in,
    )
    return DownloadLink(url, (now or datetime.now(UTC)) + limits.download_expiry, file.file_id)


def _download_name(file: File, variant: str, key: str) -> str:
    """`cat.png` for the original, `cat-thumbnail.png` for its thumbnail."""
    if not variant:
        return file.file_name
    return f"{PurePosixPath(file.file_name).stem}-{PurePosixPath(key).name}"


def expire_uploads(
    *, uow: UnitOfWork, now: datetime | None = None, grace: timedelta = EXPIRY_GRACE
) -> int:
    """Mark uploads that never arrived EXPIRED; returns how many."""
    now = now or datetime.now(UTC)
    expired = 0
    while True:
        with uow:
            batch = uow.files.expired_uploads(before=now - grace, limit=SWEEP_BATCH)
            for file in batch:
                file.expire(now)
                uow.files.save(file)
            uow.commit()
        expired += len(batch)
        if len(batch) < SWEEP_BATCH:
            break
    if expired:
        log.info("expired %d uploads that never arrived", expired)
    return expired
