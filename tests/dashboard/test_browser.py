"""The dashboard in a real browser (Debian's Chromium, headless, driven by Playwright) over the
real stack: a request traced across all three services, a span's attributes, a DLQ redrive.

Screenshots go to tests/artifacts/dashboard/ (git-ignored). Without Chromium these tests fail,
saying how to install it: `apt-get update && apt-get install -y chromium` (see the README).
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from eventforge.cli.stack import roles_of
from eventforge.dashboard.app import create_app
from eventforge.dashboard.server import BackgroundServer
from eventforge.events.v1 import events_pb2
from eventforge.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from eventforge.orders.v1 import orders_pb2_grpc
from eventforge.runtime import aws
from eventforge.runtime.emulator import free_port
from eventforge.runtime.messaging.envelope import encode, new_envelope
from eventforge.runtime.settings import SERVICES, ServiceName, Settings
from eventforge.topology import TOPOLOGY
from tests.dashboard.conftest import ARTIFACTS, CHROMIUM
from tests.fixtures.emulator import queue_depth
from tests.fixtures.orders import order_request
from tests.fixtures.services import ProcessGroup, ServiceProcess, stack_environment

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(300)]

INSTALL = (
    "install Debian's Chromium: `sudo apt-get update && sudo apt-get install -y chromium` "
    "(about 35 s; `bash .ci/run` does it), or point EVENTFORGE_TEST_CHROMIUM at a Chromium"
)


@dataclass
class Stack:
    settings: Settings
    dashboard: BackgroundServer
    processes: dict[ServiceName, ServiceProcess]

    @property
    def url(self) -> str:
        return self.dashboard.url


def _start(group: ProcessGroup, service: ServiceName, env: dict[str, str]) -> ServiceProcess:
    """One process running every role of the service, as `eventforge up` runs it."""
    settings = group.settings
    log_path = settings.data_dir / f"{service}-browser-{uuid.uuid4().hex[:8]}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "eventforge.cli", "serve", service, *roles_of(service)],
            env={**stack_environment(settings), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    running = ServiceProcess(service, "all", settings.address_of(service), process, log_path)
    group.started.append(running)  # the group stops it with the module
    return running


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Chromium not found at {CHROMIUM}: {INSTALL}", pytrace=False)
    return CHROMIUM


@pytest.fixture(scope="module")
def stack(chromium: str, module_processes: ProcessGroup) -> Iterator[Stack]:
    """The three services (api, worker and relay each) and the dashboard they export to
    (once Chromium is known to be there: without it, nothing starts)."""
    settings = module_processes.settings
    port = free_port()
    with BackgroundServer(create_app(settings), "127.0.0.1", port) as dashboard:
        env = {
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{dashboard.url}/v1/metrics",
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        }
        processes = {service: _start(module_processes, service, env) for service in SERVICES}
        for process in processes.values():
            process.wait_serving(timeout=120)
        yield Stack(settings, dashboard, processes)
        module_processes.stop_all()
        module_processes.started.clear()


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    errors: list[Any] = []
    context = browser.new_context(viewport={"width": 1480, "height": 940})
    opened = context.new_page()
    opened.on("pageerror", lambda error: errors.append(error))
    yield opened
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"


def _shoot(page: Page, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")  # shown with -s, and on failure
    return path


def _order_across_every_service(stack: Stack) -> tuple[str, str]:
    """CreateOrder, then wait for its receipt email: orders → files → notifier → files."""
    request_id = f"browser-{uuid.uuid4().hex[:10]}"
    email = f"{request_id}@example.com"
    with grpc.insecure_channel(stack.settings.address_of("orders")) as channel:
        orders = orders_pb2_grpc.OrdersServiceStub(channel)
        order_id = orders.CreateOrder(
            order_request(request_id, customer_id="cust-browser", customer_email=email),
            metadata=(("x-request-id", request_id),),
            timeout=5,
        ).order.order_id
    with grpc.insecure_channel(stack.settings.address_of("notifier")) as channel:
        notifier = notifier_pb2_grpc.NotifierServiceStub(channel)
        deadline = time.monotonic() + 90
        while not any(
            n.event_type == "receipt.ready" and n.status == notifier_pb2.NOTIFICATION_STATUS_SENT
            for n in notifier.ListNotifications(
                notifier_pb2.ListNotificationsRequest(recipient=email), timeout=5
            ).notifications
        ):
            assert time.monotonic() < deadline, "no receipt email"
            time.sleep(0.3)
    deadline = time.monotonic() + 30
    while True:  # the spans reach the span file in batches
        reply = httpx.get(f"{stack.url}/api/requests/{request_id}", timeout=10)
        if reply.status_code == 200:
            spans = reply.json()["spans"]
            services = {s["service"] for s in spans}
            if len(services) == 3 and any(s["name"] == "email send" for s in spans):
                return request_id, order_id
        assert time.monotonic() < deadline, f"spans of {request_id}: {reply.text[:500]}"
        time.sleep(0.3)


def test_a_request_opens_its_waterfall_across_the_three_services(stack: Stack, page: Page) -> None:
    request_id, order_id = _order_across_every_service(stack)

    deadline = time.monotonic() + 20
    while True:  # a health check that timed out on a busy machine shows until the next load
        page.goto(f"{stack.url}/")
        badges = [page.locator(f'.service[data-service="{s}"] .badge') for s in SERVICES]
        if all(badge.inner_text() == "SERVING" for badge in badges):
            break
        assert time.monotonic() < deadline, [badge.inner_text() for badge in badges]
        time.sleep(0.5)
    _shoot(page, "overview")

    page.goto(f"{stack.url}/requests")
    page.get_by_role("link", name=request_id).click()
    expect(page).to_have_url(f"{stack.url}/requests/{request_id}")
    rows = page.locator(".wf-row.span")
    expect(rows.first).to_be_visible()
    for service in SERVICES:
        expect(page.locator(f'.wf-row.span[data-service="{service}"]').first).to_be_visible()
    expect(page.locator(".wf-row.span.async").first).to_be_visible()  # the event hops
    assert rows.count() > 20

    charge = page.locator(".wf-row.span", has_text="saga charge_payment").first
    charge.click()
    detail = page.locator("#span-detail")
    expect(detail).to_contain_text("saga charge_payment")
    expect(detail).to_contain_text("eventforge.order_id")
    expect(detail).to_contain_text(order_id)
    expect(charge).to_have_class("wf-row span selected")
    _shoot(page, "waterfall-all-spans", full_page=False)

    database = page.locator(".wf-row.span.db")
    expect(database.first).to_be_visible()
    page.get_by_label("database spans").uncheck()  # the service-to-service shape only
    expect(database.first).to_be_hidden()
    consumer = page.locator(".wf-row.span.async", has_text="files-orders process").first
    consumer.click()
    expect(detail).to_contain_text("⇢ async hop")
    expect(detail).to_contain_text("Links (1)")
    expect(page.locator('.wf-row.span[data-service="notifier"]').first).to_be_in_viewport()
    _shoot(page, "waterfall", full_page=False)  # the README's docs/dashboard-waterfall.png

    page.goto(f"{stack.url}/orders/{order_id}")
    expect(page.locator("#order-status")).to_have_text("CONFIRMED")
    for kind in ("step", "event", "consumed", "receipt", "email"):
        expect(page.locator(f'.timeline .entry[data-kind="{kind}"]').first).to_be_visible()
    expect(
        page.locator("section", has_text="Emails").locator("td", has_text="SENT").first
    ).to_be_visible()
    _shoot(page, "saga")

    page.goto(f"{stack.url}/map")
    for source, target in (("orders", "files"), ("files", "orders"), ("files", "notifier")):
        edge = page.locator(f'g.edge.ok[data-source="{source}"][data-target="{target}"]')
        expect(edge).to_have_count(1)
    _shoot(page, "service-map")


def test_metrics_arrive_as_charts(stack: Stack, page: Page) -> None:
    deadline = time.monotonic() + 30
    while not httpx.get(f"{stack.url}/api/metrics", timeout=10).json():
        assert time.monotonic() < deadline, "no metrics exported to the dashboard"
        time.sleep(0.5)
    page.goto(f"{stack.url}/metrics")
    expect(page.locator(".chart").first).to_be_visible()
    expect(page.locator(".chart svg.spark polyline").first).to_be_attached()
    _shoot(page, "metrics")


def test_a_dead_letter_is_opened_and_redriven(stack: Stack, page: Page) -> None:
    names = TOPOLOGY.resolve_for(stack.settings).queues["notifier-orders"]
    sqs = aws.sqs(stack.settings)
    dlq_url = sqs.get_queue_url(QueueName=names.dlq_name)["QueueUrl"]
    source_url = sqs.get_queue_url(QueueName=names.name)["QueueUrl"]
    # An event the notifier has no handler for: once redriven, its worker acknowledges it.
    envelope = new_envelope(
        events_pb2.OrderPlaced(order_id="ord-dead-letter", customer_id="cust-dlq"),
        source="orders",
        subject="ord-dead-letter",
        request_id="req-dead-letter",
    )
    message_id = sqs.send_message(
        QueueUrl=dlq_url,
        MessageBody=encode(envelope),
        MessageAttributes={
            "event_type": {"DataType": "String", "StringValue": "order.placed"},
            "request_id": {"DataType": "String", "StringValue": "req-dead-letter"},
        },
    )["MessageId"]

    page.goto(f"{stack.url}/queues")
    row = page.locator('tr[data-queue="notifier-orders-dlq"]')
    expect(row.locator(".depth")).to_have_text("1")
    row.get_by_role("link", name="open").click()
    letter = page.locator(f'article.letter[data-message="{message_id}"]')
    expect(letter).to_contain_text(envelope.event_id)
    expect(letter).to_contain_text("order.placed")
    expect(letter.locator("pre.body")).to_contain_text("ord-dead-letter")
    _shoot(page, "dlq-message")

    letter.get_by_role("link", name="Redrive…").click()
    expect(page.locator("h1")).to_contain_text("Redrive")
    _shoot(page, "dlq-confirm")
    page.locator("#confirm-redrive").click()
    expect(page.locator("#result")).to_contain_text("Redriven 1 message to notifier-orders")
    expect(page.locator("#dlq-empty")).to_be_visible()
    _shoot(page, "dlq-redriven")

    deadline = time.monotonic() + 30
    # The notifier's worker received it again and acknowledged it.
    while (depth := queue_depth(sqs, source_url)) != (0, 0):
        assert time.monotonic() < deadline, depth
        time.sleep(0.5)
    page.goto(f"{stack.url}/queues")
    expect(page.locator('tr[data-queue="notifier-orders-dlq"] .depth')).to_have_text("0")
