"""In-memory fakes of the orders ports, for fast tests of the domain and handlers."""

from __future__ import annotations

import asyncio
import copy
import itertools
from datetime import datetime
from types import TracebackType
from typing import Self

from google.protobuf.message import Message

from eventforge.orders.domain.commands import PlaceOrder
from eventforge.orders.domain.model import Order, OrderLine
from eventforge.orders.service_layer import handlers
from eventforge.orders.service_layer.ports import (
    AsyncCatalog,
    AsyncIdempotencyKeys,
    AsyncOrders,
    Catalog,
    Charge,
    ChargeState,
    ChargeStatus,
    IdempotencyKeys,
    IdempotencyRecord,
    OrderRepository,
    PageCursor,
    PaymentDeclined,
    PaymentGateway,
    PaymentUnavailable,
    Product,
)
from eventforge.orders.service_layer.unit_of_work import AsyncUnitOfWork, UnitOfWork

CATALOGUE = {
    "SKU-BOOK-001": Product("SKU-BOOK-001", "Book", 2500, "USD"),
    "SKU-MUG-001": Product("SKU-MUG-001", "Mug", 1299, "USD"),
    "SKU-EURO-001": Product("SKU-EURO-001", "Euro thing", 999, "EUR"),
}


class Crash(Exception):
    """A simulated process crash at a commit."""


class FakeOrders(OrderRepository):
    def __init__(self) -> None:
        self.rows: dict[str, Order] = {}

    def add(self, order: Order) -> None:
        self.save(order)

    def get(self, order_id: str, *, for_update: bool = False) -> Order | None:
        found = self.rows.get(order_id)
        return copy.deepcopy(found) if found else None

    def save(self, order: Order) -> None:
        stored = copy.deepcopy(order)
        stored.events = []  # like a database row: events are not state
        self.rows[order.order_id] = stored

    def list_for_customer(
        self, customer_id: str, *, after: PageCursor | None, limit: int
    ) -> list[Order]:
        mine = sorted(
            (o for o in self.rows.values() if o.customer_id == customer_id),
            key=lambda o: (o.created_at, o.order_id),
            reverse=True,
        )
        if after:
            mine = [
                o for o in mine if (o.created_at, o.order_id) < (after.created_at, after.order_id)
            ]
        return copy.deepcopy(mine[:limit])

    def with_payment(self, payment_id: str, *, for_update: bool = False) -> Order | None:
        found = [o for o in self.rows.values() if payment_id and o.payment_id == payment_id]
        return copy.deepcopy(found[0]) if found else None

    def stalled(self, *, older_than: datetime, limit: int) -> list[str]:
        return [
            o.order_id
            for o in self.rows.values()
            if not (o.status.terminal or o.status.waiting) and o.updated_at < older_than
        ][:limit]

    def payments_due(self, *, now: datetime, limit: int) -> list[str]:
        return [o.order_id for o in self.rows.values() if o.payment_overdue(now)][:limit]


class FakeCatalog(Catalog):
    def __init__(self, stock: dict[str, int] | None = None) -> None:
        self.stock = dict(stock or {sku: 100 for sku in CATALOGUE})
        self.reservations: dict[str, list[OrderLine]] = {}

    def products(self, skus: set[str]) -> dict[str, Product]:
        return {sku: CATALOGUE[sku] for sku in skus if sku in CATALOGUE}

    def reserve(self, order_id: str, lines: list[OrderLine]) -> list[str]:
        if order_id in self.reservations:
            return []
        short = [line.sku for line in lines if self.stock.get(line.sku, 0) < line.quantity]
        if short:
            return short
        for line in lines:
            self.stock[line.sku] -= line.quantity
        self.reservations[order_id] = list(lines)
        return []

    def release(self, order_id: str) -> None:
        for line in self.reservations.pop(order_id, []):
            self.stock[line.sku] += line.quantity


class FakeIdempotency(IdempotencyKeys):
    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], IdempotencyRecord] = {}

    def claim(
        self, customer_id: str, key: str, request_hash: str, order_id: str
    ) -> IdempotencyRecord | None:
        earlier = self.keys.get((customer_id, key))
        if earlier is None:
            self.keys[(customer_id, key)] = IdempotencyRecord(order_id, request_hash)
        return earlier


class FakeUnitOfWork(UnitOfWork):
    """Shares its repositories across units; `crash_at` (commit numbers) and `crash_next` make
    chosen commits fail."""

    orders: FakeOrders
    catalog: FakeCatalog

    def __init__(self, catalog: FakeCatalog | None = None) -> None:
        super().__init__()
        self.orders = FakeOrders()
        self.catalog = catalog or FakeCatalog()
        self.idempotency = FakeIdempotency()
        self.published: list[Message] = []
        self.pending: list[Message] = []
        self.commits = itertools.count(1)
        self.crash_at: set[int] = set()
        self.crash_next = False
        self._snapshot: tuple[dict[str, Order], dict[str, int], dict[str, list[OrderLine]]] = (
            {},
            {},
            {},
        )

    def __enter__(self) -> Self:
        self._snapshot = (
            copy.deepcopy(self.orders.rows),
            dict(self.catalog.stock),
            copy.deepcopy(self.catalog.reservations),
        )
        self.pending = []
        return super().__enter__()

    def record(self, payload: Message, *, subject: str) -> None:
        self.pending.append(payload)

    def _commit(self) -> None:
        if next(self.commits) in self.crash_at or self.crash_next:
            self.crash_next = False
            raise Crash("crashed while committing")
        self.published += self.pending
        self.pending = []
        self._snapshot = (
            copy.deepcopy(self.orders.rows),
            dict(self.catalog.stock),
            copy.deepcopy(self.catalog.reservations),
        )

    def rollback(self) -> None:
        rows, stock, reservations = self._snapshot
        self.orders.rows = copy.deepcopy(rows)
        self.catalog.stock = dict(stock)
        self.catalog.reservations = copy.deepcopy(reservations)
        self.pending = []

    def types(self) -> list[str]:
        return [payload.DESCRIPTOR.name for payload in self.published]


