"""Steady traffic for a chaos run: orders with mixed payment tokens (some cancelled) and uploads.

Clients behave as a careful caller should: every call has a deadline, and a call that fails
for a reason worth retrying (the service is down, times out, or fails inside) is retried with
the same idempotency key. An order counts as accepted once CreateOrder answered OK.
"""

from __future__ import annotations

import io
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
import httpx
from PIL import Image

from eventforge.common.v1.money_pb2 import Money
from eventforge.files.v1 import files_pb2, files_pb2_grpc
from eventforge.orders.v1 import orders_pb2, orders_pb2_grpc

T = TypeVar("T")

TOKENS = {
    "tok_success": 45,
    "tok_transient_2": 20,
    "tok_decline": 10,
    "tok_insufficient_funds": 10,
    "tok_timeout": 15,
}
"""Payment tokens and their weights: about half the orders fail or compensate."""

CATALOGUE = {
    "SKU-BOOK-001": 2500,
    "SKU-MUG-001": 1299,
    "SKU-SHIRT-001": 1999,
    "SKU-STICKER-001": 350,
}
SCARCE_SKU = ("SKU-LIMITED-001", 9900)
"""Stock of 3: a few orders include it and fail for lack of stock once it is gone."""

RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
CALL_TIMEOUT = 5.0
ATTEMPTS = 6


def call_with_retries(
    call: Callable[[], T], errors: Counter[str], *, attempts: int = ATTEMPTS
) -> T | None:
    """`call()` until it succeeds or fails for good; None after the last retryable failure.

    Non-retryable errors are raised. Failures are counted in `errors` by status code.
    """
    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except grpc.RpcError as error:
            code = error.code()
            errors[code.name] += 1
            if code not in RETRYABLE:
                raise
            if attempt == attempts:
                return None
            time.sleep(random.uniform(delay / 2, delay))  # noqa: S311
            delay = min(delay * 2, 4.0)
    return None


@dataclass(frozen=True)
class AcceptedOrder:
    order_id: str
    token: str
    customer_email: str
    cancel_requested: bool = False


@dataclass
class OrderStats:
    attempted: int = 0
    accepted: list[AcceptedOrder] = field(default_factory=list)
    not_accepted: int = 0
    """CreateOrder calls that still failed after every retry (not counted as accepted)."""
    cancels: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


class OrderLoad:
    """Places orders at `rate` per second from a pool of client threads."""

    def __init__(
        self,
        address: str,
        *,
        rate: float,
        seed: int,
        cancel_rate: float = 0.05,
        customers: int = 20,
        concurrency: int = 12,
    ) -> None:
        self.address = address
        self.rate = rate
        self.cancel_rate = cancel_rate
        self.customers = customers
        self.concurrency = concurrency
        self.stats = OrderStats()
        self._rng = random.Random(seed)  # noqa: S311
        self._lock = threading.Lock()
        self._in_flight = 0

    def run(self, stop: threading.Event) -> None:
        """Place orders until `stop`, then wait for the calls in flight."""
        with (
            grpc.insecure_channel(self.address) as channel,
            ThreadPoolExecutor(self.concurrency, thread_name_prefix="order-load") as pool,
        ):
            stub = orders_pb2_grpc.OrdersServiceStub(channel)
            due = time.monotonic()
            while not stop.is_set():
                due += 1 / self.rate
                stop.wait(max(0.0, due - time.monotonic()))
                if stop.is_set():
                    break
                with self._lock:
                    if self._in_flight >= self.concurrency:
                        continue  # the service is behind: skip this slot rather than pile up
                    self._in_flight += 1
                    request, cancel = self._request()
                pool.submit(self._place, stub, request, cancel)

    def _request(self) -> tuple[orders_pb2.CreateOrderRequest, bool]:
        rng = self._rng
        token = rng.choices(list(TOKENS), weights=list(TOKENS.values()))[0]
        skus = rng.sample(sorted(CATALOGUE), rng.randint(1, 3))
        lines = [(sku, CATALOGUE[sku]) for sku in skus]
        if rng.random() < 0.02:
            lines.append(SCARCE_SKU)
        customer = rng.randrange(self.customers)
        request = orders_pb2.CreateOrderRequest(
            idempotency_key=str(uuid.uuid4()),
            customer_id=f"chaos-customer-{customer}",
            customer_email=f"customer-{customer}@example.com",
            currency="USD",
            payment_token=token,
            items=[
                orders_pb2.OrderLineRequest(
                    sku=sku,
                    quantity=rng.randint(1, 3),
                    unit_price=Money(amount_minor=price, currency="USD"),
                )
                for sku, price in lines
            ],
        )
        cancel = token in ("tok_success", "tok_transient_2") and rng.random() < self.cancel_rate
        return request, cancel

    def _place(
        self,
        stub: orders_pb2_grpc.OrdersServiceStub,
        request: orders_pb2.CreateOrderRequest,
        cancel: bool,
    ) -> None:
        errors: Counter[str] = Counter()
        try:
            reply = call_with_retries(
                lambda: stub.CreateOrder(request, timeout=CALL_TIMEOUT), errors
            )
            accepted = None
            if reply is not None:
                accepted = AcceptedOrder(
                    reply.order.order_id, request.payment_token, request.customer_email, cancel
                )
            with self._lock:
                self.stats.attempted += 1
                self.stats.errors.update(errors)
                if accepted is None:
                    self.stats.not_accepted += 1
                else:
                    self.stats.accepted.append(accepted)
            if accepted is not None and cancel:
                self._cancel(stub, accepted.order_id)
        except Exception as error:  # a bug in the run itself must be seen, not swallowed
            with self._lock:
                self.stats.errors[f"client error {type(error).__name__}: {error}"] += 1
        finally:
            with self._lock:
                self._in_flight -= 1

    def _cancel(self, stub: orders_pb2_grpc.OrdersServiceStub, order_id: str) -> None:
        time.sleep(self._rng.uniform(0, 0.5))
        errors: Counter[str] = Counter()
        request = orders_pb2.CancelOrderRequest(order_id=order_id, reason="chaos: changed my mind")
        try:
            reply = call_with_retries(
                lambda: stub.CancelOrder(request, timeout=CALL_TIMEOUT), errors
            )
            outcome = (
                "gave up" if reply is None else orders_pb2.OrderStatus.Name(reply.order.status)
            )
        except grpc.RpcError as error:
            outcome = error.code().name  # FAILED_PRECONDITION: too late
        with self._lock:
            self.stats.cancels[outcome] += 1
            self.stats.errors.update(errors)


