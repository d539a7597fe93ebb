"""`megatrading book` on the native path (orderbook.rebuild.NATIVE: an ITCH day file read in pieces, a Binance
capture's records in chunks, decoded, applied and the rows cut in Rust) gives the reference's (`rebuild` with the
venue's Python feed, message by message): every row (symbol, time, sequence, the LOBSTER orderbook row), the stats
(messages, rows, errors by reason, symbols in the order first seen) and the errors, in order.

ITCH: a simulated day read in pieces of a few kilobytes (frames cut across pieces) and whole, for the first book
and for a named one, at one and ten levels; a mangled day (truncated and unknown messages, unknown orders, a
crossed book, with and without --allow-crossed); a file that ends in a frame cut short; gzipped (a damaged one:
the same error, the rows up to 64 KiB before the damage). Binance: real captures (one market's, and a cryptofeed
capture of four symbols with its REST snapshots in sibling files), a mangled capture (bad JSON, a truncated trade,
a crossed book, a sequence gap), a REST snapshot that crosses the live book, a damaged gzip (the same rows,
then the same error). Both through the CLI."""

from __future__ import annotations

import gzip
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from model.sim.engine import SEC, SimConfig
from model.sim.run import simulate
from model.sim.writers import messages
from orderbook import native
from orderbook.errors import CaptureError
from orderbook.native.check import rebuild_outcome, rebuild_until_stopped
from orderbook.rebuild import rebuild_itch, rows_of
from orderbook.venues.binance import BinanceFeed
from orderbook.venues.itch import frame
from streams.cli import csv_lines
from tests.test_native_venue_windows import crossed_snapshot_midway, mangled_binance, mangled_itch

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


