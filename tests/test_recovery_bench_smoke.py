"""bench/recovery_bench.py --quick runs end to end on a broker and Redis of its own (simulated
ITCH, no real data) and prints its table: one row per size, both restarts measured.

Speed is not checked (bench/ prints figures); only that the script runs, that each size's
state restored from its snapshot equals the full replay's, and that the table is complete.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.soak  # 20-30 s: make soak; make bench runs the script itself
def test_recovery_bench_quick_prints_a_row_per_size() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "recovery_bench.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout
    assert done.returncode == 0, f"exited {done.returncode}:\n{out}\n{done.stderr}"
    assert "machine: " in out and "(nproc)" in out
    assert "full replay s" in out and "(a) restore s" in out and "spawn-to-ready s" in out and "snapshot bytes" in out
    for size in ("2,000", "10,000"):
        rows = re.findall(rf"^ +{size} \| +([\d.]+) +[\d,]+ \| +([\d.]+) \| +([\d.]+) +([\d.]+) \| +([\d,]+) \| ", out,
                          re.M)  # fmt: skip
        assert len(rows) == 1, f"no table row for {size}:\n{out}"
        assert int(rows[0][4].replace(",", "")) > 0  # the snapshot's bytes
        # (a)'s state equals the full replay's, and it replayed one interval less a record
        assert re.search(rf"^ +{size} \| .* \| +499 +yes \| +[\d.]+$", out, re.M), f"breakdown of {size}:\n{out}"
    assert "the 5 s goal is about (a) and (b)" in out
