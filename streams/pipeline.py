"""The per-worker processing of one venue: raw record -> feed (decode, book) -> windows.

Plain code, no Kafka and no asyncio, so the agent in `streams/app.py` stays a short loop and
everything that needs a test is tested here. The work itself is `orderbook.venue_windows.VenueWindows.process`
(the path offline scoring and the training data take too); what the worker adds is the position
reached in each partition and, for a record the feed rejects, a `Rejected` headed for `md.dlq` with
its reason. The worker goes on with the next record.

A record may be a frame (orderbook/frames.py): consecutive messages of one key, each as the venue
sent it. Its messages go through `VenueWindows.process` one after the other, all with the record's
key and offset, exactly as the same messages sent as plain records would (the windows and
`stats` count messages, not records). A message the feed rejects becomes a `Rejected` of its own
(its bytes, its `index` in the frame) and its neighbours go on; a frame that cannot be split
(FrameError, `bad_frame`) or a record over the size limit, frame or not, is rejected whole and unread.
Exactly-once stays per record offset: a frame is processed whole, in one batch.

The native path (orderbook/native/venue_windows.py, `NativeVenueWindows`) does the same work a batch
of records at a time in Rust, with the same windows, rejects and stats: `process_batch` takes it where
`native_choice(venue)` says so (built, not turned off with MT_NATIVE=0, a venue the crate decodes;
the worker logs each venue's choice and why at start), else it loops `process`, the reference (MT_NATIVE=0;
the fallback after a native panic, native=False; tests). The crate decodes every venue of orderbook/venues.

A worker keeps one pipeline per source partition. After a crash or a rebalance it is
restored from the partition's newest state snapshot (streams/snapshots.py) and the records
after it are fed again with `warm=True` up to the committed offset (streams/recovery.py): the
books, features and window counters come back exactly as they were, and no window is emitted
for records whose forecasts were already written.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

from orderbook import native as native_path
from orderbook.errors import MAX_MESSAGE_BYTES
from orderbook.frames import FrameError, is_frame, messages_of
from orderbook.snapshot import dump_state
from orderbook.venue_windows import VenueWindows, WindowStats
from orderbook.windows import Window, WindowBuilder, WindowConfig
from streams import failpoints

if TYPE_CHECKING:
    from model.sim.engine import SimConfig
    from orderbook.native.venue_windows import NativeVenueWindows

log = logging.getLogger(__name__)


# venues whose books fall out of sync and wait for a snapshot (orderbook/sync.py, BookSync.lose_sync):
# on a sequence gap (Binance, Coinbase) or a checksum mismatch (Kraken); ITCH and LOBSTER books have no
# such state (a message that does not fit is dead-lettered, the book goes on)
RESYNCING = frozenset({"binance", "coinbase", "kraken"})


class NativePanic(RuntimeError):
    """The compiled path panicked on a batch: a bug of orderbook/native, met by some record. The partition
    redoes the batch, then takes it on the reference path (streams/partition.py)."""


def native_choice(venue: str) -> tuple[bool, str]:
    """Whether a pipeline of `venue` takes the native path by default, and why (one line for the logs):
    where `orderbook.native.enabled()` (built, and not turned off with MT_NATIVE=0) and the crate decodes the venue."""
    if not native_path.enabled():
        return False, native_path.describe()
    from orderbook.native.venue_windows import SUPPORTED

    if venue not in SUPPORTED:
        return False, f"python reference path (no native decoder for {venue}; native: {', '.join(sorted(SUPPORTED))})"
    return True, native_path.describe()


class Record(Protocol):
    """A source record: Faust's Message and kafka-python's ConsumerRecord both are one."""

    key: bytes | None
    value: bytes
    partition: int
    offset: int


class BookTop(NamedTuple):
    """A book's best levels as a batch left it (`VenuePipeline.tops`), with the builder's position then."""

    symbol: str
    window: int  # the builder's tokens seen (a window's `n_seen`): orders a book's tops as it orders its forecasts
    ts: int  # of the book's last event
    seq: int
    bids: list[tuple[int, int]]  # (price, size) in the venue's units, best first
    asks: list[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record (or one message of a frame) the pipeline could not use, with why: what `md.dlq` carries."""

    reason: str
    error: str
    key: bytes | None
    value: bytes  # the record's value; for one message of a frame, that message's bytes alone
    partition: int
    offset: int
    index: int | None = None  # the message's index in its frame; None: the whole record


