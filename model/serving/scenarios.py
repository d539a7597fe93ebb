"""Scenarios: future order flow sampled from the generative model, applied through the real book code
(issue 5, `megatrading scenarios`; docs/design.md, "Generation").

    state = load_state("itch", path, "AAA", Cut(ts=34_500_000_000_000), horizon=200)
    result = generate_scenarios(OrderFlowForecaster(ckpt), state, horizon=200, n_paths=64, seed=1)
    write_outputs(state, result, out_dir)

1. The start state: the recorded or simulated file is replayed through the venue's feed (the worker's
   decoding and sync) up to a cut (an event time, or a count of records). The symbol's book at the cut
   and its window builder (features and token history exactly as the worker keeps them) are the start;
   the symbol's messages after the cut are the real continuation, kept for comparison.
2. Per path, autoregressively: the model reads the path's current window (its newest event one slot before
   the window's last, a slot the next-event loss trains: READ_BEFORE_LAST); the next event's five fields
   are sampled one after the other, each given those drawn before it, by the checkpoint's event chain
   (model/network/event_chain.py; where it has none fitted, or with `sampling=FACTORIZED`, each from
   its own next-event head), at temperature 1 by default, one seeded torch.Generator for all paths,
   PAD never drawn; the token is decoded relative to the path's own
   book (kind and side exact, price = `level_price(level, mid2, tick)`, size and dt = their buckets'
   medians) into a valid normalized Event, applied to the path's copy of the book and pushed into the
   path's copy of the window builder (the level updates of one instant as one message, as an L2 venue
   sends them: `apply_event`), so features and tokens of later steps follow the generated flow.
   All paths go through the model together: one forward per step.
3. Outputs: fan charts (mid, spread, top-5 depth: median and 10-90% band across paths, the real
   continuation overlaid), a CSV of each path's final state, and the stylized facts (model/sim/stylized.py)
   of the generated flow beside the real continuation's, in markdown.

How a token becomes an Event (the model does not know the book's levels exactly, so a draw can be
inconsistent with the book; such a draw is "not applicable", redrawn from the same distribution up to
`tries` times, then the step is skipped and counted):
- L3 books: ADD -> a new order id at that price (not applicable if it would cross the book); EXECUTE ->
  the order at the front of that level's queue (time priority), size capped at its size; CANCEL -> a
  random resting order at that level, size capped at its size; DELETE -> a random resting order there;
  CHANGE -> a random resting order there resized; TRADE -> a print (book unchanged). No order at that
  price/side: not applicable. REPLACE needs two prices, one token has one: not applicable.
- L2 books: LEVEL_SET directly (size 0 removes a level: not applicable where there is none);
  EXECUTE/TRADE -> a print (the L2 book learns of fills from the level updates that follow them).
- Never: an event that would empty a side of the book (the mid, and so every later price level, would
  be undefined), STATUS, SNAPSHOT_*, CLEAR, or a priced kind without a side or price.

No KV cache: each step recomputes the whole window (N events plus the prefix). That is N times more
work than an incremental decoder, but it is exactly the computation the model was trained and is
served with (features of every row follow the generated book); a first version does not need more.
"""

from __future__ import annotations

import copy
import csv
import itertools
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.network.event_chain import EventChain
from model.network.orderflow import FIELDS, to_batch
from model.network.tokens import PAD, TokenEvent, level_price
from model.sim.stylized import FACTS, series_from_events, stylized_facts
from orderbook.book import Book, BookType, L2Book, L3Book
from orderbook.clock import clock, clock_unit
from orderbook.errors import BookError, FeedError
from orderbook.events import FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, Event, Kind, OrderId, Side
from orderbook.features import TRADE_KINDS, FeatureState, depth_levels
from orderbook.venues import feed_class
from orderbook.windows import WindowBuilder, WindowConfig

DEPTH_LEVELS = 5
JOINT, FACTORIZED = "joint", "factorized"  # how an event's fields are drawn (generate_scenarios)
SAMPLINGS = (JOINT, FACTORIZED)
BANDS = (0.1, 0.5, 0.9)
_AGGRESSOR = {Side.BID: FLAG_AGGRESSOR_ASK, Side.ASK: FLAG_AGGRESSOR_BID}  # a resting bid is hit by a seller
_L3_ORDER_KINDS = frozenset({Kind.EXECUTE, Kind.CANCEL, Kind.DELETE, Kind.CHANGE})
_NO_FLOW = frozenset({Kind.SNAPSHOT_BEGIN, Kind.SNAPSHOT_END, Kind.CLEAR, Kind.STATUS})


