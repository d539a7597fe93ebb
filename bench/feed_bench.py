"""Decode + apply throughput of the venue feeds (run by `make bench`, after book_bench.py).

(a) Binance: every message of the real captures in ../shared/data/binance-hftbacktest, read
    into memory first (BinanceFeed.read_capture), then timed through BinanceFeed.on_message
    only, one fresh feed per capture. Level updates = the [price, qty] rows of the diffs and
    the REST snapshot handed to the feed (counted from the JSON before timing). The native
    feed (orderbook.native, Rust) takes each capture's raw messages in one on_messages call,
    JSON parsing included; its books are checked against the reference's.
(b) ITCH: a large seeded ITCH 5.0 stream generated here (framed, written to a temporary
    `12302019.NASDAQ_ITCH50`), read back with ItchFeed.read_capture and timed through
    ItchFeed.on_message, beside itch-book's C++ parse + apply of the same bytes: its Session
    fed the whole file from memory with no table (what `itch2parquet verify` times), and its
    public Feed(path).batches(("bbo",)) with its reader thread. The books are cross-checked
    (live orders at the end).
    The native ITCH feed (orderbook.native, Rust) decodes + applies the same bytes: the whole
    buffer in one `decode_apply` call beside Session.feed of the whole buffer, and the buffer in
    ~64 KiB pieces cut at frame boundaries (as a streaming consumer gets it) beside Session.feed
    of the same pieces. Its events come back as numpy rows; its books are cross-checked too.
    A large batch's rows (72 bytes an event: ~35 MB for the whole buffer) are recycled once
    Python lets go of them (batch.rs's row pool), so only a process's first whole-buffer call
    has the kernel fault in and zero fresh pages for them: the pool is emptied before pass 1, the
    median is the steady state, and the whole-buffer row's note gives pass 1 beside it.
(c) Where the time goes: a cProfile pass of each of our paths, top functions by own time.
(d) Kraken (the real book capture: 1,000-level snapshots, every checksum checked) and Coinbase (the real level2
    capture of ten products; `--coinbase-minutes` of the simulated full channel of ten products, an
    order-by-order book each), read into memory first, through the reference feed's on_message and the native
    feed's one on_messages call, JSON included; the native books are checked against the reference's.
Median of --passes; nothing asserts a time.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import random
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sortedcontainers import SortedDict

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a plain script: the working tree, installed or not

from columns import print_columns  # noqa: E402

from model.sim.engine import SEC, SimConfig  # noqa: E402
from model.sim.run import simulate  # noqa: E402
from model.sim.writers import messages as sim_messages  # noqa: E402
from orderbook import native  # noqa: E402
from orderbook.errors import FeedError  # noqa: E402
from orderbook.venues.base import Record  # noqa: E402
from orderbook.venues.binance import BinanceFeed  # noqa: E402
from orderbook.venues.coinbase import CoinbaseFeed  # noqa: E402
from orderbook.venues.itch import ItchFeed, encode, frame  # noqa: E402
from orderbook.venues.kraken import KrakenFeed  # noqa: E402

try:
    import itch_book
    from itch_book._core import Session as ItchSession  # the C++ session that Feed.batches drives
except ImportError:  # the bench still runs, without the comparison
    itch_book = None
    ItchSession = None

BINANCE = "binance-hftbacktest"
KRAKEN_BOOKS = "cryptofeed-captures/KRAKEN.ws.50.0.gz"
COINBASE_LEVEL2 = "cryptofeed-captures/COINBASE.ws.28.0.gz"
ITCH_FILE = "12302019.NASDAQ_ITCH50"  # itch-book reads the session date from a NASDAQ day-file name
ITCH_PUBLISHED = "itch-book's published figures: 17.3M msg/s C++ parse+apply, 10.6M msg/s through its Python package"
GOAL_LEVELS, GOAL_ITCH = 1_000_000, 500_000
NATIVE_GOAL_LEVELS, NATIVE_GOAL_ITCH = 5_000_000, 0.5  # issue 12: level updates/s; a share of itch-book's rate
CHUNK = 1 << 16  # bytes per piece in the chunked ITCH rows


@dataclass
class Row:
    what: str
    messages: int
    rates: list[float] = field(default_factory=list)  # messages/s per pass
    levels: int = 0  # level updates in the input (Binance)
    note: str = ""
    versus: Row | None = None  # the row its "/ itch-book" ratio is taken against

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter_ns()
    out = run()
    return (time.perf_counter_ns() - start) / 1e9, out


# ---------------------------------------------------------------- (a) Binance captures, (d) Kraken, Coinbase


def binance_levels(raw: bytes) -> int:
    """[price, qty] rows a message hands the book: a diff's b + a, a snapshot's bids + asks."""
    msg = json.loads(raw)
    if "snapshot" in msg:
        return len(msg["snapshot"]["bids"]) + len(msg["snapshot"]["asks"])
    ev = msg.get("data", msg)
    return len(ev["b"]) + len(ev["a"]) if ev.get("e") == "depthUpdate" else 0


def replay_binance(records: Sequence[Record]) -> tuple[BinanceFeed, int]:
    """Every message through a fresh feed; a gap or bad message is counted, as a consumer would."""
    feed = BinanceFeed()
    on_message, errors = feed.on_message, 0
    for recv_ts, raw in records:
        try:
            on_message(raw, recv_ts)
        except FeedError:
            errors += 1
    return feed, errors


def bench_binance(folder: Path, passes: int, limit: int | None) -> tuple[list[Row], list[list[Record]]]:
    rows = []
    for path in sorted(folder.glob("*.gz")):
        records = list(BinanceFeed.read_capture(path))[:limit]
        row = Row(f"binance {path.name}", len(records), levels=sum(binance_levels(r.raw) for r in records))
        for _ in range(passes):
            seconds, (feed, errors) = timed(lambda records=records: replay_binance(records))
            row.rates.append(len(records) / seconds)
        applied = sum(s.applied for s in feed.stats.values())
        row.note = f"{errors} errors, {applied:,} diffs applied"
        rows.append((row, records, feed))
    total = Row(
        f"binance, all {len(rows)} captures", sum(r.messages for r, *_ in rows), levels=sum(r.levels for r, *_ in rows)
    )
    # a pass over the captures is the sum of its parts: its rate from the per-capture medians
    total.rates = [total.messages / sum(r.messages / r.rate for r, *_ in rows)]
    out = [r for r, *_ in rows] + [total]
    if native.available():
        out.append(bench_native_binance([(records, feed) for _, records, feed in rows], total, passes))
    return out, [records for _, records, _ in rows]


def bench_native_binance(captures: list[tuple[list[Record], BinanceFeed]], total: Row, passes: int) -> Row:
    """The native feed over each capture in one call (raw bytes and receive times prepared before
    timing, as the reference's records are), one fresh feed per capture; its books must end as
    the reference's."""
    inputs = [([r.raw for r in records], np.array([r.recv_ts for r in records], np.int64)) for records, _ in captures]
    row = Row(f"binance native on_messages (Rust, JSON included), all {len(captures)}", total.messages)
    row.levels = total.levels
    for _ in range(passes):
        seconds = 0.0
        feeds = []
        for raws, recv in inputs:
            spent, feed = timed(lambda raws=raws, recv=recv: native_binance(raws, recv))
            seconds += spent
            feeds.append(feed)
        row.rates.append(total.messages / seconds)
    for (_, reference), feed in zip(captures, feeds, strict=True):
        if feed.book_symbols() != list(reference.books) or any(
            feed.book_dict(s) != b.to_dict() for s, b in reference.books.items()
        ):
            sys.exit("feed_bench: the native Binance books and the reference's disagree after the same messages")
    row.note = f"{row.rate / total.rate:.1f}x ours; books equal to ours"
    return row


def kraken_levels(raw: bytes) -> int:
    """Level rows a v1 book message hands the book: its snapshot's or update's rows."""
    msg = json.loads(raw) if raw[:1] == b"[" else None
    if not isinstance(msg, list) or not str(msg[-2]).startswith("book-"):
        return 0
    return sum(len(rows) for payload in msg[1:-2] for key, rows in payload.items() if key != "c")


def bench_kraken(path: Path, passes: int) -> list[Row]:
    """The Kraken book capture through the reference feed and the native one."""
    records = list(KrakenFeed.read_capture(path))
    levels = sum(kraken_levels(r.raw) for r in records)

    def note(feed: KrakenFeed) -> str:
        return f"{sum(feed.checksums_matched.values()):,} of {sum(feed.checksums_checked.values()):,} checksums match"

    return bench_messages(f"kraken {path.name}", "checksums", records, KrakenFeed, levels, passes, note)


def coinbase_levels(raw: bytes) -> int:
    """Level rows a level2 message hands the book: its snapshot's or update's rows."""
    msg = json.loads(raw)
    if msg.get("type") == "snapshot":
        return len(msg["bids"]) + len(msg["asks"])
    return len(msg["changes"]) if msg.get("type") == "l2update" else 0


def bench_coinbase(path: Path, passes: int, minutes: int) -> list[Row]:
    """The Coinbase level2 capture, and `minutes` of the simulated full channel of 10 products (an L3 book each:
    their orders' open, match, change and done messages), through the reference feed and the native one."""
    records = list(CoinbaseFeed.read_capture(path))
    levels = sum(coinbase_levels(r.raw) for r in records)
    rows = bench_messages(f"coinbase {path.name}", "trades", records, CoinbaseFeed, levels, passes, lambda _: "level2")
    result = simulate(SimConfig(n_symbols=10, duration_ns=minutes * 60 * SEC, seed=7))
    full = [Record(m.ts, m.raw) for m in sim_messages("coinbase", result)]

    def resting(feed: CoinbaseFeed) -> str:
        return f"{sum(len(b.orders) for b in feed.books.values()):,} orders resting"  # type: ignore[union-attr]

    rows += bench_messages(f"coinbase full, {minutes} simulated minutes", "", full, CoinbaseFeed, 0, passes, resting)
    return rows


def bench_messages(
    what: str, extra: str, records: list[Record], cls: Any, levels: int, passes: int, note: Callable[[Any], str]
) -> list[Row]:
    """A capture's messages through the reference feed (`cls`, on_message each) and the native one of its venue
    (one on_messages call), each pass on a fresh feed; the native books must end as the reference's."""
    raws, recv = [r.raw for r in records], np.array([r.recv_ts for r in records], np.int64)
    ref = Row(what, len(raws), levels=levels)
    nat = Row(f"{cls.venue} native on_messages (Rust, JSON{f' and {extra}' if extra else ''} included)", len(raws),
              levels=levels)  # fmt: skip

    def reference() -> tuple[Any, int]:
        feed, errors = cls(), 0
        for raw, t in zip(raws, recv.tolist(), strict=True):
            try:
                feed.on_message(raw, t)
            except FeedError:
                errors += 1
        return feed, errors

    native_cls = {"kraken": native.KrakenFeed, "coinbase": native.CoinbaseFeed}[cls.venue]
    native_cls = native_cls if native.available() else None
    for _ in range(passes):
        seconds, (feed, _) = timed(reference)
        ref.rates.append(len(raws) / seconds)
        if native_cls is not None:
            nat_feed = native_cls()
            seconds, _ = timed(lambda nat_feed=nat_feed: nat_feed.on_messages(raws, recv))
            nat.rates.append(len(raws) / seconds)
    ref.note = note(feed)
    if native_cls is None:
        return [ref]
    same = nat_feed.book_symbols() == list(feed.books) and all(
        nat_feed.book_dict(s) == b.to_dict() for s, b in feed.books.items()
    )
    nat.note = f"books {'equal' if same else 'DIFFERENT'} to the reference's; {nat.rate / ref.rate:.1f}x"
    if not same:
        sys.exit(f"feed_bench: the native {cls.venue} books differ from the reference's")
    return [ref, nat]


def native_binance(raws: list[bytes], recv: np.ndarray) -> native.BinanceFeed:
    feed = native.BinanceFeed()
    feed.on_messages(raws, recv)
    return feed


# ---------------------------------------------------------------- (b) a large ITCH stream


def _ts(ts: int) -> tuple[int, int]:
    return ts >> 32, ts & 0xFFFFFFFF  # the 6-byte ITCH timestamp as H + I


_A = struct.Struct(">cHHHIQcI8sI")
_D = struct.Struct(">cHHHIQ")
_E = struct.Struct(">cHHHIQIQ")
_X = struct.Struct(">cHHHIQI")
_U = struct.Struct(">cHHHIQQII")


class ItchGen:
    """Seeded ITCH 5.0 order flow over several stocks, fast enough for millions of messages.

    model/sim/itch_day.py scans every resting order per message (fine for tests, quadratic here);
    this keeps a per-stock index of live orders and the best prices in SortedDicts. Flow per
    message: 38% add (A), 30% delete (D), 12% replace (U), 10% execute (E, whole half the
    time), 10% partial cancel (X). New bids rest 1 + Exp(mean 5) ticks under the best ask and
    new asks as far over the best bid, so no book ever crosses. The packers are checked
    against orderbook.venues.itch.encode before use.
    """

    TICK = 100  # one cent in Price(4)

    def __init__(self, seed: int, n_stocks: int) -> None:
        self.rng = random.Random(seed)
        self.stocks = [f"S{i:03d}".ljust(8).encode() for i in range(n_stocks)]
        self.ts = 34_200 * 10**9  # 09:30
        self.ref = 0
        self.match = 0
        self.msgs: list[bytes] = []
        self.orders: list[dict[int, list[Any]]] = [{} for _ in self.stocks]  # ref -> [side, price, shares]
        self.live: list[list[int]] = [[] for _ in self.stocks]  # refs, for a uniform pick
        self.where: list[dict[int, int]] = [{} for _ in self.stocks]  # ref -> index in live
        self.prices = [{b"B": SortedDict(), b"S": SortedDict()} for _ in self.stocks]  # price -> count
        self.center = [self.rng.randrange(1_000, 50_000) * self.TICK for _ in self.stocks]

    def header(self) -> list[bytes]:
        msgs = [encode("S", timestamp=self.ts - 10**9, event_code="O")]
        for i, stock in enumerate(self.stocks, 1):
            msgs.append(
                encode("R", locate=i, timestamp=self.ts - 10**9, stock=stock.decode().strip(), market_category="Q")
            )
        msgs.append(encode("S", timestamp=self.ts, event_code="Q"))
        return msgs

    def _rest(self, s: int, ref: int, side: bytes, price: int, shares: int) -> None:
        self.orders[s][ref] = [side, price, shares]
        self.where[s][ref] = len(self.live[s])
        self.live[s].append(ref)
        book = self.prices[s][side]
        book[price] = book.get(price, 0) + 1

    def _gone(self, s: int, ref: int) -> list[Any]:
        side, price, _ = order = self.orders[s].pop(ref)
        i, live = self.where[s].pop(ref), self.live[s]
        last = live.pop()
        if last != ref:
            live[i] = last
            self.where[s][last] = i
        book = self.prices[s][side]
        if book[price] == 1:
            del book[price]
        else:
            book[price] -= 1
        return order

    def _price(self, s: int, side: bytes) -> int:
        away = (1 + int(self.rng.expovariate(1 / 5))) * self.TICK
        if side == b"B":
            asks = self.prices[s][b"S"]
            return (asks.peekitem(0)[0] if asks else self.center[s] + self.TICK) - away
        bids = self.prices[s][b"B"]
        return (bids.peekitem(-1)[0] if bids else self.center[s] - self.TICK) + away

    def step(self) -> bytes:
        rng = self.rng
        s = rng.randrange(len(self.stocks))
        locate, (hi, lo) = s + 1, _ts(self.ts)
        self.ts += rng.randint(1, 20_000)
        r = rng.random()
        if len(self.live[s]) < 20 or r < 0.38:
            side = b"B" if rng.random() < 0.5 else b"S"
            price, shares = self._price(s, side), rng.choice((100, 100, 200, 300, 500, 1000))
            self.ref += 1
            self._rest(s, self.ref, side, price, shares)
            return _A.pack(b"A", locate, 0, hi, lo, self.ref, side, shares, self.stocks[s], price)
        ref = self.live[s][rng.randrange(len(self.live[s]))]
        if r < 0.68:
            self._gone(s, ref)
            return _D.pack(b"D", locate, 0, hi, lo, ref)
        if r < 0.80:
            side, _, _ = self._gone(s, ref)
            price, shares = self._price(s, side), rng.choice((100, 200, 300))
            self.ref += 1
            self._rest(s, self.ref, side, price, shares)
            return _U.pack(b"U", locate, 0, hi, lo, ref, self.ref, shares, price)
        shares = self.orders[s][ref][2]
        if r < 0.90:
            n = shares if rng.random() < 0.5 or shares == 1 else rng.randint(1, shares - 1)
            self.match += 1
            self._reduce(s, ref, n)
            return _E.pack(b"E", locate, 0, hi, lo, ref, n, self.match)
        if shares < 2:
            self._gone(s, ref)
            return _D.pack(b"D", locate, 0, hi, lo, ref)
        n = rng.randint(1, shares - 1)
        self._reduce(s, ref, n)
        return _X.pack(b"X", locate, 0, hi, lo, ref, n)

    def _reduce(self, s: int, ref: int, n: int) -> None:
        order = self.orders[s][ref]
        if n >= order[2]:
            self._gone(s, ref)
        else:
            order[2] -= n

    def stream(self, n: int) -> list[bytes]:
        msgs = self.header()
        msgs += [self.step() for _ in range(n)]
        msgs.append(encode("S", timestamp=self.ts, event_code="C"))
        return msgs


def check_packers() -> None:
    """Our fast packers must write exactly what the project's encoder writes."""
    t = 34_200 * 10**9 + 123_456_789_012
    hi, lo = _ts(t)
    pairs = [
        (
            _A.pack(b"A", 3, 0, hi, lo, 7, b"B", 100, b"S001    ", 123_400),
            ("A", dict(order_ref=7, side="B", shares=100, stock="S001", price=123_400)),
        ),
        (_D.pack(b"D", 3, 0, hi, lo, 7), ("D", dict(order_ref=7))),
        (_E.pack(b"E", 3, 0, hi, lo, 7, 50, 9), ("E", dict(order_ref=7, shares=50, match=9))),
        (_X.pack(b"X", 3, 0, hi, lo, 7, 50), ("X", dict(order_ref=7, shares=50))),
        (
            _U.pack(b"U", 3, 0, hi, lo, 7, 8, 50, 123_500),
            ("U", dict(order_ref=7, new_order_ref=8, shares=50, price=123_500)),
        ),
    ]
    for packed, (kind, fields) in pairs:
        if packed != encode(kind, locate=3, tracking=0, timestamp=t, **fields):
            sys.exit(f"feed_bench: the fast ITCH packer of {kind!r} disagrees with orderbook.venues.itch.encode")


def replay_itch(records: Sequence[Record]) -> tuple[ItchFeed, int]:
    feed = ItchFeed()
    on_message, errors = feed.on_message, 0
    for _, raw in records:
        try:
            on_message(raw)
        except FeedError:
            errors += 1
    return feed, errors


def itch_book_session(data: bytes) -> dict[str, Any]:
    """itch-book's C++ parse + apply of the whole buffer, no table (what `verify` times, minus gunzip)."""
    session = ItchSession(tables=[], depth=0, symbols=[])
    session.feed(data)
    return session.stats()


def itch_book_pieces(pieces: Sequence[bytes]) -> dict[str, Any]:
    session = ItchSession(tables=[], depth=0, symbols=[])
    for piece in pieces:
        session.feed(piece)
    return session.stats()


def frame_pieces(data: bytes, size: int = CHUNK) -> list[bytes]:
    """The framed buffer in pieces of about `size` bytes, each ending at a frame boundary."""
    pieces, start, pos = [], 0, 0
    while pos < len(data):
        pos += 2 + int.from_bytes(data[pos : pos + 2], "big")
        if pos - start >= size or pos >= len(data):
            pieces.append(data[start:pos])
            start = pos
    return pieces


def native_itch(pieces: Sequence[bytes]) -> tuple[native.ItchFeed, int, int]:
    """The native feed over the pieces: (feed, events, rejects)."""
    feed = native.ItchFeed()
    events = rejects = 0
    for piece in pieces:
        batch = feed.decode_apply(piece)
        events += len(batch.events)
        rejects += len(batch.rejects["msg"])
    return feed, events, rejects


def itch_book_batches(path: Path) -> int:
    """itch-book's public API end to end: reader thread, parse, apply, bbo columns."""
    feed = itch_book.Feed(str(path))
    rows = sum(len(b.bbo["seq"]) for b in feed.batches(tables=("bbo",)))
    return rows


def bench_itch(n: int, passes: int, seed: int, workdir: Path) -> tuple[list[Row], list[Record]]:
    check_packers()
    started = time.perf_counter()
    msgs = ItchGen(seed, n_stocks=16).stream(n)
    path = workdir / ITCH_FILE
    path.write_bytes(frame(msgs))
    data = path.read_bytes()
    records = list(ItchFeed.read_capture(path))
    print(
        f"ITCH stream: {len(records):,} messages over 16 stocks ({len(data) / 1e6:.1f} MB framed), "
        f"generated in {time.perf_counter() - started:.1f} s"
    )
    ours = Row("itch ItchFeed.on_message (ours)", len(records))
    for _ in range(passes):
        seconds, (feed, errors) = timed(lambda: replay_itch(records))
        ours.rates.append(len(records) / seconds)
    live = sum(len(b.orders) for b in feed.books.values())
    ours.note = f"{errors} errors, {live:,} orders live at the end"
    rows = [ours]
    if ItchSession is not None:
        session = Row("itch-book Session.feed (C++, bytes in memory)", len(records))
        batches = Row("itch-book Feed.batches(bbo) (file, reader thread)", len(records))
        for _ in range(passes):
            seconds, stats = timed(lambda: itch_book_session(data))
            session.rates.append(stats["messages"] / seconds)
            seconds, bbo_rows = timed(lambda: itch_book_batches(path))
            batches.rates.append(len(records) / seconds)
        agree = "agrees" if stats["live_orders"] == live else f"DISAGREES (ours {live:,})"
        session.note = f"{stats['live_orders']:,} live orders: {agree}; missing refs {stats['missing_ref']}"
        batches.note = f"{bbo_rows:,} bbo rows"
        rows += [session, batches]
    if native.available():
        rows += bench_native_itch(data, records, feed, passes, session if ItchSession is not None else None)
    return rows, records


def bench_native_itch(
    data: bytes, records: Sequence[Record], reference: ItchFeed, passes: int, session: Row | None
) -> list[Row]:
    """The native feed on the same bytes, whole and in pieces; itch-book's Session on the same pieces."""
    pieces = frame_pieces(data)
    whole = Row("itch native decode_apply (Rust, whole buffer)", len(records), versus=session)
    chunked = Row(f"itch native decode_apply, {len(pieces):,} pieces of ~64 KiB", len(records))
    rows = [whole, chunked]
    if session is not None:
        peer = Row("itch-book Session.feed, the same pieces", len(records))
        chunked.versus = peer
        rows.append(peer)
    native._core.row_pool(release=True)  # pass 1's whole buffer gets fresh rows, as a process's first call
    for _ in range(passes):
        for row, run in ((whole, [data]), (chunked, pieces)):
            seconds, (feed, events, rejects) = timed(lambda run=run: native_itch(run))
            row.rates.append(len(records) / seconds)
            row.note = f"{events:,} events, {rejects} rejects"
        if session is not None:
            seconds, stats = timed(lambda: itch_book_pieces(pieces))
            peer.rates.append(stats["messages"] / seconds)
    # a speed figure for different work means nothing: the native books must be the reference's
    if sorted(feed.book_symbols()) != sorted(reference.books) or any(
        feed.book_dict(s) != b.to_dict() for s, b in reference.books.items()
    ):
        sys.exit("feed_bench: the native ITCH books and the reference's disagree after the same messages")
    live = sum(len(feed.orders(s) or {}) for s in feed.book_symbols())
    whole.note += f"; {live:,} live orders, books equal to ours; pass 1 {whole.rates[0] / 1e3:,.1f}k (fresh row pages)"
    return rows


# ---------------------------------------------------------------- (c) where the time goes


def profile(label: str, run: Callable[[], Any], top: int = 10) -> None:
    """One pass under cProfile; the `top` functions by own time, as a share of the whole."""
    prof = cProfile.Profile()
    prof.runcall(run)
    stats = pstats.Stats(prof)
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"\nwhere the time goes: {label} (cProfile, {total:.2f} s profiled; own time, top {top})")
    print(f"{'own s':>7}  {'share':>6}  {'calls':>10}  function")
    entries = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    for (file, line, name), (_, calls, own, _, _) in entries[:top]:
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if line else file
        print(f"{own:7.3f}  {own / total:6.1%}  {calls:10,}  {name}  ({where})")


