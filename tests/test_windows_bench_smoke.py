"""bench/windows_bench.py --quick runs end to end on a real Binance capture and a simulated ITCH day:
a table per venue with the four paths, every figure positive, the same number of windows on every
path (the script exits non-zero otherwise); bench/dataset_bench.py --quick builds the training data with
both window builders and finds the arrays identical; bench/rebuild_bench.py
--quick rebuilds an ITCH day, a Binance capture and a LOBSTER file both ways (--venue kraken: the Kraken
capture; --venue coinbase: the Coinbase capture and a simulated full channel) and finds the rows identical;
bench/capture_bench.py reads the Binance, Kraken and Coinbase captures and a simulated full channel both ways
and finds the records identical. Times are not checked (bench/ prints figures)."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from orderbook import native

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.realdata

PATHS = ("python push", "native push, py book", "native push, native book", "native batch")


def bench_output(script: str, *args: str) -> str:
    """What `bench/SCRIPT ARGS` prints, once it has exited 0."""
    done = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, f"exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_windows_bench_quick_prints_every_path_for_both_venues(shared_data: Path) -> None:
    if not native.available() or not hasattr(native._core, "WindowBuilder"):
        pytest.skip(f"the native module is not built, or built without WindowBuilder: {native.describe()}")
    out = bench_output("windows_bench.py", "--data", str(shared_data), "--quick")
    for venue in ("binance", "itch"):
        head = re.search(rf"^{venue}: (\d+) symbols, ([\d,]+) messages, ([\d,]+) events, ([\d,]+) windows$", out, re.M)
        assert head, f"no {venue} table:\n{out}"
        assert all(int(x.replace(",", "")) > 0 for x in head.groups()), head.group(0)
        table = out[head.end() :].split("\n\n")[0]
        for path in PATHS:
            row = re.search(rf"^{re.escape(path)} +([\d.]+) +([\d,]+) +([\d.]+) +([\d.]+)x$", table, re.M)
            assert row, f"{venue}: no row {path!r}:\n{table}"
            assert all(float(x.replace(",", "")) > 0 for x in row.groups()), row.group(0)


def test_dataset_bench_quick_builds_both_ways_and_finds_the_arrays_identical() -> None:
    if not native.available():
        pytest.skip(native.describe())
    out = bench_output("dataset_bench.py", "--quick")
    assert re.search(r"^\| native \(stream_replay\) \| [\d.]+ \| [\d,]+ \|$", out, re.M), out
    assert re.search(r"^\| reference \(MT_NATIVE=0\) \| [\d.]+ \| [\d,]+ \|$", out, re.M), out
    assert "arrays identical: yes" in out


def test_dataset_bench_builds_the_makefiles_demo_recipe() -> None:
    """bench/dataset_bench.py's simulation flags are those of the Makefile's DEMO_SOURCES, as written there."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import dataset_bench
    finally:
        sys.path.remove(str(REPO / "bench"))
    make = (REPO / "Makefile").read_text()
    recipe = re.search(r"^DEMO_SOURCES := (.*?)(?<!\\)\n", make, re.M | re.S)
    assert recipe, "no DEMO_SOURCES in the Makefile"
    flags = recipe[1].replace("\\\n", " ").split()
    pairs = set(itertools.pairwise(flags))
    want = dataset_bench.DEMO_SIM_FLAGS
    assert all((want[i], want[i + 1]) in pairs for i in range(0, len(want), 2)), (want, flags)


def test_rebuild_bench_quick_finds_the_native_rows_identical() -> None:
    if not native.enabled():
        pytest.skip(native.describe())
    row = r"^\| (.+?) \| ([\d,]+) \| [\d.]+ \| [\d.]+ \| [\d,]+ \| [\d,]+ \| [\d.]+x \| [\d.]+ \| [\d.]+ \| [\d.]+x \|$"
    runs = [("--quick",), ("--quick", "--venue", "binance", "--data", str(SHARED_DATA / "binance-hftbacktest")),
            ("--quick", "--venue", "lobster"), ("--venue", "kraken"), ("--quick", "--venue", "coinbase")]  # fmt: skip
    for args, books in zip(runs, (2, 1, 1, 2, 3), strict=True):
        if ("binance" in args or "kraken" in args or "coinbase" in args) and not SHARED_DATA.is_dir():
            continue  # the captures are read from ../shared/data
        out = bench_output("rebuild_bench.py", *args)
        rows = re.findall(row, out, re.M)
        assert len(rows) == books and all(int(n.replace(",", "")) > 0 for _, n in rows), out
        assert "rows, stats, errors and CSV identical" in out


def test_capture_bench_reads_every_capture_both_ways_to_the_same_records(shared_data: Path) -> None:
    if not native.enabled():
        pytest.skip(native.describe())
    out = bench_output("capture_bench.py", "--data", str(shared_data / "binance-hftbacktest"), "--cryptofeed",
                       str(shared_data / "cryptofeed-captures"), "--messages", "2000", "--repeat", "1")  # fmt: skip
    rows = re.findall(r"^(\S.*?) +([\d,]+) +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+$", out, re.M)
    names = [name for name, _ in rows]
    assert len(names) == 9 and names[-3:-1] == ["KRAKEN.ws.50.0.gz", "COINBASE.ws.28.0.gz"], out
    assert names[-1].startswith("simulated Coinbase full") and all(int(n.replace(",", "")) > 0 for _, n in rows), out
    assert re.search(r"^the Binance captures +[\d.]+ +[\d.]+ +[\d.]+$", out, re.M), out
