"""bench/memory_bench.py --quick runs end to end on the real Binance captures and the simulated ITCH
books: every figure it prints is positive and its tables name the components.

Memory is not checked against a bound here (bench/ prints figures); only that the script runs,
that every symbol got its book and full window rings, and that the tables are complete. Where the
native module is built, the native column (NativeVenueWindows, the worker's default path) must be
there for both venues, its symbols with full rings and the same windows as the Python path's, its
RSS per symbol positive and within a plausible range of the Python figure.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from orderbook import native

REPO = Path(__file__).resolve().parents[1]
# 48 s on 2 cores: in make soak (make test's native-window equality is test_native_venue_windows')
pytestmark = [pytest.mark.realdata, pytest.mark.soak]

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
    for venue in ("binance", "itch"):
        if not native.available():
            assert f"native column ({venue}): not available" in out, out
            continue
        windows = re.search(rf"^{venue}: 200 symbols .*; ([\d,]+) windows; built", out, re.M)
        built = re.search(
            r"^  native: 200 symbols in one NativeVenueWindows .*?; "
            r"200 window builders, 200 with full rings; ([\d,]+) windows; built",
            out[out.index(f"\n{venue}: 200 symbols") :],
            re.M,
        )
        assert windows and built, f"{venue}: no native column, or not every native symbol has full rings:\n{out}"
        assert built.group(1) == windows.group(1), f"{venue}: native and python windows differ:\n{out}"
        line = rf"^{venue} native per symbol: ([\d,]+) B RSS, ([\d.]+) x python; total at 200 symbols: ([\d.]+) MB RSS"
        per = re.search(line, out, re.M)
        assert per, f"no native per-symbol line for {venue}:\n{out}"
        rss, ratio, total = (float(x.replace(",", "")) for x in per.groups())
        assert 1_000 < rss < 10_000_000 and 0.05 < ratio < 5 and total > 0, per.group(0)
