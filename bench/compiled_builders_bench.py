"""The worker's pipeline on the venues without a native decoder: compiled window builders beside Python ones.

A worker whose venue the Rust crate does not decode (Coinbase) keeps the Python feeds and
books; where the native module is on, its window builders are the compiled ones
(`orderbook.venue_windows.CompiledBuilderWindows`, streams/pipeline.py). This times
`streams.pipeline.VenuePipeline.process_batch` (2,000 records a call, as the worker's batches) on the same
records both ways in one run: `python` (native=False: the all-Python reference, which a worker run with
MT_NATIVE=0 takes) and `compiled` (the worker's default). Passes interleaved, the best of `--passes` each;
the outputs (windows, rejects, stats) are compared, and the whole run fails where they differ.

Beside it, the snapshot of the pipeline at the stream's end (`VenuePipeline.dump_state`, what the worker
encodes into `md.state`; on the compiled builders it converts them to the reference builders first,
orderbook/native/convert.py `reference_builders`), the median of 5.

Sources: the real Coinbase capture of --real, and a simulated Coinbase `full` (L3) stream (model/sim, as
`megatrading simulate --format coinbase` writes it; --sim-minutes). LOBSTER and Kraken, which had their
place here, have native decoders since 2026-12-06 (orderbook/native/src/lobster.rs, kraken.rs):
bench/pipeline_bench.py --venue lobster and --venue kraken time their workers.

    .venv/bin/python bench/compiled_builders_bench.py [--real ../shared/data] [--sim-minutes 10] [--passes 3] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.sim.engine import SEC, SimConfig  # noqa: E402
from model.sim.run import simulate  # noqa: E402
from model.sim.writers import messages as sim_messages  # noqa: E402
from orderbook import native  # noqa: E402
from orderbook.venue_windows import CompiledBuilderWindows  # noqa: E402
from orderbook.venues import capture_records  # noqa: E402
from streams.config import Settings  # noqa: E402
from streams.pipeline import VenuePipeline  # noqa: E402

BATCH = 2000
REAL = [
    ("coinbase", "cryptofeed-captures/COINBASE.ws.28.0.gz"),
]


class Rec(NamedTuple):
    key: bytes | None
    value: bytes
    partition: int
    offset: int


def sources(args: argparse.Namespace) -> list[tuple[str, str, list[Rec]]]:
    out = []
    for venue, rel in REAL:
        path = Path(args.real) / rel
        if path.exists():
            recs = [Rec(r.key, r.value, 0, i) for i, r in enumerate(capture_records(venue, [path]))]
            out.append((Path(rel).name, venue, recs))
    minutes = 2 if args.quick else args.sim_minutes
    result = simulate(SimConfig(n_symbols=4, duration_ns=minutes * 60 * SEC, seed=7))
    recs = [Rec(m.symbol.encode(), m.raw, 0, i) for i, m in enumerate(sim_messages("coinbase", result))]
    out.append((f"simulated coinbase ({minutes} min, 4 symbols)", "coinbase", recs))
    return out


def run(venue: str, recs: list[Rec], native_arg: bool | None) -> tuple[float, VenuePipeline, Any]:
    pipe = VenuePipeline(venue, Settings().window, native=native_arg)
    windows, rejects = [], []
    t0 = time.perf_counter()
    for lo in range(0, len(recs), BATCH):
        ws, rs = pipe.process_batch(recs[lo : lo + BATCH])
        windows += ws
        rejects += rs
    secs = time.perf_counter() - t0
    return secs, pipe, (windows, [(r.reason, r.error, r.offset, r.index, r.value) for r in rejects], pipe.stats)


def snapshot_ms(pipe: VenuePipeline) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(5):
        t0 = time.perf_counter()
        size = len(pipe.dump_state())
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--sim-minutes", type=int, default=10)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="2 simulated minutes, 1 pass (a smoke run)")
    args = ap.parse_args()
    if not native.enabled():
        print(f"nothing to compare: {native.describe()}")
        return 1
    from orderbook.native.check import pipeline_difference

    passes = 1 if args.quick else args.passes
    print(f"# VenuePipeline.process_batch ({BATCH:,} records a call), python (native=False) beside compiled "
          f"(the default), best of {passes} interleaved passes\n")  # fmt: skip
    print("| source | records | messages | windows | python s | compiled s | speed-up | compiled records/s "
          "| snapshot ms python / compiled | snapshot bytes |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    failed = False
    totals = [0.0, 0.0]
    for name, venue, recs in sources(args):
        best = {False: float("inf"), None: float("inf")}
        pipes: dict[bool | None, VenuePipeline] = {}
        outs: dict[bool | None, Any] = {}
        for _ in range(passes):
            for way in (False, None):
                secs, pipes[way], outs[way] = run(venue, recs, way)
                best[way] = min(best[way], secs)
        assert isinstance(pipes[None].core, CompiledBuilderWindows) and not isinstance(
            pipes[False].core, CompiledBuilderWindows
        )
        difference = pipeline_difference(outs[False], outs[None])
        if difference is not None:
            print(f"| {name} | DIFFERENT OUTPUT: {difference} |")
            failed = True
            continue
        (ms_py, size), (ms_c, _) = snapshot_ms(pipes[False]), snapshot_ms(pipes[None])
        stats = outs[None][2]
        totals[0] += best[False]
        totals[1] += best[None]
        print(f"| {name} | {len(recs):,} | {stats.records:,} | {stats.windows:,} | {best[False]:.2f} | "
              f"{best[None]:.2f} | {best[False] / best[None]:.2f}x | {len(recs) / best[None]:,.0f} | "
              f"{ms_py:.1f} / {ms_c:.1f} | {size:,} |")  # fmt: skip
    print(f"\nall sources: python {totals[0]:.2f} s, compiled {totals[1]:.2f} s: "
          f"{totals[0] / max(totals[1], 1e-9):.2f}x; outputs {'DIFFERENT' if failed else 'identical'}")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
