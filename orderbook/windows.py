"""Model-ready windows per symbol: the last N events as tokens, the last T feature rows,
the news inside the window and where it came from (docs/design.md, "Features and windows").

    builder = WindowBuilder(WindowConfig(n_events=128, n_rows=32, every_events=32), FeatureState(tick=1))
    for raw in messages:
        events = feed.on_message(raw)
        w = builder.push(feed.book(symbol), events, offset=(partition, offset))
        if w is not None:
            pending.append(w)
    batch = stack(pending)  # dict of arrays, leading axis = batch

Every array of a `Window` has the same shape whatever the history length: older slots
are left-padded (zeros) and a mask says which slots are real; the newest entry is last.
Per-event work is a few scalar writes into preallocated numpy ring buffers; the ordered
copies are made only when a window is emitted.
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from .book import Book
from .events import Event, Kind
from .features import FeatureState
from .numbers import INT64_MAX
from .volume_record import VolumeRecord, traded_lots

_STATE_KINDS = frozenset({Kind.SNAPSHOT_BEGIN, Kind.CLEAR})


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """Shapes and emission rule of the windows.

    n_events (N): event tokens kept; n_rows (T): feature rows kept (one per message);
    max_news (M): headlines kept; price_clip (K): token price levels are clipped to +-K
    ticks from the mid. A window is emitted when `every_events` tokens have arrived since
    the last one, or when `every_ns` of event time has passed since the last one (the
    first counts from the first event); None disables a rule. Both are checked after each
    message, so a message with many events emits at most one window.
    """

    n_events: int = 128
    n_rows: int = 32
    max_news: int = 4
    price_clip: int = 64
    every_events: int | None = 32
    every_ns: int | None = None

    def __post_init__(self) -> None:
        if min(self.n_events, self.n_rows, self.max_news, self.price_clip) <= 0:
            raise ValueError("n_events, n_rows, max_news and price_clip must be positive")
        if self.every_events is not None and self.every_events <= 0:
            raise ValueError("every_events must be positive or None")
        if self.every_ns is not None and self.every_ns <= 0:
            raise ValueError("every_ns must be positive or None")

    @property
    def news_kept(self) -> int:
        """Headlines a builder keeps (the newest by ts), of which a window shows up to max_news of its span;
        the compiled builder keeps as many (native/src/windows.rs)."""
        return 16 * self.max_news


@dataclass(slots=True)
class Window:
    """One symbol's recent history, fixed shapes (N events, T rows, M headlines, F features).

    Tokens (N,): `kind` (Kind), `side` (Side), `price` (level relative to the prevailing
    mid in ticks, rounded half away from zero so the best bid/ask are -1/+1 when the spread
    is one tick, clipped to +-K; 0 for events without a price), `size` (raw lots), `dt`
    (ns since the previous token, 0 for the first), `ts` (event ns), `mask` (real slot).
    Rows: `features` (T, F) float32 with `row_mask` (T,). The book's record of its realized volumes:
    `volume_record` (len(VOLUME_HORIZONS), 3) float64, the 10/50/90% quantiles of log1p of the lots
    traded over h messages after each of its earlier windows whose horizon has ended, NaN until enough
    have (orderbook/volume_record.py). News: `news_ts` (M,),
    `news_text` (M,) object array ("" where padded), `news_mask` (M,).
    Metadata: `venue`, `symbol`, `ts` and `seq` of the last event, `start_ts` (the oldest
    event time the window covers), `offset` (the caller's source position of the last
    message, e.g. a Kafka (partition, offset)), `n_seen` (tokens seen by the builder),
    `best_bid`/`best_ask` (the book's best prices after the last message, 0 where empty).
    """

    kind: np.ndarray
    side: np.ndarray
    price: np.ndarray
    size: np.ndarray
    dt: np.ndarray
    event_ts: np.ndarray
    mask: np.ndarray
    features: np.ndarray
    row_mask: np.ndarray
    volume_record: np.ndarray
    news_ts: np.ndarray
    news_text: np.ndarray
    news_mask: np.ndarray
    venue: str
    symbol: str
    ts: int
    seq: int
    start_ts: int
    offset: Any
    n_seen: int
    best_bid: int = 0  # the book's best prices after the last message (0: that side is empty)
    best_ask: int = 0

    @property
    def news(self) -> list[tuple[int, str]]:
        """The headlines in the window as (ts, headline), oldest first."""
        return [(int(t), str(h)) for t, h, m in zip(self.news_ts, self.news_text, self.news_mask, strict=True) if m]


_INT_META = ("ts", "seq", "start_ts", "n_seen", "best_bid", "best_ask")
_OBJ_META = ("venue", "symbol", "offset")
ARRAY_FIELDS = tuple(f.name for f in fields(Window) if f.name not in _INT_META + _OBJ_META)


def stack(windows: Sequence[Window], only: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Windows as batch arrays: every array field gets a leading batch axis.

    Integer metadata becomes int64 (B,) arrays, venue/symbol/offset object (B,) arrays.
    Windows from builders with different configs do not stack (ValueError). `only`: these array fields
    and nothing else (the model's input reads 9 of the 12, and no metadata: model/inputs.py).
    """
    if not windows:
        raise ValueError("stack() needs at least one window")
    out = {name: _stacked([getattr(w, name) for w in windows], name) for name in (only or ARRAY_FIELDS)}
    if only is not None:
        return out
    for name in _INT_META:
        out[name] = np.array([getattr(w, name) for w in windows], dtype=np.int64)
    for name in _OBJ_META:
        arr = np.empty(len(windows), dtype=object)
        for i, w in enumerate(windows):  # one by one: a list of tuples would broadcast as 2-D
            arr[i] = getattr(w, name)
        out[name] = arr
    return out


def _stacked(arrays: list[np.ndarray], name: str) -> np.ndarray:
    """np.stack(arrays) for arrays of one shape, by one concatenation: np.stack makes a view of each
    array first, and for a model batch of 256 windows that was about a third of model.inputs'
    `model_inputs` under a profiler (docs/gpu.md, "The host's model_inputs")."""
    shape = arrays[0].shape
    if [a.shape for a in arrays].count(shape) != len(arrays):
        raise ValueError(f"windows of different shapes do not stack ({name}: {sorted({a.shape for a in arrays})})")
    return np.concatenate(arrays).reshape(len(arrays), *shape)


def _ordered(buf: np.ndarray, head: int, count: int) -> np.ndarray:
    """The ring `buf` (next write at `head`, `count` writes so far) oldest-first, left-padded."""
    n = len(buf)
    out = np.zeros_like(buf)
    if count < n:  # never wrapped: the items sit at 0..count-1
        if count:
            out[n - count :] = buf[:count]
    else:
        out[: n - head] = buf[head:]
        out[n - head :] = buf[:head]
    return out


def _mask(n: int, count: int) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[n - min(count, n) :] = True
    return m


def token_price(price: int, ref2: int, tick: int, clip: int) -> int:
    """A token's price: ticks from the mid (`ref2`, twice it), rounded half away from zero, clipped to
    +-`clip` (a window's `price`, see Window)."""
    d = 2 * price - ref2
    q = (abs(d) + tick) // (2 * tick)  # |price - mid| / tick, rounded half up
    return min(q, clip) if d > 0 else -min(q, clip)


class WindowBuilder:
    """Builds one symbol's windows from its messages: `push(book, events, offset) -> Window | None`.

    `book` is the book after `events` were applied. Each message adds one feature row
    (`features.update`) and one token per event; events inside a snapshot (between
    SNAPSHOT_BEGIN and SNAPSHOT_END) are book state, not order flow, and give no token
    (the BEGIN and END markers do, so the model sees the resync). `add_news(ts, headline)`
    joins a headline; a window carries those with start_ts <= ts <= its last event time.
    """

    def __init__(
        self,
        config: WindowConfig | None = None,
        features: FeatureState | None = None,
        venue: str = "",
        symbol: str = "",
    ) -> None:
        self.config = cfg = config or WindowConfig()
        self.features = features or FeatureState()
        self.venue, self.symbol = venue, symbol
        n, t = cfg.n_events, cfg.n_rows
        self._kind = np.zeros(n, np.int8)
        self._side = np.zeros(n, np.int8)
        self._price = np.zeros(n, np.int32)
        self._size = np.zeros(n, np.int64)
        self._dt = np.zeros(n, np.int64)
        self._ts = np.zeros(n, np.int64)
        self._head = 0
        self._count = 0
        self._rows = np.zeros((t, len(self.features.names)), np.float32)
        self._row_ts = np.zeros(t, np.int64)
        self._row_head = 0
        self._row_count = 0
        # sorted by ts, the newest config.news_kept kept (add_news); news is rare, a list is fine
        self._news: list[tuple[int, str]] = []
        self._mid2: int | None = None
        self._ref2: int | None = None  # twice the price tokens are measured from
        self._in_snapshot = False
        self._last_ts: int | None = None  # of the last event, token or not
        self._last_token_ts: int | None = None
        self._last_seq = 0
        self._since_emit = 0
        self._emit_ts: int | None = None
        self._offset: Any = None
        self._best = (0, 0)
        self._volume = VolumeRecord()

    def __deepcopy__(self, memo: dict) -> WindowBuilder:
        """Part by part (a scenario path copies its builder at every level update: FeatureState.__deepcopy__):
        the ring buffers' arrays and the news copied, the config frozen, the caller's offset as it is."""
        out = memo[id(self)] = copy.copy(self)  # in the memo: a structure that holds it twice gets one copy
        out.features = copy.deepcopy(self.features, memo)
        out._volume = copy.deepcopy(self._volume, memo)
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray):
                setattr(out, name, value.copy())
        out._news = list(self._news)
        return out

    # ---- position: what a window cut now would carry, without cutting it (the native builder's getters)

    @property
    def n_seen(self) -> int:
        """Tokens seen so far (a window's `n_seen`)."""
        return self._count

    @property
    def last_ts(self) -> int:
        """The time of the last event pushed, token or not (a window's `ts`; 0 before any)."""
        return self._last_ts if self._last_ts is not None else 0

    @property
    def last_seq(self) -> int:
        """The venue sequence number of the last event pushed (a window's `seq`)."""
        return self._last_seq

    # ---- input

    @property
    def tick(self) -> int:
        """The instrument's tick its prices are counted in (as the compiled builder's `tick`)."""
        return self.features.tick

    def add_news(self, ts: int, headline: str) -> None:
        """Join a headline (event-time ns) to this symbol's windows. Idempotent: the same (ts, headline)
        again changes nothing (a worker restored from a snapshot reads md.news again from its start)."""
        news, item = self._news, (ts, headline)
        i = bisect.bisect_left(news, item)
        if i < len(news) and news[i] == item:
            return
        news.insert(i, item)
        cap = self.config.news_kept
        if len(news) > cap:
            del news[: len(news) - cap]

    def _token_price(self, price: int) -> int:
        ref2 = self._ref2
        if not price or ref2 is None:
            return 0
        return token_price(price, ref2, self.features.tick, self.config.price_clip)

    def _add_token(self, e: Event) -> None:
        i = self._head
        self._kind[i] = e.kind
        self._side[i] = e.side
        self._price[i] = self._token_price(e.price)
        self._size[i] = e.size
        last = self._last_token_ts
        # at most int64's: times are any int64, and a message of 2262 after one of 1700 is further apart
        self._dt[i] = min(e.ts - last, INT64_MAX) if last is not None and e.ts > last else 0
        self._ts[i] = e.ts
        self._last_token_ts = e.ts
        self._head = i + 1 if i + 1 < len(self._kind) else 0
        self._count += 1

    def _add_row(self, row: np.ndarray, ts: int) -> None:
        i = self._row_head
        self._rows[i] = row
        self._row_ts[i] = ts
        self._row_head = i + 1 if i + 1 < len(self._rows) else 0
        self._row_count += 1

    def _reference(self, book: Book) -> int | None:
        """Twice the price tokens are measured from: the mid, else the one best price there is."""
        if self._mid2 is not None:
            return self._mid2
        m2 = book.mid2()  # no mid before this message: the book it left is the best guess
        if m2 is not None:
            return m2
        best = book.best_bid() or book.best_ask()
        return 2 * best[0] if best else None

    def push(self, book: Book, events: Sequence[Event], offset: Any = None) -> Window | None:
        """Add one message (its events already applied to `book`); a Window when one is due."""
        if not events:
            return None
        if not self.venue:
            self.venue, self.symbol = book.venue, book.symbol
        self._ref2 = self._reference(book)  # the mid prevailing before this message
        tokens = 0
        for e in events:
            k = e.kind
            if self._in_snapshot and k != Kind.SNAPSHOT_END:
                continue
            if k in _STATE_KINDS:
                self._in_snapshot = k == Kind.SNAPSHOT_BEGIN
            elif k == Kind.SNAPSHOT_END:
                self._in_snapshot = False
            self._add_token(e)
            tokens += 1
        last = events[-1]
        self._add_row(self.features.update(book, events), last.ts)
        self._volume.message(traded_lots(events))  # all of the message's events, a snapshot's too
        self._mid2 = book.mid2()
        bid, ask = book.best_bid(), book.best_ask()
        self._best = (bid[0] if bid else 0, ask[0] if ask else 0)
        self._last_ts, self._last_seq, self._offset = last.ts, last.seq, offset
        return self._maybe_emit(tokens, last.ts)

    def _maybe_emit(self, tokens: int, ts: int) -> Window | None:
        cfg = self.config
        self._since_emit += tokens
        if self._emit_ts is None:
            self._emit_ts = ts
        due = (cfg.every_events is not None and self._since_emit >= cfg.every_events) or (
            cfg.every_ns is not None and ts - self._emit_ts >= cfg.every_ns
        )
        if not due:
            return None
        self._since_emit, self._emit_ts = 0, ts
        w = self.window()
        self._volume.window_cut()  # after reading it: a window's own horizon has not ended at its cut
        return w

    # ---- output

    def _start_ts(self) -> int:
        starts = []
        if self._count:
            starts.append(int(self._ts[self._head if self._count >= len(self._ts) else 0]))
        if self._row_count:
            starts.append(int(self._row_ts[self._row_head if self._row_count >= len(self._row_ts) else 0]))
        return min(starts) if starts else 0

    def _news_arrays(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # nothing is dropped here: event time runs back on real feeds (Binance's trade and depth streams
        # interleave), and with it a later window's start, so a headline before this window can be inside
        # the next one; dropping it here made a window depend on when window() was read before it
        m = self.config.max_news
        lo = bisect.bisect_left(self._news, (start, ""))
        hi = bisect.bisect_right(self._news, (end, chr(0x10FFFF)))
        inside = self._news[max(lo, hi - m) : hi]
        ts = np.zeros(m, np.int64)
        text = np.empty(m, dtype=object)
        text[:] = ""
        mask = np.zeros(m, dtype=bool)
        if inside:
            ts[m - len(inside) :] = [t for t, _ in inside]
            text[m - len(inside) :] = [h for _, h in inside]
            mask[m - len(inside) :] = True
        return ts, text, mask

    def window(self) -> Window:
        """The window as it stands now (also what `push` emits); reading it changes nothing."""
        n, t = self.config.n_events, self.config.n_rows
        head, count = self._head, self._count
        start = self._start_ts()
        end = self._last_ts if self._last_ts is not None else 0
        news_ts, news_text, news_mask = self._news_arrays(start, end)
        return Window(
            kind=_ordered(self._kind, head, count),
            side=_ordered(self._side, head, count),
            price=_ordered(self._price, head, count),
            size=_ordered(self._size, head, count),
            dt=_ordered(self._dt, head, count),
            event_ts=_ordered(self._ts, head, count),
            mask=_mask(n, count),
            features=_ordered(self._rows, self._row_head, self._row_count),
            row_mask=_mask(t, self._row_count),
            volume_record=self._volume.quantiles(),
            news_ts=news_ts,
            news_text=news_text,
            news_mask=news_mask,
            venue=self.venue,
            symbol=self.symbol,
            ts=end,
            seq=self._last_seq,
            start_ts=start,
            offset=self._offset,
            n_seen=count,
            best_bid=self._best[0],
            best_ask=self._best[1],
        )
