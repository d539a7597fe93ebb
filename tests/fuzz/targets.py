"""Fuzz targets: what must hold for any bytes a raw topic can carry, checked on streams the fuzzer
derives from real and simulated ones.

Each target is `check(data: bytes) -> None`: it raises AssertionError (or lets through any other
exception) where the property fails, and returns for every input where it holds. tests/fuzz/run.py
drives them with atheris (coverage-guided, `make fuzz`); tests/test_fuzz_targets.py runs them on
their seed streams, on deterministic random inputs and on every input kept under
tests/fuzz/inputs/<target>/ (what a fuzz run found, kept once fixed) within `make test`.

An input does not encode a stream byte for byte: it steers edits of a seed stream (`Edits`), so the
books go live (a Binance snapshot, ITCH's add orders) and the edits reach the states where a real
feed's faults land: a flipped or cut byte, a number swapped for NaN, 1e308 or a string, a dropped,
repeated or reordered message, a message of the fuzzer's own bytes, messages framed together
(orderbook/frames.py). The targets:

- `pipeline`: every venue's reference path (streams.pipeline.VenuePipeline, the worker's entry, on
  orderbook.venue_windows.VenueWindows): a bad message is a FeedError and its record a reject with
  the error's reason; never INTERNAL_ERROR (an exception that is no FeedError, in decoding or in
  building windows: a bug the worker survives, but dead-letters as one); every window's rows finite; its
  state goes through a snapshot record and back.
- `native`: the compiled path (orderbook/native) against that reference on the venues it decodes (all of
  them; Coinbase's level2 capture and a simulated full channel): the same windows, field for field, the same
  rejects (reason, message, place) and the same stats, cut into batches where the fuzzer says. A Rust panic
  is a failure here: in the worker it fails the batch, which is redone from the committed offset, for as
  long as the record is there (streams/partition.py).
- `states`: the offline replay the training data reads (orderbook/stream_replay.py, with each symbol's book
  after every message for the targets) on the native path against the reference path, on the streams a file
  can hold (the edits without frames): the same windows, stats and book states, message for message.
- `snapshot`: a partition's `md.state` record (streams/snapshots.py; of either path, read on either), edited
  (its fields swapped for
  other values or dropped, its bytes flipped, or the state's inflated body edited and deflated again,
  so the edits get past zlib's checksum into the codec and the compiled parts' `from_state`),
  either restores a pipeline that goes on through the rest of the stream (rejects allowed, nothing
  raised) or raises SnapshotError, on which the worker rebuilds from the first record. Anything else
  fails the partition's restore at every retry (streams/recovery.py).
- `rebuild`: `megatrading book` on an edited ITCH day file, Binance, Kraken or Coinbase capture or LOBSTER file,
  maybe gzipped and cut short, read on the native path in pieces the input sizes (orderbook.rebuild.NATIVE),
  against the Python feed's `rebuild`: the same rows, stats and errors, then the same error where the reading
  stops (a damaged gzip stream, a file that is not the venue's).
- `capture`: a text venue's capture file (Binance, Coinbase, Kraken, LOBSTER) edited line by line, gzipped or
  not, maybe cut short, read by `megatrading book`'s reference: it is read, or stops with a CaptureError or a
  FeedError, never another exception (a traceback, or a one-line error that says nothing of the file). A
  Binance, Coinbase or Kraken file reads the same records, and stops with the same error, with its lines split
  in Rust (hftbacktest's, cryptofeed's received lines) as line by line (MT_NATIVE=0).
- `news`: an `md.news` record (the input's bytes as they are) is a Headline or a DecodeError
  (orderbook.news.parse_news, which the worker calls in its heartbeat timer: anything else raised
  there ended the app), and a Headline joins the windows of a live ITCH book without failing them, on the
  reference path and on the worker's default (the native path).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from unittest import mock

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from orderbook.frames import encode_frame, is_frame  # noqa: E402
from orderbook.native.check import pipeline_difference  # noqa: E402
from orderbook.venue_windows import INTERNAL_ERROR  # noqa: E402
from orderbook.venues import FEEDS, RawRecord, feed_class  # noqa: E402
from orderbook.windows import Window, WindowConfig  # noqa: E402
from streams.pipeline import VenuePipeline  # noqa: E402

SHARED_DATA = Path(os.environ.get("MT_SHARED_DATA", REPO.parent / "shared" / "data"))
CONFIG = WindowConfig(n_events=16, n_rows=4, every_events=8)  # small windows: many of them per stream
SEED_RECORDS = 400  # records of each seed stream: a live book and a few hundred windows, milliseconds a run
VENUES = tuple(sorted(FEEDS))
NATIVE_VENUES = ("binance", "itch", "lobster", "kraken", "coinbase")
JSON_VENUES = ("binance", "coinbase", "kraken")  # whose numbers an edit may swap (`NUMBERS`)
# what a number in a JSON message becomes: the values feeds are built to refuse
NUMBERS = (b"NaN", b"-1", b"0", b"-0", b"1e308", b"-1e308", b"1e-400", b"99999999999999999999999",
           b'"x"', b"null", b"[]", b"{}", b"true", b'""', b"0.00000001", b"4294967296")  # fmt: skip
NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
CAPTURES = {  # venue -> a real capture whose head seeds it (Binance: its REST snapshot is line 1)
    "binance": ("binance", "binance-hftbacktest/spot_btcusdt_20240808.gz"),
    "kraken": ("kraken", "cryptofeed-captures/KRAKEN.ws.50.0.gz"),
    "coinbase": ("coinbase", "cryptofeed-captures/COINBASE.ws.28.0.gz"),
}


# --------------------------------------------------------------------------- seed streams


@functools.cache
def seed_stream(venue: str) -> tuple[bytes, ...]:
    """The record values a venue's inputs edit: the head of a real capture where ../shared/data has
    one, else (ITCH, LOBSTER, or no shared data) two simulated minutes in the venue's format."""
    capture = CAPTURES.get(venue)
    if capture is not None and (SHARED_DATA / capture[1]).is_file():
        records = itertools.islice(feed_class(capture[0]).read_capture(SHARED_DATA / capture[1]), SEED_RECORDS)
        return tuple(r.raw for r in records)
    from model.sim.engine import SEC, SimConfig
    from model.sim.run import simulate
    from model.sim.writers import messages

    fmt = venue.removesuffix("-full")  # "coinbase-full": the full channel, beside the real level2 capture
    fmt = fmt if fmt in ("itch", "lobster", "binance", "coinbase") else "binance"
    result = simulate(SimConfig(n_symbols=2, duration_ns=120 * SEC, seed=5))
    stream = messages(fmt, result)
    if fmt == "lobster":  # one ticker's rows: a record's key names its book (`LOBSTER_KEY`)
        stream = (m for m in stream if m.symbol == result.symbols[0].name)
    return tuple(itertools.islice((m.raw for m in stream), SEED_RECORDS))


