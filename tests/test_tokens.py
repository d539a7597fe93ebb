"""model/network/tokens.py: event tokens round-trip, equal-frequency buckets, persistence, PAD, text ids."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.network.tokens import PAD, UNPRICED_KINDS, TextTokenizer, Tokenizer, _fit_edges, level_price
from model.sim.engine import SEC, SimConfig
from model.training.dataset import replay_source, sim_source
from orderbook.events import Kind, Side
from orderbook.features import FeatureState
from orderbook.windows import WindowBuilder


@pytest.fixture(scope="module")
def windows():
    cfg = SimConfig(n_symbols=2, duration_ns=180 * SEC, seed=7, news_rate=20.0)
    return replay_source(sim_source(cfg)).windows


@pytest.fixture(scope="module")
def tok(windows):
    return Tokenizer.fit(windows[::4])


def _bucket(edges: np.ndarray, value: float) -> int:
    return int(np.searchsorted(edges, value, side="right"))


def test_round_trip_keeps_kind_side_price_exactly_and_size_dt_within_their_bucket(windows, tok):
    checked = 0
    for w in windows[::5]:
        ids = tok.encode_window(w)
        decoded = tok.decode(ids["kind"], ids["side"], ids["price"], ids["size"], ids["dt"])
        real = np.flatnonzero(w.mask)
        assert len(decoded) == len(real)
        for ev, i in zip(decoded, real, strict=True):
            assert ev.kind == Kind(int(w.kind[i]))
            assert ev.side == Side(int(w.side[i]))
            if ev.kind in UNPRICED_KINDS:
                assert ev.price is None
            else:
                assert ev.price == int(w.price[i])  # the window's level is already clipped to +-K
            assert _bucket(tok.size_edges, ev.size) == _bucket(tok.size_edges, int(w.size[i]))
            assert _bucket(tok.dt_edges, np.log1p(ev.dt)) == _bucket(tok.dt_edges, np.log1p(int(w.dt[i])))
            checked += 1
    assert checked > 1000


def test_decoded_tokens_encode_to_the_same_ids(windows, tok):
    ids = tok.encode_window(windows[-1])
    ev = tok.decode(ids["kind"], ids["side"], ids["price"], ids["size"], ids["dt"])
    k = len(ev)
    again = tok.encode(
        np.array([e.kind for e in ev]),
        np.array([e.side for e in ev]),
        np.array([0 if e.price is None else e.price for e in ev]),
        np.array([e.size for e in ev]),
        np.array([e.dt for e in ev]),
        np.ones(k, bool),
    )
    for name in ("kind", "side", "price", "size", "dt"):
        assert np.array_equal(again[name], ids[name][-k:]), name


def test_equal_frequency_buckets_hold_about_the_same_count_on_continuous_data():
    x = np.random.default_rng(0).lognormal(3.0, 1.5, 32_000)
    edges, medians = _fit_edges(x, 32)
    counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=32)
    assert len(counts) == 32
    assert counts.min() >= 0.95 * 1000 and counts.max() <= 1.05 * 1000
    lower = np.concatenate([[x.min()], edges])
    upper = np.concatenate([edges, [np.inf]])
    assert np.all((lower <= medians) & (medians < upper))  # each median lies in its bucket


def test_a_frequent_round_lot_gets_its_own_bucket_and_the_tail_is_still_subdivided():
    rng = np.random.default_rng(1)
    sizes = np.concatenate([np.full(6000, 100), rng.integers(2, 60, 4000) * 100])
    tok = Tokenizer.fit_arrays(sizes, rng.integers(0, 10**6, 10_000), n_size=16)
    ids = tok.size_ids(sizes)
    assert len(set(ids[sizes == 100])) == 1 and not np.isin(ids[sizes == 100], ids[sizes != 100]).any()
    assert len(np.unique(ids)) == 16  # the 15 buckets left over split the other 40%


def test_json_round_trip_gives_identical_encoding(windows, tok):
    again = Tokenizer.from_json(json.dumps(tok.to_json()))
    assert again.vocab == tok.vocab
    for w in windows[::7]:
        a, b = tok.encode_window(w), again.encode_window(w)
        assert all(np.array_equal(a[k], b[k]) for k in a)
    ids = tok.encode_window(windows[3])
    args = [ids[k] for k in ("kind", "side", "price", "size", "dt")]
    assert tok.decode(*args) == again.decode(*args)


def test_a_dt_equal_to_an_edge_keeps_its_bucket_when_the_stored_logs_are_a_bit_off(windows, tok):
    """Another CPU's log1p may differ in the last bit: a checkpoint fitted there must tokenize alike here."""
    dts = np.concatenate([w.dt[w.mask] for w in windows[::4]])
    edge_ns = np.round(np.expm1(tok.dt_edges))
    assert np.isin(edge_ns, dts).all()  # every edge is a dt that occurs (the bucket's first value)
    probe = np.concatenate([dts, edge_ns, edge_ns - 1])
    for off in (-np.inf, np.inf):  # every stored log one ulp below, then above, its value here
        moved = Tokenizer.from_json(tok.to_json() | {"dt_edges": np.nextafter(tok.dt_edges, off).tolist()})
        assert np.array_equal(moved.dt_ids(probe), tok.dt_ids(probe))
    assert np.array_equal(tok.dt_ids(edge_ns), np.arange(len(edge_ns)) + 2)  # an edge opens its bucket


