"""Domain events → the published events of `eventforge.events.v1`."""

from __future__ import annotations

from google.protobuf.message import Message

from eventforge.common.v1.money_pb2 import Money
from eventforge.events.v1 import events_pb2
from eventforge.files.domain import model


def to_payload(event: model.Event, file: model.File) -> Message:
    """The published form of a domain event of `file`."""
    match event:
        case model.FileUploaded():
            return events_pb2.FileUploaded(
                file_id=file.file_id,
                content_type=file.content_type,
                size_bytes=file.declared_size_bytes,
            )
        case model.FileProcessed():
            return events_pb2.FileProcessed(
                file_id=file.file_id,
                detected_content_type=file.detected_content_type,
                size_bytes=file.size_bytes,
                sha256=file.sha256,
                variants=[output.variant for output in file.outputs],
                notify_email=file.notify_email,
            )
        case model.FileRejected(reason=reason):
            return events_pb2.FileRejected(
                file_id=file.file_id,
                file_name=file.file_name,
                reason=reason,
                notify_email=file.notify_email,
            )
        case model.ReceiptReady(
            order_id=order_id, customer_email=email, total_minor=total, currency=currency
        ):
            return events_pb2.ReceiptReady(
                order_id=order_id,
                file_id=file.file_id,
                customer_email=email,
                total=Money(amount_minor=total, currency=currency),
            )
