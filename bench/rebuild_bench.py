"""`megatrading book` on the native path (`orderbook.rebuild.NATIVE`) beside the reference (`orderbook.rebuild.rebuild`
with the venue's Python feed), on the same file in one run, the rows compared.

`--venue itch` (the default): a simulated ITCH 5.0 day (model/sim, as `megatrading simulate --format itch` writes
it) over `--symbols` stocks, simulated until it holds `--messages` messages; each path rebuilds the first book of
the file and the busiest one. Beside them, the native feed's `decode_apply` of the whole file (no rows). A real
NASDAQ day holds 250-400 million messages: the rate is what matters.

`--venue binance`: every capture of `--data` (the six real Binance captures in ../shared/data), the book of each.

`--venue lobster`: the same simulation as LOBSTER message files (`megatrading simulate --format lobster`), the
busiest ticker's file until it holds `--messages` rows, its book.

`--venue kraken`: the real Kraken book capture (../shared/data/cryptofeed-captures/KRAKEN.ws.50.0.gz: ten pairs,
1,000-level snapshots, updates with their checksums), the first pair's book and the busiest pair's.

`--venue coinbase`: the real Coinbase level2 capture (../shared/data/cryptofeed-captures/COINBASE.ws.28.0.gz: ten
products' snapshots, updates and trades), the first product's book and the busiest's; then the same simulation as
the full channel (`megatrading simulate --format coinbase`: an order-by-order book per product, its orders' open,
match, change and done messages) until it holds `--messages` messages, the busiest product's book.

Each path rebuilds `--levels` deep (the CLI's defaults: the first book, 10 levels): the rows as `Row`s, then
again with the CLI's CSV text (no --with-seq; not written to a file): the reference's lines from its rows
(`streams.cli.csv_lines`), the native path's from its row blocks in Rust (`RowBlock.csv`). The run fails unless
the rows, stats, errors and CSV are the same.

    .venv/bin/python bench/rebuild_bench.py [--messages 1000000] [--symbols 10] [--levels 10] [--quick]
    .venv/bin/python bench/rebuild_bench.py --venue binance [--data DIR] [--quick]
    .venv/bin/python bench/rebuild_bench.py --venue lobster [--messages 1000000] [--quick]
    .venv/bin/python bench/rebuild_bench.py --venue kraken [--kraken FILE]
    .venv/bin/python bench/rebuild_bench.py --venue coinbase [--coinbase FILE] [--messages 1000000] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.sim.engine import SEC, SimConfig  # noqa: E402
from model.sim.run import simulate  # noqa: E402
from model.sim.writers import write_coinbase, write_itch, write_lobster  # noqa: E402
from orderbook import native  # noqa: E402
from orderbook.errors import FeedError  # noqa: E402
from orderbook.native.check import rebuild_outcome  # noqa: E402
from orderbook.rebuild import NATIVE, RebuildStats  # noqa: E402
from orderbook.venues import feed_class  # noqa: E402
from orderbook.venues.binance import BinanceFeed  # noqa: E402
from orderbook.venues.coinbase import CoinbaseFeed  # noqa: E402
from orderbook.venues.itch import ItchFeed  # noqa: E402
from orderbook.venues.kraken import KrakenFeed  # noqa: E402
from streams.cli import csv_lines  # noqa: E402


def day_file(messages: int, symbols: int, folder: Path, fmt: str = "itch") -> tuple[Path, int]:
    """A simulated day's file of at least `messages` messages (fewer where a whole day holds fewer): the ITCH
    day file, the busiest ticker's LOBSTER message file, or the Coinbase full channel of every product."""
    minutes = 10
    while True:
        result = simulate(SimConfig(n_symbols=symbols, duration_ns=minutes * 60 * SEC, seed=7))
        if fmt == "itch":
            path = write_itch(result, folder)[0]
        elif fmt == "coinbase":
            path = write_coinbase(result, folder)[0]
        else:
            files = [p for p in write_lobster(result, folder, 1) if "_message_" in p.name]
            path = max(files, key=lambda p: p.stat().st_size)
        n = sum(1 for _ in feed_class(fmt).read_capture(path))
        if n >= messages or minutes >= 390:
            return path, n
        minutes = min(390, int(minutes * 1.2 * messages / max(n, 1)) + 1)