# --------------------------------------------------------------------------- the start state


@dataclass(frozen=True)
class Cut:
    """Where the replay stops: after the last message with event time <= `ts`, or after the first
    `records` records of the file (one of the two)."""

    ts: int | None = None
    records: int | None = None

    def reached(self, n_records: int, ts: int) -> bool:
        """Whether a message (the `n_records`-th record, first event time `ts`) lies beyond the cut."""
        if self.records is not None:
            return n_records > self.records
        return self.ts is not None and ts > self.ts


def parse_state(spec: str) -> tuple[str, Path, Cut]:
    """`FMT:PATH@NS` (replay up to that event time) or `FMT:PATH@#N` (the first N records), e.g.
    `itch:data/01022026.NASDAQ_ITCH50@34500000000000`. The format is the venue of orderbook/venues."""
    fmt, sep, rest = spec.partition(":")
    path, at, where = rest.rpartition("@")
    if not sep or not at or not path or not where:
        raise ValueError(f"--from {spec!r}: expected FORMAT:FILE@EVENT_NS or FORMAT:FILE@#RECORDS")
    feed_class(fmt)  # raises for an unknown venue
    try:
        cut = Cut(records=int(where[1:])) if where.startswith("#") else Cut(ts=int(where))
    except ValueError:
        raise ValueError(f"--from {spec!r}: {where!r} is neither an event time in ns nor #records") from None
    return fmt, Path(path), cut


@dataclass
class Metrics:
    """A book's state at one step: twice the mid, the spread (price units), top-5 depth per side."""

    mid2: float
    spread: float
    bid_depth: int
    ask_depth: int

    @classmethod
    def of(cls, book: Book) -> Metrics:
        mid2, spread = book.mid2(), book.spread()
        return cls(
            math.nan if mid2 is None else float(mid2),
            math.nan if spread is None else float(spread),
            depth_levels(book, Side.BID, DEPTH_LEVELS),
            depth_levels(book, Side.ASK, DEPTH_LEVELS),
        )


@dataclass
class StartState:
    """The symbol's book and window builder at the cut, and the real continuation after it.

    `real_events`: the symbol's events after the cut (up to the horizon in tokens); `real_marks`:
    (tokens so far, Metrics) after each continuation message. `resyncs`: how often the state book
    had to be copied from the feed's because applying the feed's events did not reproduce it."""

    venue: str
    symbol: str
    tick: int
    book: Book
    builder: WindowBuilder
    ts: int
    seq: int
    records: int
    real_events: list[Event] = field(default_factory=list)
    real_marks: list[tuple[int, Metrics]] = field(default_factory=list)
    rejected: int = 0
    resyncs: int = 0

    @property
    def start(self) -> Metrics:
        return Metrics.of(self.book)


def copy_book(book: Book) -> Book:
    """An independent copy: L3 orders re-added in time priority (ids, queues and levels as they are)."""
    if isinstance(book, L3Book):
        out = L3Book(book.venue, book.symbol)
        for side, levels in ((Side.BID, book.bids), (Side.ASK, book.asks)):
            for price in levels:
                for oid, size in book.queue(side, price):
                    out.add(oid, side, price, size)
        return out
    l2 = L2Book(book.venue, book.symbol)
    for side, levels in ((Side.BID, book.bids), (Side.ASK, book.asks)):
        for price, size in levels.items():
            l2.set_level(side, price, size)
    return l2


def _same_top(a: Book, b: Book) -> bool:
    """A cheap check that two books agree (best levels; order count on L3)."""
    if a.best_bid() != b.best_bid() or a.best_ask() != b.best_ask() or len(a.bids) != len(b.bids):
        return False
    return not isinstance(a, L3Book) or len(a.orders) == len(b.orders)  # type: ignore[union-attr]


