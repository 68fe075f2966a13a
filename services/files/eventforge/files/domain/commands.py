"""Commands the files service accepts, in the imperative."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestUpload:
    file_name: str
    content_type: str
    size_bytes: int
    method: str
    """"POST" or "PUT"; "" means the default (POST)."""
    notify_email: str = ""


@dataclass(frozen=True)
class RequestDownload:
    """A download of a file (`file_id`) or of an order's receipt (`receipt_order_id`)."""

    file_id: str = ""
    receipt_order_id: str = ""
    variant: str = ""
