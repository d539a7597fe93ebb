"""`megatrading book` on an ITCH day file on the native path (orderbook.rebuild.rebuild_itch: the file read in
pieces, decoded, applied and its rows cut in Rust) gives the reference's (`rebuild` with the Python ItchFeed,
message by message): every row (symbol, time, sequence, the LOBSTER orderbook row), the stats (messages,
rows, errors by reason, symbols in the order first seen) and the errors, in order. On a simulated day read
in pieces of a few kilobytes (frames cut across pieces) and whole, for the first book and for a named one,
at one and ten levels; on a mangled day (truncated and unknown messages, unknown orders, a crossed book,
with and without --allow-crossed); on a file that ends in a frame cut short; gzipped (a damaged one: the
same error, the rows up to 64 KiB before the damage); and through the CLI."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from model.sim.engine import SEC, SimConfig
from model.sim.run import simulate
from model.sim.writers import messages
from orderbook import native
from orderbook.errors import CaptureError
from orderbook.native.check import rebuild_outcome
from orderbook.rebuild import rebuild, rebuild_itch
from orderbook.venues.itch import ItchFeed, frame
from tests.test_native_venue_windows import mangled_itch

pytestmark = pytest.mark.skipif(not native.available(), reason=native.describe())
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def day() -> list[bytes]:
    result = simulate(SimConfig(n_symbols=3, duration_ns=900 * SEC, seed=11))
    return [m.raw for m in messages("itch", result)]


def day_file(folder: Path, values: list[bytes], *, tail: bytes = b"", gz: bool = False) -> Path:
    body = frame(values) + tail
    path = folder / ("day.NASDAQ_ITCH50.gz" if gz else "day.NASDAQ_ITCH50")
    path.write_bytes(gzip.compress(body) if gz else body)
    return path


def both_ways(path: Path, levels: int, symbol: str | None, *, check_crossed: bool = True, chunk: int = 4096):
    """(reference, native): each the rows, the stats and the errors (type, symbol, seq) in order."""
    return [rebuild_outcome(path, levels, symbol, native=n, check_crossed=check_crossed, chunk=chunk)
            for n in (False, True)]  # fmt: skip


def test_a_simulated_day_read_in_pieces_gives_the_references_rows(day: list[bytes], tmp_path: Path) -> None:
    path = day_file(tmp_path, day)
    want, got = both_ways(path, 5, None)
    assert len(want[0]) > 500 and len(want[1].symbols) == 3 and not want[1].errors
    assert got == want
    second = want[1].symbols[1]
    for levels, symbol, chunk in ((10, None, 1 << 20), (1, second, 777), (10, second, 1 << 20), (0, None, 4096),
                                  (-2, None, 4096)):  # fmt: skip
        want, got = both_ways(path, levels, symbol, chunk=chunk)
        assert got == want, (levels, symbol, chunk)
    assert {r.symbol for r in both_ways(path, 3, second)[0][0]} == {second}
    assert both_ways(path, 3, "NOPE")[1][0] == []  # a book the file does not hold: no rows


@pytest.mark.parametrize("check_crossed", [True, False])
def test_a_mangled_day_gives_the_references_rows_stats_and_errors(
    day: list[bytes], tmp_path: Path, check_crossed: bool
) -> None:
    values = mangled_itch(day)
    path = day_file(tmp_path, values)
    for name in (None, "BETA"):
        want, got = both_ways(path, 10, name, check_crossed=check_crossed)
        reasons = set(want[1].errors)
        assert {"malformed", "unknown_order"} <= reasons
        assert ("crossed_book" in reasons) is check_crossed
        assert got == want


def test_a_file_ending_in_a_frame_cut_short_or_gzipped_gives_the_references_rows(
    day: list[bytes], tmp_path: Path
) -> None:
    for tail in (b"\x00\x24A\x00\x01", b"\x00"):  # a frame of 36 bytes holding 3; a lone length byte
        path = day_file(tmp_path, day[:3000], tail=tail)
        want, got = both_ways(path, 5, None, chunk=1000)
        assert sum(want[1].errors.values()) == 1 and got == want  # malformed; a type byte of 0
    gz = day_file(tmp_path, day, gz=True)
    want, got = both_ways(gz, 5, None)
    assert len(want[0]) > 500 and got == want
    gz.write_bytes(gz.read_bytes()[: gz.stat().st_size * 2 // 3])  # damaged: cut short
    cut = []
    for rows in (rebuild(ItchFeed(), ItchFeed.read_capture(gz), 5), rebuild_itch(gz, 5)):
        got_rows = []
        with pytest.raises(CaptureError, match="it is truncated"):
            got_rows.extend(rows)
        cut.append(got_rows)
    # the native path reads 64 KiB at a time: it stops up to that much of the stream before the damage
    assert 100 < len(cut[1]) <= len(cut[0]) and cut[1] == cut[0][: len(cut[1])]


def test_the_book_command_writes_the_same_csv_on_both_paths(day: list[bytes], tmp_path: Path) -> None:
    path = day_file(tmp_path, mangled_itch(day))
    outs = []
    for flag in ("1", "0"):
        out = tmp_path / f"rows-{flag}.csv"
        cmd = [sys.executable, "-m", "streams.cli", "book", str(path), "--format", "itch", "--levels", "5",
               "--with-seq", "--allow-crossed", "--out", str(out)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env={**os.environ, "MT_NATIVE": flag},
                              timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        outs.append((out.read_text(), done.stderr.splitlines()[-4:]))
    assert outs[0] == outs[1] and outs[0][0].count("\n") > 500
