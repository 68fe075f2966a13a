"""SQL implementations of the orders ports, on one session (the unit of work's)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.rows import dict_row
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Session

from eventforge.orders.adapters.tables import (
    idempotency_keys,
    order_lines,
    orders,
    products,
    reservations,
)
from eventforge.orders.domain.model import Order, OrderLine, OrderStatus
from eventforge.orders.service_layer.ports import (
    AsyncCatalog,
    AsyncIdempotencyKeys,
    AsyncOrders,
    Catalog,
    IdempotencyKeys,
    IdempotencyRecord,
    OrderRepository,
    PageCursor,
    Product,
)
from eventforge.runtime import deferred

_SCALARS = (
    "customer_id",
    "customer_email",
    "currency",
    "payment_token",
    "failure_reason",
    "failed_step",
    "reserved",
    "payment_id",
    "payment_due_at",
    "refunded",
    "cancel_requested",
    "created_at",
    "updated_at",
)


# The statements of the hot paths are built once and executed with parameters: building one per
# call (and generating its cache key) cost more CPU than the round trip it makes.
_INSERT_ORDER = sa.insert(orders)
_INSERT_LINES = sa.insert(order_lines)
_PRODUCTS = sa.select(products).where(products.c.sku.in_(sa.bindparam("skus", expanding=True)))
# ON CONFLICT DO NOTHING: no savepoint round trips, and a concurrent claim of the same key
# waits for the first to commit (or roll back) before it decides. Plain SQL because
# SQLAlchemy cannot cache a compiled ON CONFLICT construct; PostgreSQL and SQLite agree on it.
_CLAIM_KEY = sa.text(
    "INSERT INTO idempotency_keys"
    " (customer_id, idempotency_key, request_hash, order_id, created_at)"
    " VALUES (:customer_id, :idempotency_key, :request_hash, :order_id, :created_at)"
    " ON CONFLICT (customer_id, idempotency_key) DO NOTHING RETURNING order_id"
).bindparams(sa.bindparam("created_at", type_=idempotency_keys.c.created_at.type))
_ORDER = sa.select(orders).where(orders.c.order_id == sa.bindparam("order_id"))
_ORDER_FOR_UPDATE = _ORDER.with_for_update()
_WAITING_OR_DONE = [s.value for s in OrderStatus if s.terminal or s.waiting]
_LINES = (
    sa.select(order_lines)
    .where(order_lines.c.order_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(order_lines.c.order_id, order_lines.c.line_no)
)
_CLAIMED_KEY = sa.select(idempotency_keys.c.order_id, idempotency_keys.c.request_hash).where(
    idempotency_keys.c.customer_id == sa.bindparam("customer_id"),
    idempotency_keys.c.idempotency_key == sa.bindparam("idempotency_key"),
)


def utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything here is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _row_of(order: Order) -> dict[str, Any]:
    row = {name: getattr(order, name) for name in _SCALARS}
    return {
        **row,
        "order_id": order.order_id,
        "status": order.status.value,
        "cause": deferred.dumps(order.cause),
    }


class SqlOrders(OrderRepository):
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, order: Order) -> None:
        self.session.execute(_INSERT_ORDER, _row_of(order))
        self.session.execute(_INSERT_LINES, _line_rows(order))

    def get(self, order_id: str, *, for_update: bool = False) -> Order | None:
        query = _ORDER_FOR_UPDATE if for_update else _ORDER
        row = self.session.execute(query, {"order_id": order_id}).mappings().one_or_none()
        if row is None:
            return None
        return self._load([row])[0]

    def save(self, order: Order) -> None:
        values = _row_of(order)
        self.session.execute(
            sa.update(orders).where(orders.c.order_id == order.order_id).values(**values)
        )

    def list_for_customer(
        self, customer_id: str, *, after: PageCursor | None, limit: int
    ) -> list[Order]:
        query = sa.select(orders).where(orders.c.customer_id == customer_id)
        if after is not None:
            query = query.where(
                sa.tuple_(orders.c.created_at, orders.c.order_id)
                < sa.tuple_(sa.literal(after.created_at), sa.literal(after.order_id))
            )
        query = query.order_by(orders.c.created_at.desc(), orders.c.order_id.desc()).limit(limit)
        return self._load(list(self.session.execute(query).mappings()))

    def with_payment(self, payment_id: str, *, for_update: bool = False) -> Order | None:
        if not payment_id:
            return None
        query = sa.select(orders).where(orders.c.payment_id == payment_id)
        if for_update:
            query = query.with_for_update()
        rows = list(self.session.execute(query).mappings())
        return self._load(rows)[0] if rows else None

    def stalled(self, *, older_than: datetime, limit: int) -> list[str]:
        query = (
            sa.select(orders.c.order_id)
            .where(orders.c.status.not_in(_WAITING_OR_DONE))
            .where(orders.c.updated_at < older_than)
            .order_by(orders.c.updated_at)
            .limit(limit)
        )
        return list(self.session.scalars(query))

    def payments_due(self, *, now: datetime, limit: int) -> list[str]:
        query = (
            sa.select(orders.c.order_id)
            .where(orders.c.status == OrderStatus.PAYMENT_PENDING.value)
            .where(sa.or_(orders.c.payment_due_at.is_(None), orders.c.payment_due_at <= now))
            .order_by(orders.c.payment_due_at)
            .limit(limit)
        )
        return list(self.session.scalars(query))

    def _load(self, rows: list[Any]) -> list[Order]:
        ids = [row["order_id"] for row in rows]
        return _orders_of(rows, self.session.execute(_LINES, {"ids": ids}).mappings())


class SqlCatalog(Catalog):
    def __init__(self, session: Session) -> None:
        self.session = session

    def products(self, skus: set[str]) -> dict[str, Product]:
        return _products_of(self.session.execute(_PRODUCTS, {"skus": sorted(skus)}).mappings())

    def reserve(self, order_id: str, lines: list[OrderLine]) -> list[str]:
        held = sa.select(sa.func.count()).where(reservations.c.order_id == order_id)
        if self.session.scalar(held):
            return []  # reserved already: a redelivered step
        short: list[str] = []
        savepoint = self.session.begin_nested()
        # A fixed SKU order keeps concurrent reservations from deadlocking.
        for line in sorted(lines, key=lambda line: line.sku):
            taken: CursorResult[Any] = self.session.execute(  # type: ignore[assignment]
                sa.update(products)
                .where(products.c.sku == line.sku, products.c.stock >= line.quantity)
                .values(stock=products.c.stock - line.quantity)
            )
            if taken.rowcount == 0:
                short.append(line.sku)
        if short:
            savepoint.rollback()
            return short
        now = datetime.now(UTC)
        self.session.execute(
            sa.insert(reservations),
            [
                {
                    "order_id": order_id,
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "reserved_at": now,
                }
                for line in lines
            ],
        )
        savepoint.commit()
        return []

    def release(self, order_id: str) -> None:
        held = self.session.execute(
            sa.select(reservations.c.sku, reservations.c.quantity)
            .where(reservations.c.order_id == order_id, reservations.c.released_at.is_(None))
            .order_by(reservations.c.sku)
            .with_for_update()
        ).all()
        for sku, quantity in held:
            self.session.execute(
                sa.update(products)
                .where(products.c.sku == sku)
                .values(stock=products.c.stock + quantity)
            )
        self.session.execute(
            sa.update(reservations)
            .where(reservations.c.order_id == order_id, reservations.c.released_at.is_(None))
            .values(released_at=datetime.now(UTC))
        )


class SqlIdempotencyKeys(IdempotencyKeys):
    def __init__(self, session: Session) -> None:
        self.session = session

    def claim(
        self, customer_id: str, key: str, request_hash: str, order_id: str
    ) -> IdempotencyRecord | None:
        params = {"customer_id": customer_id, "idempotency_key": key}
        claimed = self.session.execute(_CLAIM_KEY, _claim_of(params, request_hash, order_id))
        if claimed.first() is not None:
            return None
        row = self.session.execute(_CLAIMED_KEY, params).one()
        return IdempotencyRecord(row.order_id, row.request_hash)


# The asyncio adapters of the API's hot paths: the same statements on an AsyncConnection
# (SQLite; PostgreSQL's adapters follow).


class AsyncSqlOrders(AsyncOrders):
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def add(self, order: Order) -> None:
        await self.connection.execute(_INSERT_ORDER, _row_of(order))
        await self.connection.execute(_INSERT_LINES, _line_rows(order))

    async def get(self, order_id: str) -> Order | None:
        found = await self.connection.execute(_ORDER, {"order_id": order_id})
        row = found.mappings().one_or_none()
        if row is None:
            return None
        lines = await self.connection.execute(_LINES, {"ids": [order_id]})
        return _orders_of([row], lines.mappings())[0]


class AsyncSqlCatalog(AsyncCatalog):
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def products(self, skus: set[str]) -> dict[str, Product]:
        rows = await self.connection.execute(_PRODUCTS, {"skus": sorted(skus)})
        return _products_of(rows.mappings())


class AsyncSqlIdempotencyKeys(AsyncIdempotencyKeys):
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def claim(
        self, customer_id: str, key: str, request_hash: str, order_id: str
    ) -> IdempotencyRecord | None:
        params = {"customer_id": customer_id, "idempotency_key": key}
        claimed = await self.connection.execute(
            _CLAIM_KEY, _claim_of(params, request_hash, order_id)
        )
        if claimed.first() is not None:
            return None
        row = (await self.connection.execute(_CLAIMED_KEY, params)).one()
        return IdempotencyRecord(row.order_id, row.request_hash)


# On PostgreSQL the hot paths' statements go straight to psycopg's connection beneath the
# unit's (in its transaction): SQLAlchemy's work per statement cost more CPU than psycopg's.


_PSYCOPG = postgresql_psycopg.dialect()  # type: ignore[no-untyped-call]


def _driver_sql(statement: sa.Executable) -> str:
    """A statement compiled once into psycopg's SQL."""
    return str(statement.compile(dialect=_PSYCOPG))  # type: ignore[attr-defined]


