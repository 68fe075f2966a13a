"""The orders API's catalogue cache: products read once per CATALOGUE_CACHE_SECONDS."""

from __future__ import annotations

import asyncio

from eventforge.orders.adapters.repository import CachedCatalog, CataloguePrices
from eventforge.orders.service_layer.ports import AsyncCatalog, Product
from tests.orders.fakes import CATALOGUE


class CountingCatalog(AsyncCatalog):
    """The fakes' catalogue, recording which SKUs each read asked for."""

    def __init__(self) -> None:
        self.reads: list[set[str]] = []

    async def products(self, skus: set[str]) -> dict[str, Product]:
        self.reads.append(set(skus))
        return {sku: CATALOGUE[sku] for sku in skus if sku in CATALOGUE}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_products_are_read_once_per_period_and_only_those_missing() -> None:
    clock, source = Clock(), CountingCatalog()
    prices = CataloguePrices(10.0, clock)

    def products(*skus: str) -> dict[str, Product]:
        return asyncio.run(CachedCatalog(source, prices).products(set(skus)))

    assert products("SKU-BOOK-001") == {"SKU-BOOK-001": CATALOGUE["SKU-BOOK-001"]}
    clock.now += 9.9
    assert products("SKU-BOOK-001", "SKU-MUG-001") == {
        "SKU-BOOK-001": CATALOGUE["SKU-BOOK-001"],
        "SKU-MUG-001": CATALOGUE["SKU-MUG-001"],
    }
    assert source.reads == [{"SKU-BOOK-001"}, {"SKU-MUG-001"}]
    clock.now += 0.1  # the book was read 10 s ago: read again; the mug is still fresh
    products("SKU-BOOK-001", "SKU-MUG-001")
    assert source.reads[-1] == {"SKU-BOOK-001"}


def test_an_unknown_sku_is_asked_for_every_time() -> None:
    source = CountingCatalog()
    cached = CachedCatalog(source, CataloguePrices(10.0, Clock()))
    for _ in range(2):
        assert asyncio.run(cached.products({"SKU-NOPE-001"})) == {}
    assert source.reads == [{"SKU-NOPE-001"}, {"SKU-NOPE-001"}]
