"""Validation of order requests: every problem becomes a field violation."""

from __future__ import annotations

import re

from eventforge.orders.domain.commands import PlaceOrder
from eventforge.orders.service_layer.ports import Product
from eventforge.runtime.errors import Violations

MAX_LINES = 50
MAX_QUANTITY = 100
MAX_UNIT_PRICE_MINOR = 100_000_000
MAX_ID_LENGTH = 128
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_EMAIL_PART = r"[\x21-\x3f\x41-\x7e]"  # printable ASCII but "@"
_EMAIL = re.compile(rf"^{_EMAIL_PART}{{1,64}}@{_EMAIL_PART}{{1,189}}\.{_EMAIL_PART}{{1,63}}$")
_SKU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def check_identifier(violations: Violations, field: str, value: str) -> None:
    """Printable ASCII without spaces, 1-128 characters."""
    violations.check(
        bool(_ID.match(value)), field, "must be 1-128 printable ASCII characters, no spaces"
    )


def is_sku(value: str) -> bool:
    """Letters, digits, '.', '_' and '-', at most 64: what the catalogue can hold."""
    return bool(_SKU.match(value))


def is_order_id(value: str) -> bool:
    return bool(_UUID.match(value))


def check_order_id(violations: Violations, field: str, value: str) -> None:
    violations.check(is_order_id(value), field, "must be an order id (a lowercase UUID)")


def check_place_order(command: PlaceOrder) -> Violations:
    """Problems found without the catalogue."""
    v = Violations()
    check_identifier(v, "idempotency_key", command.idempotency_key)
    check_identifier(v, "customer_id", command.customer_id)
    v.check(
        bool(_EMAIL.match(command.customer_email)), "customer_email", "must be an email address"
    )
    v.check(
        bool(_CURRENCY.match(command.currency)), "currency", "must be an ISO 4217 code like USD"
    )
    check_identifier(v, "payment_token", command.payment_token)
    v.check(bool(command.lines), "items", "must have at least one line")
    v.check(len(command.lines) <= MAX_LINES, "items", f"must have at most {MAX_LINES} lines")
    seen: set[str] = set()
    for index, line in enumerate(command.lines[:MAX_LINES]):
        field = f"items[{index}]"
        if v.check(bool(line.sku), f"{field}.sku", "is required") and v.check(
            is_sku(line.sku), f"{field}.sku", "must be a SKU (letters, digits, '.', '_', '-')"
        ):
            v.check(line.sku not in seen, f"{field}.sku", "appears twice; combine the quantities")
            seen.add(line.sku)
        v.check(
            1 <= line.quantity <= MAX_QUANTITY,
            f"{field}.quantity",
            f"must be between 1 and {MAX_QUANTITY}",
        )
        if v.check(line.unit_price_minor > 0, f"{field}.unit_price.amount_minor", "must be > 0"):
            v.check(
                line.unit_price_minor <= MAX_UNIT_PRICE_MINOR,
                f"{field}.unit_price.amount_minor",
                f"must be at most {MAX_UNIT_PRICE_MINOR}",
            )
        v.check(
            line.currency == command.currency,
            f"{field}.unit_price.currency",
            "must equal the order's currency",
        )
    return v


def check_against_catalogue(
    v: Violations, command: PlaceOrder, catalogue: dict[str, Product]
) -> None:
    """Problems that need the catalogue: unknown SKUs, prices or currencies that differ."""
    for index, line in enumerate(command.lines[:MAX_LINES]):
        product = catalogue.get(line.sku)
        if not is_sku(line.sku):
            continue
        if product is None:
            v.add(f"items[{index}].sku", f"unknown SKU {line.sku!r}")
            continue
        if product.currency != command.currency:
            v.add("currency", f"{line.sku} is sold in {product.currency}")
        elif (
            line.currency == command.currency
            and line.unit_price_minor > 0
            and line.unit_price_minor != product.price_minor
        ):
            v.add(
                f"items[{index}].unit_price.amount_minor",
                f"does not match the catalogue price {product.price_minor}",
            )
