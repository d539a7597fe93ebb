"""`make bench`'s end-to-end benchmark runs on a tiny size against a real broker and Redis.

Speed is not checked (bench/ prints figures): only that one Faust worker and the bare
aiokafka loop both drain the records, and that every forecast the records give offline is
seen on Redis's `mt:forecasts` channel in both latency runs (none lost, none unmatched); with
`--transactional`, that a worker on the records written in transactions gives the plain run's forecasts.
The ITCH frames run and the latency ladder (45 s together) are in `make soak`; tests/test_frames_worker.py
runs workers on frames in make test.
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


@pytest.fixture(scope="module")
def quick_transactional(shared_data: Path) -> str:
    """`--quick --transactional`: the plain quick run ((a) to (c)), then the transactional feed's. One run
    serves the tests of both (the second part adds to the first's output): two runs cost 50 s more."""
    return succeeded(bench("--data", str(shared_data), "--quick", "--transactional", "50", "--abort-every", "3"))


def test_pipeline_bench_quick_prints_both_consumers_and_loses_no_forecast(quick_transactional: str) -> None:
    out = quick_transactional
    for row in ("faust worker (1 process)", "bare aiokafka loop (in-process)", "ratio faust / bare"):
        assert row in out, row
    counts = re.findall(r"^(?:faust worker|bare aiokafka loop) .* (\d+)/(\d+)", out, re.M)
    assert len(counts) == 2, out
    for matched, expected in counts:
        assert int(expected) > 0 and matched == expected, out
    assert "where the time goes" in out and "forecaster" in out


@pytest.mark.soak
def test_pipeline_bench_quick_on_simulated_itch_frames_drains_every_record(shared_data: Path) -> None:
    out = succeeded(bench("--data", str(shared_data), "--quick", "--venue", "itch"))
    head = re.search(r"^data: itch, ([\d,]+) messages in ([\d,]+) records \(frames", out, re.M)
    assert head is not None, out
    messages, records = (int(g.replace(",", "")) for g in head.groups())
    assert messages == 5000 and 0 < records <= messages, out
    for row in ("faust worker (1 process)", "bare aiokafka loop (in-process)", "ratio faust / bare"):
        assert row in out, row


@pytest.mark.soak
def test_pipeline_bench_quick_on_the_kraken_capture_drains_every_record(shared_data: Path) -> None:
    out = succeeded(bench("--data", str(shared_data), "--quick", "--venue", "kraken"))
    head = re.search(r"^data: kraken, ([\d,]+) messages in ([\d,]+) records \(frames", out, re.M)
    assert head is not None, out
    messages, records = (int(g.replace(",", "")) for g in head.groups())
    assert messages == 5000 and 0 < records <= messages, out
    assert "faust worker (1 process)" in out


def test_pipeline_bench_refuses_a_missing_data_folder(tmp_path: Path) -> None:
    done = bench("--data", str(tmp_path), "--quick", timeout=60)
    assert done.returncode != 0 and "not found" in done.stderr


@pytest.mark.soak
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


def test_pipeline_bench_quick_transactional_feed_gives_the_plain_runs_forecasts(quick_transactional: str) -> None:
    """`--transactional`: the same records written again in transactions, some aborted, and a second
    worker timed on them; both rates and their ratio are printed, and its forecasts are the plain
    run's (aborted records not processed, the commit markers no gap)."""
    out = quick_transactional
    rows = r"^(faust worker \(1 process\)|faust worker, transactional feed) +([\d,]+) "
    rates = {row: float(rate.replace(",", "")) for row, rate in re.findall(rows, out, re.M)}
    assert len(rates) == 2 and all(r > 0 for r in rates.values()), out
    ratio = re.search(r"^ratio transactional / plain \(faust worker\): ([\d.]+)x .* (\d+) / (\d+) gap warn", out, re.M)
    assert ratio is not None and float(ratio.group(1)) > 0 and ratio.group(3) == "0", out
    aborted = re.search(r"in ([\d,]+) transactions of 50 \(1 in 3 aborted and sent again: ([\d,]+) aborted", out)
    assert aborted is not None and int(aborted.group(2).replace(",", "")) > 0, out
    assert re.search(r"^by Redis's clock, .* ratio transactional / plain [\d.]+x$", out, re.M), out
    same = (
        r"^transactional feed's forecasts in Redis: ([\d,]+) \(plain: ([\d,]+)\), the plain run's field by field: yes$"
    )
    counts = re.search(same, out, re.M)
    assert counts is not None and counts.group(1) == counts.group(2) and counts.group(1) != "0", out