class _StartStateBuilder:
    """Builds a StartState: follows one symbol through the venue feed. The feed's own book cannot be
    stopped between two messages without decoding the next one, so the state is a mirror book fed the
    events the feed applied, frozen at the cut while the feed goes on to give the continuation."""

    def __init__(self, venue: str, symbol: str, cut: Cut, window: WindowConfig, horizon: int) -> None:
        self.venue, self.symbol, self.cut, self.window, self.horizon = venue, symbol, cut, window, horizon
        self.feed = feed_class(venue)()
        self.mirror: Book | None = None
        self.builder: WindowBuilder | None = None
        self.state: StartState | None = None
        self.records = self.rejected = self.resyncs = 0
        self.last_ts = self.last_seq = 0
        self.tokens = 0

    def message(self, raw: bytes, recv_ts: int) -> bool:
        """Apply one record; False once the continuation is long enough."""
        self.records += 1
        try:  # the record's key is the symbol (LOBSTER rows carry none: the file names the book)
            events = self.feed.on_record(self.symbol.encode(), raw, recv_ts)
        except FeedError:
            self.rejected += 1  # the worker dead-letters it; the feed has put its book where the venue says
            events = []
        mine = [e for e in events if e.symbol == self.symbol]
        if not mine:
            return True
        if self.state is None and self.cut.reached(self.records, mine[0].ts):
            self.state = self._freeze()
        if self.state is None:
            self._follow(mine)
            return True
        return self._continue(mine)

    def _follow(self, events: list[Event]) -> None:
        book = self.feed.books[self.symbol]
        if self.mirror is None:
            self.mirror = (
                L3Book(self.venue, self.symbol) if book.book_type is BookType.L3 else L2Book(self.venue, self.symbol)
            )
        try:
            for e in events:
                self.mirror.apply(e)
        except BookError:
            pass  # repaired just below
        if not _same_top(self.mirror, book):
            self.mirror, self.resyncs = copy_book(book), self.resyncs + 1
        if self.builder is None:
            tick = self.feed.window_tick(self.mirror)  # the worker's rule
            if tick is None:
                return
            self.builder = WindowBuilder(self.window, FeatureState(tick=tick), self.venue, self.symbol)
        self.builder.push(self.mirror, events)
        self.last_ts, self.last_seq = events[-1].ts, events[-1].seq

    def _freeze(self) -> StartState:
        if self.builder is None or self.mirror is None:
            raise ValueError(
                f"{self.symbol}: no book with a known tick before the cut (symbol absent, or cut too early)"
            )
        return StartState(self.venue, self.symbol, self.builder.features.tick, self.mirror, self.builder,
                          self.last_ts, self.last_seq, self.records - 1)  # fmt: skip

    def _continue(self, events: list[Event]) -> bool:
        st = self.state
        assert st is not None
        if self.tokens >= self.horizon:
            return False
        flow = [e for e in events if e.kind not in _NO_FLOW]
        st.real_events.extend(flow)
        self.tokens += len(flow)
        if flow:
            st.real_marks.append((self.tokens, Metrics.of(self.feed.books[self.symbol])))
        return self.tokens < self.horizon


def load_state(venue: str, path: str | Path, symbol: str, cut: Cut, window: WindowConfig, horizon: int) -> StartState:
    """Replay `path` (a `venue` capture) up to `cut`: the symbol's start state and its continuation."""
    r = _StartStateBuilder(venue, symbol, cut, window, horizon)
    for rec in feed_class(venue).read_capture(path):
        if not r.message(rec.raw, rec.recv_ts):
            break
    state = r.state or r._freeze()  # the file ended before the cut: the state at its end, no continuation
    state.rejected, state.resyncs = r.rejected, r.resyncs
    return state


# --------------------------------------------------------------------------- one path


@dataclass
class PathState:
    """One sampled path: its own book, window builder and random choices (which order a cancel hits)."""

    book: Book
    builder: WindowBuilder
    rng: np.random.Generator
    next_id: int
    str_ids: bool
    ts: int
    seq: int
    events: list[Event] = field(default_factory=list)
    # the level updates of the message in progress (sharing one event time), the builder before it and the
    # mid it prices from: an L2 venue sends a book's level updates of one instant as one message
    message: list[Event] = field(default_factory=list)
    before: WindowBuilder | None = None
    message_ref2: int | None = None
    skipped: int = 0
    redraws: int = 0
    metrics: list[Metrics] = field(default_factory=list)

    def new_id(self) -> OrderId:
        self.next_id += 1
        return f"gen-{self.next_id}" if self.str_ids else self.next_id


