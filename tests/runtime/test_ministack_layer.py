"""MiniStackPlus, the layer over ministack, against a fake inner application (no server).

Over HTTP against the real ministack, the integration suite covers what this layer adds (SES
events, prompt long polls, PurgeQueue throttling); here are the cases it cannot reach easily.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

import pytest

from eventforge.runtime import ministack_server
from eventforge.runtime.ministack_server import (
    Message,
    MiniStackPlus,
    Receive,
    Scope,
    Send,
)

QUEUE_URL = "http://127.0.0.1:4566/123456789012/jobs"


class FakeMiniStack:
    """Answers SQS ReceiveMessage from a list, SES DescribeConfigurationSet for known sets."""

    def __init__(self) -> None:
        self.queue: list[dict[str, Any]] = []
        self.sets = {"known"}
        self.calls: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = (await receive())["body"]
        headers = dict(scope["headers"])
        target = headers.get(b"x-amz-target", b"").decode()
        if target == "AmazonSQS.ReceiveMessage":
            self.calls.append(f"{target} wait={json.loads(body).get('WaitTimeSeconds', 0)}")
        else:
            self.calls.append(target or body.decode())
        status, answer = 200, b"{}"
        if target == "AmazonSQS.ReceiveMessage":
            if self.queue:
                answer = json.dumps({"Messages": [self.queue.pop(0)]}).encode()
        elif target == "AmazonSQS.SendMessage":
            self.queue.append({"Body": json.loads(body)["MessageBody"]})
        elif b"DescribeConfigurationSet" in body:
            name = body.decode().rpartition("ConfigurationSetName=")[2].split("&")[0]
            status = 200 if name in self.sets else 400
            answer = b"<DescribeConfigurationSetResult></DescribeConfigurationSetResult>"
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": answer})


def _scope(headers: dict[str, str]) -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": "/",
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 5000),
    }


async def _call(app: MiniStackPlus, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(_scope(headers), receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def _sqs(action: str, **call: Any) -> tuple[dict[str, str], bytes]:
    headers = {"x-amz-target": f"AmazonSQS.{action}", "content-type": "application/x-amz-json-1.0"}
    return headers, json.dumps({"QueueUrl": QUEUE_URL, **call}).encode()


def _ses(**params: str) -> tuple[dict[str, str], bytes]:
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "authorization": "AWS4-HMAC-SHA256 Credential=testing/20261207/us-east-1/ses/aws4_request",
    }
    return headers, urlencode(params).encode()


def test_a_waiting_receive_answers_as_soon_as_its_queue_is_sent_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without the wake-up, it would look again only after a minute.
    monkeypatch.setattr(ministack_server, "POLL_SECONDS", 60.0)
    inner = FakeMiniStack()
    app = MiniStackPlus(inner)

    async def scenario() -> bytes:
        waiting = asyncio.create_task(_call(app, *_sqs("ReceiveMessage", WaitTimeSeconds=20)))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await _call(app, *_sqs("SendMessage", MessageBody="hello"))
        # Answered by the send, long before the end of its 20 s wait.
        _, body = await asyncio.wait_for(waiting, timeout=5)
        return body

    body = asyncio.run(scenario())
    assert json.loads(body)["Messages"] == [{"Body": "hello"}]
    # It asked ministack without waiting (its own wait polls at 100 ms): once before the
    # send, once after it.
    receives = [c for c in inner.calls if c.startswith("AmazonSQS.ReceiveMessage")]
    assert receives == ["AmazonSQS.ReceiveMessage wait=0"] * 2


def test_a_receive_without_a_wait_passes_straight_through() -> None:
    inner = FakeMiniStack()
    status, body = asyncio.run(_call(MiniStackPlus(inner), *_sqs("ReceiveMessage")))
    assert (status, body) == (200, b"{}")
    assert inner.calls == ["AmazonSQS.ReceiveMessage wait=0"]


def test_a_second_purge_within_a_minute_is_refused_as_sqs_does() -> None:
    inner = FakeMiniStack()
    app = MiniStackPlus(inner)
    first, _ = asyncio.run(_call(app, *_sqs("PurgeQueue")))
    second, body = asyncio.run(_call(app, *_sqs("PurgeQueue")))
    assert first == 200
    assert second == 400
    assert json.loads(body)["__type"].endswith("#PurgeQueueInProgress")
    assert inner.calls == ["AmazonSQS.PurgeQueue"]


def test_event_destinations_are_created_updated_deleted_and_described() -> None:
    app = MiniStackPlus(FakeMiniStack())
    destination = {
        "ConfigurationSetName": "known",
        "EventDestination.Name": "to-sns",
        "EventDestination.Enabled": "true",
        "EventDestination.MatchingEventTypes.member.1": "send",
        "EventDestination.SNSDestination.TopicARN": "arn:aws:sns:us-east-1:123456789012:email",
    }

    def call(action: str, **params: str) -> tuple[int, bytes]:
        return asyncio.run(_call(app, *_ses(Action=action, **params)))

    assert call("UpdateConfigurationSetEventDestination", **destination)[0] == 400  # none yet
    assert call("CreateConfigurationSetEventDestination", **destination)[0] == 200
    status, body = call("CreateConfigurationSetEventDestination", **destination)
    assert (status, b"EventDestinationAlreadyExists" in body) == (400, True)
    missing_set = {**destination, "ConfigurationSetName": "unknown"}
    assert call("CreateConfigurationSetEventDestination", **missing_set)[0] == 400
    described = call(
        "DescribeConfigurationSet",
        ConfigurationSetName="known",
        **{"ConfigurationSetAttributeNames.member.1": "eventDestinations"},
    )[1]
    assert b"<Name>to-sns</Name><Enabled>true</Enabled>" in described
    assert b"<TopicARN>arn:aws:sns:us-east-1:123456789012:email</TopicARN>" in described
    deleted = call(
        "DeleteConfigurationSetEventDestination",
        ConfigurationSetName="known",
        EventDestinationName="to-sns",
    )
    assert deleted[0] == 200
    assert app.destinations == {"known": {}}
