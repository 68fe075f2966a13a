"""Webhook POSTs with httpx, pinned to the address the SSRF guard checked.

The request goes to the checked IP address while carrying the URL's host in the `Host` header
and, for https, in TLS SNI and certificate verification — so a DNS answer that changes between
the check and the connection (DNS rebinding) is never used. Connections are not kept alive (a
pooled connection is keyed by address and could carry another host's TLS session), redirects
are not followed, and proxies from the environment are ignored (they would break the pin).
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from eventforge.notifier.service_layer.ports import PinnedTarget, TransportError, WebhookTransport


def pinned_request(
    client: httpx.Client, target: PinnedTarget, headers: Mapping[str, str], body: bytes
) -> httpx.Request:
    """A POST of `body` to `target.url`, addressed to `target.address`."""
    url = httpx.URL(target.url)
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    return client.build_request(
        "POST",
        url.copy_with(host=target.address),
        headers={**headers, "Host": url.netloc.decode("ascii")},
        content=body,
        extensions=extensions,
    )


class HttpxWebhookTransport(WebhookTransport):
    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout_seconds),
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    def post(self, target: PinnedTarget, headers: Mapping[str, str], body: bytes) -> int:
        request = pinned_request(self.client, target, headers, body)
        try:
            # Only the status matters: the body is never read.
            response = self.client.send(request, stream=True)
            response.close()
        except httpx.TimeoutException as error:
            raise TransportError(
                f"timed out after {self.timeout_seconds:g}s ({type(error).__name__})"
            ) from error
        except httpx.HTTPError as error:
            raise TransportError(f"{type(error).__name__}: {error}") from error
        return response.status_code

    def close(self) -> None:
        self.client.close()
