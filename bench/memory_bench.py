"""Memory per symbol of a worker's state: book, feed state, features and window rings, at 10k symbols.

Issue 12: "Memory per symbol for a book, its features and its window rings, at 10k symbols in one
worker." One process holds `--symbols` (10,000) symbols of one venue in one real `VenueWindows`
(orderbook/venue_windows.py, the worker's path; WindowConfig = `Settings().window`, the worker's
defaults), fed real messages until every symbol has its book, its FeatureState and its
WindowBuilder with full rings (N event tokens and T feature rows). Two venues, each in a process
of its own:

- binance (L2Book): the six real captures of ../shared/data/binance-hftbacktest. Each capture is
  replayed through a VenueWindows up to the message after which its rings are full (the buffered
  diffs, the REST snapshot of 1,000 levels a side, the diffs, tickers and trades after it); symbol i
  replays capture i mod 6 with its symbol rewritten in the JSON (`pipeline_bench.renamer`), so each
  symbol has a real book of a real capture's depth. The decoder's string -> int cache is emptied
  before each symbol: copies of one capture would otherwise share every price and size int object,
  which distinct symbols do not.
- itch (L3Book): books of the market simulator (model/sim/engine.py, queue-reactive flow, an
  equilibrium of about 240 resting orders per book): `--itch-templates` symbols simulated over the
  first `--itch-minutes` of the day and written as ITCH 5.0 (model/sim/writers.py). A template is
  one symbol's stock directory message, its resting orders at a cut point sent as adds (arrival
  order, so each level's FIFO queue is the simulator's), then its last `--itch-tail` messages of
  real flow. Symbol i replays template i mod T under its own stock locate and name.

Measures, each in a child process of its own (started by this script, `--jobs` at a time):
- RSS growth: /proc/self/statm resident pages before and after building the N symbols (gc'd), no
  tracemalloc running (its own tables would count). Once with the whole VenueWindows, once with the
  feed alone (`vw.feed.on_record`, the same messages): the book + feed state, and by difference the
  features + window rings.
- tracemalloc: current traced bytes (gc'd) after building `--traced-symbols` symbols (tracemalloc
  slows the build about 8x: per-symbol bytes do not depend on N, so a sample of the same mix gives
  them), then split by freeing the parts in turn and measuring what each frees: every builder's
  FeatureState, the builders (their numpy rings), the books, the rest of the feed (`reset`: sync,
  stats, tickers, locates); what is left is shared (the decoder's cache, the stats counters).
  Numpy's ring buffers are traced (numpy reports its allocations to tracemalloc).
- native: the worker's default path (streams/pipeline.py: `native_choice(venue)`, where the module is
  built and the crate decodes the venue) is another class, `orderbook.native.venue_windows.
  NativeVenueWindows`, fed a batch of records at a time. The same N symbols, the same messages, each
  symbol's messages one `process` batch, RSS growth only (tracemalloc does not see what the Rust
  extension allocates), each in a child process (the parent never imports the module: a half-built
  extension fails its children, which drops the native column, not the run). Three runs: the whole
  NativeVenueWindows at N; the native feed alone (`orderbook.native.BinanceFeed` / `ItchFeed`,
  `on_messages`: its books and sync state) at `--feed-symbols`; the same with the follower books but
  no builders (NativeVenueWindows keeps a second, native book per symbol that its builders read as it
  stood after each message; here `_builder` makes none, so the followers get every event and nothing
  is folded) at `--feed-symbols`. By difference: book + feed state, the follower book, features +
  window rings, the last like for like with the Python column's. And in the whole run, the C heap's
  bytes in use (glibc mallinfo2) of a sample of builders as built and of the same builders restored
  from their own `__getstate__`: what a builder keeps beyond its state (grown scratch and containers).
- binance depth: each capture replayed whole, the levels its book holds at its end.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a plain script: the working tree, installed or not

from columns import print_columns  # noqa: E402
from pipeline_bench import renamer  # noqa: E402

from model.sim.engine import SEC, SimConfig  # noqa: E402
from model.sim.run import simulate  # noqa: E402
from model.sim.writers import itch_messages  # noqa: E402
from orderbook.errors import FeedError  # noqa: E402
from orderbook.events import Kind, Side  # noqa: E402
from orderbook.venue_windows import VenueWindows  # noqa: E402
from orderbook.venues import binance as binance_module  # noqa: E402
from orderbook.venues.binance import BinanceFeed  # noqa: E402
from orderbook.venues.itch import _STOCK_OFFSET, ItchFeed, encode  # noqa: E402  # see retarget
from orderbook.windows import WindowBuilder, WindowConfig  # noqa: E402
from streams.config import Settings  # noqa: E402

BINANCE = "binance-hftbacktest"
VENUES = ("binance", "itch")
NATIVE_MODULE = "orderbook.native"
# orderbook.native's switch (native.ENV; its enabled() is on unless "0"), set by the parent for every
# child: "0" for the reference columns, "1" for the native ones (whose children then ask the worker's
# own `native_choice(venue)`: where it declines, the column is dropped with its reason).
NATIVE_ENV = "MT_NATIVE"
PAGE = os.sysconf("SC_PAGE_SIZE")
RESULT = "RESULT "  # the child's last stdout line: RESULT <json>
HEAP_SAMPLE = 120  # native builders whose malloc bytes are read as built and as restored from their state


# ---------------------------------------------------------------- measuring


def rss_bytes() -> int:
    """Resident set size from /proc/self/statm (pages resident, field 2)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def traced_bytes() -> int:
    """tracemalloc's current traced bytes once garbage is collected (cycles freed, not pending)."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def rings_full(builder: WindowBuilder) -> bool:
    """Whether a builder holds N tokens and T rows: the public window's masks, all real slots."""
    w = builder.window()
    return bool(w.mask.all() and w.row_mask.all())