_PG_INSERT_ORDER = _driver_sql(_INSERT_ORDER)
_PG_INSERT_LINE = _driver_sql(_INSERT_LINES)
_PG_ORDER = _driver_sql(_ORDER)
_PG_LINES = _driver_sql(
    sa.select(order_lines)
    .where(order_lines.c.order_id == sa.bindparam("order_id"))
    .order_by(order_lines.c.line_no)
)
_PG_PRODUCTS = _driver_sql(
    sa.select(products).where(products.c.sku == sa.any_(sa.bindparam("skus")))
)
_PG_CLAIM_KEY = _driver_sql(_CLAIM_KEY)
_PG_CLAIMED_KEY = _driver_sql(_CLAIMED_KEY)


class PgOrders(AsyncOrders):
    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self.connection = connection

    async def add(self, order: Order) -> None:
        async with self.connection.cursor() as cursor:
            await cursor.execute(_PG_INSERT_ORDER, _row_of(order))
            await cursor.executemany(_PG_INSERT_LINE, _line_rows(order))

    async def get(self, order_id: str) -> Order | None:
        params = {"order_id": order_id}
        async with self.connection.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(_PG_ORDER, params)
            row = await cursor.fetchone()
            if row is None:
                return None
            await cursor.execute(_PG_LINES, params)
            return _orders_of([row], await cursor.fetchall())[0]


