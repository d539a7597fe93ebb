"""Model serving speed: windows scored per second and batch latency (p50/p99) of OrderFlowModel.score
beside the issue's reference, a plain nn.TransformerEncoder of ~3.2M parameters over 128 tokens,
timed in the same conditions on the same device (issue 5, "Must show: speed").

    python bench/model_bench.py                      # CUDA if present, else CPU; batches 1..1024 (CPU: ..256)
    python bench/model_bench.py --quick              # a smoke run: batches 1 and 8, a short time budget
    python bench/model_bench.py --checkpoint ckpt/   # a trained model instead of the small() preset
    python bench/model_bench.py --compile --cuda-graphs --peak-tflops 989

Conditions: eval mode, torch.inference_mode, bf16 autocast on CUDA (fp32 on CPU), inputs already on
the device (host-to-device copies and tokenization are not timed: they are the batcher's work), random
token ids over the full vocabularies with every slot real (the longest attention), warm-up calls
before timing. Each timed call is one batch; latency per call is measured with torch.cuda.Event pairs
on CUDA and time.perf_counter on CPU; a batch size runs until `--iters` calls and `--budget` seconds
have both passed (at least `--min-iters`). windows/s = batch * calls / total time; p50/p99 over calls.

--cuda-graphs: our model's call at each batch size replayed from a captured torch.cuda.CUDAGraph through
model/serving/graphs.py's GraphedScore, exactly as the worker serves on a GPU (inputs copied into the
bucket's static tensors, outputs copied out). Skipped with a message on CPU.
--compile: torch.compile on both models (the first calls compile; they are warm-up).

MFU (CUDA only): FLOPs per window ~= 2 * P * T + 4 * L * T^2 * d (Kaplan et al. 2020, "Scaling Laws
for Neural Language Models", sec. 2.1: 2 FLOPs per parameter per token for the forward, plus the
attention scores and their weighted sum, 2 * 2 * T^2 * d per layer), P the non-embedding parameters,
T the sequence length (ours: the prefix + the events); divided by --peak-tflops (default 989: H100
SXM dense bf16, NVIDIA H100 datasheet).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.machine import cpu_model
from model.network.orderflow import FIELDS, ModelConfig, OrderFlowModel
from model.serving.graphs import GraphedScore

BATCHES = (1, 8, 64, 256, 1024)
CPU_MAX_BATCH = 256
REF_TOKENS = 128
REF_D, REF_LAYERS, REF_HEADS, REF_VOCAB = 256, 4, 8, 128  # 3.19M parameters (printed)
ISSUE_FLOOR = "the issue's H100 floor (nn.TransformerEncoder, 3.2M, bf16): 112k windows/s at 9.2 ms per 1024; 31k/s at 2.0 ms per 64; 1.8 ms for one window"  # noqa: E501

Batch = dict[str, torch.Tensor]


# --------------------------------------------------------------------------- models and inputs


class Reference(nn.Module):
    """The issue's yardstick: token embedding + plain nn.TransformerEncoder (post-norm, ReLU, 4x FF)."""

    def __init__(self, d: int = REF_D, layers: int = REF_LAYERS, heads: int = REF_HEADS, vocab: int = REF_VOCAB):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.encoder(self.emb(batch["ids"]))


def our_inputs(cfg: ModelConfig, b: int, device: torch.device, gen: torch.Generator) -> Batch:
    """A batch of the dataset contract's shapes: random ids over each field's vocabulary, all real."""

    def ids(high: int, *shape: int) -> torch.Tensor:
        return torch.randint(1, high, shape, generator=gen).to(device)

    out = {f: ids(cfg.vocab[f], b, cfg.n_events) for f in FIELDS}
    out["mask"] = torch.ones(b, cfg.n_events, dtype=torch.bool, device=device)
    out["features"] = torch.randn(b, cfg.n_rows, cfg.n_features, generator=gen).to(device)
    out["row_mask"] = torch.ones(b, cfg.n_rows, dtype=torch.bool, device=device)
    if cfg.text_encoder == "hashed":
        out["news"] = ids(cfg.text_vocab, b, cfg.max_news, cfg.news_len)
    else:  # sentence embeddings
        out["news"] = torch.randn(b, cfg.max_news, cfg.news_len, generator=gen).to(device)
    out["news_mask"] = torch.ones(b, cfg.max_news, dtype=torch.bool, device=device)
    if cfg.use_news_age:  # seconds, spread over the minute a headline stays in a window
        out["news_age"] = 60 * torch.rand(b, cfg.max_news, generator=gen).to(device)
    return out


