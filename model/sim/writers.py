"""A simulated day in the real venue formats, so it goes through the same decoders, books and topics.

Each format is a generator of `Msg(ts, symbol, raw)`: `raw` is exactly the value a record of
`md.raw.<venue>` carries (key = symbol), `ts` the message's time on the stream's own clock. The
file writers lay those messages out as the venue's recorded files, which `megatrading book` and the
feeds' `read_capture` read back:

- itch: one NASDAQ day file `<MMDDYYYY>.NASDAQ_ITCH50` (2-byte length frames): S O, one R per symbol
  (locates 1..N), S S, S Q at 09:30, A/E/X/D/H for the flow, S M and S C at the end. Times are ns
  since midnight.
- lobster: per symbol `SYM_<date>_<start ms>_<end ms>_message_10.csv` and its `orderbook` file
  (orderbook.venues.lobster.LobsterWriter). Times are ns since midnight.
- binance: per symbol `spot_<sym>usdt_sim.txt` in hftbacktest's `<recv ns> <json>` lines: a REST
  snapshot at the start, then level changes aggregated per 100 ms (`depth@100ms`) into `depthUpdate`
  diffs with contiguous U/u (one update id per changed level), and a `trade` per execution. Prices in
  Binance's 1e-8 units: Price(4) x 10^4; sizes shares x 10^8. Times are epoch ns (SIM_DATE + clock).
- coinbase: one cryptofeed-style capture `COINBASE.sim.txt` (`<epoch s>: <json>`) of the `full`
  channel: an l3_snapshot per product at the start, then open/done/match/change with one sequence per
  message and product. A partial cancel becomes `change` to the remaining size.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple

from model.sim.engine import SimResult
from orderbook.events import Event, Kind, Side, Status
from orderbook.numbers import format_fixed
from orderbook.venues.itch import STRUCTS, TS_LIMIT, encode, frame
from orderbook.venues.lobster import LobsterWriter

SIM_DATE = dt.date(2026, 1, 2)
SIM_EPOCH_NS = int(dt.datetime(2026, 1, 2, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
CRYPTO_PRICE = 10_000  # Price(4) -> 1e-8
CRYPTO_SIZE = 100_000_000  # shares -> 1e-8
BINANCE_BUCKET_NS = 100_000_000  # depth@100ms
BINANCE_FIRST_ID = 1_000
COINBASE_FIRST_SEQ = 1_000
FORMATS = ("itch", "lobster", "binance", "coinbase")


class Msg(NamedTuple):
    ts: int  # on the stream's clock
    symbol: str  # the record key
    raw: bytes  # the record value


def clock_offset(fmt: str) -> int:
    """Added to simulator times to get the stream's clock (crypto venues use the epoch)."""
    return SIM_EPOCH_NS if fmt in ("binance", "coinbase") else 0


def venue_symbol(fmt: str, name: str) -> str:
    return {"binance": f"{name}USDT", "coinbase": f"{name}-USD"}.get(fmt, name)


# --- ITCH -----------------------------------------------------------------------------------------


def itch_messages(result: SimResult) -> Iterator[Msg]:
    """The whole day as ITCH 5.0 messages (no length prefix)."""
    locate = {s.name: i for i, s in enumerate(result.symbols, start=1)}
    t0, t_end = result.start_ns, result.end_ns
    pre = max(0, t0 - 3600 * 10**9)
    yield Msg(pre, "", encode("S", timestamp=pre, event_code="O"))
    for s in result.symbols:
        yield Msg(pre, s.name, encode("R", locate=locate[s.name], timestamp=pre, stock=s.name, market_category="Q",
                                      financial_status="N", round_lot_size=s.lot))  # fmt: skip
    yield Msg(pre, "", encode("S", timestamp=pre, event_code="S"))
    yield Msg(t0, "", encode("S", timestamp=t0, event_code="Q"))
    # the hot types packed straight with their structs: `encode`'s checks per call (its field names, its
    # ASCII text) were a quarter of `megatrading dataset` on simulated days; its bytes, message for message
    # (tests/test_simulator.py)
    stock = {s.name: encode("H", stock=s.name)[11:19] for s in result.symbols}  # checked once: 8 ASCII bytes
    add, execute, cancel, delete = STRUCTS["A"].pack, STRUCTS["E"].pack, STRUCTS["X"].pack, STRUCTS["D"].pack
    match = 0
    for e in result.events:
        loc, ts, k = locate[e.symbol], e.ts, e.kind
        if not 0 <= ts < TS_LIMIT:
            raise ValueError(f"timestamp {ts} does not fit 6 bytes")
        hi, lo = ts >> 32, ts & 0xFFFFFFFF
        if k == Kind.ADD:
            side = b"B" if e.side == Side.BID else b"S"
            raw = add(b"A", loc, 0, hi, lo, e.order_id, side, e.size, stock[e.symbol], e.price)
        elif k == Kind.EXECUTE:
            match += 1
            raw = execute(b"E", loc, 0, hi, lo, e.order_id, e.size, match)
        elif k == Kind.CANCEL:
            raw = cancel(b"X", loc, 0, hi, lo, e.order_id, e.size)
        elif k == Kind.DELETE:
            raw = delete(b"D", loc, 0, hi, lo, e.order_id)
        elif k == Kind.STATUS:
            halted = e.flags == Status.HALTED
            raw = encode("H", locate=loc, timestamp=ts, stock=e.symbol, trading_state="H" if halted else "T",
                         reason="T1" if halted else "")  # fmt: skip
        else:
            raise ValueError(f"the simulator does not emit {k.name}")
        yield Msg(ts, e.symbol, raw)
    yield Msg(t_end, "", encode("S", timestamp=t_end, event_code="M"))
    yield Msg(t_end + 10**9, "", encode("S", timestamp=t_end + 10**9, event_code="C"))


