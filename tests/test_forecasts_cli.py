"""`megatrading forecasts` in a person's units (and --raw in the venue's), `history --since` in times a
person writes, `alerts` with its total; the totals of the `replay` and `simulate --kafka` bars.

The servers are the module's own (`lab`): replay and simulate write md.raw.itch, which the session
broker's other modules consume with workers of their own."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import redis
from tqdm import tqdm

from model.serving.forecaster import PREDICTION_FIELDS
from streams.cli import main
from streams.sink import RedisSink

MINUTE = 60 * 10**9
T0 = 1_723_118_400 * 10**9  # 2024-08-08 12:00:00 UTC


def forecast(venue: str, symbol: str, seq: int, event_ts: int, bid: int, ask: int, score: float = 0.1) -> dict:
    rec: dict[str, object] = {"venue": venue, "symbol": symbol, "event_ts": event_ts, "emitted_ts": event_ts + 5,
                              "seq": seq, "window": seq, "model": "baseline-har-ewma:1", "best_bid": bid,
                              "best_ask": ask, "news_ts": 0}  # fmt: skip
    rec.update({name: 0.5 for name in PREDICTION_FIELDS})
    rec["spread_q50_h10"], rec["depth_q50_h10"] = 3.0, 1200.0
    rec["anomaly_score"] = score
    rec["reason"] = "message_rate z=9.0" if score > 0.99 else ""
    rec["schema"] = 2
    return rec


@pytest.fixture
def sink(lab, monkeypatch):
    client = redis.Redis.from_url(lab.redis.url)
    client.flushdb()
    monkeypatch.setenv("MT_REDIS_URL", lab.redis.url)
    monkeypatch.setenv("MT_KAFKA_BOOTSTRAP", lab.kafka.bootstrap)
    return RedisSink(client, alert_threshold=0.99)


def test_latest_shows_an_itch_price_in_dollars_and_raw_keeps_the_venue_units(sink, capsys):
    # ITCH prices count 1/10000 dollar; its event times count ns from the venue's midnight (09:30:01.250)
    sink.write([forecast("itch", "AAPL", 1, 34_201_250_000_000, bid=1_234_500, ask=1_234_600)])
    assert main(["forecasts", "latest", "--venue", "itch"]) == 0
    titles, units, row = capsys.readouterr().out.splitlines()
    assert titles.split()[:7] == ["venue", "symbol", "time", "seq", "bid", "ask", "spread50"]
    assert units.split() == ["venue", "clock", "USD", "USD", "ticks", "shares"]
    assert row.split()[:7] == ["itch", "AAPL", "09:30:01.250", "1", "123.45", "123.46", "3.00"]
    assert row.split()[7] == "1,200"  # depth in shares

    assert main(["forecasts", "latest", "--venue", "itch", "--raw"]) == 0
    titles, row = capsys.readouterr().out.splitlines()  # today's table: no unit line, no time column
    assert titles.split()[:5] == ["venue", "symbol", "seq", "bid", "ask"]
    assert row.split()[:5] == ["itch", "AAPL", "1", "1234500", "1234600"]


def test_a_binance_price_reads_in_the_quote_currency_and_its_time_in_utc(sink, capsys):
    sink.write([forecast("binance", "BTCUSDT", 1, T0 + 123_000_000, bid=6_168_599_000_000, ask=6_168_600_000_000)])
    assert main(["forecasts", "latest"]) == 0
    _, units, row = capsys.readouterr().out.splitlines()
    assert units.split()[:3] == ["UTC", "quote", "ccy"]
    assert "2024-08-08 12:00:00.123" in row and " 61685.99 " in row and " 61686.00 " in row


@pytest.fixture
def half_hour(sink):
    """A forecast a minute of BTCUSDT, 12:00 to 12:29 UTC."""
    sink.write([forecast("binance", "BTCUSDT", i + 1, T0 + i * MINUTE, 100, 101) for i in range(30)])


def _history_times(out: str) -> list[str]:
    """The minutes of the table's rows (below the "showing ..." line, which names the cutoff)."""
    return re.findall(r"2024-08-08 (\d\d:\d\d):00\.000", out.split("\n", 1)[1])


