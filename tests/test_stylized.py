"""Stylized facts: each statistic on synthetic data with a known answer, the series built from the
real captures, and the report (markdown, PNGs, and a real-vs-real sanity check of its criteria)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from model.sim.itch_day import itch_day_stream
from model.sim.stylized import (
    FACTS,
    SEC,
    Series,
    acf,
    calendar_returns,
    event_returns,
    intraday_profile,
    kurtosis,
    power_law_exponent,
    real_series,
    report,
    series_from_capture,
    series_from_events,
    stylized_facts,
    unchanged_share,
    weibull_shape,
)
from orderbook.book import BookType
from orderbook.errors import FeedError
from orderbook.events import FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, Event, Kind, Side
from orderbook.venues.itch import ItchFeed, frame

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _garch(n: int, rng: np.random.Generator, omega: float = 1e-6, alpha: float = 0.15, beta: float = 0.8) -> np.ndarray:
    """GARCH(1,1) returns (Bollerslev 1986): sigma^2_t = omega + alpha r^2_{t-1} + beta sigma^2_{t-1}."""
    r = np.empty(n)
    var = omega / (1 - alpha - beta)
    for t in range(n):
        r[t] = math.sqrt(var) * rng.standard_normal()
        var = omega + alpha * r[t] ** 2 + beta * var
    return r


# --------------------------------------------------------------------------- statistics


def test_gaussian_returns_have_kurtosis_3_and_no_volatility_clustering() -> None:
    r = np.random.default_rng(1).standard_normal(40_000)
    assert kurtosis(r) == pytest.approx(3.0, abs=0.15)
    assert abs(np.mean(acf(np.abs(r), 50))) < 0.01


def test_laplace_returns_are_heavy_tailed() -> None:
    assert kurtosis(np.random.default_rng(2).laplace(size=40_000)) == pytest.approx(6.0, abs=0.6)


def test_too_few_returns_give_nan_not_a_number_from_noise() -> None:
    assert math.isnan(kurtosis(np.ones(10)))
    assert math.isnan(kurtosis(np.ones(1000)))  # no variance
    assert np.isnan(acf(np.arange(20.0), 50)).all()


def test_garch_returns_show_volatility_clustering() -> None:
    r = _garch(20_000, np.random.default_rng(3))
    a = acf(np.abs(r), 50)
    assert np.mean(a[:10]) > 0.1
    assert np.mean(a[:10]) > np.mean(a[40:])  # and it decays
    assert kurtosis(r) > 3.5


def test_ar_sign_series_has_positive_sign_acf_and_iid_signs_have_no_memory_to_fit() -> None:
    rng = np.random.default_rng(4)
    x = np.zeros(20_000)
    for t in range(1, len(x)):
        x[t] = 0.8 * x[t - 1] + rng.standard_normal()
    a = acf(np.sign(x), 100)
    assert a[0] > 0.4 and a[0] > a[9] > a[49]
    iid = rng.choice((-1.0, 1.0), size=20_000)
    assert math.isnan(power_law_exponent(acf(iid, 100), floor=2 / math.sqrt(len(iid))))


@pytest.mark.parametrize("gamma", [0.3, 0.6, 0.9])
def test_power_law_exponent_is_recovered_from_a_power_law_acf(gamma: float) -> None:
    lags = np.arange(1, 101)
    assert power_law_exponent(0.4 * lags**-gamma) == pytest.approx(gamma, abs=1e-9)
    noisy = 0.4 * lags**-gamma * np.exp(np.random.default_rng(5).normal(0, 0.05, 100))
    assert power_law_exponent(noisy) == pytest.approx(gamma, abs=0.05)


@pytest.mark.parametrize("shape", [0.5, 1.0, 2.0])
def test_weibull_shape_is_recovered_by_maximum_likelihood(shape: float) -> None:
    x = 0.3 * np.random.default_rng(6).weibull(shape, 20_000)
    assert weibull_shape(x) == pytest.approx(shape, rel=0.04)


def test_an_unchanged_mid_is_one_within_half_a_tick_k_rows_later() -> None:
    tick = 10
    frozen = np.full(200, 1000.0)
    assert unchanged_share(frozen, tick, 10) == 1.0
    walk = 1000.0 + tick * np.arange(200)  # a tick every row
    assert unchanged_share(walk, tick, 10) == 0.0
    half = frozen.copy()
    half[100:] += tick / 2  # one half-tick move (the spread widened by a tick on one side)
    assert unchanged_share(half, tick, 10) == pytest.approx(1 - 10 / 190)
    assert math.isnan(unchanged_share(frozen[:35], tick, 10))  # under MIN_RETURNS pairs


def test_calendar_returns_take_the_last_mid_at_or_before_each_instant() -> None:
    ts = np.array([0, SEC // 2, 3 * SEC // 2, 5 * SEC // 2])
    mid = np.array([1.0, 2.0, 4.0, 8.0])
    # grid 0, 1 s, 2 s -> mids 1, 2, 4
    assert calendar_returns(ts, mid, SEC) == pytest.approx([math.log(2), math.log(2)])
    assert event_returns(mid, 2) == pytest.approx([math.log(4)])


def test_intraday_profile_needs_six_hours_and_counts_per_bucket() -> None:
    day = np.arange(34_200, 57_600, 10) * SEC  # 09:30-16:00, one row per 10 s
    profile = intraday_profile(day)
    assert len(profile) == 13 and profile.sum() == len(day) and profile[0] == 180
    assert len(intraday_profile(day[:1000])) == 0


# --------------------------------------------------------------------------- building series


def _ev(kind: Kind, seq: int, side: Side = Side.NONE, price: int = 0, size: int = 0, flags: int = 0) -> Event:
    return Event(kind, "test", "X", seq * 1_000_000, seq, side, price, size, flags=flags)


def test_l2_flow_counts_adds_cancels_and_trades_by_the_features_rule() -> None:
    events = [
        _ev(Kind.SNAPSHOT_BEGIN, 1),
        _ev(Kind.LEVEL_SET, 1, Side.BID, 99, 10),
        _ev(Kind.LEVEL_SET, 1, Side.ASK, 101, 10),
        _ev(Kind.SNAPSHOT_END, 1),
        _ev(Kind.LEVEL_SET, 2, Side.BID, 99, 15),  # +5: add
        _ev(Kind.TRADE, 3, Side.ASK, 101, 4, FLAG_AGGRESSOR_BID),  # a buy hits the ask: credit 4 at ask 101
        _ev(Kind.LEVEL_SET, 4, Side.ASK, 101, 6),  # -4, explained by the trade: no cancel
        _ev(Kind.LEVEL_SET, 5, Side.ASK, 101, 3),  # -3, unexplained: cancel
        _ev(Kind.TRADE, 6, Side.BID, 99, 2, FLAG_AGGRESSOR_ASK),
        _ev(Kind.LEVEL_SET, 7, Side.BID, 99, 0),  # -15, 2 explained: cancel
        _ev(Kind.LEVEL_SET, 7, Side.BID, 98, 5),  # new level: add
    ]
    (s,) = series_from_events(events, BookType.L2).values()
    assert (int(s.adds.sum()), int(s.cancels.sum()), int(s.trades.sum())) == (2, 2, 2)
    assert list(s.trade_sign) == [1, -1]
    assert list(s.bid) == [99, 99, 99, 99, 98] and list(s.ask) == [101] * 5  # snapshot, 2, 4, 5, 7
    assert list(s.trades) == [0, 0, 1, 0, 1]  # each trade lands on the next book change
    assert stylized_facts(s)["cancel_to_trade"] == 1.0
    assert s.crossed == 0 and s.tick == 1


def test_l3_flow_counts_and_refused_events_are_counted_not_applied() -> None:
    def order(kind: Kind, seq: int, oid: int, side: Side = Side.BID, price: int = 100, size: int = 5) -> Event:
        return Event(kind, "test", "X", seq, seq, side, price, size, oid)

    events = [
        order(Kind.ADD, 1, 1),
        order(Kind.ADD, 2, 2, Side.ASK, 102),
        order(Kind.EXECUTE, 3, 1, size=2),
        order(Kind.CANCEL, 4, 1, size=1),
        order(Kind.DELETE, 5, 99),  # unknown order
        order(Kind.DELETE, 6, 1),  # the bid side is empty: no row, the counts wait for the next one
        order(Kind.ADD, 7, 3, price=99),
    ]
    (s,) = series_from_events(events, BookType.L3).values()
    assert s.errors == {"unknown_order": 1}
    assert (int(s.adds.sum()), int(s.cancels.sum()), int(s.trades.sum())) == (3, 2, 1)
    assert s.one_sided == 2  # after the first add and after the delete
    assert list(s.cancels) == [0, 0, 1, 1] and list(s.bid) == [100, 100, 100, 99]


def _itch_file(tmp_path: Path, seed: int = 7, n: int = 3000) -> Path:
    path = tmp_path / "sim.itch"
    path.write_bytes(frame(itch_day_stream(seed, n).messages))
    return path


def test_itch_capture_and_its_events_give_the_same_series(tmp_path: Path) -> None:
    path = _itch_file(tmp_path)
    from_capture = series_from_capture("itch", path)
    feed, events = ItchFeed(), []
    for rec in ItchFeed.read_capture(path):
        try:
            events += feed.on_message(rec.raw, rec.recv_ts)
        except FeedError:  # the synthetic stream has unknown references on purpose
            continue
    from_events = series_from_events(events, BookType.L3)
    assert set(from_capture) == set(from_events) == {"AAPL", "MSFT", "SPY"}
    for sym, a in from_capture.items():
        b = from_events[sym]
        assert len(a) > 500 and a.tick == 100
        for name in ("ts", "bid", "ask", "bid_depth", "adds", "cancels", "trades", "trade_sign"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert a.errors.get("unknown_order", 0) > 0 and a.crossed == 0


def test_a_capture_with_garbage_is_counted_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "spot_btcusdt_x"
    diff = b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[["1.0","1.0"]],"a":[]}'
    path.write_bytes(b"1 " + diff + b"\n2 {not json\n3 [1,2]\nno-timestamp here\n")
    out = series_from_capture("binance", path)
    assert out["BTCUSDT"].errors == {"malformed": 2, "capture_malformed": 1}
    assert len(out["BTCUSDT"]) == 0  # the diff waits for a snapshot that never comes


# --------------------------------------------------------------------------- real captures and the report


@pytest.fixture(scope="module")
def real(shared_data: Path) -> dict[str, Series]:
    return real_series(shared_data)


def test_every_real_capture_gives_series_without_crossed_books(real: dict[str, Series]) -> None:
    families = {s.source for s in real.values()}
    assert families == {"binance-spot", "binance-usdm", "binance-coinm", "coinbase-level2", "kraken-book"}
    assert {"binance-spot:BTCUSDT", "binance-spot:ETHUSDT", "binance-usdm:BTCUSDT", "binance-usdm:ETHUSDT",
            "binance-coinm:BTCUSD_PERP", "binance-coinm:ETHUSD_PERP"} <= set(real)  # fmt: skip
    assert sum(s.source == "coinbase-level2" for s in real.values()) == 10
    assert sum(s.source == "kraken-book" for s in real.values()) == 10
    for name, s in real.items():
        assert len(s) > 10 and s.crossed == 0 and s.errors == {}, name
        assert (s.spread > 0).all() and (s.bid_depth > 0).all(), name
        assert np.all(np.diff(s.ts) >= 0) and s.tick >= 1, name
    btc = real["binance-spot:BTCUSDT"]
    assert btc.tick == 1_000_000  # 0.01 USDT, Binance's PRICE_FILTER for BTCUSDT
    assert 300 < btc.duration_s < 400  # the hftbacktest capture spans about 5.8 minutes
    assert len(btc.trade_ts) > 5000 and btc.cancels.sum() > 0


def _table(markdown: str) -> dict[str, list[str]]:
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("| fact") and "---" not in line:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            rows[cells[0]] = cells
    return rows


def test_report_writes_the_table_and_valid_pngs(real: dict[str, Series], tmp_path: Path) -> None:
    sim = series_from_capture("itch", _itch_file(tmp_path), source="simulated")
    markdown = report(real, sim, tmp_path / "out")
    assert (tmp_path / "out" / "stylized_facts.md").read_text() == markdown
    pngs = sorted((tmp_path / "out").glob("*.png"))
    assert {p.name for p in pngs} >= {
        "returns_distribution.png",
        "absret_acf.png",
        "sign_acf.png",
        "spread_distribution.png",
        "interarrival.png",
    }
    for p in pngs:
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and data[12:16] == b"IHDR" and len(data) > 2000, p.name
        assert f"]({p.name})" in markdown
    rows = _table(markdown)
    assert len(rows) == len(FACTS)
    verdicts = {cells[-2] for cells in rows.values()}
    assert verdicts <= {
        "match",
        "no match",
        "info",
        "n/a (real data too short or without trades)",
        "no match (simulated: not measurable)",
        "n/a on real data (capture shorter than a day)",
    }
    assert (
        rows["intraday activity, busiest 30-min bucket / mean"][-2] == "n/a on real data (capture shorter than a day)"
    )


def test_real_against_itself_matches_on_every_applicable_fact(real: dict[str, Series], tmp_path: Path) -> None:
    rows = _table(report(real, real, tmp_path))
    applicable = [cells for cells in rows.values() if cells[-2] not in ("info",) and not cells[-2].startswith("n/a")]
    assert len(applicable) >= 12
    assert all(cells[-2] == "match" for cells in applicable), [c[0] for c in applicable if c[-2] != "match"]