def itch_filename() -> str:
    return f"{SIM_DATE:%m%d%Y}.NASDAQ_ITCH50"


def write_itch(result: SimResult, out_dir: Path, messages: Iterator[Msg] | None = None) -> list[Path]:
    path = out_dir / itch_filename()
    with open(path, "wb") as f:
        batch: list[bytes] = []
        for m in messages if messages is not None else itch_messages(result):
            batch.append(m.raw)
            if len(batch) >= 65_536:
                f.write(frame(batch))
                batch = []
        f.write(frame(batch))
    return [path]


# --- LOBSTER --------------------------------------------------------------------------------------


def lobster_paths(result: SimResult, symbol: str, out_dir: Path, levels: int = 10) -> tuple[Path, Path]:
    stem = f"{symbol}_{SIM_DATE:%Y-%m-%d}_{result.start_ns // 10**6}_{result.end_ns // 10**6}"
    return out_dir / f"{stem}_message_{levels}.csv", out_dir / f"{stem}_orderbook_{levels}.csv"


def lobster_messages(result: SimResult, levels: int = 10) -> Iterator[tuple[Msg, list[int]]]:
    """Each message row with the orderbook row after it (the symbol names the file and the key)."""
    writers = {s.name: LobsterWriter(levels, s.name) for s in result.symbols}
    for e in result.events:
        for raw, book in writers[e.symbol].rows(e):
            yield Msg(e.ts, e.symbol, raw), book


def write_lobster(result: SimResult, out_dir: Path, levels: int = 10) -> list[Path]:
    files = {}
    paths = []
    with ExitStack() as stack:
        for s in result.symbols:
            mp, op = lobster_paths(result, s.name, out_dir, levels)
            files[s.name] = (
                stack.enter_context(open(mp, "w", newline="")),
                stack.enter_context(open(op, "w", newline="")),
            )
            paths += [mp, op]
        for m, book in lobster_messages(result, levels):
            mf, of = files[m.symbol]
            mf.write(m.raw.decode() + "\n")
            of.write(",".join(map(str, book)) + "\n")
    return paths


# --- Binance --------------------------------------------------------------------------------------


def _levels_1e8(levels: dict[int, int], reverse: bool) -> list[tuple[int, int]]:
    return [(p * CRYPTO_PRICE, q * CRYPTO_SIZE) for p, q in sorted(levels.items(), reverse=reverse)]


def binance_messages(result: SimResult) -> Iterator[Msg]:
    """A snapshot per symbol, then per 100 ms the changed levels as one diff per symbol, trades as they happen."""
    from orderbook.venues import binance_encode as enc

    off = SIM_EPOCH_NS
    books = {s.name: ({}, {}) for s in result.symbols}  # (bids, asks) price -> shares
    dirty: dict[str, dict[tuple[int, int], None]] = {s.name: {} for s in result.symbols}
    last_id = dict.fromkeys(books, BINANCE_FIRST_ID)
    for s in result.symbols:
        sym = venue_symbol("binance", s.name)
        yield Msg(result.start_ns + off, sym, enc.snapshot_message(sym, [], [], BINANCE_FIRST_ID))
    trade_id = 0
    bucket = result.start_ns // BINANCE_BUCKET_NS

    def flush(ts: int) -> Iterator[Msg]:
        for name, changed in dirty.items():
            if not changed:
                continue
            bids, asks = books[name]
            changes = []
            for side, price in changed:
                size = (bids if side == 1 else asks).get(price, 0)
                changes.append((side, price * CRYPTO_PRICE, size * CRYPTO_SIZE))
            first = last_id[name] + 1
            last_id[name] += len(changes)
            sym = venue_symbol("binance", name)
            yield Msg(ts + off, sym, enc.depth_update(sym, changes, first, last_id[name], ts + off))
            changed.clear()

    for e in result.events:
        b = e.ts // BINANCE_BUCKET_NS
        if b != bucket:
            yield from flush((bucket + 1) * BINANCE_BUCKET_NS - 1)
            bucket = b
        if e.kind == Kind.STATUS:
            continue  # Binance publishes no halt on the market-data streams
        levels = books[e.symbol][0 if e.side == Side.BID else 1]
        delta = e.size if e.kind == Kind.ADD else -e.size
        new = levels.get(e.price, 0) + delta
        if new:
            levels[e.price] = new
        else:
            del levels[e.price]
        dirty[e.symbol][(int(e.side), e.price)] = None
        if e.kind == Kind.EXECUTE:
            trade_id += 1
            sym = venue_symbol("binance", e.symbol)
            raw = enc.trade_message(
                sym, trade_id, e.price * CRYPTO_PRICE, e.size * CRYPTO_SIZE, e.side == Side.BID, e.ts + off
            )
            yield Msg(e.ts + off, sym, raw)
    yield from flush((bucket + 1) * BINANCE_BUCKET_NS - 1)


