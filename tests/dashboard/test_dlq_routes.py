"""DLQ pages, redrive and purge on the real emulator: nothing changes on GET, nothing without a
confirmation, and a confirmed POST does what `eventforge dlq` does."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.testclient import TestClient

from eventforge.dashboard.app import create_app
from eventforge.events.v1 import events_pb2
from eventforge.runtime.messaging.envelope import encode, new_envelope
from eventforge.runtime.provision import ProvisionedTopology
from eventforge.runtime.settings import Settings
from tests.dashboard.conftest import BASE_URL
from tests.fixtures.emulator import queue_depth

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

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


def _post_form(
    client: TestClient, path: str, *, follow_redirects: bool = True, **fields: str
) -> httpx.Response:
    """POST `fields` urlencoded, as the confirmation page's form sends them."""
    response: httpx.Response = client.post(
        path, content=urlencode(fields), headers=FORM, follow_redirects=follow_redirects
    )
    return response


def _dead_letter(sqs: SQSClient, dlq_url: str, body: str = "not json at all") -> str:
    reply = sqs.send_message(
        QueueUrl=dlq_url,
        MessageBody=body,
        MessageAttributes={"event_type": {"DataType": "String", "StringValue": "order.placed"}},
    )
    return reply["MessageId"]


def test_reading_pages_changes_nothing(
    client: TestClient, sqs: SQSClient, provisioned: ProvisionedTopology
) -> None:
    queue = provisioned.queues["orders-orders"]
    envelope = new_envelope(
        events_pb2.OrderPlaced(order_id="ord-dead", customer_id="c1"),
        source="orders",
        subject="ord-dead",
        request_id="req-dead",
    )
    message_id = _dead_letter(sqs, queue.dlq_url, encode(envelope))
    before = queue_depth(sqs, queue.dlq_url)
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
    assert queue_depth(sqs, queue.dlq_url) == before
    assert queue_depth(sqs, queue.url) == (0, 0)
    assert client.get("/queues/no-such-queue/dlq").status_code == 404


def test_redrive_needs_its_confirmation(
    client: TestClient, sqs: SQSClient, provisioned: ProvisionedTopology
) -> None:
    queue = provisioned.queues["notifier-files"]
    redrive = "/queues/notifier-files/dlq/redrive"
    first = _dead_letter(sqs, queue.dlq_url)
    second = _dead_letter(sqs, queue.dlq_url)
    token = _token(client.get(f"{redrive}?id={first}").text)

    unconfirmed = _post_form(client, redrive, token=token, id=first)
    assert unconfirmed.status_code == 400
    assert "not confirmed" in unconfirmed.text
    forged = _post_form(client, redrive, token="guess", confirm="notifier-files", id=first)
    assert forged.status_code == 400
    as_json = client.post(redrive, json={"confirm": "notifier-files"})
    assert as_json.status_code == 415
    assert queue_depth(sqs, queue.dlq_url) == (2, 0)

    done = _post_form(
        client, redrive, token=token, confirm="notifier-files", id=first, follow_redirects=False
    )
    assert done.status_code == 303
    assert done.headers["location"].startswith("/queues/notifier-files/dlq?redriven=1&failed=0")
    assert queue_depth(sqs, queue.url) == (1, 0)
    assert queue_depth(sqs, queue.dlq_url) == (1, 0)
    after = client.get(done.headers["location"]).text
    assert "Redriven 1 message to notifier-files" in after
    assert second in after
    assert first not in after

    everything = _post_form(client, redrive, token=token, confirm="notifier-files", all="true")
    assert everything.status_code == 200
    assert 'id="dlq-empty"' in everything.text
    assert queue_depth(sqs, queue.url) == (2, 0)


def test_purge_needs_the_queue_name_typed(
    client: TestClient, sqs: SQSClient, provisioned: ProvisionedTopology
) -> None:
    queue = provisioned.queues["notifier-orders"]
    purge = "/queues/notifier-orders/dlq/purge"
    for _ in range(3):
        _dead_letter(sqs, queue.dlq_url)
    page = client.get(purge).text
    assert "about 3" in page
    token = _token(page)
    wrong = _post_form(client, purge, token=token, confirm="yes")
    assert wrong.status_code == 400
    assert "Not purged: type the queue" in wrong.text
    assert queue_depth(sqs, queue.dlq_url) == (3, 0)

    done = _post_form(client, purge, token=token, confirm="notifier-orders", follow_redirects=False)
    assert done.status_code == 303
    assert "purged=3" in done.headers["location"]
    deadline = time.monotonic() + 10
    while queue_depth(sqs, queue.dlq_url) != (0, 0):
        assert time.monotonic() < deadline, "purge did not empty the DLQ"
        time.sleep(0.2)
