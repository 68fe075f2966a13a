"""Orders use cases: place, read, list and cancel orders."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from dataclasses import asdict
from datetime import datetime

from eventforge.orders.domain.commands import CancelOrder, PlaceOrder
from eventforge.orders.domain.model import InvalidTransition, Order, OrderLine, OrderStatus
from eventforge.orders.service_layer.ports import PageCursor, PaymentGateway
from eventforge.orders.service_layer.saga import RetryPolicy, compensate
from eventforge.orders.service_layer.unit_of_work import AsyncUnitOfWork, UnitOfWork
from eventforge.orders.service_layer.validation import (
    check_against_catalogue,
    check_identifier,
    check_order_id,
    check_place_order,
    is_order_id,
    is_sku,
)
from eventforge.runtime import deferred
from eventforge.runtime.errors import AlreadyExists, FailedPrecondition, NotFound, Violations

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def request_hash(command: PlaceOrder) -> str:
    """Fingerprint of everything in the request but its idempotency key."""
    fields = asdict(command)
    del fields["idempotency_key"]
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


async def place_order(*, command: PlaceOrder, uow: AsyncUnitOfWork) -> Order:
    """Accept a valid order (PENDING) with its order.placed event; idempotent per key."""
    violations = check_place_order(command)
    async with uow:
        # Every problem is reported at once, those the catalogue finds too; the request is
        # hashed only once it is valid.
        skus = {line.sku for line in command.lines if is_sku(line.sku)}
        catalogue = await uow.catalog.products(skus)
        check_against_catalogue(violations, command, catalogue)
        violations.raise_if_any()
        fingerprint = request_hash(command)
        order_id = str(uuid.uuid4())
        earlier = await uow.idempotency.claim(
            command.customer_id, command.idempotency_key, fingerprint, order_id
        )
        if earlier is not None:
            if earlier.request_hash != fingerprint:
                raise AlreadyExists(
                    f"idempotency key {command.idempotency_key!r} was already used for a "
                    "different request"
                )
            existing = await uow.orders.get(earlier.order_id)
            if existing is None:
                raise NotFound(f"order {earlier.order_id} not found")
            return existing
        order = Order.place(
            order_id=order_id,
            customer_id=command.customer_id,
            customer_email=command.customer_email,
            currency=command.currency,
            payment_token=command.payment_token,
            lines=[OrderLine(x.sku, x.quantity, x.unit_price_minor) for x in command.lines],
            cause=deferred.capture(),
        )
        await uow.orders.add(uow.track(order))
        await uow.commit()
        return order


async def get_order(*, order_id: str, uow: AsyncUnitOfWork) -> Order:
    """One order, or NotFound."""
    violations = Violations()
    check_order_id(violations, "order_id", order_id)
    violations.raise_if_any()
    async with uow:
        order = await uow.orders.get(order_id)
    if order is None:
        raise NotFound(f"order {order_id} not found")
    return order


def list_orders(
    *, customer_id: str, page_size: int, page_token: str, uow: UnitOfWork
) -> tuple[list[Order], str]:
    """A page of a customer's orders, newest first, and the token of the next page."""
    violations = Violations()
    check_identifier(violations, "customer_id", customer_id)
    violations.check(
        0 <= page_size <= MAX_PAGE_SIZE, "page_size", f"must be between 0 and {MAX_PAGE_SIZE}"
    )
    cursor = _decode_cursor(page_token, violations)
    violations.raise_if_any()
    limit = page_size or DEFAULT_PAGE_SIZE
    with uow:
        orders = uow.orders.list_for_customer(customer_id, after=cursor, limit=limit + 1)
    if len(orders) <= limit:
        return orders, ""
    last = orders[limit - 1]
    return orders[:limit], _encode_cursor(PageCursor(last.created_at, last.order_id))


def cancel_order(
    *, command: CancelOrder, uow: UnitOfWork, gateway: PaymentGateway, retry: RetryPolicy
) -> Order:
    """Cancel an order not yet confirmed, compensating what the saga did; idempotent."""
    violations = Violations()
    check_order_id(violations, "order_id", command.order_id)
    violations.check_text("reason", command.reason, limit=500)
    violations.raise_if_any()
    with uow:
        order = uow.orders.get(command.order_id, for_update=True)
        if order is None:
            raise NotFound(f"order {command.order_id} not found")
        try:
            changed = order.request_cancel(command.reason or "cancelled by the customer")
        except InvalidTransition as error:
            raise FailedPrecondition(
                f"order {order.order_id} is {order.status.value} and cannot be cancelled"
            ) from error
        if changed:
            uow.orders.save(uow.track(order))
            uow.commit()
    if order.status is OrderStatus.COMPENSATING:
        order = compensate(order_id=order.order_id, uow=uow, gateway=gateway, retry=retry)
    return order


def _encode_cursor(cursor: PageCursor) -> str:
    raw = json.dumps({"t": cursor.created_at.isoformat(), "id": cursor.order_id})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(token: str, violations: Violations) -> PageCursor | None:
    if not token:
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(token.encode()))
        cursor = PageCursor(datetime.fromisoformat(raw["t"]), str(raw["id"]))
    except (ValueError, KeyError, TypeError, binascii.Error):
        cursor = None
    if cursor is None or not is_order_id(cursor.order_id):
        violations.add("page_token", "is not a token this service issued")
        return None
    return cursor
