import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderbook.errors import DecodeError
from orderbook.numbers import INT64_MAX, decimals_of, format_fixed, parse_fixed, parse_fixed_general


def test_binance_price_string_is_exact():
    assert parse_fixed("61837.63000000", 8) == 6_183_763_000_000
    assert parse_fixed("0.000022900", 9) == 22_900
    assert decimals_of("0.000022900") == 9


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-1", "1e5", "", ".", "1.2.3", "0x10", " 1", "1.0000000001", "١"])
def test_malformed_decimals_raise(bad):
    with pytest.raises(DecodeError):
        parse_fixed(bad, 8)


def test_a_value_an_events_int64_cannot_hold_is_refused_at_the_largest_that_fits():
    assert parse_fixed("92233720368.54775807", 8) == INT64_MAX  # an event's price or size column is int64
    for bad in ("92233720368.54775808", "99999999999999999999999"):
        with pytest.raises(DecodeError, match="does not fit int64"):
            parse_fixed(bad, 8)
    assert parse_fixed("-92233720368.54775807", 8, allow_negative=True) == -INT64_MAX


def test_non_string_raises():
    with pytest.raises(DecodeError):
        parse_fixed(1.5, 8)  # type: ignore[arg-type]


@given(st.integers(min_value=-(10**15), max_value=10**15), st.integers(min_value=0, max_value=10))
def test_format_parse_round_trip(value, decimals):
    assert parse_fixed(format_fixed(value, decimals), decimals, allow_negative=True) == value


def _outcome(parse, text, decimals, negative):
    try:
        return parse(text, decimals, field="f", allow_negative=negative)
    except DecodeError as err:
        return (type(err), str(err))


printed = st.builds(
    lambda sign, whole, dot, frac: sign + whole + dot + frac,
    st.sampled_from(["", "", "-", "+"]),
    st.text("0123456789", max_size=21),
    st.sampled_from([".", ".", "", ".."]),
    st.text("0123456789", max_size=12),
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(printed, st.text(max_size=24), st.binary(max_size=12)), st.integers(0, 12), st.booleans())
def test_the_shortcut_accepts_and_refuses_exactly_what_the_general_path_does(text, decimals, negative):
    """parse_fixed's shortcut for plain digit strings: the value, or the DecodeError and its message, of
    parse_fixed_general, on venue-printed numbers (signs, no dot, more places than `decimals`, past int64)
    and on any text or bytes (bytes that are not UTF-8 raised UnicodeDecodeError until 2026-12-06)."""
    assert _outcome(parse_fixed, text, decimals, negative) == _outcome(parse_fixed_general, text, decimals, negative)


@pytest.mark.parametrize("text", ["5", "0", "000123.4500", "92233720368.54775807", "92233720368.54775808", "1²"])
def test_the_shortcut_on_the_edges_equals_the_general_path(text):
    assert _outcome(parse_fixed, text, 8, False) == _outcome(parse_fixed_general, text, 8, False)
