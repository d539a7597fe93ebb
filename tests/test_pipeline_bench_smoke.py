"""`make bench`'s end-to-end benchmark runs on a tiny size against a real broker and Redis.

Speed is not checked (bench/ prints figures): only that one Faust worker and the bare
aiokafka loop both drain the records, and that every forecast the records give offline is
seen on Redis's `mt:forecasts` channel in both latency runs (none lost, none unmatched).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.realdata


def bench(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """bench/pipeline_bench.py with these arguments, its output captured."""
    return subprocess.run([sys.executable, str(REPO / "bench" / "pipeline_bench.py"), *args], capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def succeeded(done: subprocess.CompletedProcess[str]) -> str:
    """The run's standard output, once it is known to have exited 0."""
    assert done.returncode == 0, f"exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_pipeline_bench_quick_prints_both_consumers_and_loses_no_forecast(shared_data: Path) -> None:
    out = succeeded(bench("--data", str(shared_data), "--quick"))
    for row in ("faust worker (1 process)", "bare aiokafka loop (in-process)", "ratio faust / bare"):
        assert row in out, row
    counts = re.findall(r"^(?:faust worker|bare aiokafka loop) .* (\d+)/(\d+)", out, re.M)
    assert len(counts) == 2, out
    for matched, expected in counts:
        assert int(expected) > 0 and matched == expected, out
    assert "where the time goes" in out and "forecaster" in out


def test_pipeline_bench_quick_on_simulated_itch_frames_drains_every_record(shared_data: Path) -> None:
    out = succeeded(bench("--data", str(shared_data), "--quick", "--venue", "itch"))
    head = re.search(r"^data: itch, ([\d,]+) messages in ([\d,]+) records \(frames", out, re.M)
    assert head is not None, out
    messages, records = (int(g.replace(",", "")) for g in head.groups())
    assert messages == 5000 and 0 < records <= messages, out
    for row in ("faust worker (1 process)", "bare aiokafka loop (in-process)", "ratio faust / bare"):
        assert row in out, row


def test_pipeline_bench_refuses_a_missing_data_folder(tmp_path: Path) -> None:
    done = bench("--data", str(tmp_path), "--quick", timeout=60)
    assert done.returncode != 0 and "not found" in done.stderr


def test_pipeline_bench_latency_ladder_under_latest_publishes_only_scored_windows(shared_data: Path) -> None:
    """`--latency-only` runs the worker alone over a ladder of rates; under `latest` each published
    forecast is one the offline run says the records close, and the goal line names a rate or none."""
    out = succeeded(bench("--data", str(shared_data), "--latency-only", "--rates", "500,1000", "--seconds", "2",
                          "--overload", "latest", "--warm-up-s", "0"))  # fmt: skip
    rows = re.findall(r"^ +([\d,]+) +[\d,]+ +[\d.]+ +[\d.]+ +[\d.]+ +(\d+)/(\d+)", out, re.M)
    assert [r[0] for r in rows] == ["500", "1,000"], out
    for _, published, closed in rows:
        assert 0 < int(published) <= int(closed), out
    assert re.search(r"^goal: the highest offered rate with p99 < 50 ms .*: (none of the ladder|[\d,]+ messages/s)$",
                     out, re.M), out  # fmt: skip
