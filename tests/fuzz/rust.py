"""Coverage-guided fuzzing of the compiled decoders with cargo fuzz (libFuzzer in the Rust code): `make fuzz`.

    python tests/fuzz/rust.py TARGET [--seconds 300] [--work build/fuzz] [-- LIBFUZZER_FLAGS ...]

The targets (orderbook/native/fuzz/fuzz_targets/: `json`, `binance`, `itch`, `lobster`, `kraken`,
`coinbase`) drive the
decoders, books and window builders without Python, instrumented, with debug assertions: a panic or an integer overflow
is a finding. In the worker a panic fails the partition's batch, which is redone from the committed
offset and fails again for as long as the record is there; an overflow is a wrapped value where the
Python reference's ints are exact. tests/fuzz/run.py's `native` target compares the same code with the
reference, at ~50 inputs/s; these run at thousands to a million a second, so they reach what that
comparison does not.

Seeds, written to WORK/corpus/rust-TARGET on its first run: the head of each Binance capture of
../shared/data cut into streams of consecutive messages (one a line, after a byte that picks the
window features' tick), a simulated ITCH day's messages with their 2-byte length prefixes, simulated
LOBSTER rows one a line, and the Kraken book capture's pairs (each snapshot cut to its best levels, then the
pair's updates and trades), as v1 arrays and as v2 objects; the Coinbase level2 capture's products (each
snapshot cut to its best levels, then the product's updates and trades) and a simulated full channel.
A failing input lands in WORK/crashes/rust-TARGET/; once the failure is fixed, its bytes go into a
regression test of the Python suite (the same messages through the native path and the reference).

Needs the nightly toolchain and cargo-fuzz (`make fuzz` installs them where missing).
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CRATE = Path(__file__).resolve().parents[2] / "orderbook" / "native" / "fuzz"
TARGETS = ("json", "binance", "itch", "lobster", "kraken", "coinbase")
SEED_MESSAGES = 24  # messages of a seed stream after its start: a book going live, a few windows
BUFFERED = 8  # diffs before the snapshot a Binance stream keeps (the catch-up needs the last ones)
SEEDS_PER_SOURCE = 24
MAX_LEN = 1 << 15


def binance_streams() -> list[list[bytes]]:
    """Each Binance capture's head as streams of consecutive messages."""
    from targets import SHARED_DATA

    from orderbook.venues.binance import BinanceFeed

    out = []
    for path in sorted((SHARED_DATA / "binance-hftbacktest").glob("*.gz")):
        head = [r.raw for r in itertools.islice(BinanceFeed.read_capture(path), SEED_MESSAGES * SEEDS_PER_SOURCE)]
        at = next(i for i, m in enumerate(head) if m.startswith(b'{"symbol"'))  # the REST snapshot
        # every stream is the capture's start (the last diffs buffered, the snapshot, its catch-up) and
        # runs on from a later point of the head (the first one without a gap)
        start = [*head[max(0, at - BUFFERED) : at], _top(head[at])]
        out += [start + head[i : i + SEED_MESSAGES] for i in range(at + 1, len(head), SEED_MESSAGES)]
    return out


def _top(snapshot: bytes, levels: int = 20) -> bytes:
    """A REST snapshot cut to its best `levels` a side: a thousand levels made every input 40 KB,
    and libFuzzer's speed goes with the input's length."""
    doc = json.loads(snapshot)
    body = doc["snapshot"]
    body["bids"], body["asks"] = body["bids"][:levels], body["asks"][:levels]
    return json.dumps(doc, separators=(",", ":")).encode()