class PgCatalog(AsyncCatalog):
    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self.connection = connection

    async def products(self, skus: set[str]) -> dict[str, Product]:
        async with self.connection.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(_PG_PRODUCTS, {"skus": sorted(skus)})
            return _products_of(await cursor.fetchall())


class PgIdempotencyKeys(AsyncIdempotencyKeys):
    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self.connection = connection

    async def claim(
        self, customer_id: str, key: str, request_hash: str, order_id: str
    ) -> IdempotencyRecord | None:
        params = {"customer_id": customer_id, "idempotency_key": key}
        async with self.connection.cursor() as cursor:
            await cursor.execute(_PG_CLAIM_KEY, _claim_of(params, request_hash, order_id))
            if await cursor.fetchone() is not None:
                return None
            await cursor.execute(_PG_CLAIMED_KEY, params)
            row = await cursor.fetchone()
        assert row is not None, "a key that conflicted is there"
        return IdempotencyRecord(row[0], row[1])


class CataloguePrices:
    """The catalogue products an API process read, kept for `seconds` (shared by its units)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._read: dict[str, tuple[float, Product]] = {}

    def fresh(self, skus: set[str]) -> dict[str, Product]:
        """The products among `skus` read less than `seconds` ago."""
        now = self.clock()
        found = {}
        for sku in skus:
            kept = self._read.get(sku)
            if kept is not None and now - kept[0] < self.seconds:
                found[sku] = kept[1]
        return found

    def keep(self, products: dict[str, Product]) -> None:
        now = self.clock()
        self._read.update((sku, (now, product)) for sku, product in products.items())


class CachedCatalog(AsyncCatalog):
    """A catalogue that reads only the products `prices` holds no fresh copy of."""

    def __init__(self, catalog: AsyncCatalog, prices: CataloguePrices) -> None:
        self.catalog = catalog
        self.prices = prices

    async def products(self, skus: set[str]) -> dict[str, Product]:
        found = self.prices.fresh(skus)
        missing = skus - found.keys()
        if missing:
            read = await self.catalog.products(missing)
            self.prices.keep(read)
            found.update(read)
        return found


def _line_rows(order: Order) -> list[dict[str, Any]]:
    return [
        {
            "order_id": order.order_id,
            "line_no": number,
            "sku": line.sku,
            "quantity": line.quantity,
            "unit_price_minor": line.unit_price_minor,
        }
        for number, line in enumerate(order.lines, start=1)
    ]


def _orders_of(rows: list[Any], line_rows: Iterable[Any]) -> list[Order]:
    """Orders from their rows and the rows of their lines (ordered by order and line)."""
    lines: dict[str, list[OrderLine]] = {row["order_id"]: [] for row in rows}
    for line in line_rows:
        lines[line["order_id"]].append(
            OrderLine(line["sku"], line["quantity"], line["unit_price_minor"])
        )
    loaded = []
    for row in rows:
        fields = {name: row[name] for name in _SCALARS}
        fields["created_at"] = utc(row["created_at"])
        fields["updated_at"] = utc(row["updated_at"])
        due = row["payment_due_at"]
        fields["payment_due_at"] = None if due is None else utc(due)
        fields["cause"] = deferred.loads(row["cause"])
        loaded.append(
            Order(
                order_id=row["order_id"],
                lines=lines[row["order_id"]],
                status=OrderStatus(row["status"]),
                **fields,
            )
        )
    return loaded


def _products_of(rows: Iterable[Any]) -> dict[str, Product]:
    return {
        row["sku"]: Product(row["sku"], row["name"], row["price_minor"], row["currency"])
        for row in rows
    }


def _claim_of(params: dict[str, str], request_hash: str, order_id: str) -> dict[str, Any]:
    return {
        **params,
        "request_hash": request_hash,
        "order_id": order_id,
        "created_at": datetime.now(UTC),
    }