class _AsyncOrders(AsyncOrders):
    def __init__(self, orders: FakeOrders) -> None:
        self.orders = orders

    async def add(self, order: Order) -> None:
        self.orders.add(order)

    async def get(self, order_id: str) -> Order | None:
        return self.orders.get(order_id)


class _AsyncCatalog(AsyncCatalog):
    def __init__(self, catalog: FakeCatalog) -> None:
        self.catalog = catalog

    async def products(self, skus: set[str]) -> dict[str, Product]:
        return self.catalog.products(skus)


class _AsyncIdempotency(AsyncIdempotencyKeys):
    def __init__(self, keys: IdempotencyKeys) -> None:
        self.keys = keys

    async def claim(
        self, customer_id: str, key: str, request_hash: str, order_id: str
    ) -> IdempotencyRecord | None:
        return self.keys.claim(customer_id, key, request_hash, order_id)


class AsyncFakeUnitOfWork(AsyncUnitOfWork):
    """The asyncio unit of work of the API's hot paths, on a `FakeUnitOfWork`'s state."""

    def __init__(self, fake: FakeUnitOfWork) -> None:
        self.fake = fake
        self.orders = _AsyncOrders(fake.orders)
        self.catalog = _AsyncCatalog(fake.catalog)
        self.idempotency = _AsyncIdempotency(fake.idempotency)

    async def __aenter__(self) -> Self:
        self.fake.__enter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.fake.__exit__(exc_type, exc, tb)

    def track(self, entity: Order) -> Order:
        return self.fake.track(entity)

    async def commit(self) -> None:
        self.fake.commit()


def place_order(*, command: PlaceOrder, uow: FakeUnitOfWork) -> Order:
    """`handlers.place_order` on the fake's state."""
    return asyncio.run(handlers.place_order(command=command, uow=AsyncFakeUnitOfWork(uow)))


def get_order(*, order_id: str, uow: FakeUnitOfWork) -> Order:
    """`handlers.get_order` on the fake's state."""
    return asyncio.run(handlers.get_order(order_id=order_id, uow=AsyncFakeUnitOfWork(uow)))


class FakeGateway(PaymentGateway):
    """Outcomes by token, like the local provider; counts every charge and refund.

    `tok_pending` charges stay in `pending` until `settle` decides them; a refund voids one.
    """

    def __init__(self) -> None:
        self.charges: dict[str, str] = {}
        self.refunds: dict[str, str] = {}
        self.attempts: dict[str, int] = {}
        self.tokens: dict[str, str] = {}
        self.pending: set[str] = set()
        self.refused: dict[str, str] = {}
        self.unavailable = False
        """While True, `charge_status` fails as a provider outage would."""

    def charge(
        self, *, idempotency_key: str, order_id: str, amount_minor: int, currency: str, token: str
    ) -> Charge:
        if idempotency_key in self.charges:
            payment_id = self.charges[idempotency_key]
            if payment_id in self.refused:
                raise PaymentDeclined(self.refused[payment_id])
            return Charge(payment_id, pending=payment_id in self.pending)
        attempt = self.attempts[idempotency_key] = self.attempts.get(idempotency_key, 0) + 1
        if token == "tok_decline":
            raise PaymentDeclined("card declined")
        if token == "tok_timeout":
            raise PaymentUnavailable("timed out")
        if token.startswith("tok_transient_") and attempt <= int(token.rsplit("_", 1)[1]):
            raise PaymentUnavailable(f"unavailable (attempt {attempt})")
        payment_id = f"pay-{order_id}"
        self.charges[idempotency_key] = payment_id
        self.tokens[payment_id] = token
        if token == "tok_pending":
            self.pending.add(payment_id)
        return Charge(payment_id, pending=payment_id in self.pending)

    def settle(self, payment_id: str, *, succeeded: bool = True, reason: str = "") -> None:
        """Decide a pending charge, as the provider does before its webhook tells."""
        self.pending.remove(payment_id)
        if not succeeded:
            self.refused[payment_id] = reason

    def charge_status(self, payment_id: str) -> ChargeStatus:
        if self.unavailable:
            raise PaymentUnavailable("the provider does not answer")
        if payment_id in self.refused:
            return ChargeStatus(ChargeState.FAILED, self.refused[payment_id])
        if payment_id in self.pending:
            return ChargeStatus(ChargeState.PENDING)
        if payment_id in self.refunds:
            return ChargeStatus(ChargeState.VOIDED)
        if payment_id in self.tokens:
            return ChargeStatus(ChargeState.SETTLED)
        return ChargeStatus(ChargeState.FAILED, "no such charge")

    def find_charge(self, idempotency_key: str) -> str | None:
        found = self.charges.get(idempotency_key)
        return None if found in self.refused else found

    def refund(self, *, idempotency_key: str, payment_id: str) -> None:
        if self.tokens.get(payment_id) == "tok_refund_fails":
            raise PaymentDeclined("refund refused")
        if payment_id in self.refused:
            return  # it never took any money
        self.pending.discard(payment_id)  # voided: it will never settle
        self.refunds.setdefault(payment_id, idempotency_key)

    def net_charges(self, order_id: str) -> int:
        """Charges that took (or may still take) the order's money, less its refunds."""
        payment_id = f"pay-{order_id}"
        charged = sum(1 for p in self.charges.values() if p == payment_id and p not in self.refused)
        return charged - sum(1 for p in self.refunds if p == payment_id)
