"""`NativeVenueWindows`: `orderbook.venue_windows.VenueWindows` over a batch of records, on the native path.

The same windows, rejects and `WindowStats` as the reference gives record after record (held equal by
tests/test_native_venue_windows.py on every Binance capture and a simulated ITCH day, by
tests/test_native_lobster.py on simulated LOBSTER rows and by tests/test_native_kraken.py on the Kraken
captures), for the venues the crate decodes (`SUPPORTED`), with a handful of Python calls per batch and per
symbol instead of several per message:

    nvw = NativeVenueWindows("binance")
    done = nvw.process(values, offsets)     # Done(windows, rejects): list[Window], list[MessageReject]
    done = nvw.process(values, offsets, keys=keys)   # LOBSTER: a row names no symbol, its record's key does
    nvw.add_news(ts, symbols, headline)     # as VenueWindows.add_news

How: one `on_messages` call decodes every message of the batch and applies it to the native feed's
books (Rust). The window builders must read a symbol's book as it stood after each message, which the
feed does not expose mid-batch, so each symbol has a *follower* book (`books`, a native L2Book /
L3Book) that `WindowBuilder.push_batch` brings forward message by message from the batch's events while
it folds them in (Rust, one call per symbol). The follower equals the feed's book because a book only
changes through its events, except where a message is refused after touching it; those few rejects are
replayed on the follower (`_corrections`): a Binance sequence gap clears the book, a crossed diff's levels
stay applied (a crossed snapshot's too: the batch keeps the events of both, refused as they are), a Kraken
book that crossed or failed its checksum stays as its message left it, with the other books of a v2 message
(their events are in the batch too, and applied to their followers), an ITCH
or LOBSTER order operation refused after it ran (a crossed book, an execution larger than the order) is run
on the follower from the message's bytes.

Snapshots: `__getstate__` gives the whole state as values that `orderbook.snapshot.dump_state`
encodes (each native part's own `__getstate__`: books, sync, rings), `from_state` continues exactly
from it; streams/snapshots.py writes it to `md.state`. `dump_state` of the object itself is refused
(the codec cannot see inside its compiled parts).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import operator
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from itertools import chain, pairwise
from typing import Any, NamedTuple, Protocol

import numpy as np

from .. import native
from ..errors import MAX_MESSAGE_BYTES, OversizedMessage
from ..events import Kind, Side
from ..features import FeatureState, infer_tick
from ..frames import MAGIC, FrameError, messages_of
from ..venue_windows import VenueWindows, WindowStats
from ..venues import feed_class
from ..venues.base import MIN_LEVELS_FOR_TICK
from ..venues.lobster import decode_row
from ..windows import Window, WindowConfig

_FEEDS: dict[str, Any] = {
    "itch": native.ItchFeed,
    "binance": native.BinanceFeed,
    "lobster": native.LobsterFeed,
    "kraken": native.KrakenFeed,
    "coinbase": native.CoinbaseFeed,
}
SUPPORTED = frozenset(_FEEDS)
"""Venues the crate decodes; the others stay on the reference path."""

STATE_KIND = "native_venue_windows"
STATE_VERSION = 1  # of `__getstate__`'s dict; the native parts carry their own versions

_WINDOW_FIELDS = tuple(f.name for f in fields(Window))
_INT_FIELDS = frozenset({"ts", "seq", "start_ts", "n_seen", "best_bid", "best_ask"})
# REASONS indices (errors.rs's Reason) of the refusals that may leave a book changed
_GAP = native.REASONS.index(native.SequenceGap)
_CROSSED = native.REASONS.index(native.CrossedBook)
_BOOK_ERROR = native.REASONS.index(native.BookError)
_FRAMED = operator.methodcaller("startswith", MAGIC)  # frames.is_frame, run by map() in C
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_L3_VENUES = frozenset({"itch", "lobster"})  # order-by-order books
NO_CLOCK = np.iinfo(np.int64).min  # `clocks` of a record without an accepted event


class MessageReject(NamedTuple):
    """A record, or one message of a frame, that was not used: `record` indexes the batch's records,
    `index` is the message's place in its frame (None: the whole record), `value` its bytes."""

    reason: str
    error: str
    record: int
    index: int | None
    value: bytes