def fresh_path(state: StartState, seed: int, index: int) -> PathState:
    """Path `index` of a draw seeded `seed`: its own copies of the start's book and window builder, its own
    random stream, new order ids above the book's."""
    book = copy_book(state.book)
    ids = list(book.orders) if isinstance(book, L3Book) else []
    ints = [i for i in ids if isinstance(i, int)]
    path = PathState(
        book=book,
        builder=copy.deepcopy(state.builder),  # ring buffers, feature state: everything the window reads
        rng=np.random.default_rng([seed, index]),
        next_id=max(ints, default=0),
        str_ids=len(ints) < len(ids),
        ts=state.ts,
        seq=state.seq,
    )
    path.metrics.append(Metrics.of(book))
    return path


def _reference2(book: Book) -> int | None:
    """Twice the price token levels are measured from (orderbook.windows.WindowBuilder's rule)."""
    m2 = book.mid2()
    if m2 is not None:
        return m2
    best = book.best_bid() or book.best_ask()
    return 2 * best[0] if best else None


def _crosses(book: Book, side: Side, price: int) -> bool:
    if side == Side.BID:
        ask = book.best_ask()
        return ask is not None and price >= ask[0]
    bid = book.best_bid()
    return bid is not None and price <= bid[0]


def _empties_side(book: Book, side: Side, price: int, removes_level: bool) -> bool:
    return removes_level and len(book.side(side)) == 1 and price in book.side(side)


def realize(path: PathState, tok: TokenEvent, tick: int) -> Event | None:
    """The token as an Event valid on the path's book, or None where it does not apply (module docstring)."""
    book, kind, side = path.book, tok.kind, tok.side
    ref2 = path.message_ref2 if _joins_message(path, kind, tok.dt) else _reference2(book)
    if kind in _NO_FLOW or tok.price is None or ref2 is None:
        return None
    price = level_price(tok.price, ref2, tick)
    if price <= 0:
        return None
    base = dict(venue=book.venue, symbol=book.symbol, ts=path.ts + max(tok.dt, 0), seq=path.seq + 1, price=price)
    if kind in TRADE_KINDS and (kind == Kind.TRADE or isinstance(book, L2Book)):
        return Event(kind, side=side, size=max(1, tok.size), flags=_AGGRESSOR.get(side, 0), **base)  # type: ignore[arg-type]
    if side not in (Side.BID, Side.ASK):
        return None
    if isinstance(book, L2Book):
        return _l2_event(book, kind, side, price, tok.size, base)
    return _l3_event(path, kind, side, price, tok.size, base)


def _l2_event(book: L2Book, kind: Kind, side: Side, price: int, size: int, base: dict[str, Any]) -> Event | None:
    if kind != Kind.LEVEL_SET:
        return None
    if size <= 0:
        if price not in book.side(side) or _empties_side(book, side, price, True):
            return None
    elif _crosses(book, side, price):
        return None
    return Event(Kind.LEVEL_SET, side=side, size=max(size, 0), **base)


def _l3_event(path: PathState, kind: Kind, side: Side, price: int, size: int, base: dict[str, Any]) -> Event | None:
    book = path.book
    assert isinstance(book, L3Book)
    if kind == Kind.ADD:
        if _crosses(book, side, price):
            return None
        return Event(Kind.ADD, side=side, size=max(1, size), order_id=path.new_id(), **base)
    if kind not in _L3_ORDER_KINDS:
        return None
    queue = book.queue(side, price)
    if not queue:
        return None
    # executions take the front of the queue (price-time priority); cancels hit any resting order
    oid, resting = queue[0] if kind == Kind.EXECUTE else queue[int(path.rng.integers(len(queue)))]
    size = resting if kind == Kind.DELETE else min(max(1, size), resting)
    if kind != Kind.CHANGE and _empties_side(book, side, price, size >= resting and len(queue) == 1):
        return None
    flags = _AGGRESSOR[side] if kind == Kind.EXECUTE else 0
    return Event(kind, side=side, size=size, order_id=oid, flags=flags, **base)


def _joins_message(path: PathState, kind: Kind, dt: int) -> bool:
    """Whether an event of `kind`, `dt` ns after the path's last one, belongs to the message in progress: a
    level update at the same instant as the level updates before it."""
    return kind == Kind.LEVEL_SET and dt <= 0 and bool(path.message)


def messages(events: Sequence[Event]) -> list[list[Event]]:
    """Recorded or generated events grouped into messages as a path groups them (`_joins_message`): the
    level updates of one instant together, any other event alone."""
    out: list[list[Event]] = []
    for (level, _), group in itertools.groupby(events, key=lambda e: (e.kind == Kind.LEVEL_SET, e.ts)):
        run = list(group)
        out += [run] if level else [[e] for e in run]
    return out


