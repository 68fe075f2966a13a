"""PDF receipts of confirmed orders: fetch the order, render, store, record, announce — once."""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import UTC, datetime

from opentelemetry import trace

from eventforge.files.domain.model import RECEIPT_CONTENT_TYPE, File, Findings, receipt_location
from eventforge.files.service_layer.ports import OrdersClient, ReceiptRenderer, Storage
from eventforge.files.service_layer.unit_of_work import UnitOfWork

log = logging.getLogger("eventforge.files.receipts")
tracer = trace.get_tracer("eventforge.files.receipts")

CONFIRMED = "CONFIRMED"


class NotConfirmed(Exception):
    """The orders service does not report the order as confirmed (yet): retry later."""


def issue_receipt(
    *,
    order_id: str,
    uow: UnitOfWork,
    orders: OrdersClient,
    renderer: ReceiptRenderer,
    storage: Storage,
) -> File:
    """The order's receipt, rendered and announced (receipt.ready) unless it already exists.

    Failures to reach orders propagate, so the message is retried with backoff. Rendering is
    deterministic, so a concurrent duplicate overwrites the stored PDF with the same bytes and
    then loses on the unique order id without announcing anything.
    """
    with tracer.start_as_current_span("files issue_receipt") as span:
        span.set_attribute("eventforge.order_id", order_id)
        with uow:
            existing = uow.files.receipt_for(order_id)
        if existing is not None:
            log.info("order %s already has receipt %s", order_id, existing.file_id)
            return existing
        order = orders.get_order(order_id)
        if order.status != CONFIRMED:
            raise NotConfirmed(f"order {order_id} is {order.status}, not {CONFIRMED}")
        document = renderer.render(order)
        location = receipt_location(order_id)
        storage.write(location, document.data, RECEIPT_CONTENT_TYPE)
        receipt = File.receipt(
            file_id=str(uuid.uuid4()),
            order_id=order_id,
            customer_email=order.customer_email,
            total_minor=order.total_minor,
            currency=order.currency,
            findings=Findings(
                size_bytes=len(document.data),
                sha256=hashlib.sha256(document.data).hexdigest(),
                detected_content_type=RECEIPT_CONTENT_TYPE,
                page_count=document.page_count,
            ),
            now=datetime.now(UTC),
        )
        with uow:
            if uow.files.add_receipt(uow.track(receipt)):
                uow.commit()
                span.set_attribute("eventforge.file_id", receipt.file_id)
                log.info("receipt %s of order %s stored", receipt.file_id, order_id)
                return receipt
            winner = uow.files.receipt_for(order_id)
        if winner is None:  # the concurrent writer rolled back after all: try again
            raise RuntimeError(f"receipt of order {order_id} could not be stored")
        log.info("receipt of order %s was stored concurrently", order_id)
        return winner
