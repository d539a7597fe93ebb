"""Exact decimal strings to integer price units/lots. Floats never touch a price on the way in."""

from __future__ import annotations

from .errors import DecodeError

INT64_MAX = (1 << 63) - 1  # events carry prices, sizes, ids and times as int64 (orderbook.events)
INT64_MIN = -(1 << 63)
_POW10 = tuple(10**n for n in range(40))
_MAX_FAST_DIGITS = 40  # longer strings take the general path, whose int() limits then apply as they always did


def parse_fixed(text: str | bytes, decimals: int, *, field: str = "value", allow_negative: bool = False) -> int:
    """`"61837.63000000"` at 8 decimals -> 6183763000000. Exact: a digit past `decimals`
    that is not zero, an exponent, NaN, inf, a sign (unless allowed) or a value an event's int64
    cannot hold raises DecodeError."""
    # What the venues print, a fifth of a Python feed's time before this shortcut: ASCII digits with at most
    # `decimals` places after a dot, or none. ASCII and isdigit: only 0-9, so int() sees no sign, space or
    # underscore it would accept. Anything else takes the general path, which accepts or refuses it.
    if type(text) is str and len(text) <= _MAX_FAST_DIGITS and decimals < len(_POW10) and text.isascii():
        whole, dot, frac = text.partition(".")
        if whole.isdigit() and len(frac) <= decimals and (not dot or frac.isdigit()):
            return fits_int64(int(whole + frac) * _POW10[decimals - len(frac)], field, text)
    return parse_fixed_general(text, decimals, field=field, allow_negative=allow_negative)


def parse_fixed_general(text: str | bytes, decimals: int, *, field: str = "value", allow_negative: bool = False) -> int:
    """`parse_fixed` without its shortcut: every input it takes (the reference the shortcut is held to)."""
    try:
        s = text.decode() if isinstance(text, bytes) else text
    except UnicodeDecodeError:
        raise DecodeError(f"{field} {text!r:.40} is not UTF-8") from None
    if not isinstance(s, str):
        raise DecodeError(f"{field} must be a decimal string, got {type(text).__name__}")
    neg = False
    if s[:1] == "-" and allow_negative:
        neg, s = True, s[1:]
    whole, dot, frac = s.partition(".")
    if (not whole and not frac) or not (whole or "0").isdigit() or (dot and frac and not frac.isdigit()):
        raise DecodeError(f"{field} {text!r} is not a plain decimal number")
    if not whole.isascii() or not frac.isascii():
        raise DecodeError(f"{field} {text!r} is not a plain decimal number")
    if len(frac) > decimals:
        if frac[decimals:].strip("0"):
            raise DecodeError(f"{field} {text!r} has more than {decimals} decimals")
        frac = frac[:decimals]
    value = fits_int64(int(whole or "0") * 10**decimals + int(frac.ljust(decimals, "0") or "0"), field, text)
    return -value if neg else value


def fits_int64(value: int, field: str, text: object) -> int:
    """`value`, or DecodeError where an event's int64 cannot hold it (the native decoders refuse it alike)."""
    if value > INT64_MAX:
        raise DecodeError(f"{field} {text!r:.40} does not fit int64")
    return value


def decimals_of(text: str) -> int:
    """Decimal places as printed: `"0.000022900"` -> 9 (Kraken's checksum needs them)."""
    _, _, frac = text.partition(".")
    return len(frac)


def format_fixed(value: int, decimals: int) -> str:
    """The inverse of parse_fixed, printing exactly `decimals` places."""
    sign = "-" if value < 0 else ""
    v = abs(value)
    if decimals == 0:
        return f"{sign}{v}"
    return f"{sign}{v // 10**decimals}.{v % 10**decimals:0{decimals}d}"