# ---------------------------------------------------------------- output and main


def print_table(rows: list[Row]) -> None:
    head = ("workload", "messages", "messages/s", "level updates/s", "ours / itch-book", "notes")
    body = []
    for r in rows:
        lvl = f"{r.levels * r.rate / r.messages / 1e6:.3f}M" if r.levels else "-"
        vs = f"{r.rate / r.versus.rate:.4f}x" if r.versus is not None else "-"
        body.append((r.what, f"{r.messages:,}", f"{r.rate / 1e3:,.1f}k", lvl, vs, r.note))
    print_columns(head, body, left=(0, 5))


def print_native_goals(rows: list[Row]) -> None:
    if not native.available():
        print(f"native: not measured ({native.describe()})")
        return
    for r in rows:
        if r.what.startswith("binance native"):
            levels = r.levels * r.rate / r.messages
            print(
                f"native Binance decode+apply >= {NATIVE_GOAL_LEVELS / 1e6:.0f}M level updates/s: "
                f"{'yes' if levels >= NATIVE_GOAL_LEVELS else 'no'} ({levels / 1e6:.2f}M)"
            )
    versus = [r for r in rows if r.what.startswith("itch native") and r.versus is not None]
    ratios = [r.rate / r.versus.rate for r in versus]  # type: ignore[union-attr]
    if ratios:
        print(
            f"native ITCH >= {NATIVE_GOAL_ITCH}x itch-book's Session on the same bytes: "
            f"{'yes' if min(ratios) >= NATIVE_GOAL_ITCH else 'no'} (whole buffer {ratios[0]:.2f}x"
            + (f", ~64 KiB pieces {ratios[1]:.2f}x)" if len(ratios) > 1 else ")")
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    default_data = Path(os.environ.get("MT_SHARED_DATA", REPO.parent / "shared" / "data"))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=default_data, help=f"shared data folder (default: {default_data})")
    p.add_argument("--passes", type=int, default=3, help="timed passes, median kept (default: 3)")
    p.add_argument("--itch-messages", type=int, default=500_000, help="generated ITCH messages (default: 500000)")
    p.add_argument("--binance-limit", type=int, default=None, help="first N messages of each capture (default: all)")
    p.add_argument("--seed", type=int, default=20191230, help="seed of the ITCH stream")
    p.add_argument("--coinbase-minutes", type=int, default=10, help="simulated minutes of the Coinbase full channel")
    p.add_argument("--no-profile", action="store_true", help="skip the cProfile passes")
    p.add_argument("--profile-messages", type=int, default=200_000, help="ITCH messages profiled (default: 200000)")
    p.add_argument("--quick", action="store_true", help="smoke run: 20,000 ITCH messages, 5,000 per capture, 1 pass")
    args = p.parse_args(argv)
    if args.quick:
        args.passes, args.itch_messages = 1, min(args.itch_messages, 20_000)
        args.binance_limit = min(args.binance_limit or 5_000, 5_000)
        args.coinbase_minutes = 1
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    folder = args.data / BINANCE
    if not folder.is_dir():
        sys.exit(f"feed_bench: {folder} not found. Pass --data <folder holding {BINANCE}/> or set MT_SHARED_DATA.")
    started = time.perf_counter()
    rows, captures = bench_binance(folder, args.passes, args.binance_limit)
    kraken = args.data / KRAKEN_BOOKS
    kraken_rows = bench_kraken(kraken, args.passes) if kraken.is_file() else []
    coinbase = args.data / COINBASE_LEVEL2
    kraken_rows += bench_coinbase(coinbase, args.passes, args.coinbase_minutes) if coinbase.is_file() else []
    with tempfile.TemporaryDirectory() as tmp:
        itch_rows, itch_records = bench_itch(args.itch_messages, args.passes, args.seed, Path(tmp))
    print(f"median of {args.passes} passes; python {sys.version.split()[0]}; {ITCH_PUBLISHED}\n")
    rows += kraken_rows + itch_rows
    session = next((r for r in itch_rows if r.what.startswith("itch-book Session")), None)
    itch_rows[0].versus = session
    print_table(rows)
    binance = next(r for r in rows if r.what.startswith("binance, all"))
    itch = itch_rows[0]
    lvl_rate = binance.levels * binance.rate / binance.messages
    print(
        f"\ngoals: Binance decode+apply >= 1M level updates/s: {'yes' if lvl_rate >= GOAL_LEVELS else 'no'} "
        f"({lvl_rate / 1e6:.3f}M); ITCH >= 500k messages/s: {'yes' if itch.rate >= GOAL_ITCH else 'no'} "
        f"({itch.rate / 1e3:.1f}k)"
    )
    print_native_goals(rows)
    if not args.no_profile:
        # one capture and a prefix of the ITCH stream: cProfile triples the run time
        profile(
            f"Binance BinanceFeed.on_message, {len(captures[0]):,} messages of the first capture",
            lambda: replay_binance(captures[0]),
        )
        head = itch_records[: args.profile_messages]
        profile(f"ITCH ItchFeed.on_message, the first {len(head):,} messages", lambda: replay_itch(head))
    print(f"\n{time.perf_counter() - started:.1f} s in all")


if __name__ == "__main__":
    main()
