"""`make bench` runs: both benchmark scripts finish on tiny sizes and print their tables.

Speed is not checked here (bench/ prints figures); only that the scripts run end to end on
the real captures, cross-check their books and print what the issue asks for.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.realdata


def run_bench(script: str, data: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--data", str(data), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_book_bench_prints_the_side_by_side_table(shared_data: Path) -> None:
    out = run_bench("book_bench.py", shared_data, "--events", "2000", "--passes", "1")
    assert "book  " in out and "L2 events/s" in out and "L3 events/s" in out
    for row in ("ours apply(Event)", "ours direct", "SortedDict+Decimal (reference)"):
        assert row in out, row
    assert "5,917 orders" in out  # the seeding the issue names, found in the real L3 snapshot
    assert "2x the SortedDict reference" in out


def test_feed_bench_prints_throughput_and_profiles(shared_data: Path) -> None:
    out = run_bench("feed_bench.py", shared_data, "--itch-messages", "3000", "--binance-limit", "500")
    assert "workload" in out and "messages/s" in out and "level updates/s" in out
    assert re.search(r"binance, all \d+ captures", out) and "ItchFeed.on_message (ours)" in out
    assert "DISAGREES" not in out  # our ITCH books end with the orders itch-book holds
    assert out.count("where the time goes") == 2


def test_book_bench_refuses_a_missing_data_folder(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "book_bench.py"), "--data", str(tmp_path), "--quick"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "not found" in done.stderr
