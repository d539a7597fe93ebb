"""The levels a worker publishes per book (`VenuePipeline.tops` -> `mt:book:<venue>:<symbol>`): on both
paths, cut into batches at random, each batch's levels equal the book a pipeline fed record by record
holds after the same record, with its builder's position then; and where that position is a window's,
the best levels are that window's best bid and ask (the forecast's `best_bid`/`best_ask`)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from faults import capture_records, simulated_records

from orderbook import native
from streams.config import Settings
from streams.pipeline import VenuePipeline

N = 10


@dataclass
class Rec:
    key: bytes | None
    value: bytes
    partition: int
    offset: int


def offline(venue: str, records: list[Rec]) -> list[dict[str, tuple]]:
    """After each record: symbol -> (tokens seen, last ts, last seq, top N bids, top N asks), from the
    reference pipeline fed one record at a time (its builder's counters read directly: a test may)."""
    pipe = VenuePipeline(venue, Settings().window, native=False)
    out = []
    for m in records:
        pipe.process(m.key, m.value, m.partition, m.offset)
        state = {}
        for symbol, b in pipe.builders.items():
            bids, asks = pipe.core.feed.books[symbol].top(N)
            state[symbol] = (b._count, b._last_ts, b._last_seq, bids, asks)
        out.append(state)
    return out


PATHS = [False, *([True] if native.available() else [])]


@pytest.mark.parametrize("use_native", PATHS, ids=lambda n: "native" if n else "reference")
def test_each_batchs_levels_are_the_book_after_its_last_record_itch(use_native):
    records = simulated_records("itch", seed=5, symbols=3, minutes=4)
    check("itch", [Rec(k, v, 0, i) for i, (k, v) in enumerate(records)], use_native)


@pytest.mark.realdata
@pytest.mark.parametrize("use_native", PATHS, ids=lambda n: "native" if n else "reference")
def test_each_batchs_levels_are_the_book_after_its_last_record_binance(shared_data: Path, use_native):
    """An L2 venue whose books resync from snapshots (the native followers' corrections)."""
    records = capture_records("binance", shared_data / "binance-hftbacktest" / "spot_ethusdt_20240808.gz", 6000)
    check("binance", [Rec(k, v, 0, i) for i, (k, v) in enumerate(records)], use_native)


def check(venue: str, records: list[Rec], use_native: bool) -> None:
    want = offline(venue, records)
    pipe = VenuePipeline(venue, Settings().window, native=use_native)
    rng = random.Random(7)
    at, published, matched = 0, 0, 0
    while at < len(records):
        batch = records[at : at + rng.randint(1, 60)]
        at += len(batch)
        windows, _ = pipe.process_batch(batch)
        tops = pipe.tops(windows, N)
        assert {t.symbol for t in tops} == {w.symbol for w in windows}  # one per book with a window, no more
        for t in tops:
            seen, ts, seq, bids, asks = want[at - 1][t.symbol]
            assert (t.window, t.ts, t.seq, t.bids, t.asks) == (seen, ts, seq, bids, asks)
            assert len(t.bids) <= N and len(t.asks) <= N
            published += 1
            same = [w for w in windows if w.symbol == t.symbol and w.n_seen == t.window]
            if same:  # the levels are that forecast's book
                matched += 1
                assert (t.bids[0][0] if t.bids else 0, t.asks[0][0] if t.asks else 0) == (
                    same[0].best_bid,
                    same[0].best_ask,
                )
    assert published > 20 and matched > 0
    assert pipe.tops(windows, 0) == []  # `book_levels = 0`: none