def timed(
    native_path: bool, path: Path, levels: int, symbol: str | None, venue: str
) -> tuple[float, list, RebuildStats, list]:
    t0 = time.perf_counter()
    rows, stats, errors = rebuild_outcome(path, levels, symbol, native=native_path, venue=venue)
    return time.perf_counter() - t0, rows, stats, errors


def csv_timed(
    native_path: bool, path: Path, levels: int, symbol: str | None, venue: str, rows: list
) -> tuple[float, str]:
    """The CLI's CSV text (no --with-seq): the reference's from its rows (the rebuild's time is added by the
    caller), the native path's whole (the rebuild and Rust's lines)."""
    t0 = time.perf_counter()
    if native_path:
        text = "".join(b.csv(False) for b in NATIVE[venue](path, levels, symbol))
    else:
        text = "".join(csv_lines(rows, False))
    return time.perf_counter() - t0, text


def compare(venue: str, path: Path, n: int, levels: int, symbols: list[str | None], label: str = "") -> bool:
    """A table row per book, both paths timed, without and with the CSV: False where they differ."""
    same = True
    for symbol in symbols:
        t_ref, *want = timed(False, path, levels, symbol, venue)
        t_nat, *got = timed(True, path, levels, symbol, venue)
        c_ref, text_ref = csv_timed(False, path, levels, symbol, venue, want[0])
        c_nat, text_nat = csv_timed(True, path, levels, symbol, venue, [])
        name = label or symbol or f"the first ({want[1].symbols[0]})"
        if got != want or text_nat != text_ref:
            print(f"| {name} | DIFFERENT: {len(want[0]):,} rows against {len(got[0]):,}, the CSV "
                  f"{'the same' if text_nat == text_ref else 'different'} |")  # fmt: skip
            same = False
            continue
        c_ref += t_ref
        print(f"| {name} | {len(want[0]):,} | {t_ref:.2f} | {t_nat:.3f} | {n / t_ref:,.0f} | {n / t_nat:,.0f} | "
              f"{t_ref / t_nat:.1f}x | {c_ref:.2f} | {c_nat:.3f} | {c_ref / c_nat:.1f}x |")  # fmt: skip
    return same


HEADER = """| book | rows | reference s | native s | reference messages/s | native messages/s | speed-up | \
with the CSV: reference s | native s | speed-up |
|---|---|---|---|---|---|---|---|---|---|"""


def itch(args: argparse.Namespace) -> bool:
    with tempfile.TemporaryDirectory(prefix="rebuild-bench-") as tmp:
        path, n = day_file(50_000 if args.quick else args.messages, args.symbols, Path(tmp))
        busiest = Counter(e.symbol for e in _events(path)).most_common(1)[0][0]
        print(f"# megatrading book on a simulated ITCH day: {n:,} messages, {args.symbols} stocks, "
              f"{path.stat().st_size:,} bytes; {args.levels} levels\n")  # fmt: skip
        print(HEADER)
        same = compare("itch", path, n, args.levels, [None, busiest])
        data = path.read_bytes()
        t0 = time.perf_counter()
        native.ItchFeed().decode_apply(data)
        t = time.perf_counter() - t0
        print(f"\nthe native feed alone (`decode_apply` of the whole file in memory, no rows): {t:.3f} s, "
              f"{n / t:,.0f} messages/s")  # fmt: skip
    return same


def lobster(args: argparse.Namespace) -> bool:
    with tempfile.TemporaryDirectory(prefix="rebuild-bench-") as tmp:
        path, n = day_file(10_000 if args.quick else args.messages, args.symbols, Path(tmp), "lobster")
        print(f"# megatrading book on a simulated LOBSTER message file (the busiest of {args.symbols} tickers): "
              f"{n:,} messages, {path.stat().st_size:,} bytes; {args.levels} levels\n")  # fmt: skip
        print(HEADER)
        return compare("lobster", path, n, args.levels, [None], label=path.name)


