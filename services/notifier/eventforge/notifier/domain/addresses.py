"""Which webhook URLs and addresses may be called: https only, and only public addresses.

Pure rules: `parse_webhook_url` checks a URL's form, `refusal_of` classifies one IP address. The
service layer resolves host names and applies `refusal_of` to every address, at registration and
again before every attempt (DNS answers change), then connects to the address it checked.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
CARRIER_GRADE_NAT = ipaddress.IPv4Network("100.64.0.0/10")
UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
METADATA = ipaddress.IPv4Address("169.254.169.254")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Refused(ValueError):
    """A webhook target that may not be called; the message says why."""


@dataclass(frozen=True)
class WebhookUrl:
    """A URL that passed the form rules."""

    url: str
    scheme: str
    host: str
    """Lowercase, without IPv6 brackets; IDNA (punycode) for international names."""
    port: int
    allow_listed: bool
    """On the allow-list setting: plain http and private addresses are allowed."""
    literal: IPAddress | None
    """The address when the host is an IP literal."""


def normalise_host(host: str) -> str:
    """Host names compare lowercase and without IPv6 brackets."""
    return host.strip().strip("[]").lower()


def parse_webhook_url(url: str, allowed_hosts: frozenset[str]) -> WebhookUrl:
    """Check a webhook URL's form; raises Refused."""
    if not url:
        raise Refused("is required")
    if len(url) > MAX_URL_LENGTH:
        raise Refused(f"must be at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise Refused("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise Refused(f"is not a valid URL: {error}") from error
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise Refused("must be an https URL")
    if parts.username is not None or parts.password is not None:
        raise Refused("must not contain credentials")
    host = normalise_host(parts.hostname or "")
    if not host:
        raise Refused("must name a host")
    allow_listed = host in {normalise_host(h) for h in allowed_hosts}
    if scheme == "http" and not allow_listed:
        raise Refused("must be an https URL (plain http only for hosts on the allow-list)")
    literal = _ip_literal(host)
    if literal is None:
        host = _idna(host)
    return WebhookUrl(
        url, scheme, host, port or _DEFAULT_PORTS[scheme], allow_listed, literal=literal
    )


def refusal_of(address: IPAddress) -> str | None:
    """Why a webhook may not connect to `address`, or None when it is publicly routable."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = refusal_of(embedded)
            return f"{reason} (IPv4 {embedded} inside {address})" if reason else None
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address == METADATA:
        return "the cloud metadata address (link-local)"
    if address.is_link_local:
        return "a link-local address"
    if isinstance(address, ipaddress.IPv4Address) and address in CARRIER_GRADE_NAT:
        return "a carrier-grade NAT address (100.64.0.0/10)"
    if isinstance(address, ipaddress.IPv6Address) and address in UNIQUE_LOCAL:
        return "a unique-local address (fc00::/7)"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address"
    if not address.is_global:
        return "not a publicly routable address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: mapped (::ffff:a.b.c.d), 6to4 or NAT64."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _idna(host: str) -> str:
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError as error:
        raise Refused(f"host {host!r} is not a valid host name") from error
    labels = ascii_host.rstrip(".").split(".")
    if not all(label and _valid_label(label) for label in labels):
        raise Refused(f"host {host!r} is not a valid host name")
    return ascii_host


def _valid_label(label: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-_")
    return len(label) <= 63 and set(label) <= allowed and not label.startswith("-")