@dataclass(frozen=True)
class AcceptedUpload:
    file_id: str
    kind: str
    """"image", "text" or "bad" (its bytes are not the declared type: it must be rejected)."""


@dataclass
class UploadStats:
    attempted: int = 0
    accepted: list[AcceptedUpload] = field(default_factory=list)
    failed: Counter[str] = field(default_factory=Counter)


def tiny_png(seed: int) -> bytes:
    image = Image.new("RGB", (16, 12), color=(seed % 256, 80, 160))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class UploadLoad:
    """Uploads a small file through a presigned POST every `interval` seconds."""

    def __init__(self, address: str, *, interval: float, seed: int) -> None:
        self.address = address
        self.interval = interval
        self.stats = UploadStats()
        self._rng = random.Random(seed)  # noqa: S311

    def run(self, stop: threading.Event) -> None:
        with (
            grpc.insecure_channel(self.address) as channel,
            httpx.Client(timeout=httpx.Timeout(45.0), trust_env=False) as http,
        ):
            stub = files_pb2_grpc.FilesServiceStub(channel)
            number = 0
            while not stop.wait(self.interval):
                number += 1
                try:
                    self._upload(stub, http, number)
                except Exception as error:
                    self.stats.failed[f"client error {type(error).__name__}"] += 1

    def _upload(
        self, stub: files_pb2_grpc.FilesServiceStub, http: httpx.Client, number: int
    ) -> None:
        kind = self._rng.choices(["image", "text", "bad"], weights=[5, 3, 2])[0]
        if kind == "image":
            name, content_type, data = f"chaos-{number}.png", "image/png", tiny_png(number)
        elif kind == "text":
            name, content_type = f"chaos-{number}.txt", "text/plain"
            data = f"chaos upload {number}\n".encode() * 4
        else:  # declared a PNG, sends text: verification must reject it
            name, content_type = f"chaos-{number}.png", "image/png"
            data = b"this is not a png at all\n" * 3
        request = files_pb2.CreateUploadRequest(
            file_name=name,
            content_type=content_type,
            size_bytes=len(data),
            notify_email="uploader@example.com",
        )
        self.stats.attempted += 1
        errors: Counter[str] = Counter()
        reply = call_with_retries(lambda: stub.CreateUpload(request, timeout=CALL_TIMEOUT), errors)
        if reply is None:
            self.stats.failed["CreateUpload gave up"] += 1
            return
        upload = reply.upload
        for _attempt in range(3):
            try:
                response = http.post(
                    upload.url,
                    data=dict(upload.fields),
                    files={"file": (name, data, content_type)},
                )
            except httpx.HTTPError as error:
                self.stats.failed[f"POST {type(error).__name__}"] += 1
                continue
            if response.status_code in (200, 201, 204):
                self.stats.accepted.append(AcceptedUpload(reply.file.file_id, kind))
                return
            self.stats.failed[f"POST {response.status_code}"] += 1