def ref_inputs(b: int, device: torch.device, gen: torch.Generator) -> Batch:
    return {"ids": torch.randint(0, REF_VOCAB, (b, REF_TOKENS), generator=gen).to(device)}


def load_ours(checkpoint: Path | None, preset: str) -> OrderFlowModel:
    if checkpoint is not None:
        from model.network.checkpoint import load

        return load(checkpoint, "cpu")[0]
    return OrderFlowModel(getattr(ModelConfig, preset)()).eval()


def non_embedding_params(model: nn.Module) -> int:
    """Parameters that multiply activations (embedding tables and learned positions are lookups/adds)."""
    skip = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    skip |= {id(p) for n, p in model.named_parameters() if n.endswith("_pos") or n == "bos"}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip and p.dim() >= 2)


def flops_per_window(params: int, tokens: int, layers: int, d: int) -> float:
    """Forward FLOPs (module docstring): 2 P T + 4 L T^2 d."""
    return 2.0 * params * tokens + 4.0 * layers * tokens**2 * d


# --------------------------------------------------------------------------- timing


def scorer(model: nn.Module, ours: bool, device: torch.device) -> Callable[[Batch], object]:
    """One serving call: OrderFlowModel.score, or the reference's forward; bf16 autocast on CUDA."""
    call = model.score if ours else model

    def run(batch: Batch) -> object:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return call(batch)

    return run


@dataclass
class Row:
    name: str
    batch: int
    calls: int
    windows_s: float
    p50_ms: float
    p99_ms: float
    mfu: float | None


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (with few calls, p99 is the slowest call)."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def time_calls(
    fn: Callable[[Batch], object], batch: Batch, device: torch.device, args: argparse.Namespace
) -> list[float]:
    """Seconds per call, after warm-up (see the module docstring for the stopping rule)."""
    for _ in range(args.warmup):
        fn(batch)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    times: list[float] = []
    t_end = time.perf_counter() + args.budget
    while len(times) < args.min_iters or (len(times) < args.iters and time.perf_counter() < t_end):
        if cuda:
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(batch)
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop) / 1e3)
        else:
            t0 = time.perf_counter()
            fn(batch)
            times.append(time.perf_counter() - t0)
    return times


def bench_one(name: str, fn: Callable[[Batch], object], batch: Batch, b: int, device: torch.device,
              args: argparse.Namespace, flops: float) -> Row:  # fmt: skip
    times = time_calls(fn, batch, device, args)
    rate = b * len(times) / sum(times)
    mfu = rate * flops / (args.peak_tflops * 1e12) if device.type == "cuda" else None
    return Row(name, b, len(times), rate, statistics.median(times) * 1e3, percentile(times, 99) * 1e3, mfu)


# --------------------------------------------------------------------------- main


def device_line(device: torch.device) -> str:
    if device.type == "cuda":
        return f"device: CUDA {torch.cuda.get_device_name(device)} (torch {torch.__version__}, bf16 autocast)"
    return (f"device: CPU {cpu_model()}, {torch.get_num_threads()} torch threads "
            f"(torch {torch.__version__}, fp32) -- CPU figures, not the GPU the issue's goals are for")  # fmt: skip


def batch_sizes(args: argparse.Namespace, device: torch.device) -> list[int]:
    if args.batches:
        return [int(x) for x in args.batches.split(",")]
    if args.quick:
        return [1, 8]
    return [b for b in BATCHES if device.type == "cuda" or b <= CPU_MAX_BATCH]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: batches 1 and 8, 0.3 s a batch size")
    p.add_argument("--batches", help="comma-separated batch sizes (default 1,8,64,256,1024; CPU stops at 256)")
    p.add_argument("--checkpoint", type=Path, help="a checkpoint folder (default: a fresh small() model)")
    p.add_argument("--preset", choices=("tiny", "base", "small"), default="small", help="without --checkpoint")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--cuda-graphs", action="store_true", help="replay our model from captured CUDA graphs")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="device peak bf16 TFLOP/s for MFU (H100 SXM)")
    p.add_argument("--warmup", type=int, help="warm-up calls per batch size (default 10 CUDA, 1 CPU)")
    p.add_argument("--min-iters", type=int, help="timed calls at least (default 20 CUDA, 3 CPU, 2 quick)")
    p.add_argument("--iters", type=int, default=200, help="timed calls at most, within --budget (default 200)")
    p.add_argument("--budget", type=float, help="seconds per batch size and model (default 3, CPU 2, quick 0.3)")
    p.add_argument("--no-reference", action="store_true", help="time our model only")
    return p.parse_args(argv)


