"""The notifier's adapters that need no emulator: pinned HTTP, DNS, templates, SES errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from eventforge.notifier.adapters.dns import SystemResolver
from eventforge.notifier.adapters.http import HttpxWebhookTransport, pinned_request
from eventforge.notifier.adapters.mailer import SesMailer
from eventforge.notifier.adapters.templates import JinjaEmailRenderer
from eventforge.notifier.service_layer.ports import (
    MailError,
    MailOutcomeUnknown,
    PinnedTarget,
    ResolutionFailed,
    TransportError,
)


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode()
        _Recorder.seen.append({"host": self.headers["Host"], "path": self.path, "body": body})
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
        else:
            self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[int]:
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_request_goes_to_the_pinned_address_with_the_original_host(receiver: int) -> None:
    transport = HttpxWebhookTransport(timeout_seconds=2)
    target = PinnedTarget(
        f"http://hooks.example.com:{receiver}/in?x=1", "hooks.example.com", receiver, "127.0.0.1"
    )
    assert transport.post(target, {"X-Test": "1"}, b'{"a":1}') == 204
    [seen] = _Recorder.seen
    assert seen == {"host": f"hooks.example.com:{receiver}", "path": "/in?x=1", "body": '{"a":1}'}
    transport.close()


def test_redirects_are_not_followed(receiver: int) -> None:
    transport = HttpxWebhookTransport(timeout_seconds=2)
    target = PinnedTarget(
        f"http://h.example:{receiver}/redirect", "h.example", receiver, "127.0.0.1"
    )
    assert transport.post(target, {}, b"{}") == 302
    assert len(_Recorder.seen) == 1


def test_connection_failures_are_transport_errors() -> None:
    from eventforge.runtime.emulator import free_port

    port = free_port()
    transport = HttpxWebhookTransport(timeout_seconds=1)
    with pytest.raises(TransportError, match="ConnectError"):
        transport.post(
            PinnedTarget(f"http://x.example:{port}/", "x.example", port, "127.0.0.1"), {}, b""
        )


def test_https_keeps_the_host_for_sni_and_brackets_ipv6_addresses() -> None:
    with httpx.Client() as client:
        request = pinned_request(
            client,
            PinnedTarget(
                "https://Hooks.Example.com/in", "hooks.example.com", 443, "2606:4700::1111"
            ),
            {"EventForge-Event-Id": "e"},
            b"{}",
        )
    assert str(request.url) == "https://[2606:4700::1111]/in"
    assert request.headers["Host"] == "hooks.example.com"
    assert request.extensions["sni_hostname"] == "hooks.example.com"


def test_the_system_resolver_finds_loopback_for_localhost() -> None:
    addresses = SystemResolver().resolve("localhost", 443)
    assert addresses
    assert set(addresses) <= {"127.0.0.1", "::1"}
    with pytest.raises(ResolutionFailed):
        SystemResolver().resolve("no-such-host.invalid", 443)


def test_every_template_renders_text_and_escaped_html() -> None:
    renderer = JinjaEmailRenderer()
    context: dict[str, object] = {
        "order_id": "<b>o-1</b>",
        "total": "50.00 USD",
        "items": [{"sku": "SKU-1", "quantity": 2, "line_total": "50.00 USD"}],
        "reason": "declined",
        "download_url": "https://files.example/r?a=1&b=2",
        "file_id": "f-1",
        "file_name": "cat.png",
    }
    for template in (
        "order_confirmed",
        "order_failed",
        "order_cancelled",
        "receipt_ready",
        "file_rejected",
    ):
        rendered = renderer.render(template, "Subject <1>", context)
        assert rendered.text.strip()
        assert "<b>" not in rendered.html
        assert "<title>Subject &lt;1&gt;</title>" in rendered.html


class _FailingSes:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def send_email(self, **_: object) -> dict[str, str]:
        raise self.error


def test_ses_errors_are_mail_errors_permanent_or_not() -> None:
    rejected = ClientError({"Error": {"Code": "MessageRejected", "Message": "no"}}, "SendEmail")
    throttled = ClientError({"Error": {"Code": "Throttling", "Message": "slow"}}, "SendEmail")
    down = EndpointConnectionError(endpoint_url="http://ses")
    for error, permanent in ((rejected, True), (throttled, False), (down, False)):
        mailer = SesMailer(_FailingSes(error), "from@example.com", "cs")  # type: ignore[arg-type]
        with pytest.raises(MailError) as raised:
            mailer.send(
                notification_id="n-1", recipient="a@example.com", subject="s", text="t", html="h"
            )
        assert raised.value.permanent is permanent
        assert not isinstance(raised.value, MailOutcomeUnknown)


def test_an_ses_call_without_an_answer_has_an_unknown_outcome() -> None:
    lost = ReadTimeoutError(endpoint_url="http://ses")
    mailer = SesMailer(_FailingSes(lost), "from@example.com", "cs")  # type: ignore[arg-type]
    with pytest.raises(MailOutcomeUnknown):
        mailer.send(
            notification_id="n-1", recipient="a@example.com", subject="s", text="t", html="h"
        )
