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
- native: the same jobs again with the native path on (`MT_NATIVE=1`), for each venue whose
  VenueWindows then builds books of another class than orderbook.book's (a probe child per venue
  imports `orderbook.native`, checks its `enabled()` and builds one symbol; the parent never imports
  it). The column names the class built; a native run that fails drops its column, not the run.
  tracemalloc does not see memory a native extension allocates itself: read that column's RSS.
- binance depth: each capture replayed whole, the levels its book holds at its end.
"""

from __future__ import annotations

import argparse
import gc
import importlib
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
# child: "0" for the reference columns, "1" for the native ones. The column reports the book class
# actually built, so a path that ignores it shows as "not wired" rather than as a mislabelled figure.
NATIVE_ENV = "MT_NATIVE"
PAGE = os.sysconf("SC_PAGE_SIZE")
RESULT = "RESULT "  # the child's last stdout line: RESULT <json>


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
    """One measurement in this process: venue, mode (rss, feed, traced, depth, probe), symbols."""
    venue, mode, n = args.job[0], args.job[1], int(args.job[2])
    window = Settings().window
    if mode == "depth":
        print(RESULT + json.dumps(capture_depths(args.data / BINANCE)))
        return
    if mode == "probe":  # the native module is imported here, never in the parent: it may not load cleanly
        ok, why = native_status()
        if not ok:
            print(RESULT + json.dumps({"why": why}))
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
    if traced:
        out["split"] = split(vw, out["traced"])
    print(RESULT + json.dumps(out))


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


def native_status() -> tuple[bool, str]:
    """Whether the native path may be measured, and why not where it may not (in a probe child)."""
    try:
        module = importlib.import_module(NATIVE_MODULE)
    except Exception as err:  # a half-built extension: say so, measure the rest
        return False, f"{NATIVE_MODULE} does not import ({type(err).__name__}: {err})"
    flag = next((getattr(module, n) for n in ("enabled", "ENABLED") if hasattr(module, n)), True)
    if callable(flag):
        flag = flag()
    return (True, "") if flag else (False, f"{NATIVE_MODULE} says it is not enabled")


@dataclass(frozen=True)
class Job:
    venue: str
    mode: str  # rss, feed, traced, depth, probe
    symbols: int
    path: str  # python or native


def run_job(job: Job, args: argparse.Namespace, templates: Path, *, fatal: bool = True) -> dict[str, Any]:
    """A child's result; a failed child stops the bench, or with `fatal` False comes back as {"why": ...}."""
    env = {**os.environ, NATIVE_ENV: "1" if job.path == "native" else "0"}
    cmd = [sys.executable, __file__, "--data", str(args.data), "--templates", str(templates),
           "--job", job.venue, job.mode, str(job.symbols)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    last = done.stdout.strip().rpartition("\n")[2]
    if done.returncode == 0 and last.startswith(RESULT):
        return json.loads(last[len(RESULT) :])
    if not fatal:
        return {"why": f"{job.venue} {job.mode} exited {done.returncode}: {done.stderr.strip()[-300:]}"}
    sys.exit(f"memory_bench: {job} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


def native_venues(args: argparse.Namespace, templates: Path) -> tuple[list[str], str]:
    """The venues whose VenueWindows builds native books with the switch on (a child per venue builds
    one symbol), and what to say where none does."""
    if importlib.util.find_spec(NATIVE_MODULE) is None:  # finds the file, imports nothing of it
        return [], f"{NATIVE_MODULE} is missing"
    built = {v: run_job(Job(v, "probe", 1, "native"), args, templates, fatal=False) for v in VENUES}
    why = next((r["why"] for r in built.values() if "why" in r), None)
    if why is not None:
        return [], f"{NATIVE_MODULE}: {why}"
    wired = [v for v, r in built.items() if not r["book_type"].startswith("orderbook.book.")]
    return wired, (
        f"{NATIVE_MODULE} imports, but with {NATIVE_ENV}=1 VenueWindows still builds "
        f"{' / '.join(r['book_type'] for r in built.values())}: the native path is not wired in"
    )


def jobs_for(args: argparse.Namespace, native: Sequence[str]) -> list[Job]:
    """Longest first, so that the pool's last minutes are not one long job alone."""
    paths = [(v, p) for p in ("python", "native") for v in VENUES if p == "python" or v in native]
    jobs = [Job(v, "rss", args.symbols, p) for v, p in paths]
    jobs += [Job(v, "traced", args.traced_symbols, p) for v, p in paths]
    jobs += [Job(v, "feed", min(args.symbols, args.feed_symbols), p) for v, p in paths]
    if not args.quick:
        jobs.append(Job("binance", "depth", 0, "python"))
    return jobs


def fmt_bytes(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if abs(n) >= 1e9 else f"{n / 1e6:.1f} MB"


def levels(pair: Sequence[int]) -> str:
    return f"{pair[0]:,} + {pair[1]:,}"


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
          "rings": "window rings (WindowBuilder)", "shared": "shared (caches, counters)"}  # fmt: skip
ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("book", ()),
    ("feed", ()),
    ("book + feed state", ("book", "feed")),
    ("features", ()),
    ("rings", ()),
    ("features + window rings", ("features", "rings")),
    ("shared", ()),
)


def venue_rows(venue: str, n: int, res: dict[tuple[str, str], dict[str, Any]]) -> list[list[str]]:
    """The table's cells of one path (`res`: mode -> its child's result): tracemalloc, share, RSS per row."""
    traced, rss, feed = res["traced"], res["rss"], res["feed"]
    per = traced["traced"] / traced["symbols"]
    rows = []
    for name, parts in ROWS:
        x = sum(traced["split"][k] for k in parts or (name,)) / traced["symbols"]
        rss_cell = "-"
        if parts == ("book", "feed"):
            rss_cell = f"{feed['rss'] / feed['symbols']:,.0f}"
        elif parts == ("features", "rings"):  # the whole state less the feed alone
            rss_cell = f"{rss['rss'] / rss['symbols'] - feed['rss'] / feed['symbols']:,.0f}"
        rows.append([f"{x:,.0f}", f"{x / per:.0%}", rss_cell])
    rows.append([f"{per:,.0f}", "100%", f"{rss['rss'] / rss['symbols']:,.0f}"])
    rows.append([f"{fmt_bytes(per * n)} (x{n:,})", "", f"{fmt_bytes(rss['rss'])} measured"])
    return rows


def print_venue(venue: str, n: int, results: dict[tuple[str, str, str], dict[str, Any]], paths: Sequence[str]) -> None:
    py = {mode: results[(venue, mode, "python")] for mode in ("rss", "traced", "feed")}
    rss, traced = py["rss"], py["traced"]
    book = rss["book_type"]
    print(
        f"\n{venue}: {n:,} symbols in one VenueWindows ({book}, {rss['levels'][0]:,.0f} + {rss['levels'][1]:,.0f} "
        f"levels a book" + (f", {rss['orders']:,.0f} resting orders" if "orders" in rss else "") + "); "
        f"{rss['builders']:,} window builders, {rss['rings_full']:,} with full rings; built in {rss['seconds']:.0f} s"
    )
    head = ["component"]
    columns = []
    for p in paths:
        res = {mode: results[(venue, mode, p)] for mode in ("rss", "traced", "feed")}
        head += [f"{p} tracemalloc B/symbol", "share", f"{p} RSS B/symbol"]
        columns.append(venue_rows(venue, n, res))
        if p != "python":
            print(f"  {p}: {res['rss']['book_type']} (tracemalloc does not see a native heap: read its RSS)")
    names = [LABELS[name].format(book.rpartition(".")[2]) if not parts else f"  {name}" for name, parts in ROWS]
    names += ["total per symbol", f"total at {n:,} symbols"]
    print_columns(head, [[name, *(c for col in columns for c in col[i])] for i, name in enumerate(names)])
    print(
        f"(tracemalloc: {traced['symbols']:,} symbols of the same mix, split by freeing each part in turn; RSS: "
        f"the whole VenueWindows at {n:,} symbols, the feed alone at {py['feed']['symbols']:,})"
    )
    print(
        "allocated in (tracemalloc, B/symbol by the file of the allocating line): "
        + ", ".join(f"{name} {size / traced['symbols']:,.0f}" for name, size in traced["by_file"])
    )
    print(
        f"{venue} per symbol: {traced['traced'] / traced['symbols']:,.0f} B traced, "
        f"{rss['rss'] / rss['symbols']:,.0f} B RSS; total at {n:,} symbols: {fmt_bytes(rss['rss'])} RSS"
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
    p.add_argument("--job", nargs=3, help=argparse.SUPPRESS)  # a child's: venue mode symbols
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
        native, why = native_venues(args, file)
        jobs = jobs_for(args, native)
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:  # threads that wait on child processes
            # the native path is someone else's work in progress: its failure drops its column, not the run
            run = pool.map(lambda j: run_job(j, args, file, fatal=j.path == "python"), jobs)
            done = dict(zip(jobs, run, strict=True))
    results = {(j.venue, j.mode, j.path): r for j, r in done.items()}
    for j, r in done.items():
        if "why" in r and j.venue in native:
            native.remove(j.venue)
            why = f"the native run failed: {r['why']}"
    print(f"window config (Settings().window, the worker's): {window}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {args.jobs} child processes at a time\n")
    print_workload(templates, results.get(("binance", "depth", "python")))  # type: ignore[arg-type]
    for venue in VENUES:
        print_venue(venue, args.symbols, results, ["python", "native"] if venue in native else ["python"])
    if len(native) < len(VENUES):
        print(f"\nnative column: not available ({why})")
    print(f"\nmemory_bench: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
