"""Venue times as people read them (orderbook/clock.py): epoch stamps in UTC, day-clock stamps as such."""

from orderbook.clock import DAY_NS, clock, clock_unit, span

EPOCH = 1_723_118_400_123_000_000  # 2024-08-08 12:00:00.123 UTC
DAY_CLOCK = 34_200_123_000_000  # 09:30:00.123 on a venue's own clock


def test_clock_reads_epoch_stamps_as_utc_and_day_stamps_as_the_venue_clock():
    assert clock(EPOCH) == "2024-08-08 12:00:00.123" and clock_unit(EPOCH) == "UTC"
    assert clock(DAY_CLOCK) == "09:30:00.123" and clock_unit(DAY_CLOCK) == "venue clock"
    assert clock(0) == "-" and clock(DAY_NS - 1) == "23:59:59.999"


def test_span_shows_the_date_once_the_clock_kind_and_the_length():
    assert span(EPOCH, EPOCH + 2_333_000_000) == "2024-08-08 12:00:00.123-12:00:02.456 UTC (2.33 s)"
    assert span(DAY_CLOCK, DAY_CLOCK + 877_000_000) == "09:30:00.123-09:30:01.000 venue clock (0.877 s)"


def test_span_across_midnight_keeps_both_dates_and_short_spans_read_in_microseconds():
    midnight = 1_723_161_600_000_000_000  # 2024-08-09 00:00:00 UTC
    assert span(midnight - 1_000_000_000, midnight) == "2024-08-08 23:59:59.000-2024-08-09 00:00:00.000 UTC (1 s)"
    assert span(DAY_CLOCK, DAY_CLOCK + 500) == "09:30:00.123-09:30:00.123 venue clock (0.5 us)"
    assert span(0, 0) == "-"
