"""The signature schemes: valid, forged, stale and rotated signatures, compared in constant time."""

from __future__ import annotations

import hmac

import pytest

from eventforge.ingest.domain import signatures
from eventforge.ingest.domain.refusals import BadSignature, StaleSignature
from eventforge.ingest.domain.signatures import BodyHmac, TimestampedHmac

BODY = b'{"id": "evt_1"}'
NOW = 1_767_225_600
STRIPE_STYLE = TimestampedHmac("Webhook-Signature", tolerance_seconds=300)
GITHUB_STYLE = BodyHmac("X-Signature")


def _stripe_headers(value: str) -> dict[str, str]:
    return {"webhook-signature": value}


def test_a_timestamped_signature_verifies_within_the_tolerance_either_way() -> None:
    for signed_at in (NOW - 300, NOW, NOW + 300):
        header = STRIPE_STYLE.sign("secret", signed_at, BODY)
        STRIPE_STYLE.verify(_stripe_headers(header), BODY, ["secret"], NOW)


@pytest.mark.parametrize("signed_at", [NOW - 301, NOW + 301, 0])
def test_a_timestamp_past_the_tolerance_is_stale(signed_at: int) -> None:
    header = STRIPE_STYLE.sign("secret", signed_at, BODY)
    with pytest.raises(StaleSignature):
        STRIPE_STYLE.verify(_stripe_headers(header), BODY, ["secret"], NOW)


def test_the_timestamp_is_signed_too() -> None:
    signature = STRIPE_STYLE.sign("secret", NOW - 1000, BODY).split(",")[1]
    with pytest.raises(BadSignature):  # a fresh t= on an old signature
        STRIPE_STYLE.verify(_stripe_headers(f"t={NOW},{signature}"), BODY, ["secret"], NOW)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "v1=abc",
        f"t={NOW}",
        f"t=soon,v1={'0' * 64}",
        f"t={NOW},v0={'0' * 64}",
        f"t={NOW},v1={'0' * 64}",
    ],
)
def test_missing_malformed_or_wrong_timestamped_signatures_are_bad(header: str) -> None:
    with pytest.raises(BadSignature):
        STRIPE_STYLE.verify(_stripe_headers(header), BODY, ["secret"], NOW)


def test_a_changed_body_or_another_secret_is_bad() -> None:
    header = _stripe_headers(STRIPE_STYLE.sign("secret", NOW, BODY))
    with pytest.raises(BadSignature):
        STRIPE_STYLE.verify(header, BODY + b" ", ["secret"], NOW)
    with pytest.raises(BadSignature):
        STRIPE_STYLE.verify(header, BODY, ["other"], NOW)


def test_rotation_on_either_side() -> None:
    old, new = STRIPE_STYLE.sign("old", NOW, BODY), STRIPE_STYLE.sign("new", NOW, BODY)
    # The provider signs with both secrets while it rotates: several v1 values.
    both = f"{old},{new.split(',')[1]}"
    STRIPE_STYLE.verify(_stripe_headers(both), BODY, ["new"], NOW)
    STRIPE_STYLE.verify(_stripe_headers(both), BODY, ["old"], NOW)
    # EventForge accepts the old and the new secret while it rotates its configuration.
    STRIPE_STYLE.verify(_stripe_headers(new), BODY, ["old", "new"], NOW)
    GITHUB_STYLE.verify({"x-signature": GITHUB_STYLE.sign("old", BODY)}, BODY, ["old", "new"], NOW)


def test_too_many_signatures_are_refused_before_any_is_computed() -> None:
    many = ",".join([f"t={NOW}"] + [f"v1={'0' * 64}"] * (signatures.MAX_SIGNATURES + 1))
    with pytest.raises(BadSignature, match="more than"):
        STRIPE_STYLE.verify(_stripe_headers(many), BODY, ["secret"], NOW)


def test_every_pair_is_compared_in_constant_time_even_after_a_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    good = STRIPE_STYLE.sign("a", NOW, BODY)
    header = f"{good},v1={'0' * 64},v1={'1' * 64}"
    STRIPE_STYLE.verify(_stripe_headers(header), BODY, ["a", "b"], NOW)
    assert len(compared) == 2 * 3  # two secrets, three signatures, the first pair matching


def test_a_body_signature_verifies_and_refuses() -> None:
    header = {"x-signature": GITHUB_STYLE.sign("secret", BODY)}
    assert header["x-signature"].startswith("sha256=")
    GITHUB_STYLE.verify(header, BODY, ["secret"], NOW)
    for bad in ({}, {"x-signature": "sha256="}, {"x-signature": "md5=abc"}):
        with pytest.raises(BadSignature):
            GITHUB_STYLE.verify(bad, BODY, ["secret"], NOW)
    with pytest.raises(BadSignature):
        GITHUB_STYLE.verify(header, BODY + b"x", ["secret"], NOW)


def test_the_hex_digest_is_the_openssl_one() -> None:
    # printf '%s' '{"id": "evt_1"}' | openssl dgst -sha256 -hmac secret -r
    expected = "c48ba0a151b349f662987eada3d931f868c72f63c9d01fed1926d4a80810cbda"
    assert signatures.hmac_hex("secret", BODY) == expected
