"""Money in integer minor units, formatted for people without floating point."""

from __future__ import annotations

# ISO 4217 currencies whose minor unit is not the usual hundredth.
_ZERO_DECIMALS = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND"}
    | {"VUV", "XAF", "XOF", "XPF"}
)
_THREE_DECIMALS = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})


def minor_digits(currency: str) -> int:
    """Digits after the decimal point in the currency's minor unit."""
    if currency in _ZERO_DECIMALS:
        return 0
    if currency in _THREE_DECIMALS:
        return 3
    return 2


def format_money(amount_minor: int, currency: str) -> str:
    """`5000, "USD"` → `"USD 50.00"`; `1500, "JPY"` → `"JPY 1500"`."""
    digits = minor_digits(currency)
    sign = "-" if amount_minor < 0 else ""
    major, minor = divmod(abs(amount_minor), 10**digits)
    if digits == 0:
        return f"{currency} {sign}{major}"
    return f"{currency} {sign}{major}.{minor:0{digits}d}"
