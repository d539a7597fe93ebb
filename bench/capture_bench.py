"""Reading a text capture (`read_capture`, what `megatrading book`, `score`, `dataset` and `publish` read a file
with) with its lines split in Rust a block at a time (hftbacktest's `<recv ns> <json>` lines of a Binance capture:
`_core.stamped_lines`; cryptofeed's received lines `<epoch s>: <json>` of a Kraken or Coinbase recording:
`_core.epoch_stamped_lines`) beside the reference's reading line by line (`MT_NATIVE=0`), in one run, the records
compared: each Binance capture of `--data`, the Kraken book capture and the Coinbase level2 capture of
`--cryptofeed` (0.2 MB each), and a simulated Coinbase full channel of `--messages` messages (`megatrading
simulate --format coinbase`, written as cryptofeed records it; 0: none), what a day of a busy venue looks like.
Best of `--repeat` runs each; the gunzip of a file alone (`gzip.decompress`) beside them, what no reader of the
file can go under.

    .venv/bin/python bench/capture_bench.py [--data ../shared/data/binance-hftbacktest] [--repeat 3]
        [--cryptofeed ../shared/data/cryptofeed-captures] [--messages 300000]
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.rebuild_bench import day_file  # noqa: E402
from orderbook import native  # noqa: E402
from orderbook.venues import feed_class  # noqa: E402


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def read(venue: str, path: Path, on: bool) -> list:
    os.environ[native.ENV] = "1" if on else "0"
    try:
        return list(feed_class(venue).read_capture(path))
    finally:
        os.environ.pop(native.ENV, None)


def gunzip(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def row(venue: str, path: Path, repeat: int, name: str = "") -> tuple[float, float]:
    """Print one file's figures; its (Rust, reference) seconds."""
    t_gz, _ = best(lambda: gunzip(path), repeat)
    t_on, got = best(lambda: read(venue, path, True), repeat)
    t_off, want = best(lambda: read(venue, path, False), repeat)
    if got != want:
        sys.exit(f"{path.name}: the records differ")
    print(f"{name or path.name:<32} {len(got):>8,} {t_gz:>9.3f} {t_on:>8.3f} {t_off:>12.3f} {t_off / t_on:>6.2f}")
    return t_on, t_off


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "binance-hftbacktest")
    ap.add_argument("--cryptofeed", type=Path, default=REPO.parent / "shared" / "data" / "cryptofeed-captures")
    ap.add_argument("--messages", type=int, default=300_000, help="of the simulated Coinbase full channel (0: none)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not native.available():
        sys.exit(f"the native module is not built: {native.describe()}")
    print(f"{'capture':<32} {'records':>8} {'gunzip s':>9} {'rust s':>8} {'reference s':>12} {'x':>6}")
    on = off = 0.0
    for path in sorted(args.data.glob("*.gz")):
        t_on, t_off = row("binance", path, args.repeat)
        on, off = on + t_on, off + t_off
    print(f"{'the Binance captures':<32} {'':>8} {'':>9} {on:>8.3f} {off:>12.3f} {off / on:>6.2f}")
    for venue, name in (("kraken", "KRAKEN.ws.50.0.gz"), ("coinbase", "COINBASE.ws.28.0.gz")):
        if (args.cryptofeed / name).is_file():
            row(venue, args.cryptofeed / name, args.repeat)
    if args.messages > 0:
        with tempfile.TemporaryDirectory() as tmp:
            path, _ = day_file(args.messages, 10, Path(tmp), "coinbase")
            mb = path.stat().st_size / 1e6
            row("coinbase", path, args.repeat, f"simulated Coinbase full ({mb:.1f} MB)")


if __name__ == "__main__":
    main()
