"""Page sizes and opaque page tokens shared by the list use cases."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from eventforge.notifier.service_layer.ports import PageCursor
from eventforge.runtime.errors import Violations

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
T = TypeVar("T")


def page_limit(violations: Violations, page_size: int) -> int:
    """The number of items a page holds (0 means the default)."""
    violations.check(
        0 <= page_size <= MAX_PAGE_SIZE, "page_size", f"must be between 0 and {MAX_PAGE_SIZE}"
    )
    return page_size or DEFAULT_PAGE_SIZE


def encode_cursor(cursor: PageCursor) -> str:
    raw = json.dumps({"t": cursor.created_at.isoformat(), "id": cursor.item_id})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(token: str, violations: Violations) -> PageCursor | None:
    if not token:
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(token.encode()))
        cursor = PageCursor(datetime.fromisoformat(raw["t"]), str(raw["id"]))
    except (ValueError, KeyError, TypeError, binascii.Error):
        cursor = None
    if cursor is None or not Violations().check_text("page_token", cursor.item_id, limit=64):
        violations.add("page_token", "is not a token this service issued")
        return None
    return cursor


def split_page(
    items: list[T], limit: int, cursor_of: Callable[[T], PageCursor]
) -> tuple[list[T], str]:
    """The page (items fetched with `limit + 1`) and the token of the next one ("" at the end)."""
    if len(items) <= limit:
        return items, ""
    return items[:limit], encode_cursor(cursor_of(items[limit - 1]))
