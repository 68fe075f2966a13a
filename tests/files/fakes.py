"""In-memory fakes of the files ports, for fast tests of the domain and handlers."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Self

from google.protobuf.message import Message

from eventforge.files.domain.model import File, FileStatus, Location
from eventforge.files.service_layer.ports import (
    FileRepository,
    OrdersClient,
    OrderSnapshot,
    OrdersUnavailable,
    PresignedUpload,
    ReceiptLine,
    ReceiptRenderer,
    RenderedDocument,
    Storage,
    StoredObject,
)
from eventforge.files.service_layer.unit_of_work import UnitOfWork

PREFIX = "test"


class FakeFiles(FileRepository):
    def __init__(self) -> None:
        self.rows: dict[str, File] = {}

    def add(self, file: File) -> None:
        self.save(file)

    def get(self, file_id: str, *, for_update: bool = False) -> File | None:
        found = self.rows.get(file_id)
        return copy.deepcopy(found) if found else None

    def save(self, file: File) -> None:
        stored = copy.deepcopy(file)
        stored.events = []  # like a database row: events are not state
        self.rows[file.file_id] = stored

    def receipt_for(self, order_id: str) -> File | None:
        for file in self.rows.values():
            if file.order_id == order_id:
                return copy.deepcopy(file)
        return None

    def add_receipt(self, receipt: File) -> bool:
        if self.receipt_for(receipt.order_id or "") is not None:
            return False
        self.add(receipt)
        return True

    def expired_uploads(self, *, before: datetime, limit: int) -> list[File]:
        return [
            copy.deepcopy(f)
            for f in self.rows.values()
            if f.status is FileStatus.PENDING_UPLOAD
            and f.upload_expires_at is not None
            and f.upload_expires_at < before
        ][:limit]


class Crash(Exception):
    """A simulated process crash at a commit."""


class FakeUnitOfWork(UnitOfWork):
    """Shares its repository across units; `crash_at` makes chosen commits fail."""

    files: FakeFiles

    def __init__(self) -> None:
        super().__init__()
        self.files = FakeFiles()
        self.published: list[Message] = []
        self.pending: list[Message] = []
        self.commits = 0
        self.crash_at: set[int] = set()
        self._snapshot: dict[str, File] = {}

    def __enter__(self) -> Self:
        self._snapshot = copy.deepcopy(self.files.rows)
        self.pending = []
        return super().__enter__()

    def record(self, payload: Message, *, subject: str) -> None:
        self.pending.append(payload)

    def _commit(self) -> None:
        self.commits += 1
        if self.commits in self.crash_at:
            raise Crash(f"crashed at commit {self.commits}")
        self.published += self.pending
        self.pending = []
        self._snapshot = copy.deepcopy(self.files.rows)

    def rollback(self) -> None:
        self.files.rows = copy.deepcopy(self._snapshot)
        self.pending = []

    def types(self) -> list[str]:
        return [payload.DESCRIPTOR.name for payload in self.published]


@dataclass
class StoredBytes:
    data: bytes
    content_type: str
    last_modified: datetime


class FakeStorage(Storage):
    """Buckets `test-uploads`, `test-processed`, `test-receipts`; counts every write."""

    def __init__(self) -> None:
        self.objects: dict[Location, StoredBytes] = {}
        self.writes: list[Location] = []

    def bucket_of(self, physical_name: str) -> str | None:
        logical = physical_name.removeprefix(f"{PREFIX}-")
        return logical if logical in ("uploads", "processed", "receipts") else None

    def presign_upload(
        self,
        *,
        method: str,
        location: Location,
        content_type: str,
        size_bytes: int,
        expires_in: int,
    ) -> PresignedUpload:
        url = f"https://storage.test/{PREFIX}-{location.bucket}"
        if method == "PUT":
            headers = {"Content-Type": content_type, "Content-Length": str(size_bytes)}
            return PresignedUpload("PUT", f"{url}/{location.key}?expires={expires_in}", {}, headers)
        fields = {"key": location.key, "Content-Type": content_type, "policy": f"{size_bytes}"}
        return PresignedUpload("POST", url, fields, {})

    def presign_download(
        self, *, location: Location, content_type: str, download_name: str, expires_in: int
    ) -> str:
        return (
            f"https://storage.test/{PREFIX}-{location.bucket}/{location.key}"
            f"?type={content_type}&name={download_name}&expires={expires_in}"
        )

    def head(self, location: Location) -> StoredObject | None:
        stored = self.objects.get(location)
        return StoredObject(len(stored.data), stored.last_modified) if stored else None

    def read(self, location: Location, *, max_bytes: int) -> bytes | None:
        stored = self.objects.get(location)
        return stored.data[:max_bytes] if stored else None

    def write(self, location: Location, data: bytes, content_type: str) -> None:
        self.objects[location] = StoredBytes(data, content_type, datetime.now(UTC))
        self.writes.append(location)

    def move(self, source: Location, target: Location) -> None:
        self.objects[target] = self.objects.pop(source)

    def upload(self, location: Location, data: bytes, *, at: datetime | None = None) -> None:
        """What a client does with a presigned URL (not counted as a service write)."""
        self.objects[location] = StoredBytes(data, "", at or datetime.now(UTC))


class FakeOrders(OrdersClient):
    def __init__(self, *orders: OrderSnapshot) -> None:
        self.orders = {order.order_id: order for order in orders}
        self.calls = 0
        self.unavailable = False

    def get_order(self, order_id: str) -> OrderSnapshot:
        self.calls += 1
        if self.unavailable or order_id not in self.orders:
            raise OrdersUnavailable(f"orders cannot say about {order_id}")
        return self.orders[order_id]


class CountingRenderer(ReceiptRenderer):
    def __init__(self) -> None:
        self.rendered: list[str] = []

    def render(self, order: OrderSnapshot) -> RenderedDocument:
        self.rendered.append(order.order_id)
        body = f"%PDF-1.3 receipt {order.order_id}\n%%EOF\n".encode()
        return RenderedDocument(body, page_count=1)


def snapshot(order_id: str, *, status: str = "CONFIRMED") -> OrderSnapshot:
    return OrderSnapshot(
        order_id=order_id,
        customer_id="cust-1",
        customer_email="ada@example.com",
        status=status,
        currency="USD",
        lines=(
            ReceiptLine("SKU-BOOK-001", 2, 2500, 5000),
            ReceiptLine("SKU-STICKER-001", 3, 350, 1050),
        ),
        total_minor=6050,
        confirmed_at=datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC),
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
