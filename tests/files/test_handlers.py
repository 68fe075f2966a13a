"""Files API use cases against fakes: CreateUpload validation, reads, downloads, expiry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from eventforge.files.domain.commands import RequestDownload, RequestUpload
from eventforge.files.domain.model import FileStatus, Findings
from eventforge.files.service_layer import handlers
from eventforge.files.service_layer.ports import Limits
from eventforge.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from tests.files.fakes import FakeStorage, FakeUnitOfWork

LIMITS = Limits(
    max_upload_bytes=1000,
    upload_expiry=timedelta(minutes=15),
    download_expiry=timedelta(minutes=5),
)
NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def command(**overrides: object) -> RequestUpload:
    fields: dict[str, object] = {
        "file_name": "cat.png",
        "content_type": "image/png",
        "size_bytes": 100,
        "method": "",
        "notify_email": "",
    }
    fields.update(overrides)
    return RequestUpload(**fields)  # type: ignore[arg-type]


def create(uow: FakeUnitOfWork, **overrides: object) -> handlers.UploadTicket:
    return handlers.create_upload(
        command=command(**overrides), uow=uow, storage=FakeStorage(), limits=LIMITS, now=NOW
    )


def violations_of(cmd: RequestUpload) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as raised:
        handlers.create_upload(
            command=cmd, uow=FakeUnitOfWork(), storage=FakeStorage(), limits=LIMITS
        )
    return {v.field: v.description for v in raised.value.violations}


def test_create_upload_records_a_pending_file_and_presigns_a_post_by_default() -> None:
    uow = FakeUnitOfWork()
    ticket = create(uow, notify_email="ada@example.com")
    file = uow.files.rows[ticket.file.file_id]
    assert file.status is FileStatus.PENDING_UPLOAD
    assert file.notify_email == "ada@example.com"
    assert uuid.UUID(file.file_id).version == 4
    assert ticket.upload.method == "POST"
    assert ticket.upload.fields["key"] == f"incoming/{file.file_id}"
    assert ticket.upload.fields["Content-Type"] == "image/png"
    assert ticket.expires_at == NOW + timedelta(minutes=15) == file.upload_expires_at
    assert uow.published == []  # nothing happened yet that anyone needs to hear about


def test_create_upload_presigns_a_put_with_the_headers_to_send() -> None:
    ticket = create(FakeUnitOfWork(), method="PUT", content_type="text/csv", size_bytes=12)
    assert ticket.upload.method == "PUT"
    assert ticket.upload.headers == {"Content-Type": "text/csv", "Content-Length": "12"}
    assert f"incoming/{ticket.file.file_id}" in ticket.upload.url


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"file_name": ""}, "file_name", "1-255"),
        ({"file_name": "x" * 256}, "file_name", "1-255"),
        ({"file_name": "../etc/passwd"}, "file_name", "path separators"),
        ({"file_name": "dir\\cat.png"}, "file_name", "path separators"),
        ({"file_name": ".."}, "file_name", "path separators"),
        ({"file_name": "cat\n.png"}, "file_name", "control characters"),
        ({"file_name": "cat\x00.png"}, "file_name", "control characters"),
        ({"file_name": "photo\u202egnp.exe"}, "file_name", "control characters"),
        ({"content_type": "image/svg+xml"}, "content_type", "must be one of"),
        ({"content_type": "IMAGE/PNG"}, "content_type", "must be one of"),
        ({"size_bytes": 0}, "size_bytes", "between 1 and 1000"),
        ({"size_bytes": 1001}, "size_bytes", "between 1 and 1000"),
        ({"method": "unknown (7)"}, "method", "UPLOAD_METHOD_POST"),
        ({"notify_email": "not-an-email"}, "notify_email", "email"),
    ],
)
def test_each_invalid_field_gets_a_violation(
    overrides: dict[str, object], field: str, fragment: str
) -> None:
    found = violations_of(command(**overrides))
    assert list(found) == [field]
    assert fragment in found[field]


def test_every_problem_is_reported_at_once() -> None:
    found = violations_of(
        command(file_name="a/b", content_type="application/x-sh", size_bytes=-1, method="x")
    )
    assert set(found) == {"file_name", "content_type", "size_bytes", "method"}


@pytest.mark.parametrize("name", ["résumé final (2).pdf", "x" * 255, "a", "名前.png", ".hidden"])
def test_ordinary_file_names_are_accepted(name: str) -> None:
    create(FakeUnitOfWork(), file_name=name)


def test_get_file_validates_and_finds() -> None:
    uow = FakeUnitOfWork()
    ticket = create(uow)
    assert handlers.get_file(file_id=ticket.file.file_id, uow=uow).file_name == "cat.png"
    with pytest.raises(NotFound):
        handlers.get_file(file_id=str(uuid.uuid4()), uow=uow)
    with pytest.raises(InvalidArgument) as raised:
        handlers.get_file(file_id="nope", uow=uow)
    assert raised.value.violations[0].field == "file_id"


def download(uow: FakeUnitOfWork, **fields: str) -> handlers.DownloadLink:
    return handlers.download_url(
        command=RequestDownload(**fields), uow=uow, storage=FakeStorage(), limits=LIMITS, now=NOW
    )


def processed_upload(uow: FakeUnitOfWork) -> str:
    file_id = create(uow).file.file_id
    file = uow.files.rows[file_id]
    file.start_processing(NOW)
    file.processed(Findings(100, "ab" * 32, "image/png"), NOW)
    uow.files.save(file)
    return file_id


def test_downloads_only_of_processed_files() -> None:
    uow = FakeUnitOfWork()
    pending = create(uow).file.file_id
    with pytest.raises(FailedPrecondition, match="PENDING_UPLOAD"):
        download(uow, file_id=pending)
    done = processed_upload(uow)
    link = download(uow, file_id=done)
    assert link.file_id == done
    assert f"processed/{done}/original" in link.url
    assert "name=cat.png" in link.url
    assert link.expires_at == NOW + timedelta(minutes=5)


def test_download_errors_for_unknown_targets_and_variants() -> None:
    uow = FakeUnitOfWork()
    done = processed_upload(uow)
    with pytest.raises(NotFound, match="no 'thumbnail' output"):
        download(uow, file_id=done, variant="thumbnail")
    with pytest.raises(NotFound):
        download(uow, file_id=str(uuid.uuid4()))
    with pytest.raises(NotFound, match="has no receipt"):
        download(uow, receipt_order_id=str(uuid.uuid4()))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "target"),
        ({"file_id": "42"}, "file_id"),
        ({"receipt_order_id": "order-1"}, "receipt_order_id"),
        ({"file_id": str(uuid.uuid4()), "variant": "../original"}, "variant"),
    ],
)
def test_malformed_download_requests_are_invalid(fields: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        download(FakeUnitOfWork(), **fields)
    assert [v.field for v in raised.value.violations] == [field]


def test_the_sweep_expires_uploads_that_never_arrived_after_a_grace_period() -> None:
    uow = FakeUnitOfWork()
    stale = create(uow).file.file_id
    arrived = processed_upload(uow)
    expiry = NOW + LIMITS.upload_expiry
    assert handlers.expire_uploads(uow=uow, now=expiry + timedelta(seconds=30)) == 0
    assert handlers.expire_uploads(uow=uow, now=expiry + timedelta(minutes=2)) == 1
    assert uow.files.rows[stale].status is FileStatus.EXPIRED
    assert uow.files.rows[arrived].status is FileStatus.PROCESSED
    assert handlers.expire_uploads(uow=uow, now=expiry + timedelta(hours=1)) == 0


def test_the_sweep_works_through_large_backlogs() -> None:
    uow = FakeUnitOfWork()
    for _ in range(handlers.SWEEP_BATCH + 5):
        create(uow)
    assert handlers.expire_uploads(uow=uow, now=NOW + timedelta(days=1)) == handlers.SWEEP_BATCH + 5
