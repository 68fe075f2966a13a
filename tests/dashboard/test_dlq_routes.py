"""DLQ pages, redrive and purge on the real emulator: nothing changes on GET, nothing without a
confirmation, and a confirmed POST does what `eventforge dlq` does."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from eventforge.dashboard.app import create_app
from eventforge.events.v1 import events_pb2
from eventforge.runtime import aws
from eventforge.runtime.messaging.envelope import encode, new_envelope
from eventforge.runtime.provision import ProvisionedTopology
from eventforge.runtime.settings import Settings
from tests.dashboard.conftest import BASE_URL

pytestmark = pytest.mark.integration

FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def client(aws_settings: Settings, provisioned: ProvisionedTopology) -> Iterator[TestClient]:
    with TestClient(create_app(aws_settings), base_url=BASE_URL) as test_client:
        yield test_client


def _token(page: str) -> str:
    found = re.search(r'name="token" value="([^"]+)"', page)
    assert found, "the confirmation page carries the form's token"
    return found.group(1)


def _counts(settings: Settings, url: str) -> tuple[int, int]:
    attributes = aws.sqs(settings).get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def _dead_letter(settings: Settings, dlq_url: str, body: str = "not json at all") -> str:
    reply = aws.sqs(settings).send_message(
        QueueUrl=dlq_url,
        MessageBody=body,
        MessageAttributes={"event_type": {"DataType": "String", "StringValue": "order.placed"}},
    )
    return reply["MessageId"]


def test_reading_pages_changes_nothing(
    client: TestClient, aws_settings: Settings, provisioned: ProvisionedTopology
) -> None:
    queue = provisioned.queues["orders-orders"]
    envelope = new_envelope(
        events_pb2.OrderPlaced(order_id="ord-dead", customer_id="c1"),
        source="orders",
        subject="ord-dead",
        request_id="req-dead",
    )
    message_id = _dead_letter(aws_settings, queue.dlq_url, encode(envelope))
    before = _counts(aws_settings, queue.dlq_url)
    assert before == (1, 0)

    queues = client.get("/api/queues").json()["queues"]
    dlq = next(q for q in queues if q["name"] == "orders-orders-dlq")
    assert dlq["visible"] == 1
    assert dlq["oldest_age_seconds"] is not None
    overview = client.get("/")
    assert re.search(r'<tr class="dlq dead" data-queue="orders-orders-dlq">', overview.text)
    page = client.get("/queues/orders-orders/dlq")
    assert page.status_code == 200
    assert message_id in page.text
    assert envelope.event_id in page.text
    assert 'href="/requests/req-dead"' in page.text
    for path in (
        "/queues",
        "/queues/orders-orders/dlq/redrive?all=true",
        f"/queues/orders-orders/dlq/redrive?id={message_id}",
        "/queues/orders-orders/dlq/purge",
        "/api/queues/orders-orders/dlq",
    ):
        assert client.get(path).status_code == 200, path
    # GET never moves or deletes: the message is still there, visible again.
    assert _counts(aws_settings, queue.dlq_url) == before
    assert _counts(aws_settings, queue.url) == (0, 0)
    assert client.get("/queues/no-such-queue/dlq").status_code == 404


def test_redrive_needs_its_confirmation(
    client: TestClient, aws_settings: Settings, provisioned: ProvisionedTopology
) -> None:
    queue = provisioned.queues["notifier-files"]
    first = _dead_letter(aws_settings, queue.dlq_url)
    second = _dead_letter(aws_settings, queue.dlq_url)
    token = _token(client.get(f"/queues/notifier-files/dlq/redrive?id={first}").text)

    unconfirmed = client.post(
        "/queues/notifier-files/dlq/redrive", content=f"token={token}&id={first}", headers=FORM
    )
    assert unconfirmed.status_code == 400
    assert "not confirmed" in unconfirmed.text
    forged = client.post(
        "/queues/notifier-files/dlq/redrive",
        content=f"token=guess&confirm=notifier-files&id={first}",
        headers=FORM,
    )
    assert forged.status_code == 400
    as_json = client.post("/queues/notifier-files/dlq/redrive", json={"confirm": "notifier-files"})
    assert as_json.status_code == 415
    assert _counts(aws_settings, queue.dlq_url) == (2, 0)

    done = client.post(
        "/queues/notifier-files/dlq/redrive",
        content=f"token={token}&confirm=notifier-files&id={first}",
        headers=FORM,
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"].startswith("/queues/notifier-files/dlq?redriven=1&failed=0")
    assert _counts(aws_settings, queue.url) == (1, 0)
    assert _counts(aws_settings, queue.dlq_url) == (1, 0)
    after = client.get(done.headers["location"]).text
    assert "Redriven 1 message to notifier-files" in after
    assert second in after
    assert first not in after

    everything = client.post(
        "/queues/notifier-files/dlq/redrive",
        content=f"token={token}&confirm=notifier-files&all=true",
        headers=FORM,
    )
    assert everything.status_code == 200
    assert 'id="dlq-empty"' in everything.text
    assert _counts(aws_settings, queue.url) == (2, 0)


def test_purge_needs_the_queue_name_typed(
    client: TestClient, aws_settings: Settings, provisioned: ProvisionedTopology
) -> None:
    queue = provisioned.queues["notifier-orders"]
    for _ in range(3):
        _dead_letter(aws_settings, queue.dlq_url)
    page = client.get("/queues/notifier-orders/dlq/purge").text
    assert "about 3" in page
    token = _token(page)
    wrong = client.post(
        "/queues/notifier-orders/dlq/purge", content=f"token={token}&confirm=yes", headers=FORM
    )
    assert wrong.status_code == 400
    assert "Not purged: type the queue" in wrong.text
    assert _counts(aws_settings, queue.dlq_url) == (3, 0)

    done = client.post(
        "/queues/notifier-orders/dlq/purge",
        content=f"token={token}&confirm=notifier-orders",
        headers=FORM,
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert "purged=3" in done.headers["location"]
    deadline = time.monotonic() + 10
    while _counts(aws_settings, queue.dlq_url) != (0, 0):
        assert time.monotonic() < deadline, "purge did not empty the DLQ"
        time.sleep(0.2)