# --------------------------------------------------------------------------- inputs -> streams


class Edits:
    """An input read as choices (atheris' FuzzedDataProvider's idea, without needing atheris): ints
    from its bytes, then bytes of its own; an input that runs out answers 0 and b""."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def int(self, n: int) -> int:
        """An int in [0, n) from the next two bytes (0 when n <= 1 or the input is spent)."""
        if n <= 1:
            return 0
        raw = self.data[self.at : self.at + 2]
        self.at += 2
        return int.from_bytes(raw.ljust(2, b"\0"), "little") % n

    def bytes(self, n: int) -> bytes:
        out = self.data[self.at : self.at + n]
        self.at += len(out)
        return out


def edited(base: Sequence[bytes], e: Edits, json_numbers: bool) -> list[bytes]:
    """`base` cut to a length the input chooses, then up to 24 edits it chooses (module doc)."""
    values = list(base[: max(1, e.int(len(base) + 1))])
    for _ in range(e.int(25)):
        i = e.int(len(values))
        v = values[i]
        op = e.int(9)
        if op == 0 and v:  # a byte flipped
            at = e.int(len(v))
            values[i] = v[:at] + bytes([v[at] ^ (1 + e.int(255))]) + v[at + 1 :]
        elif op == 1:  # cut short
            values[i] = v[: e.int(len(v) + 1)]
        elif op == 2 and len(values) > 1:  # dropped (a sequence gap where the venue numbers messages)
            del values[i]
        elif op == 3:  # repeated
            values.insert(i, v)
        elif op == 4 and i + 1 < len(values):  # two swapped
            values[i], values[i + 1] = values[i + 1], values[i]
        elif op == 5:  # the fuzzer's own bytes, a new message
            values.insert(i, e.bytes(1 + e.int(64)))
        elif op == 6:  # the next few messages as one frame
            n = 1 + e.int(8)
            values[i : i + n] = [encode_frame(values[i : i + n])]
        elif op == 7 and json_numbers:  # a number of a JSON message swapped for one a feed must refuse
            found = list(NUMBER.finditer(v))
            if found:
                m = found[e.int(len(found))]
                values[i] = v[: m.start()] + NUMBERS[e.int(len(NUMBERS))] + v[m.end() :]
        elif op == 8 and v:  # bytes spliced in
            at = e.int(len(v) + 1)
            values[i] = v[:at] + e.bytes(1 + e.int(16)) + v[at:]
    return values


# --------------------------------------------------------------------------- the targets


@dataclasses.dataclass
class Run:
    """What a stream did to a VenuePipeline: its windows, its rejects, and the pipeline as it was left."""

    windows: list[Window]
    rejects: list[tuple]
    pipe: VenuePipeline

    @property
    def outputs(self) -> tuple:
        """(windows, rejects, stats): what orderbook.native.check.pipeline_difference compares."""
        return self.windows, self.rejects, self.pipe.stats


def run_pipeline(venue: str, values: Sequence[bytes], *, native: bool | None, cuts: Sequence[int] = ()) -> Run:
    """`values` through a VenuePipeline (`native` as VenuePipeline takes it), on one partition; the native
    path takes them in batches cut at `cuts` (the worker's process_batch), the reference one by one."""
    pipe = VenuePipeline(venue, CONFIG, native=native)
    key = LOBSTER_KEY if venue == "lobster" else None  # a LOBSTER row names no symbol: its record's key does
    records = [_Record(key, v, PARTITION, i) for i, v in enumerate(values)]
    windows, rejects = [], []
    bounds = sorted({0, len(records), *(c for c in cuts if 0 < c < len(records))})
    for a, b in itertools.pairwise(bounds):
        ws, rs = pipe.process_batch(records[a:b])
        windows += ws
        rejects += [(r.reason, r.error, r.offset, r.index, r.value) for r in rs]
    return Run(windows, rejects, pipe)


@dataclasses.dataclass(frozen=True)
class _Record:
    key: bytes | None
    value: bytes
    partition: int
    offset: int


def pipeline(data: bytes) -> None:
    e = Edits(data)
    venue = VENUES[e.int(len(VENUES))]
    values = edited(seed_stream(venue), e, venue in JSON_VENUES)
    run = run_pipeline(venue, values, native=False)
    internal = [r for r in run.rejects if r[0] == INTERNAL_ERROR]
    assert not internal, f"{venue}: a bug, not a FeedError: {internal[0][1]} (message {internal[0][4]!r:.300})"
    for w in run.windows:
        assert np.isfinite(w.features[w.row_mask]).all(), f"{venue}: non-finite features in a window of {w.symbol}"
    # whatever the stream left in the state, the worker can snapshot it and restore from that snapshot
    # (a state that cannot be written would leave every restart replaying the whole topic)
    from streams import snapshots

    topic = f"md.raw.{venue}"
    record = snapshots.encode(GROUP, topic, PARTITION, run.pipe)[1]
    with mock.patch.dict(os.environ, {"MT_NATIVE": "0"}):  # a reference-path snapshot restores on that path
        snapshots.decode(record, group=GROUP, topic=topic, partition=PARTITION, venue=venue, config=CONFIG,
                         max_bytes=None)  # fmt: skip


def native_stream(e: Edits) -> tuple[str, list[bytes]] | None:
    """A native venue (Coinbase's level2 capture or a simulated full channel) and its edited seed stream;
    None where the native path is not built."""
    from orderbook import native as native_build

    if not native_build.available():
        return None
    stream = (*NATIVE_VENUES, "coinbase-full")[e.int(len(NATIVE_VENUES) + 1)]
    venue = stream.removesuffix("-full")
    return venue, edited(seed_stream(stream), e, venue in JSON_VENUES)


def native(data: bytes) -> None:
    e = Edits(data)
    if (chosen := native_stream(e)) is None:
        return
    venue, values = chosen
    cuts = [e.int(len(values) + 1) for _ in range(e.int(4))]
    want = run_pipeline(venue, values, native=False)
    try:
        got = run_pipeline(venue, values, native=True, cuts=cuts)
    except RuntimeError as err:  # VenuePipeline's wrapper of a Rust panic
        raise AssertionError(f"{venue}: the native path failed where the reference did not: {err}") from err
    assert (difference := pipeline_difference(want.outputs, got.outputs)) is None, f"{venue}: {difference}"


def states(data: bytes) -> None:
    if (chosen := native_stream(Edits(data))) is None:
        return
    venue, values = chosen
    key = LOBSTER_KEY if venue == "lobster" else None  # a LOBSTER row names no symbol: its record's key does
    records = [RawRecord(key, v) for v in values if not is_frame(v)]
    got = _replayed(venue, records)
    with mock.patch.dict(os.environ, {"MT_NATIVE": "0"}):
        want = _replayed(venue, records)
    assert (difference := pipeline_difference(want[0], got[0])) is None, f"{venue}: {difference}"
    assert want[1].keys() == got[1].keys(), f"{venue}: states of {sorted(want[1])} against {sorted(got[1])}"
    for name, columns in want[1].items():
        for column, w in columns.items():
            g = got[1][name][column]
            assert np.array_equal(w, g, equal_nan=w.dtype.kind == "f"), f"{venue}: {name}'s {column} differs"


def _replayed(venue: str, records: list[RawRecord]) -> tuple[tuple, dict[str, dict[str, np.ndarray]]]:
    """(windows, rejects (none: stream_replay counts them in the stats), stats) and each symbol's book
    states, concatenated over the parts."""
    from orderbook.stream_replay import replay_stream
    from orderbook.venue_windows import WindowStats

    stats, windows, parts = WindowStats(), [], {}
    for part in replay_stream(venue, records, config=CONFIG, states=True, stats=stats):
        windows += part.windows
        for name, st in part.states.items():
            parts.setdefault(name, []).append(st)
    columns = ("tick", "spread", "mid2", "depth", "traded", "emitted")
    joined = {name: {c: np.concatenate([np.atleast_1d(getattr(p, c)) for p in ps]) for c in columns}
              for name, ps in parts.items()}  # fmt: skip
    return (windows, [], stats), joined


GROUP, PARTITION = "fuzz", 0
LOBSTER_KEY = b"FUZZ"
# what a snapshot record's field becomes: other types, out-of-range numbers, another field's value
FIELD_VALUES = (None, -1, 0, 1, 2**63, 2**64 - 1, 1.5, True, "", "x", b"", b"\x00", [], {}, [1, 2], {"a": 1})


@functools.cache
def snapshot_seed(venue: str, native: bool) -> bytes:
    """A snapshot record of a pipeline halfway through the venue's seed stream."""
    from streams import snapshots

    values = seed_stream(venue)
    pipe = run_pipeline(venue, values[: len(values) // 2], native=native).pipe
    return snapshots.encode(GROUP, f"md.raw.{venue}", PARTITION, pipe)[1]


def _edit_state(blob: bytes, e: Edits) -> bytes:
    """orderbook.snapshot's blob with its inflated body edited and deflated again under a header
    that states the new length: the edits reach the codec, not zlib's checksum."""
    import struct
    import zlib

    from orderbook.snapshot import _HEADER

    try:
        magic, version, _ = _HEADER.unpack(blob[: _HEADER.size])
        body = bytearray(zlib.decompress(blob[_HEADER.size :]))
    except (struct.error, zlib.error):
        return blob
    for _ in range(1 + e.int(8)):
        at = e.int(len(body) + 1)
        op = e.int(3)
        if op == 0 and at < len(body):
            body[at] ^= 1 + e.int(255)
        elif op == 1:
            body[at : at + 1 + e.int(16)] = b""
        else:
            body[at:at] = e.bytes(1 + e.int(16))
    return _HEADER.pack(magic, version, len(body)) + zlib.compress(bytes(body), 1)


def snapshot(data: bytes) -> None:
    import msgpack

    from orderbook import native as native_build
    from orderbook.snapshot import SnapshotError
    from streams import snapshots

    e = Edits(data)
    venue = VENUES[e.int(len(VENUES))]
    convertible = venue in NATIVE_VENUES and native_build.available()
    on_native = convertible and e.int(2) == 1
    # a third of the snapshots of a native venue are read on the other path (orderbook/native/convert.py), as a
    # partition that left the native path after its panics, and its next owner, read them
    read_native = on_native != (convertible and e.int(3) == 0)
    doc = msgpack.unpackb(snapshot_seed(venue, on_native), raw=False)
    keys = sorted(doc)
    for _ in range(e.int(4)):
        op, key = e.int(4), keys[e.int(len(keys))]
        if op == 0:
            doc[key] = FIELD_VALUES[e.int(len(FIELD_VALUES))]
        elif op == 1:
            doc.pop(key, None)
        elif op == 2 and isinstance(doc.get("state"), bytes):
            doc["state"] = _edit_state(doc["state"], e)
        else:
            doc[key] = doc.get(keys[e.int(len(keys))])  # another field's value
    value = msgpack.packb(doc, use_bin_type=True)
    if e.int(4) == 0 and value:  # the record's own bytes
        at = e.int(len(value))
        value = value[:at] + bytes([value[at] ^ (1 + e.int(255))]) + value[at + 1 :]
    topic = f"md.raw.{venue}"
    try:
        with mock.patch.dict(os.environ, {"MT_NATIVE": "1" if read_native else "0"}):
            pipe = snapshots.decode(value, group=GROUP, topic=topic, partition=PARTITION, venue=venue,
                                    config=CONFIG, max_bytes=None)  # fmt: skip
    except SnapshotError:
        return  # the worker rebuilds from the first record
    at = pipe.position[PARTITION]
    rest = seed_stream(venue)[at:] if 0 <= at <= len(seed_stream(venue)) else ()
    try:
        pipe.process_batch([_Record(None, v, PARTITION, at + i) for i, v in enumerate(rest)])
    except Exception as err:
        raise AssertionError(f"{venue}: a restored snapshot failed the stream after it: {err!r:.300}") from err


def news(data: bytes) -> None:
    from orderbook.errors import DecodeError
    from orderbook.news import parse_news

    try:
        headline = parse_news(data)
    except DecodeError:
        return
    values = seed_stream("itch")
    for path in (False, None):  # the reference, and the worker's default (the native path where it is built)
        pipe = run_pipeline("itch", values[:100], native=path).pipe
        for symbol in pipe.builders:
            pipe.add_news(headline.ts, [symbol, *headline.symbols], headline.headline)
        _, rejects = pipe.process_batch([_Record(None, v, PARTITION, 100 + i) for i, v in enumerate(values[100:])])
        assert not [r for r in rejects if r.reason == INTERNAL_ERROR], f"a headline failed the windows: {rejects[0]}"


@functools.cache
def _rebuild_folder() -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix="fuzz-rebuild-"))


def rebuild(data: bytes) -> None:
    """`megatrading book` of an edited ITCH day file, Binance capture (hftbacktest's lines: an edit's newline
    splits a message, as a damaged file would), LOBSTER message file, or Kraken or Coinbase capture (cryptofeed's
    lines; Coinbase's level2 capture or a simulated full channel), maybe gzipped and cut short, on both paths:
    the same rows, stats and errors, then the same error where the reading stops (a damaged gzip stream, a file
    that cannot be read as the venue's)."""
    import gzip

    from orderbook import native as native_build
    from orderbook.native.check import rebuild_until_stopped
    from orderbook.venues.itch import frame

    if not native_build.available():
        return
    e = Edits(data)
    stream = ("itch", "binance", "lobster", "kraken", "coinbase", "coinbase-full")[e.int(6)]
    venue = stream.removesuffix("-full")
    values = [v for v in edited(seed_stream(stream), e, venue in JSON_VENUES) if len(v) <= 0xFFFF]
    levels, chunk, crossed = 1 + e.int(10), 8 + e.int(2048), e.int(2) == 0
    if venue == "itch":
        path = _rebuild_folder() / "day.NASDAQ_ITCH50"
        path.write_bytes(frame(values) + bytes(e.int(2)))  # and maybe a lone last byte
    elif venue == "binance":
        path = _rebuild_folder() / "capture.txt"
        path.write_bytes(b"".join(b"%d %s\n" % (1_700_000_000_000_000_000 + i, v) for i, v in enumerate(values)))
    elif venue in ("kraken", "coinbase"):  # cryptofeed's recordings
        path = _rebuild_folder() / f"{venue.upper()}.ws.50.0"
        path.write_bytes(b"".join(b"1618678133.%06d: %s\n" % (i, v) for i, v in enumerate(values)))
    else:  # LOBSTER's naming: the rows are keyed AAPL
        path = _rebuild_folder() / "AAPL_2012-06-21_34200000_57600000_message_10.csv"
        path.write_bytes(b"".join(v + b"\n" for v in values))
    if e.int(4) == 0:  # gzipped (read as such whatever its name), maybe cut short: the same rows, then the same error
        body = gzip.compress(path.read_bytes(), mtime=0)
        path.write_bytes(body[: len(body) - e.int(64)])

    def outcome(native_path: bool) -> object:
        rows, stats, errors, stopped = rebuild_until_stopped(
            path, levels, native=native_path, check_crossed=crossed, chunk=chunk, venue=venue
        )  # stopped: a damaged file, one that is not the venue's, a snapshot naming no symbol
        return rows, stats, errors, stopped if stopped is None else (type(stopped).__name__, str(stopped))

    want, got = outcome(False), outcome(True)
    assert got == want, f"megatrading book's native rows of {venue} differ from the reference's (chunk {chunk})"


SEED_LINES = 300  # lines of each capture file the `capture` target edits


@functools.cache
def seed_lines(venue: str) -> tuple[bytes, ...]:
    """The head of a capture file of the venue, line by line as recorded (its format's capture lines, not
    the raw messages): a real capture where ../shared/data has one, else simulated LOBSTER rows."""
    from orderbook.venues.base import numbered_lines

    capture = CAPTURES.get(venue)
    if capture is not None and (SHARED_DATA / capture[1]).is_file():
        return tuple(line for _, line in itertools.islice(numbered_lines(SHARED_DATA / capture[1]), SEED_LINES))
    return seed_stream(venue)[:SEED_LINES]  # LOBSTER's records are its file's rows; ITCH is `rebuild`'s


def capture(data: bytes) -> None:
    """`megatrading book` (the reference, `rebuild` over `read_capture`) on an edited capture file of a text
    venue: its lines edited as messages are (a byte flipped, a line cut, dropped, repeated, swapped, the
    fuzzer's own bytes), the file gzipped or not and maybe cut short. Whatever the file holds, reading it ends
    or stops with a CaptureError (the file is not the venue's, or is damaged) or a FeedError (a Binance REST
    snapshot that names no symbol): a clear error on one line, never another exception."""
    import gzip

    from orderbook.errors import CaptureError, FeedError
    from orderbook.rebuild import rebuild

    e = Edits(data)
    venue = ("binance", "coinbase", "kraken", "lobster")[e.int(4)]
    lines = edited(seed_lines(venue), e, venue in JSON_VENUES)
    body = b"\n".join(lines) + b"\n" * e.int(2)
    if e.int(2):
        body = gzip.compress(body, mtime=0)
    body = body[: len(body) - e.int(64)]  # maybe cut short: a truncated gzip stream
    names = {"binance": "spot_btcusdt_20240808.gz", "coinbase": "COINBASE.ws.28.0.gz", "kraken": "KRAKEN.ws.50.0.gz",
             "lobster": "FUZZ_2012-06-21_34200000_57600000_message_10.csv"}  # fmt: skip
    path = _rebuild_folder() / names[venue]
    path.write_bytes(body)
    cls = feed_class(venue)
    if venue != "lobster":  # its lines split in Rust a block at a time: the same records and error as line by line
        assert read_capture(cls, path, "1") == read_capture(cls, path, "0")
    try:
        for _ in rebuild(cls.for_capture(path, None), cls.read_capture(path), 5):
            pass
    except (CaptureError, FeedError):
        pass


def read_capture(cls: type, path: Path, native: str) -> tuple[list, str | None]:
    """A capture's records, and the error that stopped the reading (its class and message), with
    MT_NATIVE=`native` (tests/test_native_capture.py reads with it too)."""
    out: list = []
    with mock.patch.dict(os.environ, {"MT_NATIVE": native}):
        try:
            for rec in cls.read_capture(path):
                out.append(rec)
        except Exception as err:
            return out, f"{type(err).__name__}: {err}"
    return out, None


TARGETS: dict[str, Callable[[bytes], None]] = {"pipeline": pipeline, "native": native, "states": states,
                                               "snapshot": snapshot, "news": news, "rebuild": rebuild,
                                               "capture": capture}  # fmt: skip