class VenuePipeline:
    """One venue's books and window builders (`core`: a VenueWindows, which a snapshot holds, or on the
    native path a NativeVenueWindows) fed Kafka records, and the position reached in each partition.
    `native`: None takes `native_choice(venue)`; True insists (an error where the venue or build cannot); False:
    all Python."""

    def __init__(
        self,
        venue: str,
        config: WindowConfig | None = None,
        *,
        symbols: set[str] | None = None,
        max_bytes: int | None = None,
        native: bool | None = None,
    ) -> None:
        self.venue = venue
        self.max_bytes = max_bytes  # as configured (a snapshot records it); None: MAX_MESSAGE_BYTES
        limit = MAX_MESSAGE_BYTES if max_bytes is None else max_bytes
        self.native = native_choice(venue)[0] if native is None else native
        self.core: VenueWindows | NativeVenueWindows
        if self.native:
            from orderbook.native.venue_windows import NativeVenueWindows

            self.core = NativeVenueWindows(venue, config, symbols=symbols, max_bytes=limit)
        else:
            self.core = VenueWindows(venue, config, symbols=symbols, max_bytes=limit)
        self.position: dict[int, int] = {}  # partition -> next offset to process

    @property
    def builders(self) -> dict[str, WindowBuilder]:  # native: the native builders, keyed alike
        return self.core.builders

    @property
    def stats(self) -> WindowStats:
        return self.core.stats

    def process(
        self, key: bytes | None, value: bytes, partition: int, offset: int, *, warm: bool = False
    ) -> tuple[list[Window], list[Rejected]]:
        """Apply one record, plain or a frame: the windows its messages completed (none when `warm`)
        and the rejections, one per rejected message (a whole record: one with index None)."""
        if self.native:
            return self._native([_One(key, value, partition, offset)], warm)
        self.position[partition] = offset + 1
        at = (partition, offset)
        if not is_frame(value) or len(value) > self.core.max_bytes:
            # a plain message, or a record too long to read whatever it is: VenueWindows checks the
            # size first, so an oversized frame is rejected unread and never split
            done = self.core.process(key, value, at, warm=warm)
            if done.reject is not None:
                return [], [Rejected(done.reject.reason, done.reject.error, key, value, partition, offset)]
            return done.windows, []
        try:
            messages = messages_of(value, self.venue)
        except FrameError as err:
            # no message of a broken frame can be trusted: the record is one reject
            done = self.core.refuse(err.reason, str(err))
            return [], [Rejected(done.reject.reason, done.reject.error, key, value, partition, offset)]
        windows: list[Window] = []
        rejects: list[Rejected] = []
        for index, message in enumerate(messages):
            done = self.core.process(key, message, at, warm=warm)
            if done.reject is not None:
                rejects.append(Rejected(done.reject.reason, done.reject.error, key, message, partition, offset, index))
            windows += done.windows
        return windows, rejects

    def process_batch(self, records: Sequence[Record], *, warm: bool = False) -> tuple[list[Window], list[Rejected]]:
        """`process` over records in order (a partition's batch): the same windows and rejections, in
        the same order; on the native path in one native call for them all."""
        if self.native:
            return self._native(records, warm)
        windows: list[Window] = []
        rejects: list[Rejected] = []
        for m in records:
            ws, rs = self.process(m.key, m.value, m.partition, m.offset, warm=warm)
            windows += ws
            rejects += rs
        return windows, rejects

    def _native(self, records: Sequence[Record], warm: bool) -> tuple[list[Window], list[Rejected]]:
        if not records:
            return [], []
        values = list(map(_VALUE, records))
        try:
            if failpoints.native_poisoned(values):
                native_path.panic(f"failpoint {failpoints.POISON_ENV}: a poison record")
            keys = list(map(_KEY, records)) if self.core.keyed else None
            done = self.core.process(values, _Positions(records), keys=keys, warm=warm)
        except BaseException as err:
            # a Rust panic reaches Python as pyo3's PanicException, a BaseException: let through, it
            # would end the venue's whole inbox task; as an Exception the partition drops its state
            # and redoes the batch from its committed offset, logged (streams/partition.py)
            if not native_path.is_panic(err):
                raise
            raise NativePanic(f"the native {self.venue} pipeline panicked: {err}") from err
        for m in records:
            self.position[m.partition] = m.offset + 1
        rejects = []
        for r in done.rejects:
            m = records[r.record]
            rejects.append(Rejected(r.reason, r.error, m.key, r.value, m.partition, m.offset, r.index))
        return done.windows, rejects

    def tops(self, windows: Sequence[Window], n: int) -> list[BookTop]:
        """The best `n` levels a side of each book with a window in `windows` (a batch's), as the batch left
        the book: one read per book per batch, none per record. A book the batch changed without completing
        a window is left out (its next window's batch publishes it). The position is the builder's now, not
        the last window's: the book may have taken messages after that window (the ordering key must be the
        levels' own, or a replay cut into other batches could write an older book over a newer one)."""
        if n <= 0 or not windows:
            return []
        symbols = dict.fromkeys(w.symbol for w in windows)  # each once, in the batch's order
        # native: the follower books, which the batch brought to where the feed's are
        books = self.core.books if self.native else self.core.feed.books
        builders = self.core.builders
        out = []
        for symbol in symbols:
            book, builder = books.get(symbol), builders.get(symbol)
            if book is None or builder is None:
                continue
            # the builder's position as it stands (both builders' getters: no window is cut for it)
            bids, asks = book.top(n)
            out.append(BookTop(symbol, int(builder.n_seen), int(builder.last_ts), int(builder.last_seq), bids, asks))
        return out

    @property
    def resyncing(self) -> bool:
        """Whether the venue's books resync at all (`RESYNCING`): `resyncs` counts nothing otherwise."""
        return self.venue in RESYNCING

    def resyncs(self) -> int:
        """Times the books fell out of sync after being live, summed over symbols (BookSync.resyncs, kept in
        the state: since it began, snapshots and their replays included). A few reads per book: for a
        heartbeat, not for each record. Read it on the thread that feeds the pipeline."""
        feed = self.core.feed
        if self.native:
            sync = getattr(feed, "sync", None)  # the native ITCH feed has no BookSync
            if sync is None:
                return 0
            return sum(s[2] for s in map(sync, feed.book_symbols()) if s is not None)
        return sum(s.resyncs for s in list(feed.syncs.values()))

    def dump_state(self) -> bytes:
        """The books, feeds and builders as `orderbook.snapshot.dump_state` bytes; on the native path
        its compiled parts go in as the plain values of their own versioned `__getstate__`."""
        return self.capture_state()()

    def capture_state(self) -> Callable[[], bytes]:
        """The state as it stands now, to be encoded later (`dump_state`'s bytes when called), while
        the pipeline goes on: the native parts' `__getstate__` copies them out at once (under a
        millisecond for a few books), the encoding (milliseconds a book) is left to the caller's
        thread. The reference path's objects are the live ones: it encodes now."""
        if self.native:
            values = self.core.__getstate__()
            return lambda: dump_state(values)
        encoded = dump_state(self.core)
        return lambda: encoded

    def add_news(self, ts: int, symbols: list[str], headline: str) -> None:
        """Join a headline to its symbols' windows. One that the parser took but a window builder cannot take
        (a bug: a lone surrogate did so until 2026-12-06) is logged, not raised: raised, it failed the
        partition's batch, and every retry, whose restore joins the news log again."""
        try:
            self.core.add_news(ts, symbols, headline)
        except Exception:
            log.exception("%s: a headline the window builders cannot take is left out (a bug: report it): %r",
                          self.venue, headline[:200])  # fmt: skip

    def reset(self) -> None:
        """Forget every book. A feed keeps per-symbol state beyond its books (ITCH order routing,
        Binance pending tickers...), so after a rebalance the pipeline starts afresh and the
        worker replays the partitions it owns (`warm=True`) instead of pruning symbols."""
        self.core.reset()
        self.position.clear()


_VALUE = operator.attrgetter("value")
_KEY = operator.attrgetter("key")


class _Positions:
    """The (partition, offset) of each record, made only for those a window or reject names."""

    def __init__(self, records: Sequence[Record]) -> None:
        self.records = records

    def __getitem__(self, i: int) -> tuple[int, int]:
        m = self.records[i]
        return (m.partition, m.offset)


@dataclass(frozen=True, slots=True)
class _One:
    """A record given to `process` by its parts."""

    key: bytes | None
    value: bytes
    partition: int
    offset: int


def simulated_windows(config: SimConfig, venue: str = "itch") -> list[Window]:
    """The windows a worker cuts from a simulated stream (model/sim) written in `venue`'s wire format,
    record by record through this path: real windows for tests and benchmarks without a capture."""
    from model.sim.run import simulate
    from model.sim.writers import messages

    pipe = VenuePipeline(venue)
    out: list[Window] = []
    for i, m in enumerate(messages(venue, simulate(config))):
        out += pipe.process(m.symbol.encode() if m.symbol else None, m.raw, 0, i)[0]
    return out