# ---------------------------------------------------------------- templates (built once, in the parent)


@dataclass
class Template:
    """One symbol's messages, replayed under another name by each copy."""

    source: str  # the capture file, or the simulated symbol
    symbol: str  # the symbol (binance) or stock (itch) the messages name
    messages: list[bytes]
    info: dict[str, Any] = field(default_factory=dict)  # what the workload table prints


def binance_templates(folder: Path, window: WindowConfig) -> list[Template]:
    """Each capture's messages up to the one after which its rings are full, with the depth they give."""
    out = []
    for path in sorted(folder.glob("*.gz")):
        vw = VenueWindows("binance", window)
        kept: list[bytes] = []
        info: dict[str, Any] = {}
        symbol = ""
        for rec in BinanceFeed.read_capture(path):
            symbol = vw.feed.key(rec.raw)
            kept.append(rec.raw)
            done = vw.process(symbol.encode(), rec.raw)
            if done.reject is not None:
                sys.exit(f"memory_bench: {path.name} message {len(kept)} rejected: {done.reject.error}")
            book = vw.feed.books.get(symbol)
            if "after_snapshot" not in info and any(e.kind == Kind.SNAPSHOT_END for e in done.events):
                kinds = [e.kind for e in done.events]
                # the REST body's own rows (both sides): the LEVEL_SETs before SNAPSHOT_END; the
                # buffered diffs the feed applies after it follow
                info["snapshot_levels"] = kinds[: kinds.index(Kind.SNAPSHOT_END)].count(Kind.LEVEL_SET)
                info["after_snapshot"] = [len(book.bids), len(book.asks)]  # with the buffered diffs
            builder = vw.builders.get(symbol)
            if builder is not None and "after_snapshot" in info and rings_full(builder):
                break
        if len(vw.feed.books) != 1:
            sys.exit(f"memory_bench: {path.name} holds {len(vw.feed.books)} symbols; a template renames one")
        book = vw.feed.books[symbol]
        info["after_prefix"] = [len(book.bids), len(book.asks)]
        out.append(Template(path.name.removesuffix(".gz"), symbol, kept, info))
    if not out:
        sys.exit(f"memory_bench: no capture in {folder}")
    return out


def itch_templates(count: int, minutes: float, tail: int, seed: int) -> list[Template]:
    """Simulated books: per symbol its R message, its resting orders at the cut as adds, its last `tail` messages."""
    result = simulate(SimConfig(n_symbols=count, duration_ns=int(minutes * 60 * SEC), seed=seed))
    msgs = list(itch_messages(result))
    mine: dict[str, list[int]] = {}
    for i, m in enumerate(msgs):
        if m.symbol:
            mine.setdefault(m.symbol, []).append(i)
    short = [s for s, idx in mine.items() if len(idx) < tail + 2]
    if short:
        sys.exit(f"memory_bench: {short} have fewer than {tail + 2} messages; simulate more minutes")
    cut = {idx[-tail]: s for s, idx in mine.items()}  # the first message of each symbol's tail
    feed = ItchFeed()
    resting: dict[str, list[bytes]] = {}
    info: dict[str, dict[str, Any]] = {}
    for i, m in enumerate(msgs):
        symbol = cut.get(i)
        if symbol is not None:  # the book before its tail: re-sent as adds, oldest first (FIFO kept)
            book = feed.books[symbol]
            ts, locate = m.ts, int.from_bytes(m.raw[1:3], "big")
            resting[symbol] = [
                encode(
                    "A",
                    locate=locate,
                    timestamp=ts,
                    order_ref=ref,
                    side="B" if o.side == Side.BID else "S",
                    shares=o.size,
                    stock=symbol,
                    price=o.price,
                )
                for ref, o in book.orders.items()
            ]
            span = msgs[mine[symbol][-1]].ts - ts
            info[symbol] = {"orders": len(book.orders), "levels": [len(book.bids), len(book.asks)],
                            "tail": tail, "tail_s": span / SEC}  # fmt: skip
        feed.on_message(m.raw)
    out = []
    for symbol, idx in mine.items():
        directory = msgs[idx[0]].raw  # R: the stock's locate and name
        tail_msgs = [msgs[i].raw for i in idx[-tail:]]
        out.append(Template(symbol, symbol, [directory, *resting[symbol], *tail_msgs], info[symbol]))
    return out


