"""Files end to end: presigned HTTP uploads to the emulator, the S3-event pipeline, receipts.

Real processes (files and orders: API, worker, relay) on PostgreSQL and moto's server; bytes
go over HTTP with httpx through the URLs CreateUpload presigns, never through the service.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import grpc
import httpx
import pytest
import sqlalchemy as sa
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image
from pypdf import PdfReader

from eventforge.events.v1 import events_pb2
from eventforge.files.service_layer.handlers import expire_uploads
from eventforge.files.service_layer.unit_of_work import SqlUnitOfWork
from eventforge.files.v1 import files_pb2, files_pb2_grpc
from eventforge.orders.v1 import orders_pb2, orders_pb2_grpc
from eventforge.runtime import aws
from eventforge.runtime.db import create_service_engine, session_factory
from eventforge.runtime.messaging.envelope import encode, new_envelope
from eventforge.runtime.messaging.messages import S3Record, s3_dedupe_key
from eventforge.runtime.messaging.schema import inbox_table, outbox_table
from eventforge.runtime.settings import Settings
from eventforge.topology import TOPOLOGY
from tests.files import media
from tests.files.fakes import sha256
from tests.fixtures.orders import order_line, order_request
from tests.fixtures.services import ProcessGroup

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

pytestmark = pytest.mark.integration

Status = files_pb2.FileStatus
UNSETTLED = {Status.FILE_STATUS_PENDING_UPLOAD, Status.FILE_STATUS_PROCESSING}
T = TypeVar("T")


class Stack:
    """Clients of the running files and orders services and of what they keep."""

    def __init__(
        self,
        settings: Settings,
        files: files_pb2_grpc.FilesServiceStub,
        orders: orders_pb2_grpc.OrdersServiceStub,
        db: sa.Engine,
    ) -> None:
        self.settings = settings
        self.files = files
        self.orders = orders
        self.db = db
        self.s3: S3Client = aws.s3(settings)
        self.sqs: SQSClient = aws.sqs(settings)
        self.buckets = TOPOLOGY.resolve_for(settings).buckets
        self.http = httpx.Client(trust_env=False, timeout=10)

    def create(
        self, content_type: str, size: int, **fields: object
    ) -> files_pb2.CreateUploadResponse:
        request = files_pb2.CreateUploadRequest(
            file_name=str(fields.pop("file_name", "sample.bin")),
            content_type=content_type,
            size_bytes=size,
            **fields,  # type: ignore[arg-type]
        )
        return self.files.CreateUpload(request, timeout=5)

    def post(self, upload: files_pb2.PresignedUpload, data: bytes, content_type: str) -> None:
        reply = self.http.post(
            upload.url, data=dict(upload.fields), files={"file": ("f", data, content_type)}
        )
        assert reply.status_code == 204, reply.text

    def settle(self, file_id: str, timeout: float = 30) -> files_pb2.File:
        def settled() -> files_pb2.File | None:
            file = self.get(file_id)
            return None if file.status in UNSETTLED else file

        return eventually(settled, timeout)

    def get(self, file_id: str) -> files_pb2.File:
        return self.files.GetFile(files_pb2.GetFileRequest(file_id=file_id), timeout=5).file

    def download(self, **target: str) -> httpx.Response:
        request = files_pb2.GetDownloadUrlRequest(**target)
        url = self.files.GetDownloadUrl(request, timeout=5).url
        reply = self.http.get(url)
        assert reply.status_code == 200, reply.text
        return reply

    def exists(self, bucket: str, key: str) -> bool:
        listed = self.s3.list_objects_v2(Bucket=self.buckets[bucket], Prefix=key)
        return any(item["Key"] == key for item in listed.get("Contents", []))

    def events(self, event_type: str, subject: str) -> int:
        with self.db.connect() as connection:
            return int(
                connection.execute(
                    sa.select(sa.func.count()).where(
                        outbox_table.c.event_type == event_type, outbox_table.c.subject == subject
                    )
                ).scalar_one()
            )

    def handled(self, event_id: str) -> bool:
        with self.db.connect() as connection:
            found = connection.execute(
                sa.select(sa.func.count()).where(inbox_table.c.event_id == event_id)
            ).scalar_one()
        return bool(found)

    def send(self, queue: str, body: str, attributes: dict[str, str] | None = None) -> None:
        url = self.sqs.get_queue_url(QueueName=f"{self.settings.name_prefix}-{queue}")["QueueUrl"]
        self.sqs.send_message(
            QueueUrl=url,
            MessageBody=body,
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value}
                for name, value in (attributes or {}).items()
            },
        )

    def notify_upload(self, key: str, etag: str) -> str:
        """Send an S3 object-created notification for `key` as S3 would; its inbox key."""
        bucket = self.buckets["uploads"]
        record = {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1, "eTag": etag}},
        }
        self.send("files-uploads", json.dumps({"Records": [record]}))
        return s3_dedupe_key(S3Record(bucket, key, "ObjectCreated:Put", etag=etag))


def eventually(probe: Callable[[], T | None], timeout: float = 30) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def stack(module_processes: ProcessGroup, stack_settings: Settings) -> Iterator[Stack]:
    apis = [module_processes.start(service, "api") for service in ("files", "orders")]
    for service in ("files", "orders"):
        module_processes.start(service, "worker")
        module_processes.start(service, "relay")
    for api in apis:
        api.wait_serving(timeout=90)  # six processes start at once on a small machine
    db = create_service_engine(stack_settings, "files")
    with (
        grpc.insecure_channel(stack_settings.files_addr) as files_channel,
        grpc.insecure_channel(stack_settings.orders_addr) as orders_channel,
    ):
        yield Stack(
            stack_settings,
            files_pb2_grpc.FilesServiceStub(files_channel),
            orders_pb2_grpc.OrdersServiceStub(orders_channel),
            db,
        )
    db.dispose()


def test_a_png_posted_to_its_presigned_url_is_processed_with_a_thumbnail(stack: Stack) -> None:
    data = media.image("PNG", (640, 480))
    created = stack.create("image/png", len(data), file_name="cat.png")
    assert created.upload.method == files_pb2.UPLOAD_METHOD_POST
    assert created.upload.fields["key"] == f"incoming/{created.file.file_id}"
    stack.post(created.upload, data, "image/png")
    file = stack.settle(created.file.file_id)
    assert file.status == Status.FILE_STATUS_PROCESSED, file
    assert (file.size_bytes, file.sha256) == (len(data), sha256(data))
    assert file.detected_content_type == "image/png"
    assert (file.image.width, file.image.height) == (640, 480)
    assert [(o.variant, o.content_type) for o in file.outputs] == [("thumbnail", "image/png")]
    original = stack.download(file_id=file.file_id)
    assert original.content == data
    assert 'filename="cat.png"' in original.headers["content-disposition"]
    thumbnail = stack.download(file_id=file.file_id, variant="thumbnail")
    assert Image.open(io.BytesIO(thumbnail.content)).size == (256, 192)
    assert stack.exists("processed", f"processed/{file.file_id}/thumbnail.png")
    assert stack.events("file.processed", file.file_id) == 1


def test_a_pdf_put_to_its_presigned_url_gets_its_page_count(stack: Stack) -> None:
    data = media.pdf(pages=3)
    created = stack.create(
        "application/pdf", len(data), method=files_pb2.UPLOAD_METHOD_PUT, file_name="doc.pdf"
    )
    upload = created.upload
    assert upload.method == files_pb2.UPLOAD_METHOD_PUT
    reply = stack.http.put(upload.url, content=data, headers=dict(upload.headers))
    assert reply.status_code == 200, reply.text
    file = stack.settle(created.file.file_id)
    assert file.status == Status.FILE_STATUS_PROCESSED, file
    assert (file.document.page_count, file.sha256) == (3, sha256(data))


@pytest.mark.parametrize(
    ("declared", "data", "content_type", "fragment"),
    [
        pytest.param(None, media.EXECUTABLE, "image/png", "x-msdownload", id="exe-as-png"),
        pytest.param(None, media.CORRUPT_PNG, "image/png", "image/png", id="corrupt-png"),
    ],
)
@pytest.mark.security
def test_bad_uploads_are_rejected_and_quarantined(
    stack: Stack, declared: int | None, data: bytes, content_type: str, fragment: str
) -> None:
    created = stack.create(content_type, declared or len(data), notify_email="ada@example.com")
    stack.post(created.upload, data, content_type)
    file = stack.settle(created.file.file_id)
    assert file.status == Status.FILE_STATUS_REJECTED, file
    assert fragment in file.rejection_reason
    assert stack.exists("uploads", f"quarantine/{file.file_id}")
    assert not stack.exists("uploads", f"incoming/{file.file_id}")
    assert stack.events("file.rejected", file.file_id) == 1
    with pytest.raises(grpc.RpcError) as raised:
        stack.files.GetDownloadUrl(files_pb2.GetDownloadUrlRequest(file_id=file.file_id))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.security
def test_an_upload_over_its_declared_size_is_refused_by_s3_and_caught_past_it(
    stack: Stack,
) -> None:
    created = stack.create("text/plain", 100)
    data = b"x" * 200
    upload = created.upload
    refused = stack.http.post(
        upload.url, data=dict(upload.fields), files={"file": ("f", data, "text/plain")}
    )
    # The presigned POST's policy pins the size (content-length-range), as S3 enforces it.
    assert refused.status_code == 400, refused.text
    assert "EntityTooLarge" in refused.text
    # An object written past the policy (by a principal allowed s3:PutObject) is still caught.
    key = f"incoming/{created.file.file_id}"
    stack.s3.put_object(Bucket=stack.buckets["uploads"], Key=key, Body=data)
    file = stack.settle(created.file.file_id)
    assert file.status == Status.FILE_STATUS_REJECTED, file
    assert "200 bytes but 100" in file.rejection_reason
    assert stack.exists("uploads", f"quarantine/{file.file_id}")
    assert stack.events("file.rejected", file.file_id) == 1


def test_duplicate_notifications_are_processed_once(stack: Stack) -> None:
    data = b"order,total\n1,50.00\n"
    created = stack.create("text/csv", len(data))
    key = f"incoming/{created.file.file_id}"
    stack.s3.put_object(Bucket=stack.buckets["uploads"], Key=key, Body=data)
    etag = stack.s3.head_object(Bucket=stack.buckets["uploads"], Key=key)["ETag"].strip('"')
    # The same notification twice more (the inbox), then a re-notification of the key (status).
    same = [stack.notify_upload(key, etag) for _ in range(2)]
    again = stack.notify_upload(key, "re-notified")
    eventually(lambda: all(stack.handled(k) for k in [*same, again]) or None)
    file = stack.settle(created.file.file_id)
    assert file.status == Status.FILE_STATUS_PROCESSED, file
    assert stack.events("file.uploaded", file.file_id) == 1
    assert stack.events("file.processed", file.file_id) == 1


def test_notifications_of_other_keys_are_acknowledged(stack: Stack) -> None:
    stray = [
        stack.notify_upload("incoming/not-a-file-id", "e1"),
        stack.notify_upload(f"incoming/{uuid.uuid4()}", "e2"),
    ]
    eventually(lambda: all(stack.handled(k) for k in stray) or None)


def test_a_confirmed_order_gets_one_pdf_receipt(stack: Stack) -> None:
    created = stack.orders.CreateOrder(
        order_request(
            uuid.uuid4().hex,
            customer_id="cust-receipt",
            customer_email="ada@example.com",
            items=[order_line("SKU-BOOK-001", quantity=2, amount_minor=2500)],
        ),
        timeout=5,
    ).order
    order_id = created.order_id

    def receipt() -> files_pb2.GetDownloadUrlResponse | None:
        request = files_pb2.GetDownloadUrlRequest(receipt_order_id=order_id)
        try:
            return stack.files.GetDownloadUrl(request, timeout=5)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return None

    link = eventually(receipt, timeout=45)
    pdf = PdfReader(io.BytesIO(stack.http.get(link.url).content))
    text = "\n".join(page.extract_text() for page in pdf.pages)
    assert order_id in text
    assert "USD 50.00" in text
    via_orders = stack.orders.GetReceiptUrl(
        orders_pb2.GetReceiptUrlRequest(order_id=order_id), timeout=10
    )
    assert via_orders.url
    assert via_orders.file_id == link.file_id
    file = stack.get(link.file_id)
    assert (file.kind, file.status, file.order_id) == (
        files_pb2.FILE_KIND_RECEIPT,
        Status.FILE_STATUS_PROCESSED,
        order_id,
    )
    assert stack.download(file_id=link.file_id).content[:5] == b"%PDF-"
    # order.confirmed again under a new event id: the receipt exists, nothing is re-rendered.
    again = new_envelope(
        events_pb2.OrderConfirmed(order_id=order_id), source="orders", subject=order_id
    )
    stack.send("files-orders", encode(again), {"event_type": "order.confirmed"})
    eventually(lambda: stack.handled(again.event_id) or None)
    assert stack.events("receipt.ready", link.file_id) == 1
    assert eventually(receipt).file_id == link.file_id


def test_requests_the_service_refuses(stack: Stack) -> None:
    pending = stack.create("text/plain", 10).file.file_id
    cases: list[tuple[Callable[[], object], grpc.StatusCode]] = [
        (
            lambda: stack.files.GetDownloadUrl(files_pb2.GetDownloadUrlRequest(file_id=pending)),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (lambda: stack.get(str(uuid.uuid4())), grpc.StatusCode.NOT_FOUND),
        (lambda: stack.get("not-an-id"), grpc.StatusCode.INVALID_ARGUMENT),
        (
            lambda: stack.files.GetDownloadUrl(
                files_pb2.GetDownloadUrlRequest(receipt_order_id=str(uuid.uuid4()))
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
    ]
    for call, code in cases:
        with pytest.raises(grpc.RpcError) as raised:
            call()
        assert raised.value.code() == code
    with pytest.raises(grpc.RpcError) as raised:
        stack.create("image/svg+xml", 0, file_name="../x.svg")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(raised.value)
    assert status is not None
    details = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(details)
    assert {v.field for v in details.field_violations} == {
        "file_name",
        "content_type",
        "size_bytes",
    }


def test_the_sweep_expires_uploads_that_never_arrived(stack: Stack) -> None:
    created = stack.create("text/plain", 10)
    later = datetime.now(UTC) + timedelta(seconds=stack.settings.files_upload_expiry_seconds + 120)
    assert expire_uploads(uow=SqlUnitOfWork(session_factory(stack.db)), now=later) >= 1
    assert stack.get(created.file.file_id).status == Status.FILE_STATUS_EXPIRED
