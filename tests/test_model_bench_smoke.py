"""bench/model_bench.py --quick runs end to end here (CPU) and prints what the issue's speed table needs:
the device it ran on, windows/s and p50/p99 per batch size for our model and the reference, the ratio.

Speed is not checked (bench/ prints figures); only that the script runs and its table is complete.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]


def test_quick_run_prints_the_speed_table_for_both_models() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "model_bench.py"),
            "--quick",
            "--device",
            "cpu",
            "--preset",
            "tiny",
            "--cuda-graphs",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("device: CPU") and "torch threads" in out
    assert "--cuda-graphs: skipped, no CUDA device" in out
    rows = [r for r in map(str.split, out.splitlines()) if r[:1] in (["ours"], ["reference"]) and r[1].isdigit()]
    assert [(r[0], r[1]) for r in rows] == [("ours", "1"), ("reference", "1"), ("ours", "8"), ("reference", "8")]
    for r in rows:
        windows_s, p50, p99 = float(r[3].replace(",", "")), float(r[4]), float(r[5])
        assert windows_s > 0 and 0 < p50 <= p99 and r[6] == "n/a"  # no MFU on CPU
    assert "ours / reference at batch 8:" in out
    assert "3,191,808 parameters" in out  # the reference is the issue's ~3.2M-parameter encoder


def test_flops_estimate_counts_matmuls_and_attention() -> None:
    sys.path.insert(0, str(REPO / "bench"))
    import model_bench
    from torch import nn

    lin = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4))
    assert model_bench.non_embedding_params(lin) == 16  # the embedding table and the bias are not matmuls
    assert model_bench.flops_per_window(16, 8, 1, 4) == 2 * 16 * 8 + 4 * 1 * 64 * 4
    ref = model_bench.Reference()
    assert 3.1e6 < sum(p.numel() for p in ref.parameters()) < 3.3e6
