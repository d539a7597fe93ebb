"""The host's share of serving: `model_inputs` (model/inputs.py: stacking the windows, tokenizing events
and headlines, normalizing the book rows) per batch of live windows, the work the worker's model thread
does on the CPU before every model call: compare it with the model's own time per batch
(bench/model_bench.py; on a GPU replayed from CUDA graphs, docs/gpu.md).

Beside it, in the same run on the same batches, the path before 2026-12-04 (`previous_inputs`: np.stack
per array, every window's headlines encoded), its arrays checked equal to model_inputs' first.

    python bench/inputs_bench.py [--checkpoint model/checkpoints/demo] [--batches 1,64,256,1024]
        [--real ../shared/data]

Windows: a simulated ITCH stream cut by the worker's own pipeline, or with --real the Binance spot
BTCUSDT and ETHUSDT captures' (bench/overload_bench.py's), repeated to fill the largest batch.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from overload_bench import CAPTURES, load_windows

from model.inputs import _STACKED, news_age
from model.serving.orderflow import OrderFlowForecaster
from model.sim.engine import SEC, SimConfig
from orderbook.windows import Window
from streams.pipeline import simulated_windows


def sim_windows() -> list[Window]:
    return simulated_windows(SimConfig(n_symbols=3, duration_ns=300 * SEC, seed=8))


def previous_inputs(f: OrderFlowForecaster, windows: Sequence[Window]) -> dict[str, np.ndarray]:
    """model_inputs as it was before 2026-12-04: the peer the bench times it against."""
    b = {name: np.stack([getattr(w, name) for w in windows]) for name in _STACKED}
    out = f.tokenizer.encode(b["kind"], b["side"], b["price"], b["size"], b["dt"], b["mask"])
    out["features"] = f.norm.apply(b["features"].astype(np.float32), b["row_mask"])
    out["row_mask"] = b["row_mask"]
    out["news"] = np.stack([f.text.encode_news(w.news_text, w.news_mask) for w in windows])
    out["news_mask"] = b["news_mask"]
    out["news_age"] = news_age(np.array([w.ts for w in windows], np.int64), b["news_ts"], b["news_mask"])
    return out


def per_call(call: Callable[[], object], budget: float) -> float:
    call()
    t0, calls = time.perf_counter(), 0
    while time.perf_counter() - t0 < budget:
        call()
        calls += 1
    return (time.perf_counter() - t0) / calls


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=Path("model/checkpoints/demo"))
    p.add_argument("--batches", default="1,64,256,1024")
    p.add_argument("--budget", type=float, default=2.0, help="seconds per batch size and path")
    p.add_argument("--real", type=Path, default=None, help="shared data folder: the Binance spot captures' windows")
    args = p.parse_args(argv)
    forecaster = OrderFlowForecaster(args.checkpoint, device="cpu")
    sizes = [int(b) for b in args.batches.split(",")]
    if args.real is None:
        distinct, what = sim_windows(), "simulated ITCH"
    else:
        distinct = [w for pool in load_windows(args.real / "binance-hftbacktest", CAPTURES, None) for w in pool]
        what = f"real ({', '.join(CAPTURES)})"
    windows = (distinct * (max(sizes) // max(len(distinct), 1) + 1))[: max(sizes)]
    new, old = forecaster.arrays(windows), previous_inputs(forecaster, windows)
    differ = [k for k in old if not (new[k].dtype == old[k].dtype and np.array_equal(new[k], old[k]))]
    if differ or set(new) != set(old):
        print(f"model_inputs and the previous path differ: {differ or sorted(set(new) ^ set(old))}", file=sys.stderr)
        return 1
    print(f"model_inputs of {args.checkpoint} on one CPU thread, {len(distinct):,} distinct {what} windows; "
          f"the previous path's arrays equal")  # fmt: skip
    print(f"{'batch':>6}{'ms a batch':>12}{'us a window':>13}{'windows/s':>12}{'previous us':>13}{'speed-up':>10}")
    for b in sizes:
        part = windows[:b]
        dt = per_call(lambda part=part: forecaster.arrays(part), args.budget)
        before = per_call(lambda part=part: previous_inputs(forecaster, part), args.budget)
        print(f"{b:>6}{1e3 * dt:>12.2f}{1e6 * dt / b:>13.1f}{b / dt:>12,.0f}{1e6 * before / b:>13.1f}"
              f"{before / dt:>9.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
