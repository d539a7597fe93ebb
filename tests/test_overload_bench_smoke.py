"""bench/overload_bench.py --quick runs end to end here (the shipped model on the CPU, real Binance
windows) and prints its table: a row per rate and policy, `latest` skipping windows once the model
falls behind, `every` skipping none; then the model thread's stages timed alone.

Speed is not checked (bench/ prints figures); only that the script runs, that the table is complete
and that each policy does what it says.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from streams.config import SHIPPED_MODEL

pytest.importorskip("torch")
pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not (SHIPPED_MODEL / "model.safetensors").is_file(), reason="no shipped checkpoint here"),
]

REPO = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^ *([\d,]+)  (every|latest) +([\d,]+) +([\d,]+) +([\d,]+) +(>?\d+) +(>?\d+) ", re.M)


def test_quick_run_shows_latest_skipping_under_overload_and_every_skipping_none(shared_data) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "overload_bench.py"), "--quick", "--data", str(shared_data)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = done.stdout
    assert done.returncode == 0, f"exited {done.returncode}:\n{out}\n{done.stderr}"
    assert out.startswith("machine: ") and "orderflow-gpt:" in out
    rows = {(int(m[1].replace(",", "")), m[2]): int(m[5].replace(",", "")) for m in ROW.finditer(out)}
    assert set(rows) == {(r, p) for r in (200, 4000) for p in ("every", "latest")}, out
    assert rows[(200, "every")] == rows[(4000, "every")] == 0  # skipped/s
    assert rows[(4000, "latest")] > 0  # 4,000 windows/s is several times what the model scores on a CPU
    assert re.search(r"^latest: p99 (is not )?under 250 ms", out, re.M) and "every p99 ms by rate: 200/s " in out
    alone = re.search(r"^alone on one thread, calls of 256 windows: input arrays ([\d,]+)/s, predict ([\d,]+)/s, "
                      r"forecast ([\d,]+)/s", out, re.M)  # fmt: skip
    assert alone and all(int(g.replace(",", "")) > 0 for g in alone.groups()), out
    assert re.search(r"^the runs scored at most [\d,]+/s: [\d.]+x the forecast stage alone", out, re.M), out