def binance(args: argparse.Namespace) -> bool:
    captures = sorted(args.data.glob("*.gz"), key=lambda p: (args.quick and p.stat().st_size, p.name))
    captures = captures[:1] if args.quick else captures  # quick: the smallest
    if not captures:
        print(f"no Binance captures in {args.data}")
        return False
    print(f"# megatrading book on the Binance captures of {args.data}; {args.levels} levels\n")
    print(HEADER)
    same = True
    for path in captures:
        n = sum(1 for _ in BinanceFeed.read_capture(path))
        same &= compare("binance", path, n, args.levels, [None], label=f"{path.name} ({n:,} messages)")
    return same


def kraken(args: argparse.Namespace) -> bool:
    path = args.kraken
    records = list(KrakenFeed.read_capture(path))
    pairs = Counter(KrakenFeed().key(r.raw) for r in records if r.raw.startswith(b"["))
    busiest = pairs.most_common(1)[0][0]
    print(f"# megatrading book on the Kraken capture {path.name}: {len(records):,} messages, {len(pairs)} pairs; "
          f"{args.levels} levels\n")  # fmt: skip
    print(HEADER)
    return compare("kraken", path, len(records), args.levels, [None, busiest])


def coinbase(args: argparse.Namespace) -> bool:
    path = args.coinbase
    records = list(CoinbaseFeed.read_capture(path))
    products = Counter(k for r in records if (k := CoinbaseFeed().key(r.raw)))
    print(f"# megatrading book on the Coinbase capture {path.name}: {len(records):,} messages, {len(products)} "
          f"products; {args.levels} levels\n")  # fmt: skip
    print(HEADER)
    same = compare("coinbase", path, len(records), args.levels, [None, products.most_common(1)[0][0]])
    with tempfile.TemporaryDirectory(prefix="rebuild-bench-") as tmp:
        symbols = min(args.symbols, 3) if args.quick else args.symbols
        sim, n = day_file(10_000 if args.quick else args.messages, symbols, Path(tmp), "coinbase")
        busiest = Counter(k for r in CoinbaseFeed.read_capture(sim) if (k := CoinbaseFeed().key(r.raw)))
        print(f"\n# the simulated full channel of {symbols} products: {n:,} messages, "
              f"{sim.stat().st_size:,} bytes; the busiest product's book, {args.levels} levels\n")  # fmt: skip
        print(HEADER)
        same &= compare("coinbase", sim, n, args.levels, [busiest.most_common(1)[0][0]])
    return same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--venue", choices=("itch", "binance", "lobster", "kraken", "coinbase"), default="itch")
    ap.add_argument("--messages", type=int, default=1_000_000,
                    help="ITCH, LOBSTER, the Coinbase full channel: the simulated file's size")  # fmt: skip
    ap.add_argument("--symbols", type=int, default=10, help="ITCH, LOBSTER, Coinbase: stocks simulated")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "binance-hftbacktest",
                    help="Binance: the folder of captures")  # fmt: skip
    captures = REPO.parent / "shared" / "data" / "cryptofeed-captures"
    ap.add_argument("--kraken", type=Path, help="Kraken: the capture (default: the book capture of ../shared/data)",
                    default=captures / "KRAKEN.ws.50.0.gz")  # fmt: skip
    ap.add_argument("--coinbase", type=Path, help="Coinbase: the capture (default: the level2 one of ../shared/data)",
                    default=captures / "COINBASE.ws.28.0.gz")  # fmt: skip
    ap.add_argument("--levels", type=int, default=10)
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 50,000 ITCH messages, 10,000 LOBSTER rows, the smallest Binance "
                    "capture, 10,000 messages of the Coinbase full channel of 3 products")  # fmt: skip
    args = ap.parse_args()
    if not native.enabled():
        print(f"nothing to compare: {native.describe()}")
        return 1
    run = {"itch": itch, "binance": binance, "lobster": lobster, "kraken": kraken, "coinbase": coinbase}[args.venue]
    same = run(args)
    print(f"rows, stats, errors and CSV {'identical' if same else 'DIFFERENT'}")
    return 0 if same else 1


def _events(path: Path):
    feed = ItchFeed()
    for rec in ItchFeed.read_capture(path):
        try:
            yield from feed.on_message(rec.raw)
        except FeedError:  # the busiest book: a refused message counts for none
            continue


if __name__ == "__main__":
    sys.exit(main())
