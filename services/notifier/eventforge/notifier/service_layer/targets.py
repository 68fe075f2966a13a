"""Resolve a webhook URL to the one address it may be called at, or refuse it (SSRF guard)."""

from __future__ import annotations

import ipaddress

from eventforge.notifier.domain.addresses import Refused, parse_webhook_url, refusal_of
from eventforge.notifier.service_layer.ports import PinnedTarget, ResolutionFailed, Resolver


def resolve_target(url: str, *, resolver: Resolver, allowed_hosts: frozenset[str]) -> PinnedTarget:
    """The address to connect to for `url`; raises Refused with the reason.

    Every address the host resolves to must be public (unless the host is on the allow-list):
    one private answer among public ones is refused too, since the next lookup may return it.
    The caller connects to the returned address, so a later, different answer cannot be used.
    """
    parsed = parse_webhook_url(url, allowed_hosts)
    if parsed.literal is not None:
        addresses = [parsed.literal]
    else:
        try:
            found = resolver.resolve(parsed.host, parsed.port)
        except ResolutionFailed as error:
            raise Refused(f"host {parsed.host} does not resolve: {error}") from error
        if not found:
            raise Refused(f"host {parsed.host} does not resolve")
        addresses = [ipaddress.ip_address(address) for address in found]
    if not parsed.allow_listed:
        for address in addresses:
            reason = refusal_of(address)
            if reason is None:
                continue
            if parsed.literal is not None:
                raise Refused(f"{address} is {reason}")
            raise Refused(f"host {parsed.host} resolves to {address}, {reason}")
    return PinnedTarget(url=url, host=parsed.host, port=parsed.port, address=str(addresses[0]))
