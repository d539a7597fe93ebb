"""`make bench`'s Faust ceiling benchmark runs on a tiny size against a real broker.

Speed is not checked (bench/ prints figures): only that the table has its three consumers on both
topics (Faust's agent, Faust with the worker's batch delivery, bare aiokafka) and that
each of them received every message (the messages column equals N for the single-message topic and
for the frames topic alike) and every record of its topic.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# 33 s on 2 cores: in make soak, with the other bench smoke runs that do not fit make test's 20 minutes
pytestmark = [pytest.mark.realdata, pytest.mark.soak]
ROWS = tuple(
    f"{consumer} {topic}"
    for consumer in ("Faust no-op agent", "Faust, batch delivery", "aiokafka getmany")
    for topic in ("single", "frames")
)


def test_faust_ceiling_quick_prints_every_consumer_each_having_received_every_message(shared_data: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "faust_ceiling.py"), "--data", str(shared_data), "--quick"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = done.stdout
    assert done.returncode == 0, f"exited {done.returncode}:\n{out}\n{done.stderr}"
    head = re.search(r"^data: ([\d,]+) Binance messages .*?, ([\d,]+) frame records", out, re.M)
    assert head is not None, out
    n, frame_records = (int(g.replace(",", "")) for g in head.groups())
    assert n == 5000 and 0 < frame_records < n, out  # frames did group messages, so the two topics differ
    for row in ROWS:
        line = re.search(rf"^{row}\s+([\d,]+)\s+([\d,]+)\s", out, re.M)
        assert line is not None, f"no row {row!r}:\n{out}"
        records, messages = (int(g.replace(",", "")) for g in line.groups())
        assert messages == n, f"{row}: {messages} of {n} messages\n{out}"
        assert records == (n if row.endswith("single") else frame_records), f"{row}: {records} records\n{out}"
    assert "mean" in out and "messages per record" in out


def test_faust_ceiling_refuses_a_missing_data_folder(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "faust_ceiling.py"), "--data", str(tmp_path), "--quick"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "not found" in done.stderr
