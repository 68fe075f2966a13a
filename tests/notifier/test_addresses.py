"""The SSRF guard's pure rules: which addresses are refused and why, and the URL form rules."""

from __future__ import annotations

import ipaddress

import pytest

from eventforge.notifier.domain.addresses import Refused, parse_webhook_url, refusal_of

pytestmark = pytest.mark.security


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.0.0.1", "private"),
        ("10.255.255.255", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.10", "private"),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("169.254.169.254", "metadata"),
        ("169.254.1.1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "private"),
        ("198.18.0.1", "private"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "unique-local"),
        ("fd00:ec2::254", "unique-local"),
        ("ff02::1", "multicast"),
        ("fec0::1", "site-local"),
        ("::10.0.0.1", "reserved"),
        ("2001:db8::1", "private"),
        # IPv6 forms that stand for an IPv4 address are judged by that address.
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::ffff:100.64.0.1", "carrier-grade NAT"),
        ("2002:a00:1::", "private"),
        ("2002:7f00:1::1", "loopback"),
        ("64:ff9b::10.0.0.1", "private"),
        ("64:ff9b::127.0.0.1", "loopback"),
    ],
)
def test_non_public_addresses_are_refused_with_their_kind(address: str, reason: str) -> None:
    refusal = refusal_of(ipaddress.ip_address(address))
    assert refusal is not None
    assert reason in refusal


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "1.1.1.1",
        "100.63.255.255",
        "100.128.0.0",
        "172.32.0.1",
        "2606:4700:4700::1111",
        "2a00:1450:4001:80b::200e",
        "::ffff:8.8.8.8",
        "2002:808:808::",
        "64:ff9b::8.8.8.8",
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal_of(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "required"),
        ("http://hooks.example.com/x", "https"),
        ("ftp://hooks.example.com/x", "https"),
        ("hooks.example.com/x", "https"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
        ("https:///path-only", "host"),
        ("https://hooks.example.com:99999/x", "valid URL"),
        ("https://hooks .example.com/x", "spaces"),
        ("https://hooks.example.com/\r\nX-Injected: 1", "control"),
        ("https://bad_label!.example.com/", "valid host name"),
        ("https://" + "a" * 2050 + ".com/", "at most"),
    ],
)
def test_url_form_rules(url: str, fragment: str) -> None:
    with pytest.raises(Refused, match=fragment):
        parse_webhook_url(url, frozenset())


def test_http_and_private_hosts_only_for_the_allow_list() -> None:
    allowed = frozenset({"127.0.0.1", "[::1]", "Receiver.Local"})
    for url in ("http://127.0.0.1:8080/hook", "http://[::1]:9/x", "http://receiver.local/x"):
        assert parse_webhook_url(url, allowed).allow_listed
    with pytest.raises(Refused, match="allow-list"):
        parse_webhook_url("http://10.0.0.1/hook", allowed)


def test_a_parsed_url_has_its_port_host_and_literal() -> None:
    parsed = parse_webhook_url("https://Hooks.Example.COM/in?x=1", frozenset())
    assert (parsed.scheme, parsed.host, parsed.port, parsed.literal) == (
        "https",
        "hooks.example.com",
        443,
        None,
    )
    literal = parse_webhook_url("https://[2606:4700::1111]:8443/", frozenset())
    assert literal.port == 8443
    assert literal.literal == ipaddress.ip_address("2606:4700::1111")
    idn = parse_webhook_url("https://bücher.example/hook", frozenset())
    assert idn.host == "xn--bcher-kva.example"
