"""Orders use cases against in-memory fakes: validation, idempotency, reads, cancellation."""

from __future__ import annotations

import pytest

from eventforge.orders.domain.commands import CancelOrder, PlaceOrder, RequestedLine
from eventforge.orders.domain.model import OrderStatus
from eventforge.orders.service_layer import handlers
from eventforge.orders.service_layer.saga import RetryPolicy, advance_saga
from eventforge.runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from tests.orders.fakes import FakeGateway, FakeUnitOfWork, get_order, place_order

RETRY = RetryPolicy(attempts=3, sleep=lambda _: None)


def command(**overrides: object) -> PlaceOrder:
    fields: dict[str, object] = {
        "idempotency_key": "key-1",
        "customer_id": "cust-1",
        "customer_email": "ada@example.com",
        "currency": "USD",
        "payment_token": "tok_success",
        "lines": (RequestedLine("SKU-BOOK-001", 2, 2500, "USD"),),
    }
    fields.update(overrides)
    return PlaceOrder(**fields)  # type: ignore[arg-type]


def violations_of(cmd: PlaceOrder) -> dict[str, str]:
    """Field → its descriptions joined, for every violation the request got."""
    with pytest.raises(InvalidArgument) as raised:
        place_order(command=cmd, uow=FakeUnitOfWork())
    found: dict[str, str] = {}
    for violation in raised.value.violations:
        found[violation.field] = f"{found.get(violation.field, '')} | {violation.description}"
    return found


def test_a_valid_order_is_pending_with_one_order_placed() -> None:
    uow = FakeUnitOfWork()
    order = place_order(command=command(), uow=uow)
    assert order.status is OrderStatus.PENDING
    assert order.total_minor == 5000
    assert uow.types() == ["OrderPlaced"]
    assert list(uow.orders.rows) == [order.order_id]


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"lines": ()}, "items", "at least one"),
        ({"lines": (RequestedLine("SKU-NOPE", 1, 100, "USD"),)}, "items[0].sku", "unknown SKU"),
        (
            {"lines": (RequestedLine("SKU-BOOK-001", 0, 2500, "USD"),)},
            "items[0].quantity",
            "between",
        ),
        (
            {"lines": (RequestedLine("SKU-BOOK-001", 101, 2500, "USD"),)},
            "items[0].quantity",
            "between",
        ),
        (
            {"lines": (RequestedLine("SKU-BOOK-001", 1, 0, "USD"),)},
            "items[0].unit_price.amount_minor",
            "> 0",
        ),
        (
            {"lines": (RequestedLine("SKU-BOOK-001", 1, -5, "USD"),)},
            "items[0].unit_price.amount_minor",
            "> 0",
        ),
        (
            {"lines": (RequestedLine("SKU-BOOK-001", 1, 2400, "USD"),)},
            "items[0].unit_price.amount_minor",
            "catalogue price",
        ),
        (
            {"lines": (RequestedLine("SKU-BOOK-001", 1, 2500, "EUR"),)},
            "items[0].unit_price.currency",
            "order's currency",
        ),
        (
            {"currency": "EUR", "lines": (RequestedLine("SKU-BOOK-001", 1, 2500, "EUR"),)},
            "currency",
            "sold in USD",
        ),
        ({"currency": "usd"}, "currency", "ISO 4217"),
        ({"customer_email": "not-an-email"}, "customer_email", "email"),
        ({"idempotency_key": ""}, "idempotency_key", "1-128 printable ASCII characters, no spaces"),
        ({"customer_id": "café"}, "customer_id", "printable ASCII"),
        (
            {"payment_token": "has space"},
            "payment_token",
            "1-128 printable ASCII characters, no spaces",
        ),
        (
            {"lines": tuple(RequestedLine("SKU-BOOK-001", 1, 2500, "USD") for _ in range(2))},
            "items[1].sku",
            "twice",
        ),
        (
            {"lines": tuple(RequestedLine(f"S{i}", 1, 1, "USD") for i in range(51))},
            "items",
            "at most 50",
        ),
    ],
)
def test_each_problem_is_a_field_violation(
    overrides: dict[str, object], field: str, fragment: str
) -> None:
    found = violations_of(command(**overrides))
    assert field in found, found
    assert fragment in found[field]


def test_all_problems_are_reported_together() -> None:
    found = violations_of(
        command(
            customer_email="x",
            lines=(
                RequestedLine("SKU-BOOK-001", 0, 0, "USD"),
                RequestedLine("SKU-NOPE", 1, 1, "USD"),
            ),
        )
    )
    assert set(found) >= {
        "customer_email",
        "items[0].quantity",
        "items[0].unit_price.amount_minor",
        "items[1].sku",
    }


def test_same_key_and_request_returns_the_same_order_once() -> None:
    uow = FakeUnitOfWork()
    first = place_order(command=command(), uow=uow)
    again = place_order(command=command(), uow=uow)
    assert again.order_id == first.order_id
    assert uow.types() == ["OrderPlaced"]
    assert len(uow.orders.rows) == 1


def test_same_key_with_a_different_request_is_refused() -> None:
    uow = FakeUnitOfWork()
    place_order(command=command(), uow=uow)
    with pytest.raises(AlreadyExists, match="different request"):
        place_order(command=command(lines=(RequestedLine("SKU-MUG-001", 1, 1299, "USD"),)), uow=uow)


def test_get_unknown_and_malformed_ids() -> None:
    uow = FakeUnitOfWork()
    with pytest.raises(NotFound):
        get_order(order_id="00000000-0000-4000-8000-000000000000", uow=uow)
    with pytest.raises(InvalidArgument):
        get_order(order_id="nope", uow=uow)


def test_list_pages_newest_first_with_opaque_tokens() -> None:
    uow = FakeUnitOfWork()
    placed = [place_order(command=command(idempotency_key=f"k{i}"), uow=uow) for i in range(5)]
    seen, token = [], ""
    while True:
        page, token = handlers.list_orders(
            customer_id="cust-1", page_size=2, page_token=token, uow=uow
        )
        seen += [order.order_id for order in page]
        if not token:
            break
    newest_first = sorted(placed, key=lambda o: (o.created_at, o.order_id), reverse=True)
    assert seen == [order.order_id for order in newest_first]
    with pytest.raises(InvalidArgument) as raised:
        handlers.list_orders(customer_id="cust-1", page_size=500, page_token="garbage!", uow=uow)
    assert {v.field for v in raised.value.violations} == {"page_size", "page_token"}


def test_cancel_pending_then_again_is_idempotent() -> None:
    uow, gateway = FakeUnitOfWork(), FakeGateway()
    order = place_order(command=command(), uow=uow)
    cancel = CancelOrder(order.order_id, "changed my mind")
    first = handlers.cancel_order(command=cancel, uow=uow, gateway=gateway, retry=RETRY)
    second = handlers.cancel_order(command=cancel, uow=uow, gateway=gateway, retry=RETRY)
    assert first.status is second.status is OrderStatus.CANCELLED
    assert uow.types() == ["OrderPlaced", "OrderCancelled"]


def test_cancel_confirmed_is_a_failed_precondition() -> None:
    uow, gateway = FakeUnitOfWork(), FakeGateway()
    order = place_order(command=command(), uow=uow)
    advance_saga(order_id=order.order_id, uow=uow, gateway=gateway, retry=RETRY)
    with pytest.raises(FailedPrecondition, match="CONFIRMED"):
        handlers.cancel_order(
            command=CancelOrder(order.order_id, ""), uow=uow, gateway=gateway, retry=RETRY
        )