def test_padded_slots_are_pad_in_every_field_and_real_tokens_never_are(windows, tok):
    first = windows[0]  # the first window of a symbol has not filled its N slots yet
    assert not first.mask.all()
    ids = tok.encode_window(first)
    for name in ("kind", "side", "price", "size", "dt"):
        assert np.all(ids[name][~first.mask] == PAD), name
        assert np.all(ids[name][first.mask] != PAD), name
        assert ids[name].dtype == np.int64 and ids[name].max() < tok.vocab[name]
    assert ids["side"][first.mask].min() >= 1  # Side.NONE is a real id (3), not PAD
    assert len(tok.decode(*(ids[k] for k in ("kind", "side", "price", "size", "dt")))) == first.mask.sum()


def test_prices_beyond_the_clip_take_the_edge_ids_and_unpriced_kinds_the_none_id():
    tok = Tokenizer.fit_arrays(np.arange(1, 100), np.arange(1, 100), price_clip=4)
    ids = tok.encode(
        np.array([Kind.ADD, Kind.ADD, Kind.ADD, Kind.STATUS]),
        np.array([Side.BID, Side.ASK, Side.ASK, Side.NONE]),
        np.array([-4, 4, 0, 0]),
        np.ones(4),
        np.ones(4),
        np.ones(4, bool),
    )
    assert ids["price"].tolist() == [1, 9, 5, tok.price_none]
    assert [e.price for e in tok.decode(*(ids[k] for k in ("kind", "side", "price", "size", "dt")))] == [-4, 4, 0, None]


@pytest.mark.parametrize("bid,ask", [(10_000, 10_100), (10_000, 10_200), (10_000, 10_300), (9_900, 10_600)])
def test_level_price_inverts_the_window_builders_rounding(bid, ask):
    tick = 100
    b = WindowBuilder(features=FeatureState(tick=tick))
    b._ref2 = bid + ask  # the prevailing mid the builder measures token prices from
    for price in range(bid - 20 * tick, ask + 21 * tick, tick):
        level = b._token_price(price)
        assert level_price(level, bid + ask, tick) == price


def test_text_tokenizer_hashes_lowercase_words_with_pad_and_unk():
    text = TextTokenizer(vocab=4096, max_words=16)
    a = text.encode("ALFA misses Q3 earnings estimates, cuts guidance")
    assert a.dtype == np.int64 and a.shape == (16,)
    assert np.array_equal(a, text.encode("alfa MISSES q3 earnings estimates cuts guidance"))
    assert (a[:7] >= 2).all() and (a[:7] < 4096).all() and (a[7:] == 0).all()
    assert text.encode("--").tolist() == [1] + [0] * 15  # a headline with no word is UNK, not all PAD
    assert (text.encode(" ".join(["w"] * 40)) != 0).sum() == 16
    news = text.encode_news(np.array(["", "x halted"], dtype=object), np.array([False, True]))
    assert (news[0] == 0).all() and (news[1, :2] >= 2).all()
    assert TextTokenizer.from_json(text.to_json()) == text
