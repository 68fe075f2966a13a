"""The File aggregate, content sniffing and verification rules, and money formatting."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from eventforge.files.domain import content, model
from eventforge.files.domain.model import File, FileStatus, Findings, InvalidTransition
from eventforge.files.domain.money import format_money

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def upload(**overrides: object) -> File:
    fields: dict[str, object] = {
        "file_id": str(uuid.uuid4()),
        "file_name": "cat.png",
        "content_type": "image/png",
        "size_bytes": 100,
        "notify_email": "",
        "expires_at": NOW + timedelta(minutes=15),
        "now": NOW,
    }
    fields.update(overrides)
    return File.expect_upload(**fields)  # type: ignore[arg-type]


def findings() -> Findings:
    return Findings(size_bytes=100, sha256="ab" * 32, detected_content_type="image/png")


def test_a_new_upload_waits_at_its_incoming_key() -> None:
    file = upload()
    assert file.status is FileStatus.PENDING_UPLOAD
    assert file.location == model.Location("uploads", f"incoming/{file.file_id}")
    assert file.events == []


def test_processing_then_processed_records_both_events_and_moves_the_original() -> None:
    file = upload()
    file.start_processing(NOW)
    file.processed(findings(), NOW)
    assert file.status is FileStatus.PROCESSED
    assert file.location == model.Location("processed", f"processed/{file.file_id}/original")
    assert [type(e).__name__ for e in file.events] == ["FileUploaded", "FileProcessed"]


def test_rejection_keeps_the_reason_and_points_at_the_quarantine() -> None:
    file = upload()
    file.start_processing(NOW)
    file.reject("content is application/x-msdownload", NOW, quarantined=True)
    assert file.status is FileStatus.REJECTED
    assert file.rejection_reason == "content is application/x-msdownload"
    assert file.location.key == f"quarantine/{file.file_id}"
    assert isinstance(file.events[-1], model.FileRejected)


@pytest.mark.parametrize(
    "steps",
    [
        ["processed"],  # never started
        ["reject"],
        ["start", "processed", "start"],  # settled files do not start again
        ["start", "reject", "processed"],
    ],
)
def test_transitions_out_of_order_are_refused(steps: list[str]) -> None:
    file = upload()
    actions = {
        "start": lambda: file.start_processing(NOW),
        "processed": lambda: file.processed(findings(), NOW),
        "reject": lambda: file.reject("bad", NOW, quarantined=False),
    }
    for step in steps[:-1]:
        actions[step]()
    with pytest.raises(InvalidTransition):
        actions[steps[-1]]()


def test_expiry_only_after_the_url_expired_and_only_while_pending() -> None:
    file = upload()
    with pytest.raises(InvalidTransition):
        file.expire(NOW + timedelta(minutes=14))
    file.expire(NOW + timedelta(minutes=16))
    assert file.status is FileStatus.EXPIRED
    started = upload()
    started.start_processing(NOW)
    with pytest.raises(InvalidTransition):
        started.expire(NOW + timedelta(hours=1))


def test_an_expired_upload_whose_object_arrives_is_processed_after_all() -> None:
    file = upload()
    file.expire(NOW + timedelta(hours=1))
    file.start_processing(NOW + timedelta(hours=1))
    assert file.status is FileStatus.PROCESSING


def test_only_processed_files_are_downloadable() -> None:
    file = upload()
    with pytest.raises(model.NotDownloadable):
        file.download("")
    file.start_processing(NOW)
    thumbnail = model.FileOutput(
        "thumbnail", "image/png", 10, model.output_location(file.file_id, "thumbnail.png")
    )
    file.processed(Findings(100, "ab" * 32, "image/png", outputs=(thumbnail,)), NOW)
    assert file.download("") == (file.location, "image/png")
    assert file.download("thumbnail") == (thumbnail.location, "image/png")
    with pytest.raises(model.UnknownVariant):
        file.download("poster")


def test_a_receipt_is_processed_at_once_and_announced() -> None:
    order_id = str(uuid.uuid4())
    receipt = File.receipt(
        file_id=str(uuid.uuid4()),
        order_id=order_id,
        customer_email="ada@example.com",
        total_minor=5000,
        currency="USD",
        findings=Findings(900, "cd" * 32, "application/pdf", page_count=1),
        now=NOW,
    )
    assert receipt.status is FileStatus.PROCESSED
    assert receipt.kind is model.FileKind.RECEIPT
    assert receipt.location == model.Location("receipts", f"receipts/{order_id}.pdf")
    assert receipt.events == [
        model.ReceiptReady(receipt.file_id, order_id, "ada@example.com", 5000, "USD")
    ]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("incoming/0b5f6a2e-8d3c-4e7a-9b1f-2c3d4e5f6a7b", "0b5f6a2e-8d3c-4e7a-9b1f-2c3d4e5f6a7b"),
        ("incoming/0B5F6A2E-8D3C-4E7A-9B1F-2C3D4E5F6A7B", None),
        ("incoming/0b5f6a2e-8d3c-4e7a-9b1f-2c3d4e5f6a7b/extra", None),
        ("quarantine/0b5f6a2e-8d3c-4e7a-9b1f-2c3d4e5f6a7b", None),
        ("incoming/cat.png", None),
        ("incoming/", None),
    ],
)
def test_only_incoming_uuid_keys_name_a_file(key: str, expected: str | None) -> None:
    assert model.file_id_of(key) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PNG, "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"GIF87a\x01\x00", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"%PDF-1.7\n", "application/pdf"),
        (b"MZ\x90\x00\x03\x00\x00\x00", "application/x-msdownload"),
        (b"\x7fELF\x02\x01", "application/x-executable"),
        (b"PK\x03\x04zip", "application/zip"),
        (b"name,qty\nbook,2\n", "text/plain"),
        ("naïve café\r\n\tok".encode(), "text/plain"),
        (b"\xef\xbb\xbfwith a BOM", "text/plain"),
        (b"text with a \x00 NUL", "application/octet-stream"),
        (b"\xff\xfe\xfa not utf-8", "application/octet-stream"),
    ],
)
def test_sniffing_reads_magic_numbers_and_strict_text(data: bytes, expected: str) -> None:
    assert content.sniff(data) == expected


@pytest.mark.parametrize(
    ("declared", "data", "fragment"),
    [
        ("image/png", PNG, None),
        ("text/csv", b"a,b\n1,2\n", None),
        ("text/plain", b"a,b\n1,2\n", None),
        ("image/png", b"MZ\x90\x00" + b"\x00" * 20, "content is application/x-msdownload"),
        ("image/jpeg", PNG, "content is image/png, not the declared image/jpeg"),
        ("text/plain", PNG, "content is image/png"),
        ("application/pdf", b"just some text that is long", "content is text/plain"),
    ],
)
def test_content_must_match_the_declared_type(
    declared: str, data: bytes, fragment: str | None
) -> None:
    reason = content.check_content(declared_type=declared, declared_size=len(data), data=data)
    if fragment is None:
        assert reason is None
    else:
        assert reason is not None
        assert fragment in reason


def test_content_must_have_the_declared_size() -> None:
    reason = content.check_content(declared_type="text/plain", declared_size=3, data=b"four")
    assert reason == "object is 4 bytes but 3 were declared"


@pytest.mark.parametrize(
    ("size", "arrived", "fragment"),
    [
        (100, NOW, None),
        (200, NOW, "200 bytes but 100 were declared"),
        (5000, NOW, "over the 1000-byte limit"),
        (100, NOW + timedelta(minutes=15, seconds=59), None),  # within the clock tolerance
        (100, NOW + timedelta(minutes=17), "arrived after the upload URL expired"),
    ],
)
def test_object_metadata_is_checked_before_reading_it(
    size: int, arrived: datetime, fragment: str | None
) -> None:
    reason = content.check_arrival(
        declared_size=100,
        max_size=1000,
        size=size,
        arrived_at=arrived,
        upload_expires_at=NOW + timedelta(minutes=15),
    )
    if fragment is None:
        assert reason is None
    else:
        assert reason is not None
        assert fragment in reason


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (5000, "USD", "USD 50.00"),
        (5, "EUR", "EUR 0.05"),
        (123456789, "GBP", "GBP 1234567.89"),
        (1500, "JPY", "JPY 1500"),
        (1234, "KWD", "KWD 1.234"),
        (-250, "USD", "USD -2.50"),
        (0, "USD", "USD 0.00"),
    ],
)
def test_money_is_formatted_from_minor_units(amount: int, currency: str, text: str) -> None:
    assert format_money(amount, currency) == text
