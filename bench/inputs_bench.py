"""The host's share of serving: `model_inputs` (model/inputs.py: stacking the windows, tokenizing events
and headlines, normalizing the book rows) per batch of live windows, the work the worker's model thread
does on the CPU before every model call, beside nothing: compare it with the model's own time per batch
(bench/model_bench.py; on a GPU replayed from CUDA graphs, docs/gpu.md).

    python bench/inputs_bench.py [--checkpoint model/checkpoints/demo] [--batches 1,64,256,1024]

Windows: a simulated ITCH stream cut by the worker's own pipeline (repeated to fill the largest batch).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.serving.orderflow import OrderFlowForecaster
from model.sim.engine import SEC, SimConfig
from streams.pipeline import simulated_windows


def sim_windows(n: int) -> list:
    out = simulated_windows(SimConfig(n_symbols=3, duration_ns=300 * SEC, seed=8))
    return (out * (n // max(len(out), 1) + 1))[:n]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=Path("model/checkpoints/demo"))
    p.add_argument("--batches", default="1,64,256,1024")
    p.add_argument("--budget", type=float, default=2.0, help="seconds per batch size")
    args = p.parse_args(argv)
    forecaster = OrderFlowForecaster(args.checkpoint, device="cpu")
    sizes = [int(b) for b in args.batches.split(",")]
    windows = sim_windows(max(sizes))
    print(f"model_inputs of {args.checkpoint} on one CPU thread, {len(set(map(id, windows)))} distinct windows")
    print(f"{'batch':>6}{'ms a batch':>12}{'us a window':>13}{'windows/s':>12}")
    for b in sizes:
        part = windows[:b]
        forecaster.arrays(part)
        t0, calls = time.perf_counter(), 0
        while time.perf_counter() - t0 < args.budget:
            forecaster.arrays(part)
            calls += 1
        dt = (time.perf_counter() - t0) / calls
        print(f"{b:>6}{1e3 * dt:>12.2f}{1e6 * dt / b:>13.1f}{b / dt:>12,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