def apply_event(path: PathState, event: Event) -> None:
    """Apply a realized event to the path's book and window history. Level updates at one instant make one
    message, as the venue sends them (one feature row, the tokens priced from the mid before it): the
    message in progress is pushed again with the new one, onto the builder as it was before the message.
    Pushed one by one, each update was a message of its own to the features (a message rate tens of times
    the venue's), and the network read its windows as a book whose flow stops after every update."""
    if _joins_message(path, event.kind, event.ts - path.ts):
        path.book.apply(event)
        path.message.append(event)
        assert path.before is not None
        path.builder = copy.deepcopy(path.before)
        path.builder.push(path.book, path.message)
    else:
        if event.kind == Kind.LEVEL_SET:  # may start a message of several
            path.before, path.message, path.message_ref2 = copy.deepcopy(path.builder), [event], _reference2(path.book)
        else:
            path.before, path.message, path.message_ref2 = None, [], None
        path.book.apply(event)
        path.builder.push(path.book, [event])
    path.ts, path.seq = event.ts, event.seq
    path.events.append(event)


# --------------------------------------------------------------------------- generation


@dataclass
class ScenarioResult:
    """The paths after `horizon` steps; per-step arrays are (paths, horizon + 1), step 0 the start."""

    paths: list[PathState]
    horizon: int
    seed: int
    tick: int
    device: str
    sampling: str = FACTORIZED  # how the fields of an event were drawn (generate_scenarios)

    def series(self, name: str) -> np.ndarray:
        """`mid` (ticks moved since the start), `spread` (ticks) or `depth` (top-5 bid + ask lots)."""
        return np.array([[_metric(m, name, self.tick, p.metrics[0]) for m in p.metrics] for p in self.paths])

    @property
    def skipped(self) -> np.ndarray:
        return np.array([p.skipped for p in self.paths])


def _metric(m: Metrics, name: str, tick: int, start: Metrics) -> float:
    if name == "mid":
        return (m.mid2 - start.mid2) / (2 * tick)
    if name == "spread":
        return m.spread / tick
    return float(m.bid_depth + m.ask_depth)


def _draw(
    logits: dict[str, torch.Tensor],
    tries: int,
    temperature: float,
    gen: torch.Generator,
    chain: EventChain | None = None,
    state: torch.Tensor | None = None,
) -> dict[str, np.ndarray]:
    """`tries` draws per path of every field: field -> (paths, tries) ids; PAD never drawn. With `chain`
    (and the paths' newest states `state`, (P, d)), each draw's fields one after the other, each given
    those drawn before it (model/network/event_chain.py); without, every field on its own."""

    def scaled(lg: torch.Tensor) -> torch.Tensor:  # at the temperature, PAD never drawn (a copy: the input kept)
        lg = lg.float().cpu() / temperature
        lg[..., PAD] = -math.inf
        return lg

    def draw(lg: torch.Tensor) -> torch.Tensor:  # (..., V) logits -> (...) ids
        lg = scaled(lg)
        flat = lg.reshape(-1, lg.shape[-1]).softmax(-1)
        return torch.multinomial(flat, 1, generator=gen).view(lg.shape[:-1])

    if chain is not None and state is not None:
        h = state.float().cpu()[:, None].expand(-1, tries, -1)
        base = {f: logits[f].float().cpu()[:, None].expand(-1, tries, -1) for f in FIELDS}
        with torch.inference_mode():
            return {f: v.numpy() for f, v in chain.sample(h, base, draw).items()}
    return {
        f: torch.multinomial(scaled(logits[f]).softmax(-1), tries, replacement=True, generator=gen).numpy()
        for f in FIELDS
    }


def _decode(forecaster: Any, draws: dict[str, np.ndarray], b: int, t: int) -> TokenEvent | None:
    try:
        return forecaster.tokenizer.decode(*([int(draws[f][b, t])] for f in FIELDS))[0]
    except ValueError:  # a kind id beyond orderbook.events.Kind: never applicable
        return None


