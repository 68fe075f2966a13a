"""Webhook signatures and the verification helper receivers use."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from eventforge.notifier.signing import sign, verify

SECRET = "whsec_test-secret"
BODY = b'{"eventId":"e-1","eventType":"order.confirmed"}'
NOW = 1_767_225_600

pytestmark = pytest.mark.security


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == f"v1={expected}"
    assert sign(SECRET, str(NOW), BODY.decode()) == sign(SECRET, NOW, BODY)


def test_a_valid_signature_verifies() -> None:
    signature = sign(SECRET, NOW, BODY)
    assert verify(SECRET, str(NOW), BODY, signature, now=NOW)
    assert verify(SECRET, NOW, BODY.decode(), signature, now=NOW + 299)


def test_any_change_fails_verification() -> None:
    signature = sign(SECRET, NOW, BODY)
    assert not verify("whsec_other", NOW, BODY, signature, now=NOW)
    assert not verify(SECRET, NOW, BODY + b" ", signature, now=NOW)
    assert not verify(SECRET, NOW + 1, BODY, signature, now=NOW)
    assert not verify(SECRET, NOW, BODY, signature.replace("v1=", "v0="), now=NOW)
    assert not verify(SECRET, NOW, BODY, "", now=NOW)
    assert not verify(SECRET, NOW, BODY, "v1=ü", now=NOW)


def test_timestamps_outside_the_tolerance_are_refused() -> None:
    signature = sign(SECRET, NOW, BODY)
    assert not verify(SECRET, NOW, BODY, signature, now=NOW + 301)
    assert not verify(SECRET, NOW, BODY, signature, now=NOW - 301)
    assert verify(SECRET, NOW, BODY, signature, tolerance=600, now=NOW + 301)
    assert not verify(SECRET, "not-a-number", BODY, signature, now=NOW)


def test_one_of_several_signatures_may_match() -> None:
    header = f"v1={'0' * 64}, {sign(SECRET, NOW, BODY)}"
    assert verify(SECRET, NOW, BODY, header, now=NOW)
