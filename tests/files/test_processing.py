"""The upload pipeline against fakes and the real decoders: verify, process, reject, once."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from eventforge.events.v1 import events_pb2
from eventforge.files.adapters.media import PillowPdfProcessor
from eventforge.files.domain.commands import RequestUpload
from eventforge.files.domain.model import (
    File,
    FileStatus,
    Findings,
    incoming_location,
    original_location,
    quarantine_location,
)
from eventforge.files.service_layer import handlers
from eventforge.files.service_layer.ports import Limits
from eventforge.files.service_layer.processing import Outcome, process_upload
from tests.files import media
from tests.files.fakes import Crash, FakeStorage, FakeUnitOfWork, sha256

LIMITS = Limits(
    max_upload_bytes=1_000_000,
    upload_expiry=timedelta(minutes=15),
    download_expiry=timedelta(minutes=5),
)
BUCKET = "test-uploads"


class Pipeline:
    """A files service on fakes, with a client that uploads through its presigned URLs."""

    def __init__(self) -> None:
        self.uow = FakeUnitOfWork()
        self.storage = FakeStorage()
        self.media = PillowPdfProcessor()

    def create(
        self, content_type: str, size: int, *, now: datetime | None = None, name: str = "f"
    ) -> str:
        ticket = handlers.create_upload(
            command=RequestUpload(name, content_type, size, "POST", "ada@example.com"),
            uow=self.uow,
            storage=self.storage,
            limits=LIMITS,
            now=now,
        )
        return ticket.file.file_id

    def upload(self, data: bytes, content_type: str, *, declared: int | None = None) -> str:
        file_id = self.create(content_type, len(data) if declared is None else declared)
        self.storage.upload(incoming_location(file_id), data)
        return file_id

    def notify(self, key: str, bucket: str = BUCKET) -> Outcome:
        return process_upload(
            bucket=bucket,
            key=key,
            uow=self.uow,
            storage=self.storage,
            media=self.media,
            limits=LIMITS,
        )

    def notify_file(self, file_id: str) -> Outcome:
        return self.notify(incoming_location(file_id).key)

    def events(self) -> list[str]:
        return self.uow.types()


@pytest.fixture
def pipeline() -> Pipeline:
    return Pipeline()


def test_an_image_is_verified_measured_and_thumbnailed(pipeline: Pipeline) -> None:
    data = media.image("PNG", (640, 480))
    file_id = pipeline.upload(data, "image/png")
    assert pipeline.notify_file(file_id) is Outcome.PROCESSED
    file = pipeline.uow.files.rows[file_id]
    assert file.status is FileStatus.PROCESSED
    assert (file.size_bytes, file.sha256) == (len(data), sha256(data))
    assert file.detected_content_type == "image/png"
    assert file.image is not None
    assert (file.image.width, file.image.height) == (640, 480)
    assert pipeline.storage.objects[original_location(file_id)].data == data
    [thumbnail] = file.outputs
    assert (thumbnail.variant, thumbnail.content_type) == ("thumbnail", "image/png")
    stored = pipeline.storage.objects[thumbnail.location].data
    assert thumbnail.size_bytes == len(stored)
    assert Image.open(io.BytesIO(stored)).size == (256, 192)
    assert pipeline.events() == ["FileUploaded", "FileProcessed"]
    processed = pipeline.uow.published[-1]
    assert isinstance(processed, events_pb2.FileProcessed)
    assert list(processed.variants) == ["thumbnail"]
    assert processed.notify_email == "ada@example.com"


@pytest.mark.parametrize(
    ("fmt", "content_type", "mode"),
    [
        ("PNG", "image/png", "RGBA"),
        ("PNG", "image/png", "I;16"),
        ("JPEG", "image/jpeg", "RGB"),
        ("JPEG", "image/jpeg", "CMYK"),
        ("GIF", "image/gif", "P"),
        ("WEBP", "image/webp", "RGB"),
    ],
)
def test_every_allowed_image_format_gets_a_png_thumbnail(
    pipeline: Pipeline, fmt: str, content_type: str, mode: str
) -> None:
    file_id = pipeline.upload(media.image(fmt, (300, 600), mode), content_type)
    assert pipeline.notify_file(file_id) is Outcome.PROCESSED
    [thumbnail] = pipeline.uow.files.rows[file_id].outputs
    stored = pipeline.storage.objects[thumbnail.location].data
    with Image.open(io.BytesIO(stored)) as small:
        assert (small.format, small.size) == ("PNG", (128, 256))


def test_a_pdf_gets_its_page_count(pipeline: Pipeline) -> None:
    file_id = pipeline.upload(media.pdf(pages=3), "application/pdf")
    assert pipeline.notify_file(file_id) is Outcome.PROCESSED
    file = pipeline.uow.files.rows[file_id]
    assert (file.page_count, file.detected_content_type, file.outputs) == (3, "application/pdf", [])


def test_csv_is_text(pipeline: Pipeline) -> None:
    file_id = pipeline.upload("name,city\nAda,Zürich\n".encode(), "text/csv")
    assert pipeline.notify_file(file_id) is Outcome.PROCESSED
    assert pipeline.uow.files.rows[file_id].detected_content_type == "text/plain"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    ("data", "content_type", "declared", "fragment"),
    [
        pytest.param(b"x" * 200, "text/plain", 100, "200 bytes but 100 were", id="oversize"),
        pytest.param(b"x" * 1_000_001, "text/plain", 100, "over the 1000000-byte", id="over-limit"),
        pytest.param(
            media.EXECUTABLE, "image/png", None, "is application/x-msdownload", id="exe-as-png"
        ),
        pytest.param(media.image("JPEG"), "image/png", None, "is image/jpeg", id="jpeg-as-png"),
        pytest.param(media.CORRUPT_PNG, "image/png", None, "no decoder", id="corrupt-png"),
        pytest.param(
            media.image("PNG")[:300], "image/png", None, "readable image/png", id="truncated-png"
        ),
        pytest.param(
            media.png_header(100_000, 100_000), "image/png", None, "decompression bomb", id="bomb"
        ),
        pytest.param(
            media.png_header(7_000, 7_000), "image/png", None, "over the 40000000-pixel", id="big"
        ),
        pytest.param(media.pdf()[:-60], "application/pdf", None, "truncated", id="truncated-pdf"),
        pytest.param(
            b"%PDF-1.4\n" + bytes(range(256)) + b"\n%%EOF\n",
            "application/pdf",
            None,
            "readable application/pdf",
            id="garbage-pdf",
        ),
        pytest.param(b"caf\xe9 latin-1", "text/plain", None, "octet-stream", id="not-utf-8"),
    ],
)
@pytest.mark.security
def test_bad_uploads_are_rejected_and_quarantined(
    pipeline: Pipeline, data: bytes, content_type: str, declared: int | None, fragment: str
) -> None:
    file_id = pipeline.upload(data, content_type, declared=declared)
    assert pipeline.notify_file(file_id) is Outcome.REJECTED
    file = pipeline.uow.files.rows[file_id]
    assert file.status is FileStatus.REJECTED
    assert fragment in file.rejection_reason
    assert set(pipeline.storage.objects) == {quarantine_location(file_id)}
    assert pipeline.storage.objects[quarantine_location(file_id)].data == data
    assert pipeline.events() == ["FileUploaded", "FileRejected"]
    rejected = pipeline.uow.published[-1]
    assert isinstance(rejected, events_pb2.FileRejected)
    assert (rejected.reason, rejected.notify_email) == (file.rejection_reason, "ada@example.com")


def test_duplicate_and_repeated_notifications_process_once(pipeline: Pipeline) -> None:
    file_id = pipeline.upload(media.image(), "image/png")
    assert pipeline.notify_file(file_id) is Outcome.PROCESSED
    writes = list(pipeline.storage.writes)
    # The same key again, even with new bytes (a presigned POST can be reused until it expires).
    pipeline.storage.upload(incoming_location(file_id), media.EXECUTABLE)
    assert pipeline.notify_file(file_id) is Outcome.ALREADY_SETTLED
    assert pipeline.storage.writes == writes
    assert pipeline.events() == ["FileUploaded", "FileProcessed"]
    assert pipeline.uow.files.rows[file_id].status is FileStatus.PROCESSED


def test_a_crash_before_the_final_commit_resumes_from_processing(pipeline: Pipeline) -> None:
    file_id = pipeline.upload(media.image(), "image/png")
    pipeline.uow.crash_at = {pipeline.uow.commits + 2}  # the commit that settles the file
    with pytest.raises(Crash):
        pipeline.notify_file(file_id)
    assert pipeline.uow.files.rows[file_id].status is FileStatus.PROCESSING  # visible meanwhile
    assert pipeline.notify_file(file_id) is Outcome.PROCESSED
    assert pipeline.events() == ["FileUploaded", "FileProcessed"]


def test_a_crash_after_quarantining_still_rejects_once(pipeline: Pipeline) -> None:
    file_id = pipeline.upload(media.EXECUTABLE, "image/png")
    pipeline.uow.crash_at = {pipeline.uow.commits + 2}
    with pytest.raises(Crash):
        pipeline.notify_file(file_id)
    assert set(pipeline.storage.objects) == {quarantine_location(file_id)}
    assert pipeline.notify_file(file_id) is Outcome.REJECTED
    file = pipeline.uow.files.rows[file_id]
    assert "application/x-msdownload" in file.rejection_reason
    assert file.location == quarantine_location(file_id)
    assert pipeline.events() == ["FileUploaded", "FileRejected"]


@pytest.mark.parametrize(
    ("bucket", "key"),
    [
        ("test-processed", "incoming/{file_id}"),
        ("someone-elses-bucket", "incoming/{file_id}"),
        (BUCKET, "incoming/not-a-uuid"),
        (BUCKET, "incoming/{file_id}.png"),
        (BUCKET, f"incoming/{uuid.uuid4()}"),  # no such file
    ],
)
def test_objects_that_are_not_our_uploads_are_ignored(
    pipeline: Pipeline, bucket: str, key: str
) -> None:
    file_id = pipeline.upload(media.image(), "image/png")
    assert pipeline.notify(key.format(file_id=file_id), bucket) is Outcome.IGNORED
    assert pipeline.uow.files.rows[file_id].status is FileStatus.PENDING_UPLOAD
    assert pipeline.events() == []
    assert pipeline.storage.writes == []


def test_a_vanished_object_is_rejected_without_quarantine(pipeline: Pipeline) -> None:
    file_id = pipeline.create("image/png", 10)
    assert pipeline.notify_file(file_id) is Outcome.REJECTED
    file = pipeline.uow.files.rows[file_id]
    assert file.rejection_reason == "the uploaded object is missing"
    assert file.location == incoming_location(file_id)


@pytest.mark.security
def test_objects_arriving_after_the_url_expired_are_rejected(pipeline: Pipeline) -> None:
    past = datetime.now(UTC) - timedelta(hours=1)
    file_id = pipeline.create("text/plain", 5, now=past)
    pipeline.storage.upload(incoming_location(file_id), b"hello")
    assert pipeline.notify_file(file_id) is Outcome.REJECTED
    assert "after the upload URL expired" in pipeline.uow.files.rows[file_id].rejection_reason


def test_an_upload_swept_before_its_notification_is_still_processed(pipeline: Pipeline) -> None:
    past = datetime.now(UTC) - timedelta(hours=1)
    file_id = pipeline.create("text/plain", 5, now=past)
    arrived = past + timedelta(minutes=14)
    pipeline.storage.upload(incoming_location(file_id), b"hello", at=arrived)
    assert handlers.expire_uploads(uow=pipeline.uow) == 1
    assert pipeline.notify_file(file_id) is Outcome.PROCESSED
    assert pipeline.uow.files.rows[file_id].status is FileStatus.PROCESSED


def test_receipt_ids_under_incoming_are_ignored(pipeline: Pipeline) -> None:
    receipt = File.receipt(
        file_id=str(uuid.uuid4()),
        order_id=str(uuid.uuid4()),
        customer_email="ada@example.com",
        total_minor=100,
        currency="USD",
        findings=Findings(10, "ab" * 32, "application/pdf", page_count=1),
        now=datetime.now(UTC),
    )
    pipeline.uow.files.add(receipt)
    assert pipeline.notify_file(receipt.file_id) is Outcome.IGNORED