# Where a path's newest event is read: one slot before the window's last, that one left empty. The next-event
# loss has no target at the last slot (the event after it is outside the window), so the next-event heads and
# the event chain were never fitted on its state, which only the window heads train (and which always holds a
# message's last event: windows are cut at message ends). Read in the last slot, inside the real level-update
# messages of USD-M BTCUSDT (@#20000) the network gave another update next 0.77, and generated messages ran 2-6
# updates where the real ones carry 33; one slot before it, 0.99, and 22-28 updates
# (bench/generation_context_probe.py). Attention is causal: no event sees the empty slot after it.
READ_BEFORE_LAST = 1


def read_earlier(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The windows' tokens moved READ_BEFORE_LAST slots towards the oldest, the slots after the newest empty."""
    k = READ_BEFORE_LAST
    if not k:
        return arrays
    out = dict(arrays)
    for key in (*FIELDS, "mask"):
        out[key] = np.zeros_like(arrays[key])
        out[key][:, :-k] = arrays[key][:, k:]
    return out


@torch.inference_mode()
def next_logits(forecaster: Any, paths: Sequence[PathState]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One forward for every path: the next-event logits at each path's newest event, field -> (P, V), and
    the network's state there (P, d), the event chain's input; the newest event read READ_BEFORE_LAST slots
    before the window's last."""
    arrays = read_earlier(forecaster.arrays([p.builder.window() for p in paths]))
    batch = to_batch(arrays, forecaster.device)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=forecaster.device.type == "cuda"):
        return forecaster.model.next_event(batch, -1 - READ_BEFORE_LAST)


def generate_scenarios(
    forecaster: Any,
    state: StartState,
    horizon: int,
    n_paths: int,
    seed: int = 0,
    temperature: float = 1.0,
    tries: int = 8,
    on_step: Callable[[int, list[PathState]], None] | None = None,
    sampling: str = JOINT,
) -> ScenarioResult:
    """Sample `n_paths` paths of `horizon` steps from `state` (`forecaster`: a model.serving.orderflow.
    OrderFlowForecaster). A step applies one event per path, or skips it after `tries` draws that do
    not apply. `sampling`: JOINT draws an event's fields one given another by the checkpoint's event
    chain (FACTORIZED where it has none fitted), FACTORIZED each on its own. Reproducible: the same seed,
    state, model, n_paths and sampling give the same paths."""
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling {sampling!r}: use one of {SAMPLINGS}")
    chain = forecaster.model.event_chain
    chain = chain if sampling == JOINT and bool(chain.fitted) else None
    chain_cpu = copy.deepcopy(chain).float().cpu() if chain is not None else None  # the draws are on the CPU
    gen = torch.Generator().manual_seed(seed)
    paths = [fresh_path(state, seed, i) for i in range(n_paths)]
    for step in range(1, horizon + 1):
        logits, newest = next_logits(forecaster, paths)
        draws = _draw(logits, tries, temperature, gen, chain_cpu, newest)
        for b, path in enumerate(paths):
            _step(forecaster, path, draws, b, tries, state.tick)
        if on_step is not None:
            on_step(step, paths)
    return ScenarioResult(paths, horizon, seed, state.tick, str(forecaster.device),
                          JOINT if chain is not None else FACTORIZED)  # fmt: skip


def _step(forecaster: Any, path: PathState, draws: dict[str, np.ndarray], b: int, tries: int, tick: int) -> None:
    for t in range(tries):
        tok = _decode(forecaster, draws, b, t)
        event = realize(path, tok, tick) if tok is not None else None
        if event is not None:
            apply_event(path, event)
            path.redraws += t
            break
    else:
        path.skipped += 1
        path.redraws += tries
    path.metrics.append(Metrics.of(path.book))


# --------------------------------------------------------------------------- book validity


def check_book(book: Book) -> list[str]:
    """What is wrong with a book (empty list: valid): crossed, non-positive sizes, and on L3 books
    level totals that are not the sum of their queue, orders missing from or misplaced in queues."""
    problems = []
    if book.crossed():
        problems.append(f"crossed: bid {book.best_bid()} >= ask {book.best_ask()}")
    for side, levels in ((Side.BID, book.bids), (Side.ASK, book.asks)):
        for price, size in levels.items():
            if size <= 0:
                problems.append(f"{side.name} level {price} has size {size}")
            if isinstance(book, L3Book):
                queue = book.queue(side, price)
                if sum(s for _, s in queue) != size:
                    problems.append(f"{side.name} level {price}: total {size} != queue sum")
                for oid, s in queue:
                    o = book.orders[oid]
                    if s <= 0 or o.side != side or o.price != price:
                        problems.append(f"order {oid} misplaced or empty in the {side.name} {price} queue")
    if isinstance(book, L3Book):
        queued = sum(len(book.queue(s, p)) for s, lv in ((Side.BID, book.bids), (Side.ASK, book.asks)) for p in lv)
        if queued != len(book.orders):
            problems.append(f"{len(book.orders)} orders but {queued} in queues")
    return problems


# --------------------------------------------------------------------------- outputs


def _with_start(book: Book, events: Sequence[Event], seq: int) -> list[Event]:
    """The start book as a snapshot (state, not flow, for model/sim/stylized.py), then `events`."""
    v, s = book.venue, book.symbol
    snap = [Event(Kind.SNAPSHOT_BEGIN, v, s, events[0].ts if events else 0, seq)]
    for side, levels in ((Side.BID, book.bids), (Side.ASK, book.asks)):
        for price, size in levels.items():
            if isinstance(book, L3Book):
                snap += [
                    Event(Kind.ADD, v, s, snap[0].ts, seq, side, price, q, oid) for oid, q in book.queue(side, price)
                ]
            else:
                snap.append(Event(Kind.LEVEL_SET, v, s, snap[0].ts, seq, side, price, size))
    snap.append(Event(Kind.SNAPSHOT_END, v, s, snap[0].ts, seq))
    return snap + list(events)


def flow_facts(book: Book, events: Sequence[Event]) -> dict[str, float]:
    """Stylized facts of `events` applied from `book` (model/sim/stylized.py)."""
    first_seq = (events[0].seq - 1) if events else 0
    series = series_from_events(_with_start(book, events, first_seq), book.book_type, source="scenario")
    s = series.get(book.symbol)
    return stylized_facts(s) if s is not None else {}


def facts_table(state: StartState, result: ScenarioResult) -> list[str]:
    """Markdown rows: each fact, the median over generated paths (and its 10-90% range), the real one."""
    per_path = [flow_facts(state.book, p.events) for p in result.paths]
    real = flow_facts(state.book, state.real_events) if state.real_events else {}
    lines = [
        "| fact | generated: median over paths | generated: 10-90% | real continuation |",
        "| --- | --- | --- | --- |",
    ]
    for fact in FACTS:
        vals = np.array([f.get(fact.key, math.nan) for f in per_path], dtype=float)
        vals = vals[np.isfinite(vals)]
        med = _fmt(float(np.median(vals))) if len(vals) else "n/a"
        band = f"{_fmt(float(np.quantile(vals, 0.1)))} .. {_fmt(float(np.quantile(vals, 0.9)))}" if len(vals) else "n/a"
        lines.append(
            f"| {fact.label.replace('|', chr(92) + '|')} | {med} | {band} | {_fmt(real.get(fact.key, math.nan))} |"
        )
    return lines


def _fmt(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.3g}"


def real_curve(state: StartState, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The continuation's (tokens, value) points, starting at (0, start)."""
    start = state.start
    xs = [0] + [n for n, _ in state.real_marks]
    ys = [_metric(start, name, state.tick, start)] + [_metric(m, name, state.tick, start) for _, m in state.real_marks]
    return np.array(xs), np.array(ys)


_LABELS = {"mid": "mid move (ticks)", "spread": "spread (ticks)", "depth": "top-5 depth, bid + ask (lots)"}


def fan_chart(state: StartState, result: ScenarioResult, name: str, path: Path) -> Path:
    """One PNG: the median and the 10-90% band across paths by step, the real continuation overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = result.series(name)
    steps = np.arange(values.shape[1])
    with np.errstate(all="ignore"):
        lo, med, hi = (np.nanquantile(values, q, axis=0) for q in BANDS)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.fill_between(steps, lo, hi, alpha=0.3, label=f"generated 10-90% ({len(result.paths)} paths)")
    ax.plot(steps, med, label="generated median")
    if state.real_marks:
        xs, ys = real_curve(state, name)
        ax.step(xs, ys, where="post", color="black", linewidth=1.0, label="real continuation")
    ax.set_xlabel("events after the start")
    ax.set_ylabel(_LABELS[name])
    finite = values[np.isfinite(values)]
    if name == "depth" and finite.size and finite.min() > 0:
        # a few paths that pile up depth flatten the band of all the others on a linear axis
        ax.set_yscale("log")
    ax.set_title(f"{state.venue}:{state.symbol} from {clock(state.ts)} ({clock_unit(state.ts)})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


CSV_COLUMNS = (
    *("path", "events", "skipped", "redraws", "final_ts", "best_bid", "best_ask", "mid_move_ticks", "spread_ticks"),
    *("bid_depth5", "ask_depth5", "adds", "cancels", "executions", "trades", "traded_lots"),
)


def final_rows(result: ScenarioResult) -> list[dict[str, Any]]:
    """One row per path: its final book and what its flow held."""
    rows = []
    mid, spread = result.series("mid")[:, -1], result.series("spread")[:, -1]
    for i, p in enumerate(result.paths):
        kinds = Counter(e.kind for e in p.events)
        bid, ask, last = p.book.best_bid(), p.book.best_ask(), p.metrics[-1]
        rows.append({
            "path": i, "events": len(p.events), "skipped": p.skipped, "redraws": p.redraws, "final_ts": p.ts,
            "best_bid": bid[0] if bid else "", "best_ask": ask[0] if ask else "",
            "mid_move_ticks": mid[i], "spread_ticks": spread[i], "bid_depth5": last.bid_depth,
            "ask_depth5": last.ask_depth, "adds": kinds[Kind.ADD] + kinds[Kind.LEVEL_SET],
            "cancels": kinds[Kind.CANCEL] + kinds[Kind.DELETE] + kinds[Kind.CHANGE],
            "executions": kinds[Kind.EXECUTE], "trades": kinds[Kind.TRADE],
            "traded_lots": sum(e.size for e in p.events if e.kind in TRADE_KINDS),
        })  # fmt: skip
    return rows


def write_outputs(
    state: StartState, result: ScenarioResult, out_dir: str | Path, model_name: str = ""
) -> dict[str, Path]:
    """fan_mid.png, fan_spread.png, fan_depth.png, paths.csv and scenarios.md in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {name: fan_chart(state, result, name, out / f"fan_{name}.png") for name in ("mid", "spread", "depth")}
    with open(out / "paths.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(final_rows(result))
    files["csv"] = out / "paths.csv"
    files["markdown"] = out / "scenarios.md"
    files["markdown"].write_text(_markdown(state, result, model_name))
    return files


def _markdown(state: StartState, result: ScenarioResult, model_name: str) -> str:
    n_events = sum(len(p.events) for p in result.paths)
    kinds = Counter(e.kind.name for p in result.paths for e in p.events)
    real_kinds = Counter(e.kind.name for e in state.real_events)
    mix = ", ".join(f"{k} {v / max(n_events, 1):.0%}" for k, v in kinds.most_common())
    real_mix = ", ".join(f"{k} {v / max(len(state.real_events), 1):.0%}" for k, v in real_kinds.most_common())
    start = state.start
    lines = [
        f"# Scenarios: {state.venue}:{state.symbol}",
        "",
        f"- model: {model_name or 'n/a'} on {result.device}; seed {result.seed}; an event's fields drawn "
        f"{'jointly (the event chain)' if result.sampling == JOINT else 'each on its own (factorized)'}",
        f"- start: after {state.records} records, event time {state.ts} ns; mid {start.mid2 / 2:g}, "
        f"spread {start.spread / state.tick:g} ticks, top-5 depth {start.bid_depth} / {start.ask_depth} lots "
        f"(tick {state.tick}); state-book resyncs {state.resyncs}, rejected records {state.rejected}",
        f"- {len(result.paths)} paths x {result.horizon} steps: {n_events} events applied, "
        f"{int(result.skipped.sum())} steps skipped (no applicable draw)",
        f"- generated kind mix: {mix or 'none'}",
        f"- real continuation: {len(state.real_events)} events ({real_mix or 'none: the file ends at the cut'})",
        "",
        "Fan charts: fan_mid.png, fan_spread.png, fan_depth.png. Final states: paths.csv.",
        "",
        "## Stylized facts (model/sim/stylized.py), generated flow beside the real continuation",
        "",
        "Short horizons leave many facts unmeasurable (n/a): they need at least 30 returns or trades.",
        "",
        *facts_table(state, result),
    ]
    return "\n".join(lines) + "\n"


def window_config(extra: dict[str, Any]) -> WindowConfig:
    """The window shapes a checkpoint was trained on (its config.json `window`), else the defaults."""
    w = extra.get("window") or {}
    keys = ("n_events", "n_rows", "max_news", "price_clip", "every_events")
    return WindowConfig(**{k: w[k] for k in keys if k in w})
