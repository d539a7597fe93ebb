"""Reading a Binance capture (`BinanceFeed.read_capture`, what `megatrading book`, `score`, `dataset` and
`publish` read a file with): its hftbacktest lines split in Rust a block at a time (`_core.stamped_lines`)
beside the reference's reading line by line (`MT_NATIVE=0`), on each capture of `--data`, in one run, the
records compared. Best of `--repeat` runs each; the gunzip of the file alone (`gzip.decompress`) beside them,
what no reader of the file can go under.

    .venv/bin/python bench/capture_bench.py [--data ../shared/data/binance-hftbacktest] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orderbook import native  # noqa: E402
from orderbook.venues.binance import BinanceFeed  # noqa: E402


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def read(path: Path, on: bool) -> list:
    os.environ[native.ENV] = "1" if on else "0"
    try:
        return list(BinanceFeed.read_capture(path))
    finally:
        os.environ.pop(native.ENV, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "binance-hftbacktest")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not native.available():
        sys.exit(f"the native module is not built: {native.describe()}")
    print(f"{'capture':<28} {'records':>8} {'gunzip s':>9} {'rust s':>8} {'reference s':>12} {'x':>6}")
    totals = [0.0, 0.0]
    for path in sorted(args.data.glob("*.gz")):
        t_gz, _ = best(lambda p=path: gzip.decompress(p.read_bytes()), args.repeat)
        t_on, got = best(lambda p=path: read(p, True), args.repeat)
        t_off, want = best(lambda p=path: read(p, False), args.repeat)
        if got != want:
            sys.exit(f"{path.name}: the records differ")
        totals[0] += t_on
        totals[1] += t_off
        print(f"{path.name:<28} {len(got):>8,} {t_gz:>9.3f} {t_on:>8.3f} {t_off:>12.3f} {t_off / t_on:>6.2f}")
    print(f"{'all':<28} {'':>8} {'':>9} {totals[0]:>8.3f} {totals[1]:>12.3f} {totals[1] / totals[0]:>6.2f}")


if __name__ == "__main__":
    main()
