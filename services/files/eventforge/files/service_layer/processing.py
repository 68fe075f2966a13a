"""The upload pipeline: an object arrived under `incoming/` → verify it → process or reject it.

It runs in two units of work. The first marks the file PROCESSING (recording file.uploaded)
and commits at once, so clients see the state while the bytes are examined without any lock
held. The second locks the file again, stores the results or quarantines the object, and
settles the file with its event. The file's status, not the inbox, keeps the work from being
repeated: a redelivery after a crash finds the file PROCESSING and examines it again; one that
finds it settled does nothing, so a re-notification of the same key never redoes the work.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from opentelemetry import trace

from eventforge.files.domain.content import check_arrival, check_content, sniff
from eventforge.files.domain.model import (
    UPLOADS,
    File,
    FileKind,
    FileOutput,
    FileStatus,
    Findings,
    Location,
    file_id_of,
    incoming_location,
    original_location,
    output_location,
    quarantine_location,
)
from eventforge.files.service_layer.ports import (
    Limits,
    MediaProcessor,
    RenderedOutput,
    Storage,
    UnreadableContent,
)
from eventforge.files.service_layer.unit_of_work import UnitOfWork

log = logging.getLogger("eventforge.files.processing")
tracer = trace.get_tracer("eventforge.files.processing")


class Outcome(enum.Enum):
    IGNORED = "ignored"
    """Not an upload this service issued (another key, bucket or an unknown file id)."""
    ALREADY_SETTLED = "already_settled"
    PROCESSED = "processed"
    REJECTED = "rejected"


@dataclass(frozen=True)
class _Examination:
    """What examining the object found: findings to keep, or the reason to reject it."""

    source: Location | None
    """Where the object was found; None when it had vanished."""
    findings: Findings | None = None
    reason: str = ""
    data: bytes = b""
    outputs: tuple[RenderedOutput, ...] = ()


def process_upload(
    *,
    bucket: str,
    key: str,
    uow: UnitOfWork,
    storage: Storage,
    media: MediaProcessor,
    limits: Limits,
) -> Outcome:
    """Handle one object-created notification; see the module docstring."""
    file_id = file_id_of(key)
    if storage.bucket_of(bucket) != UPLOADS or file_id is None:
        log.warning("object %s/%s is not an upload of this service: ignored", bucket, key)
        return Outcome.IGNORED
    with tracer.start_as_current_span("files process_upload") as span:
        span.set_attribute("eventforge.file_id", file_id)
        outcome = _process(file_id, uow, storage, media, limits)
        span.set_attribute("eventforge.outcome", outcome.value)
        return outcome


def _process(
    file_id: str, uow: UnitOfWork, storage: Storage, media: MediaProcessor, limits: Limits
) -> Outcome:
    file = _start(file_id, uow)
    if file is None:
        return Outcome.IGNORED
    if file.settled:
        log.info("file %s is already %s: notification ignored", file_id, file.status.value)
        return Outcome.ALREADY_SETTLED
    examination = _examine(file, storage, media, limits)
    with uow:
        file = uow.files.get(file_id, for_update=True)
        if file is None or file.status is not FileStatus.PROCESSING:
            log.info("file %s was settled concurrently", file_id)
            return Outcome.ALREADY_SETTLED
        outcome = _settle(file, examination, storage)
        uow.files.save(uow.track(file))
        uow.commit()
    return outcome


def _start(file_id: str, uow: UnitOfWork) -> File | None:
    """The file, moved to PROCESSING (committed) unless it already is or is settled."""
    with uow:
        file = uow.files.get(file_id, for_update=True)
        if file is None or file.kind is not FileKind.UPLOAD:
            log.warning("object for unknown upload %s: ignored", file_id)
            return None
        if file.status in (FileStatus.PENDING_UPLOAD, FileStatus.EXPIRED):
            file.start_processing(_now())
            uow.files.save(uow.track(file))
            uow.commit()
        return file


def _examine(file: File, storage: Storage, media: MediaProcessor, limits: Limits) -> _Examination:
    """Verify the object against what was declared, then decode it; reads, never writes."""
    source = incoming_location(file.file_id)
    stored = storage.head(source)
    if stored is None:
        # A crash after quarantining but before the rejection committed leaves it here.
        source = quarantine_location(file.file_id)
        stored = storage.head(source)
        if stored is None:
            return _Examination(None, reason="the uploaded object is missing")
    reason = check_arrival(
        declared_size=file.declared_size_bytes,
        max_size=limits.max_upload_bytes,
        size=stored.size,
        arrived_at=stored.last_modified,
        upload_expires_at=file.upload_expires_at,
    )
    if reason:
        return _Examination(source, reason=reason)
    data = storage.read(source, max_bytes=file.declared_size_bytes + 1)
    if data is None:
        return _Examination(None, reason="the uploaded object is missing")
    reason = check_content(
        declared_type=file.content_type, declared_size=file.declared_size_bytes, data=data
    )
    if reason:
        return _Examination(source, reason=reason)
    try:
        inspection = media.process(content_type=file.content_type, data=data)
    except UnreadableContent as error:
        return _Examination(source, reason=f"not a readable {file.content_type}: {error}")
    if source != incoming_location(file.file_id):
        return _Examination(source, reason="the upload was quarantined by an earlier attempt")
    outputs = tuple(
        FileOutput(o.variant, o.content_type, len(o.data), output_location(file.file_id, o.name))
        for o in inspection.outputs
    )
    findings = Findings(
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        detected_content_type=sniff(data),
        image=inspection.image,
        page_count=inspection.page_count,
        outputs=outputs,
    )
    return _Examination(source, findings, data=data, outputs=inspection.outputs)


def _settle(file: File, examination: _Examination, storage: Storage) -> Outcome:
    """Store the verified original and outputs, or quarantine the object; settle the file."""
    if examination.findings is not None:
        # The bytes that were verified are the ones served: a later upload to the same key
        # (a presigned POST can be reused until it expires) changes nothing here.
        storage.write(original_location(file.file_id), examination.data, file.content_type)
        for output in examination.outputs:
            location = output_location(file.file_id, output.name)
            storage.write(location, output.data, output.content_type)
        file.processed(examination.findings, _now())
        log.info("file %s processed", file.file_id)
        return Outcome.PROCESSED
    incoming = incoming_location(file.file_id)
    if examination.source == incoming:
        storage.move(incoming, quarantine_location(file.file_id))
    file.reject(examination.reason, _now(), quarantined=examination.source is not None)
    log.warning("file %s rejected: %s", file.file_id, examination.reason)
    return Outcome.REJECTED


def _now() -> datetime:
    return datetime.now(UTC)
