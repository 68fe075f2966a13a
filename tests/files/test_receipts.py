"""Receipts: rendered once per order, announced once, retried while orders is unreachable."""

from __future__ import annotations

import io
import uuid
from dataclasses import replace

import pytest
from pypdf import PdfReader

from eventforge.events.v1 import events_pb2
from eventforge.files.adapters.receipt_pdf import FpdfReceiptRenderer
from eventforge.files.domain.model import FileKind, FileStatus, receipt_location
from eventforge.files.service_layer.ports import OrderSnapshot, OrdersUnavailable, ReceiptLine
from eventforge.files.service_layer.receipts import NotConfirmed, issue_receipt
from tests.files.fakes import (
    CountingRenderer,
    FakeOrders,
    FakeStorage,
    FakeUnitOfWork,
    sha256,
    snapshot,
)


class Receipts:
    def __init__(self, *orders: OrderSnapshot) -> None:
        self.uow = FakeUnitOfWork()
        self.orders = FakeOrders(*orders)
        self.renderer = CountingRenderer()
        self.storage = FakeStorage()

    def issue(self, order_id: str) -> str:
        return issue_receipt(
            order_id=order_id,
            uow=self.uow,
            orders=self.orders,
            renderer=self.renderer,
            storage=self.storage,
        ).file_id


def test_a_confirmed_order_gets_a_stored_announced_receipt() -> None:
    order_id = str(uuid.uuid4())
    receipts = Receipts(snapshot(order_id))
    file_id = receipts.issue(order_id)
    receipt = receipts.uow.files.rows[file_id]
    stored = receipts.storage.objects[receipt_location(order_id)]
    assert (receipt.kind, receipt.status, receipt.order_id) == (
        FileKind.RECEIPT,
        FileStatus.PROCESSED,
        order_id,
    )
    assert (receipt.sha256, receipt.size_bytes) == (sha256(stored.data), len(stored.data))
    assert stored.content_type == "application/pdf"
    [ready] = receipts.uow.published
    assert isinstance(ready, events_pb2.ReceiptReady)
    assert (ready.order_id, ready.file_id, ready.customer_email) == (
        order_id,
        file_id,
        "ada@example.com",
    )
    assert (ready.total.amount_minor, ready.total.currency) == (6050, "USD")


def test_redelivery_renders_and_announces_nothing_more() -> None:
    order_id = str(uuid.uuid4())
    receipts = Receipts(snapshot(order_id))
    first = receipts.issue(order_id)
    assert receipts.issue(order_id) == first
    assert receipts.renderer.rendered == [order_id]
    assert receipts.orders.calls == 1
    assert receipts.uow.types() == ["ReceiptReady"]


def test_an_unreachable_orders_service_fails_the_message_for_a_retry() -> None:
    order_id = str(uuid.uuid4())
    receipts = Receipts(snapshot(order_id))
    receipts.orders.unavailable = True
    with pytest.raises(OrdersUnavailable):
        receipts.issue(order_id)
    assert (receipts.uow.files.rows, receipts.storage.objects) == ({}, {})
    receipts.orders.unavailable = False
    receipts.issue(order_id)
    assert receipts.uow.types() == ["ReceiptReady"]


def test_an_order_not_confirmed_gets_no_receipt() -> None:
    order_id = str(uuid.uuid4())
    receipts = Receipts(snapshot(order_id, status="PENDING"))
    with pytest.raises(NotConfirmed):
        receipts.issue(order_id)
    assert receipts.renderer.rendered == []


def test_a_concurrent_duplicate_loses_on_the_unique_order_id_quietly() -> None:
    order_id = str(uuid.uuid4())
    receipts = Receipts(snapshot(order_id))
    other = Receipts(snapshot(order_id))
    other.uow.files = receipts.uow.files

    class Racing(FakeOrders):
        def get_order(self, order_id: str) -> OrderSnapshot:
            other.issue(order_id)  # the other worker commits while this one renders
            return super().get_order(order_id)

    receipts.orders = Racing(snapshot(order_id))
    winner = receipts.issue(order_id)
    assert [f.file_id for f in receipts.uow.files.rows.values()] == [winner]
    assert receipts.uow.published == []
    assert other.uow.types() == ["ReceiptReady"]


def test_the_pdf_shows_the_order_and_money_from_minor_units() -> None:
    order_id = str(uuid.uuid4())
    document = FpdfReceiptRenderer().render(snapshot(order_id))
    reader = PdfReader(io.BytesIO(document.data))
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert document.page_count == len(reader.pages) == 1
    for expected in (
        order_id,
        "2025-03-04 05:06 UTC",
        "cust-1",
        "ada@example.com",
        "SKU-BOOK-001",
        "SKU-STICKER-001",
        "USD 25.00",
        "USD 50.00",
        "USD 3.50",
        "USD 10.50",
        "USD 60.50",
    ):
        assert expected in text


def test_the_same_order_renders_the_same_bytes() -> None:
    order = snapshot(str(uuid.uuid4()))
    renderer = FpdfReceiptRenderer()
    assert renderer.render(order).data == renderer.render(order).data


def test_long_orders_and_unusual_characters_render() -> None:
    lines = tuple(ReceiptLine(f"SKU-{n:03d}", 1, 100, 100) for n in range(50))
    order = replace(
        snapshot(str(uuid.uuid4())),
        customer_email="zoë.名前@example.com",
        lines=lines,
        total_minor=5000,
    )
    document = FpdfReceiptRenderer().render(order)
    reader = PdfReader(io.BytesIO(document.data))
    assert document.page_count == len(reader.pages) > 1
    assert "zoë.??@example.com" in reader.pages[0].extract_text()
