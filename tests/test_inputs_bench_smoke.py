"""bench/inputs_bench.py runs here: it checks that model_inputs and the path before it give the same
arrays, then prints a row per batch size with both timings (speed is not checked: bench/ prints figures)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from streams.config import SHIPPED_MODEL

pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not (SHIPPED_MODEL / "model.safetensors").is_file(), reason="no shipped checkpoint")

REPO = Path(__file__).resolve().parents[1]


def test_inputs_bench_checks_both_paths_agree_and_times_each_batch() -> None:
    done = subprocess.run([sys.executable, str(REPO / "bench" / "inputs_bench.py"), "--batches", "1,16",
                           "--budget", "0.05"], capture_output=True, text=True, timeout=300, cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "the previous path's arrays equal" in done.stdout
    rows = re.findall(r"^ +(\d+) +([\d.]+) +([\d.]+) +([\d,]+) +([\d.]+) +([\d.]+)x$", done.stdout, re.M)
    assert [r[0] for r in rows] == ["1", "16"] and all(float(r[5]) > 0 for r in rows), done.stdout