def both_ways(path: Path, levels: int, symbol: str | None, *, check_crossed: bool = True, chunk: int = 4096,
              venue: str = "itch"):  # fmt: skip
    """(reference, native): each the rows, the stats and the errors (type, symbol, seq) in order."""
    return [rebuild_outcome(path, levels, symbol, native=n, check_crossed=check_crossed, chunk=chunk, venue=venue)
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


def test_the_native_csv_lines_are_the_rows_lines(day: list[bytes], tmp_path: Path) -> None:
    blocks = list(rebuild_itch(day_file(tmp_path, day), 4, chunk=50_000))
    assert len(blocks) > 2
    for with_seq in (False, True):
        want = "".join(csv_lines(rows_of(blocks), with_seq))
        assert "".join(b.csv(with_seq) for b in blocks) == want and want.count("\n") > 500


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


def test_a_damaged_gzipped_day_gives_the_references_rows_then_its_error(day: list[bytes], tmp_path: Path) -> None:
    """A gzip read that meets the damage returns nothing of what it decompressed: the native path reads the
    stream in pieces of the reference's buffer, so both stop after the same message and say the same (the
    native path stopped up to 64 KiB earlier until 2026-12-07; the reference counted the length prefix of
    the frame the damage cut)."""
    gz = day_file(tmp_path, day, gz=True)
    data = gz.read_bytes()
    for k, at in enumerate(len(data) * i // 7 for i in range(1, 7)):
        damaged = data[:at] if k % 2 else data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]  # cut or corrupt
        gz.write_bytes(damaged)
        want, *got = (rebuild_until_stopped(gz, 5, native=n, chunk=c) for n, c in ((False, None), (True, None),
                                                                                     (True, 5000)))  # fmt: skip
        assert isinstance(want[3], CaptureError) and ("it is truncated" if k % 2 else "is corrupt") in str(want[3])
        assert len(want[0]) > 100
        for native_rows, stats, errors, stopped in got:
            assert (native_rows, stats, errors, str(stopped)) == (*want[:3], str(want[3])), at


def test_a_gzipped_day_damaged_in_its_first_bytes_gives_the_references_error(day: list[bytes], tmp_path: Path) -> None:
    """The native path's first-line check peeked into the stream outside the reading's handling of gzip errors:
    a bare EOFError (`make fuzz`'s `rebuild` target). Cut within the first block or a header byte flipped."""
    gz = day_file(tmp_path, day[:200], gz=True)
    data = gz.read_bytes()
    for damaged in (data[:20], data[:3] + bytes([data[3] ^ 0xFF]) + data[4:], data[:200]):
        gz.write_bytes(damaged)
        want, got = (rebuild_until_stopped(gz, 5, native=n) for n in (False, True))
        assert isinstance(want[3], CaptureError) and want[0] == []
        assert (got[:3], str(got[3])) == (want[:3], str(want[3]))


def book_command_on_both_paths(path: Path, venue: str, folder: Path) -> list[tuple[str, list[str]]]:
    """`megatrading book` with MT_NATIVE=1 and 0: (the CSV, the summary) each."""
    outs = []
    for flag in ("1", "0"):
        out = folder / f"rows-{flag}.csv"
        cmd = [sys.executable, "-m", "streams.cli", "book", str(path), "--format", venue, "--levels", "5",
               "--with-seq", "--allow-crossed", "--out", str(out)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env={**os.environ, "MT_NATIVE": flag},
                              timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        # the error texts may differ between the paths (the class, symbol and seq may not), the file names do
        summary = [line.replace(out.name, "") for line in done.stderr.splitlines() if " WARNING " not in line]
        outs.append((out.read_text(), summary))
    return outs


def test_the_book_command_writes_the_same_csv_on_both_paths(day: list[bytes], tmp_path: Path) -> None:
    outs = book_command_on_both_paths(day_file(tmp_path, mangled_itch(day)), "itch", tmp_path)
    assert outs[0] == outs[1] and outs[0][0].count("\n") > 500


# -- Binance ---------------------------------------------------------------------------------------------------


def binance_lines(name: str, n: int | None = None) -> list[tuple[int, bytes]]:
    """A real capture's first `n` records (receive time, raw), bare REST snapshots wrapped as read."""
    records = BinanceFeed.read_capture(SHARED_DATA / "binance-hftbacktest" / name)
    return [(r.recv_ts, r.raw) for r in itertools.islice(records, n)]


def binance_file(folder: Path, records: list[tuple[int, bytes]], name: str = "capture.gz") -> Path:
    """hftbacktest's layout: `<receive ns> <json>` a line, gzipped."""
    path = folder / name
    path.write_bytes(gzip.compress(b"".join(b"%d %s\n" % (ts, raw) for ts, raw in records)))
    return path


def mangled_binance_file(folder: Path, name: str) -> Path:
    """A capture's head with tests.test_native_venue_windows's mangling (its frame aside: a capture holds
    a message a line), a millisecond between records."""
    values = [v for v in mangled_binance([raw for _, raw in binance_lines(name, 6000)]) if b"\n" not in v]
    return binance_file(folder, [(1_723_075_200_000_000_000 + i * 10**6, v) for i, v in enumerate(values)])


@pytest.mark.realdata
def test_binance_captures_give_the_references_rows(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "binance-hftbacktest" / "spot_ethusdt_20240808.gz"
    want, got = both_ways(path, 10, None, venue="binance")
    assert len(want[0]) > 5000 and want[1].symbols == ["ETHUSDT"] and got == want
    head = binance_file(tmp_path, binance_lines("usdm_btcusdt_20240808.gz", 8000))
    for levels, symbol, chunk in ((5, None, 37), (1, "BTCUSDT", 4096), (0, None, 500), (3, "NOPE", 4096)):
        want, got = both_ways(head, levels, symbol, chunk=chunk, venue="binance")
        assert got == want and (len(want[0]) > 1000) is (symbol != "NOPE"), (levels, symbol, chunk)
    several = shared_data / "cryptofeed-captures" / "BINANCE.ws.1.0.gz"  # its REST snapshots: BINANCE.http.*
    for symbol in (None, "LRCBTC"):
        want, got = both_ways(several, 5, symbol, chunk=50, venue="binance")
        assert len(want[1].symbols) == 4 and want[0] and got == want


@pytest.mark.realdata
@pytest.mark.parametrize("check_crossed", [True, False])
def test_a_mangled_binance_capture_gives_the_references_rows_stats_and_errors(
    shared_data: Path, tmp_path: Path, check_crossed: bool
) -> None:
    path = mangled_binance_file(tmp_path, "spot_btcusdt_20240808.gz")
    for symbol, chunk in ((None, 4096), ("BTCUSDT", 101)):
        want, got = both_ways(path, 10, symbol, check_crossed=check_crossed, chunk=chunk, venue="binance")
        reasons = set(want[1].errors)
        assert {"malformed", "sequence_gap"} <= reasons and ("crossed_book" in reasons) is check_crossed
        assert got == want
    # a REST snapshot that crosses the live book: refused, its levels applied, and its row written
    values, _ = crossed_snapshot_midway([raw for _, raw in binance_lines("spot_ethusdt_20240808.gz", 4000)], 1000)
    path = binance_file(tmp_path, [(1_723_075_200_000_000_000 + i, v) for i, v in enumerate(values)], "crossed.gz")
    want, got = both_ways(path, 10, None, check_crossed=check_crossed, chunk=700, venue="binance")
    assert (want[1].errors["crossed_book"] >= 1) is check_crossed and got == want


def rows_then_error(path: Path, native_path: bool, chunk: int = 1000) -> tuple[list, str]:
    """The rows `book` writes of a Binance capture whose reading stops, 5 levels, and the CaptureError it stops
    with."""
    rows, _, _, stopped = rebuild_until_stopped(path, 5, native=native_path, chunk=chunk, venue="binance")
    assert isinstance(stopped, CaptureError), stopped
    return rows, str(stopped)


@pytest.mark.realdata
def test_a_damaged_binance_capture_gives_the_same_rows_then_the_same_error(shared_data: Path, tmp_path: Path) -> None:
    path = binance_file(tmp_path, binance_lines("cm_btcusd_perp_20240808.gz", 8000))
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    want, got = rows_then_error(path, False), rows_then_error(path, True)
    assert "it is truncated" in want[1] and len(want[0]) > 1000
    assert got == want


@pytest.mark.realdata
def test_a_receive_time_past_int64_stops_the_reading_at_its_line_on_both_paths(
    shared_data: Path, tmp_path: Path
) -> None:
    """A stamp that no int64 holds is damage, as cryptofeed's stamps past int64 are: the native path raised a
    bare OverflowError before (the reference read it as a Python int)."""
    lines = binance_lines("spot_ethusdt_20240808.gz", 3000)
    lines.insert(2000, (10**20, lines[2000][1]))
    path = binance_file(tmp_path, lines)
    for chunk in (4096, 700):
        want, got = rows_then_error(path, False, chunk), rows_then_error(path, True, chunk)
        assert (
            "line 2001 is not a line of a Binance capture (receive time b'100000000000000000000' does not fit"
            in want[1]
        )
        assert len(want[0]) > 100 and got == want


@pytest.mark.realdata
def test_the_book_command_writes_the_same_binance_csv_on_both_paths(shared_data: Path, tmp_path: Path) -> None:
    path = mangled_binance_file(tmp_path, "usdm_ethusdt_20240808.gz")
    outs = book_command_on_both_paths(path, "binance", tmp_path)
    assert outs[0] == outs[1] and outs[0][0].count("\n") > 500