def itch_streams() -> list[list[bytes]]:
    """Two simulated minutes of ITCH (targets.seed_stream's), cut into streams from the start on:
    an ITCH book needs its stock directory and the orders a later message names."""
    from targets import seed_stream

    messages = list(seed_stream("itch"))
    step = max(1, len(messages) // SEEDS_PER_SOURCE)
    return [messages[: i + SEED_MESSAGES] for i in range(0, len(messages), step)]


def lobster_streams() -> list[list[bytes]]:
    """Two simulated minutes of one ticker's LOBSTER rows (targets.seed_stream's), cut as ITCH's are: a
    row names orders an earlier one added."""
    from targets import seed_stream

    rows = list(seed_stream("lobster"))
    step = max(1, len(rows) // SEEDS_PER_SOURCE)
    return [rows[: i + SEED_MESSAGES] for i in range(0, len(rows), step)]


def kraken_streams() -> list[list[bytes]]:
    """Per pair of the Kraken book capture: its snapshot cut to 20 levels a side, then its next messages;
    and the same as v2 objects (`orderbook.venues.kraken_encode.as_v2`)."""
    from targets import SHARED_DATA

    from orderbook.venues.kraken import KrakenFeed
    from orderbook.venues.kraken_encode import as_v2

    path = SHARED_DATA / "cryptofeed-captures" / "KRAKEN.ws.50.0.gz"
    messages = [r.raw for r in KrakenFeed.read_capture(path) if r.raw.startswith(b"[")]
    out = []
    for pair in sorted({json.loads(m)[-1] for m in messages}):
        mine = [m for m in messages if m.endswith(json.dumps(pair).encode() + b"]")]
        snapshot = json.loads(mine[0])
        for key in ("as", "bs"):
            snapshot[1][key] = snapshot[1][key][:20]
        stream = [json.dumps(snapshot, separators=(",", ":")).encode(), *mine[1 : 1 + 2 * SEED_MESSAGES]]
        out += [stream, as_v2(stream)]
    return out


def coinbase_streams() -> list[list[bytes]]:
    """Per product of the Coinbase level2 capture: its snapshot cut to 20 levels a side, then its next
    messages; and a simulated full channel (an empty level-3 snapshot, then its orders) from the start on."""
    from targets import SHARED_DATA, seed_stream

    from orderbook.venues.coinbase import CoinbaseFeed

    path = SHARED_DATA / "cryptofeed-captures" / "COINBASE.ws.28.0.gz"
    messages = [r.raw for r in CoinbaseFeed.read_capture(path)] if path.is_file() else []
    out = []
    for product in sorted({CoinbaseFeed().key(m) for m in messages} - {""}):
        mine = [m for m in messages if CoinbaseFeed().key(m) == product]
        snapshot = json.loads(mine[0])
        if snapshot.get("type") != "snapshot":
            continue
        snapshot["bids"], snapshot["asks"] = snapshot["bids"][:20], snapshot["asks"][:20]
        out.append([json.dumps(snapshot, separators=(",", ":")).encode(), *mine[1 : 1 + 2 * SEED_MESSAGES]])
    full = list(seed_stream("coinbase-full"))
    step = max(1, len(full) // SEEDS_PER_SOURCE)
    return out + [full[: i + SEED_MESSAGES] for i in range(0, len(full), step)]


def seeds(target: str) -> list[bytes]:
    """The target's seed inputs: a tick byte, then the stream in the target's framing."""
    if target == "json":
        return [m for stream in binance_streams() for m in stream[:4]]
    if target == "binance":
        return [bytes([i % 4]) + b"\n".join(s) for i, s in enumerate(binance_streams())]
    if target == "lobster":
        return [bytes([i % 4]) + b"\n".join(s) for i, s in enumerate(lobster_streams())]
    if target == "kraken":
        return [bytes([i % 4]) + b"\n".join(s) for i, s in enumerate(kraken_streams())]
    if target == "coinbase":
        return [bytes([i % 4]) + b"\n".join(s) for i, s in enumerate(coinbase_streams())]
    framed = (b"".join(len(m).to_bytes(2, "big") + m for m in s) for s in itch_streams())
    return [bytes([i % 4]) + f for i, f in enumerate(framed)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", choices=TARGETS)
    p.add_argument("--seconds", type=int, default=300, help="how long to fuzz (default 300)")
    p.add_argument("--work", type=Path, default=Path("build/fuzz"), help="corpus and crashes (default build/fuzz)")
    args, libfuzzer = p.parse_known_args()
    corpus = (args.work / "corpus" / f"rust-{args.target}").resolve()
    crashes = (args.work / "crashes" / f"rust-{args.target}").resolve()
    crashes.mkdir(parents=True, exist_ok=True)
    if not corpus.is_dir() or not any(corpus.iterdir()):
        corpus.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(seeds(args.target)):
            (corpus / f"seed-{i:04d}").write_bytes(seed[:MAX_LEN])
    flags = [f"-max_total_time={args.seconds}", f"-artifact_prefix={crashes}/", "-timeout=30", "-rss_limit_mb=4096",
             f"-max_len={MAX_LEN}"]  # fmt: skip
    cmd = ["cargo", "+nightly", "fuzz", "run", "--debug-assertions", args.target, str(corpus), "--",
           *flags, *[f for f in libfuzzer if f != "--"]]  # fmt: skip
    return subprocess.run(cmd, cwd=CRATE, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
