"""OrderFlowModel.score replayed from CUDA graphs: what the worker serves on a GPU.

Why: the small served model is launch-bound on a GPU. One eager `score` call makes about 450 operator
calls, and the host takes 5 to 10 ms to launch them whatever the batch size, while the GPU needs well
under 1 ms for a single window. A captured graph launches them all at once: bench/model_bench.py
measured 1.0 ms per single window replayed against 7.3 ms eager on an H200 (docs/gpu.md).

How (PyTorch docs, "CUDA Graphs"): a graph holds fixed shapes and fixed memory, so a batch is padded
up to the next bucket (a power of two up to `top`), its rows copied into that bucket's static input
tensors, the graph replayed, and the first n rows of its static outputs copied out. Each window is
scored on its own (nothing mixes windows: attention is within a window, no batch statistics), so the
padding rows, whatever they hold from an earlier batch, change none of the real rows' outputs. A batch
over `top` is scored in chunks of `top`. A bucket is captured the first time a batch needs it (a few
tens of ms, once); all buckets share one memory pool, which is safe because each call copies its
outputs out before the next replay.

`capture=False` runs the same padding and slicing eagerly on the static tensors: how the CPU tests
check that the bucketing leaves every window's outputs as an exact-size batch gives them. A capture
that fails (an operation the graph refuses: a host read, a copy between host and device) is logged
once and the model is served eagerly from then on, slower and the same: a served checkpoint once
could not be captured for three days (docs/gpu.md), and a worker must keep forecasting through that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import torch

Batch = Mapping[str, torch.Tensor]
Outputs = dict[str, torch.Tensor]
TOP_BUCKET = 1024
log = logging.getLogger("megatrading.serving")


def bucket_of(n: int, top: int = TOP_BUCKET) -> int:
    """The smallest power of two >= n, at most `top` (n > top is chunked by the caller)."""
    return min(top, 1 << max(0, n - 1).bit_length())


class _Bucket:
    """One batch size's static inputs, and the call over them (a graph replay, or eager)."""

    def __init__(self, fn: Callable[[Batch], Outputs], example: Batch, size: int, capture: bool, pool: object) -> None:
        self.inputs = {k: torch.zeros((size, *v.shape[1:]), dtype=v.dtype, device=v.device) for k, v in example.items()}
        self.fn = fn
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: Outputs = {}
        if capture:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up off the capture: cuBLAS handles, autotuning
                for _ in range(3):
                    fn(self.inputs)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, pool=pool, capture_error_mode="thread_local"):
                self.outputs = fn(self.inputs)

    def __call__(self, batch: Batch, n: int) -> Outputs:
        for k, v in batch.items():
            self.inputs[k][:n].copy_(v, non_blocking=True)
        if self.graph is None:
            return {k: v[:n].clone() for k, v in self.fn(self.inputs).items()}
        self.graph.replay()
        return {k: v[:n].clone() for k, v in self.outputs.items()}


class GraphedScore:
    """`model.score(batch, k)` under bf16 autocast on CUDA (fp32 elsewhere), from one CUDA graph per
    batch bucket (module docstring). Call it with a batch of to_batch's tensors on the model's device."""

    def __init__(self, model: torch.nn.Module, k: int, top: int = TOP_BUCKET, capture: bool | None = None) -> None:
        self.model, self.k, self.top = model, k, top
        device = next(model.parameters()).device
        self.capture = device.type == "cuda" if capture is None else capture
        self.bf16 = device.type == "cuda"
        self.buckets: dict[int, _Bucket] = {}
        self._pool = torch.cuda.graph_pool_handle() if self.capture else None
        self.capture_error: str | None = None  # why the capture failed, once it has (served eagerly since)

    def capture_all(self, example: Batch) -> None:
        """Every bucket up to `top` made now from `example` (a batch of one window, repeated), so that no
        live batch waits for a capture (tens of ms each on a GPU: a worker's first batches of each size
        otherwise carry them; bench/overload_bench.py saw a p99 of 2.3 s in its first run)."""
        size = 1
        while size <= self.top:
            self({k: v[:1].expand(size, *v.shape[1:]).contiguous() for k, v in example.items()})
            size *= 2

    def _score(self, batch: Batch) -> Outputs:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            return self.model.score(batch, k=self.k)

    def __call__(self, batch: Batch) -> Outputs:
        n = len(next(iter(batch.values())))
        if n > self.top:
            parts = [self({k: v[lo : lo + self.top] for k, v in batch.items()}) for lo in range(0, n, self.top)]
            return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        size = bucket_of(n, self.top)
        bucket = self.buckets.get(size)
        if bucket is None:
            try:
                bucket = self.buckets[size] = _Bucket(self._score, batch, size, self.capture, self._pool)
            except RuntimeError as e:  # torch.AcceleratorError; raised by a failed capture
                if not self.capture:
                    raise
                self.capture, self.capture_error = False, f"{type(e).__name__}: {e}".splitlines()[0]
                self.buckets.clear()
                log.error("CUDA graph capture failed at batch %d (%s): serving the model eagerly from now on, "
                          "several times slower a call; bench/gpu_parity.py on a GPU shows the failing op",
                          size, self.capture_error)  # fmt: skip
                return self(batch)
        return bucket(batch, n)
