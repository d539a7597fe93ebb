"""bench/memory_bench.py --quick runs end to end on the real Binance captures and the simulated ITCH
books: every figure it prints is positive and its tables name the components.

Memory is not checked against a bound here (bench/ prints figures); only that the script runs,
that every symbol got its book and full window rings, and that the tables are complete.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.realdata

COMPONENTS = (
    "book (L2Book)",
    "book (L3Book)",
    "feed state (sync, tickers, locates)",
    "features (FeatureState)",
    "window rings (WindowBuilder)",
    "total per symbol",
)


def test_memory_bench_quick_prints_positive_figures_per_component(shared_data: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "memory_bench.py"), "--data", str(shared_data), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = done.stdout
    assert done.returncode == 0, f"exited {done.returncode}:\n{out}\n{done.stderr}"
    for name in COMPONENTS:
        assert name in out, f"no row {name!r}:\n{out}"
    # the workload: each of the six captures with the rows of its REST snapshot and the levels after it
    captures = re.findall(r"^\w+_\d{8} +\w+ +([\d,]+) +([\d,]+) +([\d,]+) \+ ([\d,]+) ", out, re.M)
    assert len(captures) == 6 and all(int(c.replace(",", "")) > 0 for row in captures for c in row), out
    for venue in ("binance", "itch"):
        built = re.search(rf"^{venue}: 200 symbols .*?; 200 window builders, 200 with full rings", out, re.M)
        assert built, f"{venue}: not every symbol has full rings:\n{out}"
        line = rf"^{venue} per symbol: ([\d,]+) B traced, ([\d,]+) B RSS; total at 200 symbols: ([\d.]+) MB"
        per = re.search(line, out, re.M)
        assert per, f"no per-symbol line for {venue}:\n{out}"
        traced, rss, total = (float(x.replace(",", "")) for x in per.groups())
        assert traced > 0 and rss > 0 and total > 0
    # each component's traced bytes per symbol, a positive figure on its row of both tables (one book row each)
    cells = [c for name in COMPONENTS[:5] for c in re.findall(rf"^{re.escape(name)} +([\d,]+) +\d+%", out, re.M)]
    assert len(cells) == 8 and all(int(c.replace(",", "")) > 0 for c in cells), cells
    assert "native column" in out or "native tracemalloc" in out