@pytest.mark.parametrize(
    ("since", "first"),
    [
        ("10m", "12:19"),  # ten minutes back from the newest forecast (12:29)
        ("2024-08-08T12:25:00Z", "12:25"),
        ("2024-08-08 12:25:30+00:00", "12:26"),
        ("12:20", "12:20"),  # a bare clock time: on the book's own (UTC) day
        (str(T0 + 27 * MINUTE), "12:27"),  # ns, as before
    ],
)
def test_history_since_selects_from_that_time_on(half_hour, capsys, since, first):
    assert main(["forecasts", "history", "--venue", "binance", "--symbol", "BTCUSDT", "--since", since,
                 "--count", "100"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    times = _history_times(out)
    assert times[0] == first and times[-1] == "12:29"
    want = 30 - int(first[-2:])
    assert len(times) == want and out.startswith(f"showing {want} of {want} forecasts of binance:BTCUSDT since ")
    if since == "10m":
        assert out.splitlines()[0].endswith("since 2024-08-08 12:19:00.000 (UTC), oldest first")


def test_history_shows_the_newest_count_of_all_it_selected(half_hour, capsys):
    assert main(["forecasts", "history", "--venue", "binance", "--symbol", "BTCUSDT", "--count", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("showing 5 of 30 forecasts") and _history_times(out) == [f"12:{m}" for m in range(25, 30)]


def test_an_unreadable_since_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        main(["forecasts", "history", "--since", "yesterday-ish"])
    assert "span back from the newest forecast" in capsys.readouterr().err


def test_alerts_say_how_many_there_are_and_each_ones_time_score_and_reason(sink, capsys):
    sink.write([forecast("binance", "BTCUSDT", i + 1, T0 + i * MINUTE, 100, 101, score=0.995) for i in range(25)])
    sink.write([forecast("binance", "BTCUSDT", 100, T0 + 40 * MINUTE, 100, 101, score=0.5)])  # no alert
    assert main(["forecasts", "alerts"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("showing 20 of 25 alerts in mt:alerts")
    assert lines[1].split()[:2] == ["time", "(UTC)"]
    assert lines[2].split() == ["2024-08-08", "12:05:00.000", "binance:BTCUSDT", "0.9950", "message_rate", "z=9.0"]
    assert len(lines) == 22
    assert main(["forecasts", "alerts", "--raw", "--count", "1"]) == 0
    assert capsys.readouterr().out == "binance:BTCUSDT seq=25 score=0.9950 message_rate z=9.0\n"


def _last_bar(err: str, desc: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith(desc)]
    assert lines, err
    return lines[-1]


def test_replay_bar_counts_the_capture_bytes_to_their_total(sink, tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path), "--symbols", "1", "--duration", "20s", "--seed", "3"]) == 0
    capture = next(p for p in tmp_path.iterdir() if "ITCH" in p.name)
    capsys.readouterr()
    assert main(["replay", str(capture), "--venue", "itch", "--max"]) == 0
    bar = _last_bar(capsys.readouterr().err, "publish itch")
    size = tqdm.format_sizeof(capture.stat().st_size, divisor=1024)
    assert "100%" in bar and f" {size}/{size} " in bar, bar


def test_simulate_kafka_bar_counts_the_messages_it_publishes(sink, capsys):
    assert main(["simulate", "--kafka", "--max", "--symbols", "1", "--duration", "20s", "--seed", "2"]) == 0
    out, err = capsys.readouterr()
    produced = [int(n.replace(",", "")) for n in re.findall(r"\(([\d,]+) messages\)", out)]
    total = sum(produced)
    assert total > 0 and f" {total}/{total} " in _last_bar(err, "publish itch"), (out, err)
    assert _last_bar(err, "simulate").split("|")[-1].startswith(" 1/1 ")


def test_a_day_clock_time_is_its_own_and_a_utc_one_is_a_date():
    from streams.cli.forecasts import clock, parse_since

    assert clock(34_200 * 10**9) == "09:30:00.000"
    assert clock(T0) == "2024-08-08 12:00:00.000"
    # an ISO time against a book on a day clock (ITCH): its time of day, as written
    assert parse_since("2026-01-02T09:45:00").resolve(36_000 * 10**9) == (9 * 3600 + 45 * 60) * 10**9
    assert parse_since("2024-08-08T12:00:00Z").resolve(T0) == T0
    assert dt.datetime.fromtimestamp(parse_since("1h").resolve(T0) / 1e9, dt.UTC).hour == 11
