"""bench/checkpoint_repro.py on two small trees made here: what it says is identical, what differs and
by how much. The real comparison (a clone's `make checkpoint`, 40 minutes) is in the README."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

REPO = Path(__file__).resolve().parents[1]
NETWORKS = ("model/checkpoints/demo", "build/demo-nonews", "build/demo-nobook")


def tree(root: Path, weight: float, spread_crps: float, perplexity: float) -> Path:
    """A checkout's demo files: the dataset, three networks (the committed one's weight `weight`), and
    the two evaluations (the model's spread CRPS `spread_crps` against persistence's 1.0)."""
    data = root / "build/demo-data"
    data.mkdir(parents=True)
    for name in ("train", "heldout"):
        np.savez(data / f"{name}.npz", x=np.arange(6, dtype=np.float32))
        (data / f"{name}.json").write_text(json.dumps({"seeds": [1]}))
    for rel in NETWORKS:
        (root / rel).mkdir(parents=True, exist_ok=True)
        w = weight if rel == NETWORKS[0] else 0.5
        save_file({"blocks.0.qkv.weight": np.full((2, 2), w, np.float32), "recal_edges": np.array([np.nan, 1.0])},
                  str(root / rel / "model.safetensors"))  # fmt: skip
    crps = {"spread_h10": {"demo": spread_crps, "persistence": 1.0, "ewma": 2.0, "har": None}}
    metrics = {"models": [{"name": "demo"}], "parts": {"real": {"crps": crps}},
               "perplexity": {"demo": {"real": perplexity}}, "anomaly": {"overall": {"demo": [0.97, 0.9]}}}  # fmt: skip
    for rel in ("model/checkpoints/demo/evaluation", "model/checkpoints/demo/evaluation-unseen"):
        (root / rel).mkdir(parents=True)
        (root / rel / "metrics.json").write_text(json.dumps(metrics))
    return root


def repro(here: Path, there: Path) -> str:
    """bench/checkpoint_repro.py's output for the two trees, once it exited 0."""
    done = subprocess.run([sys.executable, str(REPO / "bench" / "checkpoint_repro.py"), "--here", str(here),
                           "--other", str(there)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_checkpoint_repro_says_what_is_identical_and_what_moved(tmp_path: Path) -> None:
    here = tree(tmp_path / "here", weight=0.25, spread_crps=0.8, perplexity=200.0)
    there = tree(tmp_path / "there", weight=0.5, spread_crps=0.75, perplexity=210.0)
    out = repro(here, there)
    assert "train.npz: identical" in out and "heldout.npz: identical" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(NETWORKS)}
    assert lines["model/checkpoints/demo"][1:4] == ["differ", "1/2", "0.25"]  # NaN == NaN: not a difference
    assert lines["build/demo-nonews"][1:3] == lines["build/demo-nobook"][1:3] == ["identical", "0/2"]
    # gain = 1 - CRPS / the best reference's (persistence 1.0; HAR missing): +20% here, +25% there
    gain = [line.split() for line in out.splitlines() if line.startswith("real ")]
    assert gain == [["real", "spread_h10", "demo", "+20.0%", "+25.0%", "+5.0"]] * 2, out
    assert out.count("demo: real next-event perplexity 200.0 -> 210.0; anomaly AUROC 0.9700 -> 0.9700") == 2


def test_checkpoint_repro_tells_a_different_dataset(tmp_path: Path) -> None:
    here = tree(tmp_path / "here", weight=0.5, spread_crps=0.8, perplexity=200.0)
    there = tree(tmp_path / "there", weight=0.5, spread_crps=0.8, perplexity=200.0)
    np.savez(there / "build/demo-data/train.npz", x=np.arange(7, dtype=np.float32))
    out = repro(here, there)
    assert "train.npz: DIFFERENT" in out and "heldout.npz: identical" in out
