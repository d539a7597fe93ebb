"""`bench/fault_table.py --quick`: one injection of a fault kind on small streams, on servers of its
own; the markdown table it writes has the kind with nothing lost, duplicated, changed, reordered
or failed. One kind here (`make soak` runs them all): the corrupt snapshot, which no other test
injects into a worker. tests/test_faults.py injects the others into workers on every `make test`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KINDS = ("corrupt snapshot",)
ZERO = ("lost in Redis", "lost on topic", "duplicated in Redis", "duplicated on topic", "differing", "out of order",
        "failed")  # fmt: skip
pytestmark = pytest.mark.realdata


def table_rows(markdown: str) -> dict[str, dict[str, str]]:
    """The fault table's rows by fault name, each a {column: cell} dict."""
    lines = [ln for ln in markdown.splitlines() if ln.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for ln in lines[1:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if len(cells) == len(header):
            rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def test_fault_table_quick_has_its_kinds_with_nothing_lost_or_duplicated(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "faults.md"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fault_table.py"), "--quick", "--out", str(out),
         "--data", str(shared_data), "--kinds", "corrupt-snapshot"],
        capture_output=True, text=True, timeout=420, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, f"exited {done.returncode}:\n{done.stdout}\n{done.stderr[-5000:]}"
    text = out.read_text()
    assert "Command:" in text and "(`nproc`)" in text and "time to recover" in text
    rows = table_rows(text)
    assert set(KINDS) <= set(rows), f"kinds missing from the table: {set(KINDS) - set(rows)}\n{text}"
    for kind in KINDS:
        row = rows[kind]
        assert row["injections"] == "1", row
        assert int(row["forecasts expected"]) > 0, row
        for column in ZERO:
            assert row[column] == "0", f"{kind}: {column} = {row[column]}\n{text}"
    assert table_rows(done.stdout).keys() == rows.keys(), "the printed table is not the file's"