def write_templates(path: Path, templates: dict[str, list[Template]]) -> None:
    """JSON with the messages in hex: the children read it before their baseline, nothing else."""
    doc = {
        venue: [{**asdict(t), "messages": [m.hex() for m in t.messages]} for t in ts] for venue, ts in templates.items()
    }
    path.write_text(json.dumps(doc))


def read_templates(path: Path, venue: str) -> list[Template]:
    doc = json.loads(path.read_text())[venue]
    return [Template(t["source"], t["symbol"], [bytes.fromhex(m) for m in t["messages"]], t["info"]) for t in doc]


# ---------------------------------------------------------------- the copies (in a child)


def retarget(raw: bytes, locate: bytes, stock: bytes) -> bytes:
    """An ITCH message moved to another stock: its locate, and its stock field where the type has one
    (`_STOCK_OFFSET`: the feed's own table of where each type carries its stock)."""
    off = _STOCK_OFFSET.get(chr(raw[0]))
    if off is None:
        return raw[:1] + locate + raw[3:]
    return raw[:1] + locate + raw[3:off] + stock + raw[off + 8 :]


def copies(venue: str, templates: Sequence[Template], n: int) -> Iterator[tuple[bytes, list[bytes]]]:
    """(key, messages) of symbol 0..n-1: template i mod len(templates) under a name of its own."""
    if venue == "itch" and n > 0xFFFF:
        sys.exit(f"memory_bench: ITCH stock locates are 2 bytes: at most 65,535 symbols, not {n:,}")
    for i in range(n):
        t = templates[i % len(templates)]
        if venue == "binance":
            symbol = f"{t.symbol}_{i:05d}"
            rename = renamer(t.symbol, symbol)
            # distinct symbols print distinct prices: without this every copy would share the int
            # objects the cache returns for the template's strings, and the books look smaller
            binance_module._FIXED_CACHE.clear()
            yield symbol.encode(), [rename(m) for m in t.messages]
        else:
            stock = f"M{i:07d}"
            locate, field8 = (i + 1).to_bytes(2, "big"), stock.encode().ljust(8)
            yield stock.encode(), [retarget(m, locate, field8) for m in t.messages]


def build(vw: VenueWindows, venue: str, templates: Sequence[Template], n: int, feed_only: bool) -> None:
    """n symbols into `vw`: each message through `process` (or the feed alone); a reject stops the run,
    since the state would then not be the one this bench says it measures."""
    for key, msgs in copies(venue, templates, n):
        for raw in msgs:
            if feed_only:
                vw.feed.on_record(key, raw)  # a FeedError propagates: the same stop
                continue
            done = vw.process(key, raw)
            if done.reject is not None:
                sys.exit(f"memory_bench: {key.decode()} rejected a message: {done.reject.error}")


def itch_prelude(vw: VenueWindows) -> None:
    """The day's system events, sent once before any symbol (they are not per-symbol state)."""
    for code in "OSQ":
        vw.process(None, encode("S", timestamp=34_200 * SEC, event_code=code))


def describe(vw: VenueWindows) -> dict[str, Any]:
    """What was built (read after the measurement: the ring check allocates)."""
    books = list(vw.feed.books.values())
    first = books[0]
    out: dict[str, Any] = {
        "book_type": f"{type(first).__module__}.{type(first).__qualname__}",
        "books": len(books),
        "levels": [sum(len(b.bids) for b in books) / len(books), sum(len(b.asks) for b in books) / len(books)],
        "builders": len(vw.builders),
        "rings_full": sum(rings_full(b) for b in vw.builders.values()),
    }
    orders = [len(o) for o in (getattr(b, "orders", None) for b in books) if o is not None]
    if orders:
        out["orders"] = sum(orders) / len(orders)
    return out