def _defaults(args: argparse.Namespace, device: torch.device) -> None:
    cuda = device.type == "cuda"
    if args.warmup is None:
        args.warmup = 10 if cuda else 1
    if args.min_iters is None:
        args.min_iters = 2 if args.quick else 20 if cuda else 3
    if args.budget is None:
        args.budget = 0.3 if args.quick else 3.0 if cuda else 2.0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    name = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here", file=sys.stderr)
        return 2
    device = torch.device(name)
    _defaults(args, device)
    torch.manual_seed(0)
    ours = load_ours(args.checkpoint, args.preset).to(device).eval()
    ref = Reference().to(device).eval()
    cfg = ours.config
    t_ours = cfg.prefix_len + cfg.n_events
    f_ours = flops_per_window(non_embedding_params(ours), t_ours, cfg.n_layers, cfg.d_model)
    f_ref = flops_per_window(non_embedding_params(ref), REF_TOKENS, REF_LAYERS, REF_D)
    print(device_line(device))
    print(
        f"ours: OrderFlowModel.score, {ours.num_parameters():,} parameters, d={cfg.d_model} L={cfg.n_layers}, "
        f"{t_ours} tokens ({cfg.prefix_len} prefix + {cfg.n_events} events), {f_ours / 1e6:.1f} MFLOP/window"
        f"{' (' + str(args.checkpoint) + ')' if args.checkpoint else ' (fresh ' + args.preset + '() weights)'}"
    )
    print(f"reference: nn.TransformerEncoder, {sum(p.numel() for p in ref.parameters()):,} parameters, d={REF_D} "
          f"L={REF_LAYERS}, {REF_TOKENS} tokens, {f_ref / 1e6:.1f} MFLOP/window")  # fmt: skip
    fn_ours, fn_ref = scorer(ours, True, device), scorer(ref, False, device)
    if args.compile:
        fn_ours, fn_ref = scorer(torch.compile(ours), True, device), scorer(torch.compile(ref), False, device)
    if args.cuda_graphs and device.type != "cuda":
        print("--cuda-graphs: skipped, no CUDA device (CUDA graphs capture GPU kernels only)")
    rows = run_all(args, device, ours, fn_ours, fn_ref, f_ours, f_ref)
    print_table(rows, device)
    if device.type == "cuda":
        print(ISSUE_FLOOR)
    return 0


def run_all(args, device, ours, fn_ours, fn_ref, f_ours, f_ref) -> list[Row]:  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(1)
    graphs = args.cuda_graphs and device.type == "cuda"
    rows = []
    for b in batch_sizes(args, device):
        batch = our_inputs(ours.config, b, device, gen)
        rows.append(bench_one("ours", fn_ours, batch, b, device, args, f_ours))
        if graphs:
            try:
                graphed = GraphedScore(ours, k=16)
                graphed(batch)  # the capture, before the timed calls
                rows.append(bench_one("ours+graph", graphed, batch, b, device, args, f_ours))
            except RuntimeError as err:  # a kernel that cannot be captured: say so, keep the other rows
                print(f"--cuda-graphs at batch {b}: capture failed: {str(err).splitlines()[0]}")
        if not args.no_reference:
            rows.append(bench_one("reference", fn_ref, ref_inputs(b, device, gen), b, device, args, f_ref))
    return rows


def _fmt(r: Row) -> str:
    mfu = f"{100 * r.mfu:6.2f}%" if r.mfu is not None else "   n/a"
    return f"{r.name:<11} {r.batch:>6} {r.calls:>6} {r.windows_s:>12,.0f} {r.p50_ms:>9.3f} {r.p99_ms:>9.3f} {mfu:>8}"


def print_table(rows: list[Row], device: torch.device) -> None:
    print()
    print(f"{'model':<11} {'batch':>6} {'calls':>6} {'windows/s':>12} {'p50 ms':>9} {'p99 ms':>9} {'MFU':>8}")
    for r in rows:
        print(_fmt(r))
    ref = {r.batch: r for r in rows if r.name == "reference"}
    print()
    for r in rows:
        if r.name != "reference" and r.batch in ref:
            q = ref[r.batch]
            print(f"{r.name} / reference at batch {r.batch}: {r.windows_s / q.windows_s:.2f}x windows/s, "
                  f"p99 {r.p99_ms:.3f} vs {q.p99_ms:.3f} ms")  # fmt: skip
    print(f"(measured on {device_line(device).removeprefix('device: ')})")


if __name__ == "__main__":
    sys.exit(main())