def binance_books(result: SimResult) -> dict[str, tuple[dict[int, int], dict[int, int]]]:
    """The simulator's final books in Binance units, keyed by Binance symbol (what BinanceFeed must hold)."""
    return {
        venue_symbol("binance", n): (
            {p * CRYPTO_PRICE: q * CRYPTO_SIZE for p, q in s.bids.items()},
            {p * CRYPTO_PRICE: q * CRYPTO_SIZE for p, q in s.asks.items()},
        )
        for n, s in result.final.items()
    }


def write_binance(result: SimResult, out_dir: Path) -> list[Path]:
    paths = {venue_symbol("binance", s.name): out_dir / f"spot_{s.name.lower()}usdt_sim.txt" for s in result.symbols}
    with ExitStack() as stack:
        files = {sym: stack.enter_context(open(p, "wb")) for sym, p in paths.items()}
        for m in binance_messages(result):
            files[m.symbol].write(b"%d " % m.ts + m.raw + b"\n")
    return list(paths.values())


# --- Coinbase -------------------------------------------------------------------------------------


def coinbase_messages(result: SimResult) -> Iterator[Msg]:
    """An empty l3_snapshot per product, then the full channel (sequence per product)."""
    from orderbook.venues import coinbase_encode as enc

    off = SIM_EPOCH_NS
    seq = {s.name: COINBASE_FIRST_SEQ for s in result.symbols}
    for s in result.symbols:
        pid = venue_symbol("coinbase", s.name)
        yield Msg(result.start_ns + off, pid, enc.l3_snapshot_message(pid, COINBASE_FIRST_SEQ, [], []))
    sizes: dict[int, int] = {}
    for e in result.events:
        if e.kind == Kind.STATUS:
            continue
        pid = venue_symbol("coinbase", e.symbol)
        kind, size = e.kind, e.size
        if kind == Kind.ADD:
            sizes[e.order_id] = e.size
        elif kind == Kind.DELETE:
            sizes.pop(e.order_id, None)
        else:
            left = sizes[e.order_id] - e.size
            if left:
                sizes[e.order_id] = left
            else:
                del sizes[e.order_id]
            if kind == Kind.CANCEL:
                kind, size = Kind.CHANGE, left
        seq[e.symbol] += 1
        ev = Event(kind, "coinbase", pid, e.ts + off, seq[e.symbol], e.side, e.price * CRYPTO_PRICE,
                   size * CRYPTO_SIZE, e.order_id, 0, e.flags)  # fmt: skip
        yield Msg(e.ts + off, pid, enc.full_message(ev, seq[e.symbol]))


def write_coinbase(result: SimResult, out_dir: Path) -> list[Path]:
    path = out_dir / "COINBASE.sim.txt"
    with open(path, "wb") as f:
        for m in coinbase_messages(result):
            f.write(format_fixed(m.ts, 9).encode() + b": " + m.raw + b"\n")
    return [path]


# --- dispatch -------------------------------------------------------------------------------------


def messages(fmt: str, result: SimResult) -> Iterator[Msg]:
    """The stream as `md.raw.<fmt>` records (LOBSTER: message rows)."""
    if fmt == "itch":
        return itch_messages(result)
    if fmt == "lobster":
        return (m for m, _ in lobster_messages(result))
    if fmt == "binance":
        return binance_messages(result)
    if fmt == "coinbase":
        return coinbase_messages(result)
    raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


def write(fmt: str, result: SimResult, out_dir: Path) -> list[Path]:
    """Write the stream files of `fmt` into out_dir; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = {"itch": write_itch, "lobster": write_lobster, "binance": write_binance, "coinbase": write_coinbase}
    if fmt not in writer:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return writer[fmt](result, out_dir)