def split(vw: VenueWindows, total: int) -> dict[str, int]:
    """Free the parts in turn; what each frees is its share (bytes, all symbols together)."""
    parts: dict[str, int] = {}
    now = traced_bytes()
    for builder in vw.builders.values():
        builder.features = None  # type: ignore[assignment]  # the builder is dropped next: nothing reads it
    parts["features"], now = now - (after := traced_bytes()), after
    vw.builders.clear()
    parts["rings"], now = now - (after := traced_bytes()), after
    vw.feed.books.clear()
    parts["book"], now = now - (after := traced_bytes()), after
    vw.reset()  # a fresh feed: the syncs, stats, tickers, locates of every symbol go
    parts["feed"], now = now - (after := traced_bytes()), after
    parts["shared"] = total - sum(parts.values())
    return parts


def by_file(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, top: int = 8) -> list[tuple[str, int]]:
    """Where the growth was allocated: the file of the allocating line (an int parsed by the decoder
    and kept by the book counts for the decoder's file)."""
    stats = after.compare_to(before, "filename")
    rows = [(Path(s.traceback[0].filename).name, s.size_diff) for s in stats if s.size_diff > 0]
    return sorted(rows, key=lambda r: -r[1])[:top]


def child(args: argparse.Namespace) -> None:
    """One measurement in this process: venue, mode, symbols, path (python: rss, feed, traced, depth; native:
    rss, feed, followers)."""
    venue, mode, n, path = args.job[0], args.job[1], int(args.job[2]), args.job[3]
    window = Settings().window
    if mode == "depth":
        print(RESULT + json.dumps(capture_depths(args.data / BINANCE)))
        return
    if path == "native":  # the native module is imported here, never in the parent: it may not load cleanly
        templates = read_templates(args.templates, venue)
        print(RESULT + json.dumps(native_child(venue, mode, n, templates, window)))
        return
    templates = read_templates(args.templates, venue)
    vw = VenueWindows(venue, window)
    if venue == "itch":
        itch_prelude(vw)
    traced = mode == "traced"
    if traced:
        tracemalloc.start()
        before_snap = tracemalloc.take_snapshot()
    gc.collect()
    rss0, traced0 = rss_bytes(), traced_bytes() if traced else 0
    started = time.perf_counter()
    build(vw, venue, templates, n, feed_only=mode == "feed")
    seconds = time.perf_counter() - started
    gc.collect()
    out: dict[str, Any] = {"seconds": seconds, "rss": rss_bytes() - rss0, "symbols": n}
    if traced:
        out["traced"] = traced_bytes() - traced0
        out["by_file"] = by_file(before_snap, tracemalloc.take_snapshot())
    out.update(describe(vw))
    out["windows"] = vw.stats.windows
    if traced:
        out["split"] = split(vw, out["traced"])
    print(RESULT + json.dumps(out))


def native_child(venue: str, mode: str, n: int, templates: Sequence[Template], window: WindowConfig) -> dict[str, Any]:
    """The native path's RSS growth over n symbols: the whole NativeVenueWindows (rss), the native feed
    alone (feed), or the feed and the follower books without builders (followers); {"why": ...} where the
    worker would not take the native path for this venue."""
    from streams.pipeline import native_choice  # the worker's own rule; imports orderbook.native

    ok, why = native_choice(venue)
    if not ok:
        return {"why": f"native_choice({venue!r}): {why}"}
    from orderbook import native
    from orderbook.native.venue_windows import NativeVenueWindows

    class FollowersOnly(NativeVenueWindows):
        """No builder is ever made: `_push` applies every message's events to the follower book alone."""

        def _builder(self, name: str, book: Any) -> None:
            return None

    core: Any
    if mode == "feed":
        core = native.ItchFeed() if venue == "itch" else native.BinanceFeed()
        feed = core

        def send(msgs: list[bytes]) -> list[Any]:
            return [err for _, err in feed.on_messages(msgs).errors()]
    else:
        core = (FollowersOnly if mode == "followers" else NativeVenueWindows)(venue, window)
        nvw = core

        def send(msgs: list[bytes]) -> list[Any]:
            return [r.error for r in nvw.process(msgs).rejects]

    if venue == "itch":  # the day's system events, once (itch_prelude's)
        send([encode("S", timestamp=34_200 * SEC, event_code=code) for code in "OSQ"])
    gc.collect()
    rss0 = rss_bytes()
    started = time.perf_counter()
    for key, msgs in copies(venue, templates, n):  # one batch per symbol: its messages, in order
        errors = send(msgs)
        if errors:
            sys.exit(f"memory_bench: native {mode}: {key.decode()} rejected a message: {errors[0]}")
    seconds = time.perf_counter() - started
    gc.collect()
    out: dict[str, Any] = {"seconds": seconds, "rss": rss_bytes() - rss0, "symbols": n}
    out.update(describe_native(venue, core if mode == "feed" else core.feed, None if mode == "feed" else core))
    if mode == "rss":
        out["heap"] = builder_heap(core, native._core.WindowBuilder, HEAP_SAMPLE)
    return out


