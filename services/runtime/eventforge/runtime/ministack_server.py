"""The emulator's server process on ministack: ministack's ASGI app behind EventForge's own layer.

Run as `python -m eventforge.runtime.ministack_server -H HOST -p PORT [--state-dir DIR]`;
`eventforge.runtime.emulator.Emulator` launches it. ministack itself is untouched: `MiniStackPlus`
wraps its ASGI application and works only with the HTTP requests and answers that pass through,
for the three things EventForge needs and ministack (1.5) lacks:

- **Prompt long polls.** ministack looks at a queue every 100 ms while a `ReceiveMessage` waits,
  so a message sent to a waiting consumer arrives ~100 ms late (moto: ~9 ms). Here a waiting
  receive asks ministack with `WaitTimeSeconds=0` and asks again as soon as a request that can
  add a message to that queue has been answered: `SendMessage(Batch)` to it, an SNS publish to
  a topic it subscribes to, `ChangeMessageVisibility(Batch)` on it, any S3 write (bucket
  notifications). Otherwise it looks every 100 ms, as ministack does (messages whose visibility
  timeout or delay ran out).
- **SES event publishing.** ministack's SES v1 has no configuration-set event destinations and
  publishes no events. Here `Create`/`Update`/`DeleteConfigurationSetEventDestination` are
  answered from this layer's own store, `DescribeConfigurationSet` shows them, and an email
  SES v1 or v2 accepted with a configuration set publishes one `Send` event record
  (`eventforge.runtime.ses_events`) to each enabled SNS destination matching `send`, through
  ministack's SNS (so subscriptions, raw delivery and filter policies apply). Only `Send`: no
  recipient mail servers exist, so nothing is ever delivered, bounced or complained about.
- **PurgeQueue as SQS throttles it**: a second purge of a queue within 60 s is refused with
  `PurgeQueueInProgress` (ministack purges every time).
- **SES as it answers.** SESv2 refuses an unknown configuration set (`NotFoundException`);
  ministack accepts any name there. An identity SES never heard of is left out of
  `GetIdentityVerificationAttributes`; ministack calls it `Pending`, so a provisioner that
  asks before verifying (verifying again mails a new link on SES) never verified it.

`--state-dir` keeps ministack's state (queues, topics, subscriptions, buckets, objects, SES
identities) in that directory across restarts (ministack's `PERSIST_STATE` and `S3_PERSIST`;
its state is written when the server stops cleanly, objects as they are stored). The event
destinations are not kept: `eventforge provision`, which `up` runs at every start, puts them
back.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlencode
from xml.sax.saxutils import escape

from eventforge.runtime import ses_events
from eventforge.runtime.emulator import ACCOUNT, CREDENTIAL

logger = logging.getLogger("eventforge.emulator")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

PURGE_SECONDS = 60.0
"""SQS allows one PurgeQueue per queue in this long."""
POLL_SECONDS = 0.1
"""How often a waiting receive looks again without being told of a new message."""
SES_NAMESPACE = "http://ses.amazonaws.com/doc/2010-12-01/"
_CREDENTIAL_SCOPE = re.compile(r"Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")
_SQS_ENDPOINT = re.compile(r"<Endpoint>arn:[^:<]+:sqs:[^:<]+:[^:<]+:([^<]+)</Endpoint>")
_UNKNOWN_IDENTITY = re.compile(
    rb"<entry><key>[^<]*</key><value><VerificationStatus>Pending</VerificationStatus>"
    rb"</value></entry>"
)
"""ministack answers Pending for an identity it never heard of (it verifies at once, so nothing
it knows is ever pending); SES leaves such an identity out."""
_MESSAGE_ID = re.compile(r"<MessageId>([^<]+)</MessageId>")
_DESTINATION_ACTIONS = frozenset(
    {
        "CreateConfigurationSetEventDestination",
        "UpdateConfigurationSetEventDestination",
        "DeleteConfigurationSetEventDestination",
    }
)
_SQS_WAKING = ("AmazonSQS.SendMessage", "AmazonSQS.ChangeMessageVisibility")


@dataclass
class _Answer:
    """An answer captured from the inner application."""

    status: int = 500
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    async def replay(self, send: Send, body: bytes | None = None) -> None:
        body = self.body if body is None else body
        headers = [(k, v) for k, v in self.headers if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class _Request:
    """An HTTP request read whole, and what it says about the call."""

    scope: Scope
    body: bytes

    def header(self, name: str) -> str:
        wanted = name.encode()
        for key, value in self.scope.get("headers", []):
            if key.lower() == wanted:
                return bytes(value).decode("latin-1")
        return ""

    @property
    def credential(self) -> tuple[str, str, str, str]:
        """(access key, date, region, service) of the signature, empty if unsigned."""
        found = _CREDENTIAL_SCOPE.search(self.header("authorization"))
        return found.groups() if found else ("", "", "", "")  # type: ignore[return-value]

    @property
    def service(self) -> str:
        return self.credential[3]

    @property
    def form(self) -> dict[str, str]:
        """A query-protocol body's parameters (first value of each)."""
        if "x-www-form-urlencoded" not in self.header("content-type"):
            return {}
        pairs = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {key: values[0] for key, values in pairs.items()}

    def param(self, name: str) -> str:
        """One query-protocol parameter, without decoding the whole body (an SNS publish
        carries the message: decoding it all for its Action is most of the layer's work)."""
        found = re.search(rb"(?:^|&)" + name.encode() + rb"=([^&]*)", self.body)
        return unquote_plus(found.group(1).decode("utf-8", "replace")) if found else ""

    def with_body(self, body: bytes) -> _Request:
        headers = [(k, v) for k, v in self.scope["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        return _Request({**self.scope, "headers": headers}, body)


def _members(form: dict[str, str], prefix: str) -> list[str]:
    """`prefix.member.1`, `prefix.member.2`, ... in order."""
    found = []
    n = 1
    while f"{prefix}.member.{n}" in form:
        found.append(form[f"{prefix}.member.{n}"])
        n += 1
    return found


def _queue_name(queue_url: str) -> str:
    return queue_url.rstrip("/").rsplit("/", 1)[-1]


def _ses_xml(action: str, result: str = "") -> bytes:
    return (
        f'<{action}Response xmlns="{SES_NAMESPACE}"><{action}Result>{result}</{action}Result>'
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    ).encode()


def _ses_error(code: str, message: str, status: int = 400) -> _Answer:
    body = (
        f'<ErrorResponse xmlns="{SES_NAMESPACE}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    ).encode()
    return _Answer(status, [(b"content-type", b"text/xml")], body)


def _destination_xml(destination: dict[str, Any]) -> str:
    types = "".join(f"<member>{t}</member>" for t in destination["MatchingEventTypes"])
    topic = destination.get("SNSDestination", {}).get("TopicARN")
    sns = f"<SNSDestination><TopicARN>{topic}</TopicARN></SNSDestination>" if topic else ""
    enabled = str(destination["Enabled"]).lower()
    return (
        f"<member><Name>{escape(destination['Name'])}</Name><Enabled>{enabled}</Enabled>"
        f"<MatchingEventTypes>{types}</MatchingEventTypes>{sns}</member>"
    )


class MiniStackPlus:
    """ministack's ASGI app with prompt long polls and SES event publishing (module docstring)."""

    def __init__(self, inner: App) -> None:
        self.inner = inner
        self.destinations: dict[str, dict[str, dict[str, Any]]] = {}
        """Configuration set → destination name → destination (as SES describes it)."""
        self._changed: dict[str, asyncio.Event] = {}
        self._topic_queues: dict[str, list[str]] = {}
        self._purged: dict[str, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        request = _Request(scope, await _read_body(receive))
        target = request.header("x-amz-target")
        if target == "AmazonSQS.ReceiveMessage":
            await self._receive_message(request, send)
            return
        if target == "AmazonSQS.PurgeQueue" and self._purge_throttled(request):
            await _sqs_error(
                "PurgeQueueInProgress",
                "Only one PurgeQueue operation on a queue is allowed every 60 seconds.",
            )(send)
            return
        if scope["path"] == "/_ministack/reset":
            self.destinations.clear()
            self._topic_queues.clear()
            self._purged.clear()
        service = request.service
        form = request.form if service == "ses" else {}
        action = request.param("Action")
        if service == "ses" and action in _DESTINATION_ACTIONS:
            await (await self._event_destination(request, action, form)).replay(send)
            return
        if service == "ses" and action == "GetIdentityVerificationAttributes":
            answer = await self._ask(request)
            await answer.replay(send, _UNKNOWN_IDENTITY.sub(b"", answer.body))
            return
        if service == "ses" and action == "DescribeConfigurationSet":
            await self._describe_configuration_set(request, form, send)
            return
        if service == "ses" and (
            action in ("SendEmail", "SendRawEmail") or scope["path"] == "/v2/email/outbound-emails"
        ):
            await self._send_email(request, action or "v2.SendEmail", send)
            return
        await self.inner(scope, _replay(request.body), send)
        if service == "ses" and action == "DeleteConfigurationSet":
            self.destinations.pop(form.get("ConfigurationSetName", ""), None)
        await self._wake_after(request, target, service, action, form)

    # --- long polls -----------------------------------------------------------------------

    async def _receive_message(self, request: _Request, send: Send) -> None:
        call = json.loads(request.body or b"{}")
        wait = float(call.get("WaitTimeSeconds") or 0)
        if wait <= 0:
            await self.inner(request.scope, _replay(request.body), send)
            return
        queue = _queue_name(str(call.get("QueueUrl", "")))
        at_once = request.with_body(json.dumps({**call, "WaitTimeSeconds": 0}).encode())
        deadline = time.monotonic() + wait
        while True:
            changed = self._changed.setdefault(queue, asyncio.Event())
            answer = await self._ask(at_once)
            left = deadline - time.monotonic()
            if answer.status != 200 or b'"Messages"' in answer.body or left <= 0:
                await answer.replay(send)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=min(POLL_SECONDS, left))

    def _purge_throttled(self, request: _Request) -> bool:
        """Whether the queue was purged less than 60 s ago (then this purge is refused)."""
        queue = _queue_name(str(json.loads(request.body or b"{}").get("QueueUrl", "")))
        now = time.monotonic()
        if now - self._purged.get(queue, -PURGE_SECONDS) < PURGE_SECONDS:
            return True
        self._purged[queue] = now
        return False

    def _wake(self, queues: list[str] | None) -> None:
        """Tell the receives waiting on `queues` (None: all) to look again."""
        for name in list(self._changed) if queues is None else queues:
            event = self._changed.pop(name, None)
            if event is not None:
                event.set()

    async def _wake_after(
        self, request: _Request, target: str, service: str, action: str, form: dict[str, str]
    ) -> None:
        if target.startswith(_SQS_WAKING):
            queue_url = json.loads(request.body or b"{}").get("QueueUrl", "")
            self._wake([_queue_name(str(queue_url))])
        elif service == "sns" and action in ("Publish", "PublishBatch"):
            self._wake(await self._queues_of(request, request.param("TopicArn")))
        elif service == "sns" and action in ("Subscribe", "Unsubscribe", "DeleteTopic"):
            self._topic_queues.clear()
        elif service in ("s3", "") and request.scope["method"] in ("PUT", "POST"):
            # An object written (presigned uploads carry no signature header): a bucket
            # notification may have fanned out to any queue.
            self._wake(None)

    async def _queues_of(self, request: _Request, topic_arn: str) -> list[str]:
        """The names of the queues subscribed to the topic (cached until subscriptions change)."""
        if topic_arn not in self._topic_queues:
            answer = await self._call(
                request, "sns", {"Action": "ListSubscriptionsByTopic", "TopicArn": topic_arn}
            )
            text = answer.body.decode("utf-8", "replace")
            self._topic_queues[topic_arn] = _SQS_ENDPOINT.findall(text)
        return self._topic_queues[topic_arn]

    # --- SES ------------------------------------------------------------------------------

    async def _event_destination(
        self, request: _Request, action: str, form: dict[str, str]
    ) -> _Answer:
        name = form.get("ConfigurationSetName", "")
        described = await self._call(
            request, "ses", {"Action": "DescribeConfigurationSet", "ConfigurationSetName": name}
        )
        if described.status != 200:
            return described
        stored = self.destinations.setdefault(name, {})
        if action == "DeleteConfigurationSetEventDestination":
            if stored.pop(form.get("EventDestinationName", ""), None) is None:
                return _ses_error("EventDestinationDoesNotExist", "No such event destination")
            return _Answer(200, [(b"content-type", b"text/xml")], _ses_xml(action))
        destination: dict[str, Any] = {
            "Name": form.get("EventDestination.Name", ""),
            "Enabled": form.get("EventDestination.Enabled", "false").lower() == "true",
            "MatchingEventTypes": _members(form, "EventDestination.MatchingEventTypes"),
        }
        topic = form.get("EventDestination.SNSDestination.TopicARN")
        if topic:
            destination["SNSDestination"] = {"TopicARN": topic}
        exists = destination["Name"] in stored
        if action.startswith("Create") and exists:
            return _ses_error(
                "EventDestinationAlreadyExists", f"{destination['Name']} already exists"
            )
        if action.startswith("Update") and not exists:
            return _ses_error("EventDestinationDoesNotExist", f"No {destination['Name']}")
        stored[destination["Name"]] = destination
        return _Answer(200, [(b"content-type", b"text/xml")], _ses_xml(action))

    async def _describe_configuration_set(
        self, request: _Request, form: dict[str, str], send: Send
    ) -> None:
        answer = await self._ask(request)
        wanted = _members(form, "ConfigurationSetAttributeNames")
        if answer.status != 200 or "eventDestinations" not in wanted:
            await answer.replay(send)
            return
        stored = self.destinations.get(form.get("ConfigurationSetName", ""), {})
        listed = "".join(_destination_xml(d) for d in stored.values())
        body = answer.body.replace(
            b"</DescribeConfigurationSetResult>",
            f"<EventDestinations>{listed}</EventDestinations>"
            f"</DescribeConfigurationSetResult>".encode(),
        )
        await answer.replay(send, body)

    async def _send_email(self, request: _Request, operation: str, send: Send) -> None:
        v2 = operation == "v2.SendEmail"
        call: dict[str, Any] = json.loads(request.body or b"{}") if v2 else {}
        form = {} if v2 else request.form
        configuration_set = (
            call.get("ConfigurationSetName") if v2 else form.get("ConfigurationSetName")
        )
        if v2 and configuration_set:
            described = await self._call(
                request,
                "ses",
                {"Action": "DescribeConfigurationSet", "ConfigurationSetName": configuration_set},
            )
            if described.status != 200:
                await _v2_not_found(f"Configuration set <{configuration_set}> does not exist.")(
                    send
                )
                return
        answer = await self._ask(request)
        await answer.replay(send)
        if answer.status != 200 or not configuration_set:
            return
        if v2:
            message_id = str(json.loads(answer.body)["MessageId"])
        else:
            found = _MESSAGE_ID.search(answer.body.decode("utf-8", "replace"))
            if found is None:
                return
            message_id = found.group(1)
        topics = [
            topic
            for d in self.destinations.get(configuration_set, {}).values()
            if (topic := ses_events.publishes_send(d)) is not None
        ]
        if not topics:
            return
        record = self._send_record(request, v2, call, form, message_id, configuration_set)
        record["mail"]["sourceArn"] = await self._source_arn(request, record["mail"])
        for topic in topics:
            published = await self._call(
                request,
                "sns",
                {
                    "Action": "Publish",
                    "TopicArn": topic,
                    "Message": json.dumps(record),
                    "Subject": ses_events.SNS_SUBJECT,
                },
            )
            if published.status != 200:
                logger.warning("SES event destination topic %s: Send event lost", topic)
            else:
                self._wake(await self._queues_of(request, topic))

    def _send_record(
        self,
        request: _Request,
        v2: bool,
        call: dict[str, Any],
        form: dict[str, str],
        message_id: str,
        configuration_set: str,
    ) -> dict[str, Any]:
        client = request.scope.get("client") or ("", 0)
        if v2:
            source = str(call.get("FromEmailAddress", ""))
            to = list(call.get("Destination", {}).get("ToAddresses", []))
            cc = list(call.get("Destination", {}).get("CcAddresses", []))
            bcc = list(call.get("Destination", {}).get("BccAddresses", []))
            content = call.get("Content", {})
            tags = [(t["Name"], t["Value"]) for t in call.get("EmailTags", [])]
            raw_data = content.get("Raw", {}).get("Data")
            subject = str(content.get("Simple", {}).get("Subject", {}).get("Data", ""))
            operation = "SendEmail"
        else:
            source = form.get("Source", "")
            to = _members(form, "Destination.ToAddresses")
            cc = _members(form, "Destination.CcAddresses")
            bcc = _members(form, "Destination.BccAddresses")
            tags = _tags(form)
            raw_data = form.get("RawMessage.Data")
            subject = form.get("Message.Subject.Data", "")
            operation = form.get("Action", "SendEmail")
        if raw_data is not None:
            headers = ses_events.raw_headers(base64.b64decode(raw_data).decode("utf-8", "replace"))
            listed = [*to, *cc, *bcc, *_members(form, "Destinations")]
            recipients = ses_events.raw_recipients(headers, listed)
            source = source or next((v for n, v in headers if n.lower() == "from"), "")
        else:
            headers = ses_events.simple_headers(source, to, cc, subject)
            recipients = [*to, *cc, *bcc]
        return ses_events.send_event_record(
            message_id=message_id,
            source=source,
            headers=headers,
            recipients=recipients,
            configuration_set=configuration_set,
            tags=tags,
            operation=operation,
            source_ip=client[0] or None,
            account=ACCOUNT,
            region=request.credential[2] or "us-east-1",
        )

    async def _source_arn(self, request: _Request, mail: dict[str, Any]) -> str:
        """The identity that authorised the send: the address if verified, else its domain."""
        _, sender = parseaddr(str(mail["source"]))
        answer = await self._call(
            request,
            "ses",
            {"Action": "GetIdentityVerificationAttributes", "Identities.member.1": sender},
        )
        verified = b"<VerificationStatus>Success</VerificationStatus>" in answer.body
        identity = sender if verified else sender.rpartition("@")[2]
        prefix = str(mail["sourceArn"]).rpartition(":identity/")[0]
        return f"{prefix}:identity/{identity}"

    # --- calls to the inner application ---------------------------------------------------

    async def _ask(self, request: _Request) -> _Answer:
        answer = _Answer()

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer.status = int(message["status"])
                answer.headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                answer.body += message.get("body", b"")

        await self.inner(request.scope, _replay(request.body), capture)
        return answer

    async def _call(self, like: _Request, service: str, params: dict[str, str]) -> _Answer:
        """A query-protocol call of `service`, in the account and region of `like`."""
        key, date, region, _ = like.credential
        body = urlencode(params).encode()
        authorization = (
            f"AWS4-HMAC-SHA256 Credential={key or CREDENTIAL}/{date or '20260101'}/"
            f"{region or 'us-east-1'}/{service}/aws4_request, SignedHeaders=host, Signature=0"
        )
        scope = {
            **like.scope,
            "method": "POST",
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "headers": [
                (b"host", like.header("host").encode()),
                (b"content-type", b"application/x-www-form-urlencoded; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"authorization", authorization.encode()),
            ],
        }
        return await self._ask(_Request(scope, body))


def _tags(form: dict[str, str]) -> list[tuple[str, str]]:
    tags = []
    n = 1
    while f"Tags.member.{n}.Name" in form:
        tags.append((form[f"Tags.member.{n}.Name"], form.get(f"Tags.member.{n}.Value", "")))
        n += 1
    return tags


def _sqs_error(code: str, message: str) -> Callable[[Send], Awaitable[None]]:
    body = json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": message}).encode()
    headers = [
        (b"content-type", b"application/x-amz-json-1.0"),
        (b"x-amzn-query-error", f"AWS.SimpleQueueService.{code};Sender".encode()),
    ]
    return _Answer(400, headers, body).replay


def _v2_not_found(message: str) -> Callable[[Send], Awaitable[None]]:
    body = json.dumps({"message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"x-amzn-errortype", b"NotFoundException")]
    return _Answer(404, headers, body).replay


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    """A `receive` that gives the body once, then waits (as a connection that stays open)."""
    given = False

    async def receive() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # cancelled with the request
        return {"type": "http.disconnect"}

    return receive


def configure(port: int, host: str, state_dir: str | None) -> None:
    """ministack's settings, in its environment variables (read when it is imported)."""
    os.environ.update(
        {
            "GATEWAY_PORT": str(port),
            "BIND_HOST": host,
            # Presigned URLs are checked against the server's own credentials.
            "AWS_ACCESS_KEY_ID": CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": CREDENTIAL,
            "MINISTACK_ACCOUNT_ID": ACCOUNT,
            "SFTP_ENABLED": "0",
            "LOG_LEVEL": os.environ.get("EVENTFORGE_EMULATOR_LOG_LEVEL", "WARNING"),
        }
    )
    if state_dir:
        os.environ.update(
            {
                "PERSIST_STATE": "1",
                "STATE_DIR": state_dir,
                "S3_PERSIST": "1",
                "S3_DATA_DIR": os.path.join(state_dir, "s3"),
            }
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eventforge.runtime.ministack_server")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=4566)
    parser.add_argument("--state-dir", help="keep the emulator's state here across restarts")
    args = parser.parse_args(argv)
    configure(args.port, args.host, args.state_dir)
    from hypercorn.asyncio import serve
    from hypercorn.config import Config
    from ministack.app import app as ministack_app

    config = Config()
    config.bind = [f"{args.host}:{args.port}"]
    config.keep_alive_timeout = 75
    config.accesslog = None

    async def run() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        # Lifespan shutdown (ministack writes its state then) runs once `stopping` is set.
        await serve(MiniStackPlus(ministack_app), config, shutdown_trigger=stopping.wait)  # type: ignore[arg-type]

    asyncio.run(run())


if __name__ == "__main__":
    main()
