import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderbook.errors import DecodeError
from orderbook.numbers import INT64_MAX, decimals_of, format_fixed, parse_fixed


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
