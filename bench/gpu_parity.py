"""What bf16 on a GPU changes in the served outputs: one checkpoint run over the same dataset windows on
the CPU in fp32 and on CUDA under bf16 autocast (as model.serving.orderflow serves there), side by side.

    python bench/gpu_parity.py --checkpoint model/checkpoints/demo --data build/demo-data/unseen.npz

Printed per target: CRPS on each device and its relative change, and the largest quantile difference
in target units; for the anomaly score: the largest difference and the rank correlation; for the
direction head: the largest probability difference and the macro AUC on each device; and
each device's windows/s through model_outputs (host-to-device copies included, the first batch not
timed). Then the served call itself on CUDA, eager beside replayed from CUDA graphs
(model/serving/graphs.py, as the worker serves): the largest output difference at several batch sizes,
and per batch size the time of one call from the numpy arrays to the outputs back on the host
(to_batch, score, .cpu(); tokenization not included), p50 and p99 over 200 calls.
Without CUDA it says so and exits 0: the figures are only meaningful beside a GPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.evaluation.direction import HORIZONS, _valid, macro_auc
from model.evaluation.evaluate import window_crps
from model.evaluation.outputs import ModelOutputs, model_outputs
from model.network.direction import direction_labels
from model.training.dataset import load


def run(ckpt: Path, arrays: dict[str, np.ndarray], meta: dict, device: str, batch: int) -> tuple[ModelOutputs, float]:
    first = {k: v[:batch] for k, v in arrays.items()}
    model_outputs(ckpt, first, meta, device, device=device, batch=batch)  # warm-up: kernels, allocator
    t0 = time.perf_counter()
    out = model_outputs(ckpt, arrays, meta, device, device=device, batch=batch)
    return out, len(arrays["label"]) / (time.perf_counter() - t0)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=Path("model/checkpoints/demo"))
    p.add_argument("--data", type=Path, default=Path("build/demo-data/unseen.npz"))
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--limit", type=int, help="the first N windows only")
    args = p.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("gpu_parity: no CUDA device; nothing to compare")
        return 0
    ds = load(args.data)
    if args.limit:
        ds.arrays = {k: v[: args.limit] for k, v in ds.arrays.items()}
    n = len(ds.arrays["label"])
    print(f"{n:,} windows of {args.data}, checkpoint {args.checkpoint}, batch {args.batch}")
    print(f"cuda: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    cpu, cpu_rate = run(args.checkpoint, ds.arrays, ds.meta, "cpu", args.batch)
    gpu, gpu_rate = run(args.checkpoint, ds.arrays, ds.meta, "cuda", args.batch)
    print(f"windows/s through model_outputs: cpu fp32 {cpu_rate:,.0f} ({torch.get_num_threads()} threads), "
          f"cuda bf16 {gpu_rate:,.0f} ({gpu_rate / cpu_rate:.1f}x)")  # fmt: skip

    crps = window_crps(ds.arrays, {"cpu": cpu.quantiles, "cuda": gpu.quantiles})
    print(f"\n{'target':<14}{'CRPS cpu fp32':>15}{'CRPS cuda bf16':>16}{'change':>9}{'max |dq|':>10}{'median':>9}")
    for t in cpu.quantiles:
        c, g = np.nanmean(crps["cpu"][t]), np.nanmean(crps["cuda"][t])
        dq = np.abs(cpu.quantiles[t] - gpu.quantiles[t])
        print(f"{t:<14}{c:>15.5f}{g:>16.5f}{(g - c) / c:>+9.2%}{dq.max():>10.4g}{np.median(dq):>9.3g}")

    da = np.abs(cpu.anomaly - gpu.anomaly)
    print(f"\nanomaly score: max |diff| {da.max():.4f}, mean {da.mean():.5f}, "
          f"rank correlation {spearman(cpu.anomaly, gpu.anomaly):.5f}")  # fmt: skip
    dn = np.abs(cpu.nll - gpu.nll) / np.maximum(cpu.n_events, 1)
    print(f"next-event NLL per event: max |diff| {dn.max():.4f}, perplexity cpu {cpu.perplexity():.4f} "
          f"cuda {gpu.perplexity():.4f}")  # fmt: skip
    horizons = ds.meta.get("horizons") or HORIZONS
    for target in cpu.direction:
        h = int(target.rsplit("_h", 1)[1])
        ok = _valid(ds.arrays, h, horizons)
        y = direction_labels(ds.arrays[target])[ok]
        dp = np.abs(cpu.direction[target] - gpu.direction[target]).max()
        a_cpu, a_gpu = (macro_auc(y, o.direction[target][ok]) for o in (cpu, gpu))
        print(f"direction {target}: max |dp| {dp:.4f}, macro AUC cpu {a_cpu:.4f} cuda {a_gpu:.4f}")
    served_call(args.checkpoint, ds.arrays)
    return 0


def served_call(ckpt: Path, arrays: dict[str, np.ndarray], calls: int = 200, device_name: str = "cuda") -> None:
    import torch

    from model.network.checkpoint import load as load_checkpoint
    from model.network.orderflow import to_batch
    from model.serving.graphs import GraphedScore

    device = torch.device(device_name)
    model = load_checkpoint(ckpt, device)[0].eval()
    graphed = GraphedScore(model, k=16, capture=device.type == "cuda")
    keys = model.batch_keys

    def eager(b: dict) -> dict:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return model.score(b, k=16)

    print(f"\nserved call on {device}: eager vs CUDA graphs (largest |difference| of the outputs)")
    for n in (1, 37, 256, 1000, 1500):
        b = to_batch({k: arrays[k][:n] for k in keys}, device)
        e, g = eager(b), graphed(b)
        diff = {k: float((e[k].float() - g[k].float()).abs().max()) for k in ("nll", "quantiles", "probs", "direction")}
        print(f"  batch {n:>5}: " + ", ".join(f"{k} {v:.2e}" for k, v in diff.items()))
    print(f"\n{'batch':>6}{'eager p50':>11}{'p99 ms':>8}{'graphs p50':>12}{'p99 ms':>8}{'windows/s graphs':>18}")
    for n in (1, 8, 64, 256, 1024):
        part = {k: arrays[k][:n] for k in keys}
        row = []
        for fn in (eager, graphed):
            times = []
            for i in range(calls + 10):
                t0 = time.perf_counter()
                out = fn(to_batch(part, device))
                _ = {k: v.float().cpu().numpy() for k, v in out.items()}
                if i >= 10:
                    times.append(time.perf_counter() - t0)
            times.sort()
            row += [1e3 * times[len(times) // 2], 1e3 * times[int(0.99 * len(times)) - 1]]
        print(f"{n:>6}{row[0]:>11.3f}{row[1]:>8.3f}{row[2]:>12.3f}{row[3]:>8.3f}{n / (row[2] / 1e3):>18,.0f}")


if __name__ == "__main__":
    raise SystemExit(main())