def malloc_in_use() -> int | None:
    """The C heap's bytes in use (glibc `mallinfo2`: small chunks + mmapped ones), gc'd; None without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        info = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    info.restype = _MallInfo2
    gc.collect()
    m = info()
    return m.uordblks + m.hblkhd


class _MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (all size_t)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def builder_heap(nvw: Any, cls: Any, k: int) -> dict[str, float] | None:
    """malloc's bytes in use per builder, over the first k builders: as built (what deleting them frees)
    and restored from their own `__getstate__` (a fresh builder with the same state, as after a
    snapshot restore). The difference is capacity the build left in them (scratch, grown containers)."""
    names = list(nvw.builders)[:k]
    before = malloc_in_use()
    if before is None or not names:
        return None
    restored = []
    for name in names:
        copy = cls()
        copy.__setstate__(nvw.builders[name].__getstate__())
        restored.append(copy)
    with_copies = malloc_in_use() or 0
    for name in names:
        del nvw.builders[name]
    freed = with_copies - (malloc_in_use() or 0)
    return {"builders": len(names), "as_built": freed / len(names), "restored": (with_copies - before) / len(names)}


def describe_native(venue: str, feed: Any, nvw: Any) -> dict[str, Any]:
    """What the native run built (read after the measurement): the feed's books, and with a
    NativeVenueWindows its follower books, builders and windows."""
    names = feed.book_symbols()
    books = [feed.book_dict(s) for s in names]
    out: dict[str, Any] = {
        "feed_type": f"{type(feed).__module__}.{type(feed).__qualname__}",
        "feed_books": len(names),
        "levels": [sum(len(b["bids"]) for b in books) / len(books), sum(len(b["asks"]) for b in books) / len(books)],
    }
    if venue == "itch":
        out["orders"] = sum(len(feed.orders(s)) for s in names) / len(names)
    if nvw is not None:
        followers = list(nvw.books.values())
        first = followers[0]
        out.update(
            {
                "class": f"{type(nvw).__module__}.{type(nvw).__qualname__}",
                "book_type": f"{type(first).__module__}.{type(first).__qualname__}",
                "books": len(followers),
                "follower_levels": [sum(b.n_levels()[i] for b in followers) / len(followers) for i in (0, 1)],
                "builders": len(nvw.builders),
                "rings_full": sum(rings_full(b) for b in nvw.builders.values()),
                "windows": nvw.stats.windows,
            }
        )
    return out


def capture_depths(folder: Path) -> list[dict[str, Any]]:
    """Each capture replayed whole: the levels its book holds at the end, and the time it spans."""
    out = []
    for path in sorted(folder.glob("*.gz")):
        feed = BinanceFeed()  # the book's levels are the question: the feed alone, twice as fast
        recs = list(BinanceFeed.read_capture(path))
        rejected = 0
        for rec in recs:
            try:
                feed.on_message(rec.raw)
            except FeedError:  # counted and skipped, as by the worker
                rejected += 1
        (book,) = feed.books.values()
        stamps = [r.recv_ts for r in recs if r.recv_ts]
        out.append({"source": path.name.removesuffix(".gz"), "levels": [len(book.bids), len(book.asks)],
                    "records": len(recs), "minutes": (max(stamps) - min(stamps)) / SEC / 60,
                    "rejected": rejected})  # fmt: skip
    return out


# ---------------------------------------------------------------- the parent


@dataclass(frozen=True)
class Job:
    venue: str
    mode: str  # python: rss, feed, traced, depth; native: rss, feed, followers
    symbols: int
    path: str  # python or native


def run_job(job: Job, args: argparse.Namespace, templates: Path, *, fatal: bool = True) -> dict[str, Any]:
    """A child's result; a failed child stops the bench, or with `fatal` False comes back as {"why": ...}."""
    env = {**os.environ, NATIVE_ENV: "1" if job.path == "native" else "0"}
    cmd = [sys.executable, __file__, "--data", str(args.data), "--templates", str(templates),
           "--job", job.venue, job.mode, str(job.symbols), job.path]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    last = done.stdout.strip().rpartition("\n")[2]
    if done.returncode == 0 and last.startswith(RESULT):
        return json.loads(last[len(RESULT) :])
    if not fatal:
        return {"why": f"{job.venue} {job.mode} exited {done.returncode}: {done.stderr.strip()[-300:]}"}
    sys.exit(f"memory_bench: {job} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


def jobs_for(args: argparse.Namespace, native: bool) -> list[Job]:
    """Longest first, so that the pool's last minutes are not one long job alone."""
    paths = [(v, p) for p in ("python", "native") for v in VENUES if p == "python" or native]
    feed = min(args.symbols, args.feed_symbols)
    jobs = [Job(v, "rss", args.symbols, p) for v, p in paths]
    jobs += [Job(v, "traced", args.traced_symbols, "python") for v in VENUES]
    jobs += [Job(v, "feed", feed, p) for v, p in paths]
    jobs += [Job(v, "followers", feed, "native") for v in VENUES if native]
    if not args.quick:
        jobs.append(Job("binance", "depth", 0, "python"))
    return jobs


def fmt_bytes(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if abs(n) >= 1e9 else f"{n / 1e6:.1f} MB"


def levels(pair: Sequence[int]) -> str:
    return f"{pair[0]:,} + {pair[1]:,}"


def mean_levels(pair: Sequence[float]) -> str:
    return f"{pair[0]:,.0f} + {pair[1]:,.0f}"


def print_workload(templates: dict[str, list[Template]], depths: list[dict[str, Any]] | None) -> None:
    end = {d["source"]: d for d in depths or ()}
    print("binance workload: each symbol replays one real capture's first messages (renamed), up to full rings")
    head = ("capture", "symbol", "messages", "snapshot rows", "book after snapshot", "after the messages",
            "at the capture's end", "capture spans")  # fmt: skip
    rows = []
    for t in templates["binance"]:
        i, d = t.info, end.get(t.source)
        rows.append((t.source, t.symbol, f"{len(t.messages):,}", f"{i['snapshot_levels']:,}",
                     levels(i["after_snapshot"]), levels(i["after_prefix"]), levels(d["levels"]) if d else "-",
                     f"{d['minutes']:.0f} min, {d['records']:,} msgs" if d else "-"))  # fmt: skip
    print_columns(head, rows, left=(0, 1))
    print("(levels: bids + asks; snapshot rows: the REST body's [price, qty] rows, both sides; the capture's end:")
    print(" the whole capture through the feed, not measured with --quick)")
    itch = templates["itch"]
    orders = [t.info["orders"] for t in itch]
    print(
        f"\nitch workload: {len(itch)} simulated books (model.sim.engine), each symbol one of them: its R, its "
        f"{min(orders)}-{max(orders)} resting orders (mean {sum(orders) / len(orders):.0f}) as adds, then its "
        f"last {itch[0].info['tail']} messages of flow (mean span "
        f"{sum(t.info['tail_s'] for t in itch) / len(itch):.0f} s); levels a side: "
        f"{min(min(t.info['levels']) for t in itch)}-{max(max(t.info['levels']) for t in itch)}"
    )


LABELS = {"book": "book ({})", "feed": "feed state (sync, tickers, locates)", "features": "features (FeatureState)",
          "rings": "window rings (WindowBuilder)", "shared": "shared (caches, counters)",
          "follower": "follower book (native only)"}  # fmt: skip
ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("book", ()),
    ("feed", ()),
    ("book + feed state", ("book", "feed")),
    ("follower", ()),  # the native path's second book: no tracemalloc part, a row only with a native column
    ("features", ()),
    ("rings", ()),
    ("features + window rings", ("features", "rings")),
    ("shared", ()),
)
TOTAL = "total per symbol"


def rss_parts(res: dict[str, dict[str, Any]]) -> dict[str, float]:
    """RSS bytes per symbol by row (`res`: mode -> its child's result): the whole state at N symbols, the
    feed alone (book + feed state), on the native path the feed with its follower books, and by difference
    the rest (features + window rings)."""
    rss, feed = res["rss"], res["feed"]
    whole, alone = rss["rss"] / rss["symbols"], feed["rss"] / feed["symbols"]
    out = {TOTAL: whole, "book + feed state": alone, "features + window rings": whole - alone}
    if "followers" in res:
        with_followers = res["followers"]["rss"] / res["followers"]["symbols"]
        out["follower"] = with_followers - alone
        out["features + window rings"] = whole - with_followers
    return out


def venue_rows(n: int, res: dict[str, dict[str, Any]], native: dict[str, dict[str, Any]] | None) -> list[list[str]]:
    """The table's cells after the component's name (`res`, `native`: mode -> its child's result):
    tracemalloc and share per row, RSS per row where measured, and the native RSS and its ratio."""
    traced, rss = res["traced"], res["rss"]
    per = traced["traced"] / traced["symbols"]
    py = rss_parts(res)
    nat = rss_parts(native) if native is not None else {}
    rows = []
    for name, parts in ROWS:
        if name == "follower" and native is None:
            continue
        cells = ["-", ""]
        if name != "follower":
            x = sum(traced["split"][k] for k in parts or (name,)) / traced["symbols"]
            cells = [f"{x:,.0f}", f"{x / per:.0%}"]
        cells.append(f"{py[name]:,.0f}" if name in py else "-")
        if native is not None:
            cells.append(f"{nat[name]:,.0f}" if name in nat else "-")
            cells.append(f"{nat[name] / py[name]:.2f}" if name in nat and name in py else "-")
        rows.append(cells)
    rows.append([f"{per:,.0f}", "100%", f"{py[TOTAL]:,.0f}"])
    rows.append([f"{fmt_bytes(per * n)} (x{n:,})", "", f"{fmt_bytes(rss['rss'])} measured"])
    if native is not None:
        rows[-2] += [f"{nat[TOTAL]:,.0f}", f"{nat[TOTAL] / py[TOTAL]:.2f}"]
        rows[-1] += [f"{fmt_bytes(native['rss']['rss'])} measured", f"{native['rss']['rss'] / rss['rss']:.2f}"]
    return rows


def print_venue(venue: str, n: int, results: dict[tuple[str, str, str], dict[str, Any]], native: bool) -> None:
    py = {mode: results[(venue, mode, "python")] for mode in ("rss", "traced", "feed")}
    rss, traced = py["rss"], py["traced"]
    book = rss["book_type"]
    print(
        f"\n{venue}: {n:,} symbols in one VenueWindows ({book}, {rss['levels'][0]:,.0f} + {rss['levels'][1]:,.0f} "
        f"levels a book" + (f", {rss['orders']:,.0f} resting orders" if "orders" in rss else "") + "); "
        f"{rss['builders']:,} window builders, {rss['rings_full']:,} with full rings; {rss['windows']:,} windows; "
        f"built in {rss['seconds']:.0f} s"
    )
    nat = {mode: results[(venue, mode, "native")] for mode in ("rss", "feed", "followers")} if native else None
    if nat is not None:
        whole, feed, fol = nat["rss"], nat["feed"], nat["followers"]
        print(
            f"  native: {n:,} symbols in one {whole['class'].rpartition('.')[2]} (the worker's default path; feed "
            f"{whole['feed_type']}, {whole['feed_books']:,} books of {mean_levels(whole['levels'])} levels"
            + (f", {whole['orders']:,.0f} resting orders" if "orders" in whole else "")
            + f"; follower books {whole['book_type']}, {whole['books']:,} of {mean_levels(whole['follower_levels'])} "
            f"levels); {whole['builders']:,} window builders, "
            f"{whole['rings_full']:,} with full rings; {whole['windows']:,} windows; built in {whole['seconds']:.0f} s"
        )
        print(
            f"  native feed alone: {feed['feed_books']:,} books; feed + followers, no builders: "
            f"{fol['feed_books']:,} books, {fol['books']:,} followers, {fol['builders']} builders"
        )
    head = ["component", "python tracemalloc B/symbol", "share", "python RSS B/symbol"]
    if nat is not None:
        head += ["native RSS B/symbol", "native / python"]
    names = [
        LABELS[name].format(book.rpartition(".")[2]) if not parts else f"  {name}"
        for name, parts in ROWS
        if name != "follower" or nat is not None
    ]
    names += [TOTAL, f"total at {n:,} symbols"]
    cells = venue_rows(n, py, nat)
    print_columns(head, [[name, *row] for name, row in zip(names, cells, strict=True)])
    print(
        f"(tracemalloc: {traced['symbols']:,} symbols of the same mix, split by freeing each part in turn; RSS: "
        f"the whole VenueWindows at {n:,} symbols, the feed alone at {py['feed']['symbols']:,})"
    )
    if nat is not None:
        print(
            f"(native: RSS only, tracemalloc does not see the Rust heap; the whole NativeVenueWindows at {n:,} "
            f"symbols, one batch a symbol; the native feed alone at {nat['feed']['symbols']:,}; the feed + follower "
            f"books without builders at {nat['followers']['symbols']:,}; each row the difference of two)"
        )
    heap = nat["rss"].get("heap") if nat is not None else None
    if heap:
        print(
            f"(native builders, malloc bytes in use (glibc mallinfo2), the first {heap['builders']:,}: "
            f"{heap['as_built']:,.0f} B each as built, {heap['restored']:,.0f} B restored from their own state "
            f"(__getstate__ / __setstate__): {heap['as_built'] - heap['restored']:,.0f} B a builder is capacity the "
            "build left in it)"
        )
    print(
        "allocated in (tracemalloc, B/symbol by the file of the allocating line): "
        + ", ".join(f"{name} {size / traced['symbols']:,.0f}" for name, size in traced["by_file"])
    )
    print(
        f"{venue} per symbol: {traced['traced'] / traced['symbols']:,.0f} B traced, "
        f"{rss['rss'] / rss['symbols']:,.0f} B RSS; total at {n:,} symbols: {fmt_bytes(rss['rss'])} RSS"
    )
    if nat is not None:
        whole = nat["rss"]
        per = whole["rss"] / whole["symbols"]
        print(
            f"{venue} native per symbol: {per:,.0f} B RSS, {per / (rss['rss'] / rss['symbols']):.2f} x python; "
            f"total at {n:,} symbols: {fmt_bytes(whole['rss'])} RSS"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    default_data = Path(os.environ.get("MT_SHARED_DATA", REPO.parent / "shared" / "data"))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=default_data, help=f"shared data folder (default: {default_data})")
    p.add_argument("--symbols", type=int, default=10_000, help="symbols per venue, one process (default: 10000)")
    p.add_argument("--traced-symbols", type=int, default=120, help="symbols built under tracemalloc (default: 120)")
    p.add_argument("--feed-symbols", type=int, default=1_000, help="symbols of the feed-alone RSS run (default: 1000)")
    p.add_argument("--itch-templates", type=int, default=12, help="simulated ITCH books (default: 12)")
    p.add_argument("--itch-minutes", type=float, default=60.0, help="simulated minutes after the open (default: 60)")
    p.add_argument("--itch-tail", type=int, default=100, help="flow messages after the resting book (default: 100)")
    p.add_argument("--seed", type=int, default=12, help="seed of the simulated ITCH books")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="child processes at a time (default: cores)")
    p.add_argument("--quick", action="store_true", help="smoke run: 200 symbols, 24 traced, 20 simulated minutes")
    p.add_argument("--templates", type=Path, help=argparse.SUPPRESS)  # a child's: the parent's template file
    p.add_argument("--job", nargs=4, help=argparse.SUPPRESS)  # a child's: venue mode symbols path
    args = p.parse_args(argv)
    if args.quick:
        args.symbols, args.traced_symbols = min(args.symbols, 200), min(args.traced_symbols, 24)
        args.itch_minutes = min(args.itch_minutes, 20.0)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.job:
        child(args)
        return
    folder = args.data / BINANCE
    if not folder.is_dir():
        sys.exit(f"memory_bench: {folder} not found. Pass --data <folder holding {BINANCE}/> or set MT_SHARED_DATA.")
    started = time.perf_counter()
    window = Settings().window
    templates = {
        "binance": binance_templates(folder, window),
        "itch": itch_templates(args.itch_templates, args.itch_minutes, args.itch_tail, args.seed),
    }
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "templates.json"
        write_templates(file, templates)
        # a spec found imports nothing: the native module is only ever imported by a child
        native = importlib.util.find_spec(NATIVE_MODULE) is not None
        jobs = jobs_for(args, native)
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:  # threads that wait on child processes
            # a native failure (not built, half built, not the worker's choice) drops its column, not the run
            run = pool.map(lambda j: run_job(j, args, file, fatal=j.path == "python"), jobs)
            done = dict(zip(jobs, run, strict=True))
    results = {(j.venue, j.mode, j.path): r for j, r in done.items()}
    why = {v: f"{NATIVE_MODULE} is missing" for v in VENUES if not native}
    for j, r in done.items():
        if "why" in r:
            why.setdefault(j.venue, r["why"])
    print(f"window config (Settings().window, the worker's): {window}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {args.jobs} child processes at a time\n")
    print_workload(templates, results.get(("binance", "depth", "python")))  # type: ignore[arg-type]
    for venue in VENUES:
        print_venue(venue, args.symbols, results, venue not in why)
    for venue, reason in why.items():
        print(f"\nnative column ({venue}): not available ({reason})")
    print(f"\nmemory_bench: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
