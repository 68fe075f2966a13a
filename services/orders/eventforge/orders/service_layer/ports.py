"""What the orders use cases need from the outside world, as abstract ports."""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from datetime import datetime

from eventforge.orders.domain.model import Order, OrderLine


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price_minor: int
    currency: str


@dataclass(frozen=True)
class PageCursor:
    """Position after the last order of a page (orders are listed newest first)."""

    created_at: datetime
    order_id: str


@dataclass(frozen=True)
class IdempotencyRecord:
    order_id: str
    request_hash: str


class OrderRepository(abc.ABC):
    @abc.abstractmethod
    def add(self, order: Order) -> None:
        """Store a new order."""

    @abc.abstractmethod
    def get(self, order_id: str, *, for_update: bool = False) -> Order | None:
        """Load an order; `for_update` locks it until the unit of work ends."""

    @abc.abstractmethod
    def save(self, order: Order) -> None:
        """Persist changes to a loaded order."""

    @abc.abstractmethod
    def list_for_customer(
        self, customer_id: str, *, after: PageCursor | None, limit: int
    ) -> list[Order]:
        """A customer's orders, newest first, after the cursor."""

    @abc.abstractmethod
    def with_payment(self, payment_id: str, *, for_update: bool = False) -> Order | None:
        """The order a charge of the payment provider belongs to; `for_update` locks it."""

    @abc.abstractmethod
    def stalled(self, *, older_than: datetime, limit: int) -> list[str]:
        """Ids of orders neither terminal nor waiting (on a payment) not updated since then."""

    @abc.abstractmethod
    def payments_due(self, *, now: datetime, limit: int) -> list[str]:
        """Ids of PAYMENT_PENDING orders whose deadline is not after `now`, earliest first."""


class Catalog(abc.ABC):
    @abc.abstractmethod
    def products(self, skus: set[str]) -> dict[str, Product]:
        """The products of the catalogue among `skus`."""

    @abc.abstractmethod
    def reserve(self, order_id: str, lines: list[OrderLine]) -> list[str]:
        """Reserve stock for every line, or nothing: returns the SKUs short of stock."""

    @abc.abstractmethod
    def release(self, order_id: str) -> None:
        """Return the order's reserved stock (idempotent)."""


class IdempotencyKeys(abc.ABC):
    @abc.abstractmethod
    def claim(
        self, customer_id: str, key: str, request_hash: str, order_id: str
    ) -> IdempotencyRecord | None:
        """Claim a key for a new order; returns the earlier record if the key was used."""


# The API's hot paths (place and read an order) run on asyncio: the same ports, awaited.


class AsyncOrders(abc.ABC):
    @abc.abstractmethod
    async def add(self, order: Order) -> None:
        """Store a new order."""

    @abc.abstractmethod
    async def get(self, order_id: str) -> Order | None:
        """Load an order."""


class AsyncCatalog(abc.ABC):
    @abc.abstractmethod
    async def products(self, skus: set[str]) -> dict[str, Product]:
        """The products of the catalogue among `skus`."""


class AsyncIdempotencyKeys(abc.ABC):
    @abc.abstractmethod
    async def claim(
        self, customer_id: str, key: str, request_hash: str, order_id: str
    ) -> IdempotencyRecord | None:
        """Claim a key for a new order; returns the earlier record if the key was used."""


class PaymentDeclined(Exception):
    """The payment was refused for good (declined, insufficient funds...)."""


class PaymentUnavailable(Exception):
    """The gateway failed or timed out; retrying with the same idempotency key is safe."""


@dataclass(frozen=True)
class Charge:
    """A charge the provider accepted under its payment id.

    `pending`: accepted but not settled yet; the provider confirms or refuses it later, out of
    band (its webhook, received by ingest: `payment.succeeded` / `payment.failed`).
    """

    payment_id: str
    pending: bool = False


class ChargeState(enum.Enum):
    """Where the provider has a charge now."""

    PENDING = "pending"
    SETTLED = "settled"
    FAILED = "failed"
    """Refused: no money was taken."""
    VOIDED = "voided"
    """Cancelled while pending: it will never settle."""


@dataclass(frozen=True)
class ChargeStatus:
    """A charge as the provider reports it, with the reason of a refusal."""

    state: ChargeState
    reason: str = ""


class PaymentGateway(abc.ABC):
    @abc.abstractmethod
    def charge(
        self, *, idempotency_key: str, order_id: str, amount_minor: int, currency: str, token: str
    ) -> Charge:
        """Charge once per idempotency key; a repeated call answers that charge as it stands."""

    @abc.abstractmethod
    def find_charge(self, idempotency_key: str) -> str | None:
        """The payment id of a charge made under this key that took or may take money (settled
        or pending, not refused), if any: to settle an unrecorded charge."""

    @abc.abstractmethod
    def charge_status(self, payment_id: str) -> ChargeStatus:
        """The charge as the provider has it now, whatever its webhooks said or failed to say
        (an unknown id is FAILED); raises PaymentUnavailable."""

    @abc.abstractmethod
    def refund(self, *, idempotency_key: str, payment_id: str) -> None:
        """Give a charge's money back in full, once per idempotency key: a settled charge is
        refunded, a pending one voided (it will never settle; a provider's "cancel or refund")."""