class Done(NamedTuple):
    """What a batch did: the windows completed (none when warm), in the reference's order, and the rejects in theirs."""

    windows: list[Window]
    rejects: list[MessageReject]


@dataclass
class _Split:
    """A batch's records as the feed's messages: which record each came from, its place in the frame."""

    messages: list[bytes]
    record: np.ndarray  # int64, per message
    frames: list[bool]  # per record: came as a frame
    refused: list[tuple[int, str, str]]  # (record, reason, error) rejected whole, before the feed


class Indexed(Protocol):
    """Records' offsets by record index: a list, or anything that makes them on demand."""

    def __getitem__(self, i: int, /) -> Any: ...


class _Offsets:
    """`push_batch`'s offsets, indexed by message: the offset of the record the message came from."""

    def __init__(self, offsets: Indexed, record: np.ndarray) -> None:
        self.offsets, self.record = offsets, record

    def __getitem__(self, m: int) -> Any:
        return self.offsets[int(self.record[m])]


class NativeVenueWindows:
    """VenueWindows' contract, a batch at a time, on the native feeds and builders."""

    def __init__(
        self,
        venue: str,
        config: WindowConfig | None = None,
        *,
        symbols: set[str] | None = None,
        ticks: dict[str, int] | None = None,
        max_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        if venue not in SUPPORTED:
            raise ValueError(f"no native feed for {venue!r} (native venues: {sorted(SUPPORTED)})")
        if not native.available():
            raise RuntimeError(native.describe())
        self.venue = venue
        self.config = config or WindowConfig()
        self.symbols = symbols
        self.ticks = ticks or {}
        self.max_bytes = max_bytes
        self.news: dict[str, list[tuple[int, str]]] = {}
        self.stats = WindowStats()
        self._fixed_tick = feed_class(venue).tick
        self._keeps_states = False
        self.reset()

    def reset(self) -> None:
        """Forget every book (the news and the stats stay), as VenueWindows.reset."""
        self.feed: native.ItchFeed | native.BinanceFeed | native.LobsterFeed | native.KrakenFeed | native.CoinbaseFeed
        self.feed = _FEEDS[self.venue](self.symbols)
        self.books: dict[str, Any] = {}  # symbol -> follower L2Book / L3Book
        self.builders: dict[str, Any] = {}  # symbol -> _core.WindowBuilder
        self._feed_books: list[str] = []  # the feed's book names as last read (ITCH renames placeholders)

    # ---- the book after every message (the training data's targets)

    def keep_states(self) -> None:
        """Keep every symbol's book as it stands after each of its messages that reached its window builder
        (every message with its events once the builder exists), from now on, for `take_states`: what
        model/training/dataset.py reads its targets from. Not part of `__getstate__`."""
        self._keeps_states = True
        for builder in self.builders.values():
            builder.keep_states()

    def take_states(self) -> dict[str, dict[str, np.ndarray]]:
        """symbol -> the states kept since the last call (`WindowBuilder.take_states`' arrays, one entry per
        message in order), for the symbols that have any; emptied."""
        out = {}
        for name, builder in self.builders.items():
            states = builder.take_states()
            if states is not None and len(states["emitted"]):
                out[name] = states
        return out

    # ---- state (snapshots to `md.state`, pickle, copy)

    def __getstate__(self) -> dict[str, Any]:
        """The whole state as values `orderbook.snapshot.dump_state` encodes exactly (plain values,
        tuples, the WindowConfig and WindowStats): the feed's, every follower book's and every
        builder's own `__getstate__` (Rust: books, sync, order routing, rings, feature state),
        the headlines kept, the stats. `from_state` continues exactly where this one was."""
        return {
            **common_state(self),
            "feed": self.feed.__getstate__(),
            "books": {name: book.__getstate__() for name, book in self.books.items()},
            "builders": {name: b.__getstate__() for name, b in self.builders.items()},
            "feed_books": list(self._feed_books),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Become the `__getstate__` state; ValueError for another kind or version, or a malformed state."""
        try:
            restore_common(self, state)  # the empty object, then its parts replaced
            venue = self.venue
            self.feed.__setstate__(state["feed"])
            for name, book_state in state["books"].items():
                book = self.books[name] = _follower(venue, name, book_state["kind"] == "L3Book")
                book.__setstate__(book_state)
            for name, builder_state in state["builders"].items():
                builder = self.builders[name] = native._core.WindowBuilder()
                builder.__setstate__(builder_state)
            self._feed_books = list(state["feed_books"])
            _check_followers(state)
        except (KeyError, TypeError, AttributeError, IndexError) as err:
            raise ValueError(f"NativeVenueWindows state: {type(err).__name__}: {err}") from None

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> NativeVenueWindows:
        """A NativeVenueWindows made from a `__getstate__` state (ValueError where it is not one)."""
        obj = cls.__new__(cls)
        obj.__setstate__(state)
        return obj

    # ---- the batch

    def process(
        self,
        values: Sequence[bytes],
        offsets: Indexed | None = None,
        *,
        keys: Sequence[bytes | None] | None = None,
        warm: bool = False,
    ) -> Done:
        """Records (plain messages or frames) in order: their windows (each carrying its record's
        `offsets` entry) and rejects, as `VenueWindows.process` over each message would give them.
        `keys`: the records' keys, which only a venue whose messages name no symbol reads (`keyed`)."""
        offsets = offsets if offsets is not None else [None] * len(values)
        split = self._split(values)
        n = len(split.messages)
        self.stats.records += n + len(split.refused)
        for _, reason, _ in split.refused:
            self.stats.rejected[reason] += 1
        batch = self._on_messages(self.feed, split, keys, len(values)) if n else None
        out: list[tuple[int, Window]] = []
        rejects: list[tuple[tuple[int, int], MessageReject]] = [
            ((rec, -1), MessageReject(reason, error, rec, None, values[rec])) for rec, reason, error in split.refused
        ]
        if batch is not None:
            refused = self._rejects(batch, split, values, rejects)
            self._fold(batch, split.messages, refused, _Offsets(offsets, split.record), out)
        rejects.sort(key=lambda r: r[0])
        if warm:
            return Done([], [r for _, r in rejects])
        out.sort(key=lambda w: w[0])  # message order; one message never completes two windows
        self.stats.windows += len(out)
        return Done([w for _, w in out], [r for _, r in rejects])

    def clocks(self, values: Sequence[bytes], keys: Sequence[bytes | None] | None = None) -> np.ndarray:
        """Each record's clock as `process` would find it, nothing changed: the latest time of the events of
        its accepted messages (NO_CLOCK where it has none: refused, or no event), from a copy of the feed, as
        int64. What `megatrading score` cuts a batch by, so that a headline joins before the record the
        reference joins it at (orderbook.venue_windows.process_records)."""
        latest = np.full(len(values), NO_CLOCK, np.int64)
        split = self._split(values)
        if not split.messages:
            return latest
        batch = self._on_messages(copy.deepcopy(self.feed), split, keys, len(values))
        ev = batch.events
        refused = batch.rejects["msg"]
        if len(refused):
            ev = ev[~np.isin(ev["msg"], refused)]
        np.maximum.at(latest, split.record[ev["msg"]], ev["ts"])
        return latest

    def _on_messages(self, feed: Any, split: _Split, keys: Sequence[bytes | None] | None, n: int) -> native.Batch:
        """The split batch through `feed` (the records' keys with a frame's messages where the venue reads them)."""
        if isinstance(feed, native.LobsterFeed):
            by_record = keys if keys is not None else [None] * n
            # a frame's messages are its record's: they share its key
            return feed.on_messages(split.messages, [by_record[r] for r in split.record.tolist()])
        return feed.on_messages(split.messages)

    @property
    def keyed(self) -> bool:
        """Whether `process` reads the records' keys: a LOBSTER row names no symbol, its key does."""
        return self.venue == "lobster"

    def _split(self, values: Sequence[bytes]) -> _Split:
        """Frames into their messages, as VenuePipeline.process splits them; oversized records and
        broken frames rejected whole (they never reach the feed, as in the reference)."""
        limit = self.max_bytes
        n = len(values)
        framed = list(map(_FRAMED, values))  # frames.is_frame, in C
        oversized = n > 0 and max(map(len, values)) > limit
        if not any(framed) and not oversized:
            # plain records only (a one-message-a-record feed): no Python work per record
            return _Split(list(values), np.arange(n, dtype=np.int64), framed, [])
        messages: list[bytes] = []
        counts = np.ones(n, np.int64)
        refused: list[tuple[int, str, str]] = []
        # only the records that need it are looked at one by one: the frames, and every record where one is
        # oversized; the plain records between them go over in one slice (a feed of a frame in ten records,
        # as a records-bound venue's is, paid a Python step per record before)
        special = range(n) if oversized else [i for i, f in enumerate(framed) if f]
        after = 0
        for i in special:
            messages += values[after:i]
            after = i + 1
            value = values[i]
            if len(value) > limit:
                err = OversizedMessage(f"record of {len(value)} bytes exceeds {limit}", venue=self.venue)
                refused.append((i, err.reason, str(err)))
                counts[i] = 0
            elif not framed[i]:
                messages.append(value)
            else:
                try:
                    part = messages_of(value, self.venue)
                except FrameError as err:
                    refused.append((i, err.reason, str(err)))
                    counts[i] = 0
                    continue
                messages += part
                counts[i] = len(part)
        messages += values[after:]
        record = np.repeat(np.arange(n, dtype=np.int64), counts)
        return _Split(messages, record, framed, refused)

    def _rejects(
        self,
        batch: native.Batch,
        split: _Split,
        values: Sequence[bytes],
        out: list[tuple[tuple[int, int], MessageReject]],
    ) -> np.ndarray:
        """The feed's refusals as MessageRejects onto `out`; the refused messages' indices."""
        msgs = batch.rejects["msg"]
        if not len(msgs):
            return msgs
        starts = np.searchsorted(split.record, np.arange(len(values)), side="left")
        for m, err in batch.errors():
            rec = int(split.record[m])
            index = m - int(starts[rec]) if split.frames[rec] else None
            self.stats.rejected[err.reason] += 1
            key = (rec, -1 if index is None else index)
            out.append((key, MessageReject(err.reason, str(err), rec, index, split.messages[m])))
        return msgs

    # ---- windows

    def _fold(
        self,
        batch: native.Batch,
        messages: list[bytes],
        refused: np.ndarray,
        offsets: _Offsets,
        out: list[tuple[int, Window]],
    ) -> None:
        """Every symbol's accepted events into its follower book and builder, the corrections of
        refused messages interleaved where they happened."""
        ev = batch.events
        if len(refused):
            ev = ev[~np.isin(ev["msg"], refused)]  # a refused message's events (a crossed diff) are not folded
        self.stats.events += len(ev)
        corrections = self._corrections(batch, messages, refused)
        sym = ev["symbol"]
        order = np.argsort(sym, kind="stable")
        ids, firsts, counts = np.unique(sym[order], return_index=True, return_counts=True)
        groups = {
            int(s): order[f : f + c] for s, f, c in zip(ids.tolist(), firsts.tolist(), counts.tolist(), strict=True)
        }
        # symbols in the order of their first event: a renamed ITCH placeholder's events come before its new name's
        for s in sorted(set(groups) | set(corrections), key=lambda s: _first(groups, corrections, s, ev)):
            name = batch.symbol(s)
            rows = ev[groups[s]] if s in groups else ev[:0]
            todo = corrections.get(s, [])
            book = self._book(name, s in groups)
            if book is None:
                continue
            start = 0
            msg_col = rows["msg"]
            for at, fix in todo:
                stop = int(np.searchsorted(msg_col, at, side="left"))
                self._push(name, book, rows[start:stop], offsets, out)
                fix(book)
                start = stop
            self._push(name, book, rows[start:], offsets, out)

    def _book(self, name: str, has_events: bool) -> Any:
        """A symbol's follower book, made (or taken over from its ITCH placeholder) on first need."""
        book = self.books.get(name)
        if book is not None:
            return book
        if self.venue == "itch":
            # the feed moves a placeholder's (`locate:<n>`) book to the stock's name once it learns it
            now = self.feed.book_symbols()
            for old, new in zip(self._feed_books, now, strict=False):
                if old != new and old in self.books and new not in self.books:
                    self.books[new] = self.books.pop(old)
            self._feed_books = now
            book = self.books.get(name)
            if book is not None:
                return book
        order_by_order = self.venue == "coinbase" and self.feed.book_type(name) == "L3"  # type: ignore[union-attr]
        book = self.books[name] = _follower(self.venue, name, order_by_order)
        return book

    def _push(self, name: str, book: Any, rows: np.ndarray, offsets: _Offsets, out: list[tuple[int, Window]]) -> None:
        """Messages' events (rows, in message order) applied to the follower and folded into the
        builder; before the builder exists, applied alone until the symbol's tick is known."""
        if not len(rows):
            return
        builder = self.builders.get(name)
        if builder is None:
            msgs = rows["msg"]
            cuts = np.flatnonzero(np.diff(msgs)) + 1
            bounds = [0, *cuts.tolist(), len(rows)]
            for a, b in pairwise(bounds):  # message by message, until the tick is known
                one = rows[a:b]
                _apply(book, one)
                builder = self._builder(name, book)
                if builder is not None:
                    m = int(one["msg"][0])
                    w = builder.push(book, one, offsets[m])
                    if w is not None:
                        out.append((m, w))
                    rows = rows[b:]
                    break
            else:
                return
            if not len(rows):
                return
        stacked = builder.push_batch(rows, book, offsets)
        out.extend(zip(stacked["msg"].tolist(), _windows(stacked), strict=True))

    def _builder(self, name: str, book: Any) -> Any:
        """VenueWindows._builder: made once the symbol's tick is known, with the headlines kept for it."""
        tick = self.ticks.get(name) or self._window_tick(book)
        if tick is None:
            return None
        builder = native._core.WindowBuilder(self.config, FeatureState(tick=tick), self.venue, name)
        if self._keeps_states:
            builder.keep_states()
        for ts, headline in self.news.get(name, ()):
            builder.add_news(ts, headline)
        self.builders[name] = builder
        return builder

    def _window_tick(self, book: Any) -> int | None:
        """`Feed.window_tick` on a native book."""
        if self._fixed_tick is not None:
            return self._fixed_tick
        n_bids, n_asks = book.n_levels()
        if n_bids < MIN_LEVELS_FOR_TICK and n_asks < MIN_LEVELS_FOR_TICK:
            return None
        bids, _ = book.levels(int(Side.BID))
        asks, _ = book.levels(int(Side.ASK))
        return infer_tick(chain(bids.tolist(), asks.tolist()))

    # ---- refusals that changed a book

    def _corrections(
        self, batch: native.Batch, messages: list[bytes], refused: np.ndarray
    ) -> dict[int, list[tuple[int, Any]]]:
        """symbol -> [(message, what to do to its follower)], for the refusals that left its book changed."""
        r = batch.rejects
        out: dict[int, list[tuple[int, Any]]] = {}
        if not len(refused):
            return out
        ev = batch.events
        if self.venue in ("kraken", "coinbase"):
            # a refused message's events are what it applied: every book of it stays as it left them (a
            # Coinbase execution larger than its order removed the order, then was refused: its book error
            # comes again on the follower, after the same removal, and is the feed's already)
            left = ev[np.isin(ev["msg"], refused)]
            for m, s in sorted({(int(m), int(s)) for m, s in zip(left["msg"], left["symbol"], strict=True)}):
                rows = left[(left["msg"] == m) & (left["symbol"] == s)]
                out.setdefault(s, []).append((m, functools.partial(_apply_applied, rows=rows)))
            return out
        for m, reason, s in zip(r["msg"].tolist(), r["reason"].tolist(), r["symbol"].tolist(), strict=True):
            if s < 0:
                continue
            fix = None
            if self.venue == "binance":
                if reason == _GAP:
                    fix = _clear
                elif reason == _CROSSED:
                    # a crossed diff's levels, a crossed snapshot's clear, levels and catch-up stay in the book
                    fix = functools.partial(_apply, rows=ev[ev["msg"] == m])
            elif reason in (_CROSSED, _BOOK_ERROR):
                fix = _ItchOp(messages[m]) if self.venue == "itch" else _LobsterOp(messages[m])
            if fix is not None:
                out.setdefault(s, []).append((m, fix))
        return out

    # ---- news

    # the reference's own: it keeps `news` per symbol and tells `builders`, whose native ones take the same call
    add_news = VenueWindows.add_news


def common_state(windows: VenueWindows | NativeVenueWindows) -> dict[str, Any]:
    """What a `NativeVenueWindows.__getstate__` state holds that a VenueWindows keeps alike: kind and
    version, venue, window config, symbol filter, ticks, record limit, headlines, stats (orderbook/native/
    convert.py writes a VenueWindows's state with it)."""
    return {
        "kind": STATE_KIND,
        "version": STATE_VERSION,
        "venue": windows.venue,
        "config": windows.config,
        "symbols": None if windows.symbols is None else sorted(windows.symbols),
        "ticks": dict(windows.ticks),
        "max_bytes": windows.max_bytes,
        "news": {k: list(v) for k, v in windows.news.items()},
        # a copy, as every other value here: a state encoded later (the worker's snapshots are, in a
        # thread) must not move with the live stats
        "stats": replace(windows.stats, rejected=Counter(windows.stats.rejected)),
    }


def restore_common(windows: VenueWindows | NativeVenueWindows, state: dict[str, Any]) -> None:
    """`windows` (made with `__new__`, or any) emptied by its own `__init__` with `common_state`'s parts of
    `state`, then given its headlines and stats; ValueError for a state of another kind or version."""
    if not isinstance(state, dict) or (state.get("kind"), state.get("version")) != (STATE_KIND, STATE_VERSION):
        got = (state.get("kind"), state.get("version")) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"NativeVenueWindows state {got!r}, this build reads {(STATE_KIND, STATE_VERSION)}")
    symbols = state["symbols"]
    type(windows).__init__(windows, state["venue"], state["config"], symbols=None if symbols is None else set(symbols),
                           ticks=dict(state["ticks"]), max_bytes=state["max_bytes"])  # fmt: skip
    windows.news = {k: [tuple(item) for item in v] for k, v in state["news"].items()}
    stats = state["stats"]
    windows.stats = replace(stats, rejected=Counter(stats.rejected))


def _check_followers(state: dict[str, Any]) -> None:
    """Each follower book is its feed book's twin between batches (the class docstring says why); a state
    where one is not (a snapshot edited on its way) would fail every batch after it instead of being refused
    now, and the partition would redo its batch from that snapshot for ever."""
    core = state["feed"]["core"]
    now = [core["names"][b["symbol"]] for b in core["books"]]
    feed = {name: (b["bids"], b["asks"]) for name, b in zip(now, core["books"], strict=True)}
    followers = state["books"]
    for old, new in zip(state["feed_books"], now, strict=False):
        if old != new and old in followers and new not in followers:  # renamed since: `_book` moves it next
            feed[old] = feed[new]
    for name, book in followers.items():  # one under a name no feed book has now: an ITCH placeholder's, empty
        if name in feed and feed[name] != (book["bids"], book["asks"]):
            raise ValueError(f"NativeVenueWindows state: the follower book of {name!r} is not the feed's")


def _follower(venue: str, name: str, order_by_order: bool) -> Any:
    """A follower book of its feed book's type: L3 on ITCH and LOBSTER, L2 on Binance and Kraken, and on Coinbase
    the type its feed book has (`order_by_order`: the product's first book message was of the full channel)."""
    l3 = venue in _L3_VENUES or (venue == "coinbase" and order_by_order)
    return (native.L3Book if l3 else native.L2Book)(venue, name)


def _first(groups: dict[int, np.ndarray], corrections: dict[int, list], s: int, ev: np.ndarray) -> int:
    """The first message that touches symbol `s` in the batch."""
    firsts = []
    if s in groups:
        firsts.append(int(ev["msg"][groups[s][0]]))
    if s in corrections:
        firsts.append(corrections[s][0][0])
    return min(firsts)


def _apply(book: Any, rows: np.ndarray) -> None:
    """Events applied to a follower book, nothing folded."""
    kinds, sides = np.ascontiguousarray(rows["kind"]), np.ascontiguousarray(rows["side"])
    prices, sizes = np.ascontiguousarray(rows["price"]), np.ascontiguousarray(rows["size"])
    if isinstance(book, native.L3Book):
        ids, new_ids = np.ascontiguousarray(rows["order_id"]), np.ascontiguousarray(rows["new_order_id"])
        book.apply(kinds, ids, sides, prices, sizes, new_ids)
    else:
        book.apply(kinds, sides, prices, sizes)


def _apply_applied(book: Any, rows: np.ndarray) -> None:
    """A refused message's applied events on its follower: the book error its last one may raise (a Coinbase
    execution larger than the order) is the feed's, raised already."""
    with contextlib.suppress(native.FeedError):
        _apply(book, rows)


def _clear(book: Any) -> None:
    book.clear()


class _ItchOp:
    """An ITCH order operation the feed ran before refusing its message (a crossed book, an execution
    larger than the order), run on the follower the same way: the same checks first, the book's own
    error swallowed (the feed raised it already)."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def __call__(self, book: Any) -> None:
        raw, t = self.raw, self.raw[:1]
        try:
            if t in (b"A", b"F"):
                side = {b"B": int(Side.BID), b"S": int(Side.ASK)}.get(raw[19:20])
                price = _U32.unpack_from(raw, 32)[0]
                if side is not None and price:
                    book.add(_U64.unpack_from(raw, 11)[0], side, price, _U32.unpack_from(raw, 20)[0])
            elif t in (b"E", b"X") or (t == b"C" and raw[31:32] in (b"Y", b"N")):
                book.reduce(_U64.unpack_from(raw, 11)[0], _U32.unpack_from(raw, 19)[0])
            elif t == b"D":
                book.delete(_U64.unpack_from(raw, 11)[0])
            elif t == b"U":
                price = _U32.unpack_from(raw, 31)[0]
                if price:
                    ids = _U64.unpack_from(raw, 11)[0], _U64.unpack_from(raw, 19)[0]
                    book.replace(*ids, price, _U32.unpack_from(raw, 27)[0])
        except native.FeedError:
            pass


class _LobsterOp:
    """A LOBSTER row's order operation the feed ran before refusing it (a crossed book, an execution larger
    than the order), run on the follower: the row decoded as the feed did (it was, to be run), the book's
    own error swallowed (the feed raised it already)."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def __call__(self, book: Any) -> None:
        e = decode_row(self.raw)
        try:
            if e.kind == Kind.ADD:
                book.add(e.order_id, int(e.side), e.price, e.size)
            elif e.kind in (Kind.CANCEL, Kind.EXECUTE):
                book.reduce(e.order_id, e.size)
            elif e.kind == Kind.DELETE:
                book.delete(e.order_id)
        except native.FeedError:
            pass


def _windows(stacked: dict[str, np.ndarray]) -> list[Window]:
    """`push_batch`'s stacked windows as Window objects (one per window: the worker's contract). Column by
    column: an array's rows as views and the ints as Python ints each in one C-level pass, then one
    positional call per window (a Python loop over fields and windows cost a tenth of the native batch)."""
    columns = [stacked[name].tolist() if name in _INT_FIELDS else list(stacked[name]) for name in _WINDOW_FIELDS]
    return list(map(Window, *columns))


__all__ = ["SUPPORTED", "Done", "MessageReject", "NativeVenueWindows"]
