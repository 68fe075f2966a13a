"""The asyncio unit of work of orders' hot paths, on PostgreSQL and on SQLite (`make up`)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from eventforge.orders.bootstrap import OrdersApp, bootstrap
from eventforge.orders.domain.commands import PlaceOrder, RequestedLine
from eventforge.orders.domain.model import Order, OrderLine
from eventforge.orders.service_layer import handlers
from eventforge.orders.service_layer.unit_of_work import AsyncSqlUnitOfWork
from eventforge.runtime.context import request_context
from eventforge.runtime.migrations import migrate
from eventforge.runtime.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(params=["postgresql", "sqlite"])
def app(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[OrdersApp, list[set[str]]]]:
    """The orders app on either database, and the channels its relays were told to wake."""
    if request.param == "postgresql":
        settings: Settings = request.getfixturevalue("stack_settings")
    else:
        settings = Settings(data_dir=tmp_path)
        migrate(settings, "orders")
    app = bootstrap(settings, pre_ping=False)
    woken: list[set[str]] = []
    app.async_uow = lambda: AsyncSqlUnitOfWork(app.async_engine, woken.append)  # type: ignore[method-assign]
    yield app, woken
    asyncio.run(app.async_engine.dispose())
    app.engine.dispose()


def command(key: str, quantity: int = 2) -> PlaceOrder:
    return PlaceOrder(
        idempotency_key=key,
        customer_id=f"cust-{uuid.uuid4().hex[:8]}",
        customer_email="ada@example.com",
        currency="USD",
        payment_token="tok_success",
        lines=(
            RequestedLine("SKU-BOOK-001", quantity, 2500, "USD"),
            RequestedLine("SKU-MUG-001", 1, 1299, "USD"),
        ),
    )


def outbox_rows(app: OrdersApp, order_id: str) -> list[sa.Row[tuple[str, str, str | None]]]:
    with app.engine.connect() as connection:
        return list(
            connection.execute(
                sa.text(
                    "SELECT event_type, attributes, request_id FROM outbox WHERE subject = :id"
                ),
                {"id": order_id},
            )
        )


def test_an_order_placed_is_stored_with_its_event_and_wakes_the_relay(
    app: tuple[OrdersApp, list[set[str]]],
) -> None:
    orders, woken = app

    async def place_and_read() -> tuple[Order, Order]:
        with request_context("req-async-uow"):
            placed = await handlers.place_order(
                command=command(uuid.uuid4().hex), uow=orders.async_uow()
            )
            read = await handlers.get_order(order_id=placed.order_id, uow=orders.async_uow())
        return placed, read

    placed, read = asyncio.run(place_and_read())
    assert read.order_id == placed.order_id
    assert read.lines == [OrderLine("SKU-BOOK-001", 2, 2500), OrderLine("SKU-MUG-001", 1, 1299)]
    assert read.total_minor == 6299
    assert read.created_at == placed.created_at
    [(event_type, attributes, request_id)] = outbox_rows(orders, placed.order_id)
    assert event_type == "order.placed"
    assert request_id == "req-async-uow"
    attributes = attributes if isinstance(attributes, dict) else json.loads(attributes)
    assert attributes["event_type"] == "order.placed"
    assert woken == [{"orders_outbox"}]


def test_a_unit_left_without_commit_leaves_nothing(
    app: tuple[OrdersApp, list[set[str]]],
) -> None:
    orders, woken = app
    order = Order.place(
        order_id=str(uuid.uuid4()),
        customer_id="cust-rollback",
        customer_email="ada@example.com",
        currency="USD",
        payment_token="tok_success",
        lines=[OrderLine("SKU-BOOK-001", 1, 2500)],
    )

    async def add_then_leave() -> Order | None:
        async with orders.async_uow() as uow:
            await uow.orders.add(uow.track(order))
        async with orders.async_uow() as uow:
            return await uow.orders.get(order.order_id)

    assert asyncio.run(add_then_leave()) is None
    assert outbox_rows(orders, order.order_id) == []
    assert woken == []


def test_concurrent_retries_of_one_request_place_one_order(
    app: tuple[OrdersApp, list[set[str]]],
) -> None:
    orders, _ = app
    retried = command(uuid.uuid4().hex)

    async def place_eight_times() -> list[Order]:
        return await asyncio.gather(
            *(handlers.place_order(command=retried, uow=orders.async_uow()) for _ in range(8))
        )

    placed = asyncio.run(place_eight_times())
    assert len({order.order_id for order in placed}) == 1
    assert len(outbox_rows(orders, placed[0].order_id)) == 1
