"""The native Binance decode + apply against the reference `BinanceFeed`, message by message.

Same events (every field), same refusals (class, reason, symbol, seq, ts, a gap's expected/got),
same books, BookSync states and SyncStats counters: on every Binance capture of ../shared/data
(hftbacktest's six, cryptofeed's combined stream with its REST snapshots merged in), and on the
start of two of them mangled by hypothesis: at the JSON level (keys dropped or repeated, values
of every wrong type, escaped strings, NaN, huge and negative numbers, malformed decimals), at the
byte level (bytes flipped, messages cut) and in sequence (messages dropped, repeated, swapped,
update ids moved: stale diffs, gaps, resyncs).
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SHARED_DATA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderbook import native
from orderbook.native.check import first_difference, reference_outcomes
from orderbook.venues.binance import BinanceFeed

# every Binance capture there is (each `.gz` of hftbacktest's folder), and cryptofeed's combined stream
CAPTURES = [f"binance-hftbacktest/{p.name}" for p in sorted((SHARED_DATA / "binance-hftbacktest").glob("*.gz"))]
CAPTURES.append("cryptofeed-captures/BINANCE.ws.1.0.gz")
# each capture's first 30,000 messages, event for event (the smaller ones whole): every capture goes
# through the reference decoder whole in test_native_venue_windows, windows, rejects and stats compared
CAPTURE_HEAD = 30_000
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def compare(
    messages: list[bytes], recv_ts: list[int], symbols: set[str] | None = None, check_crossed: bool = True
) -> BinanceFeed:
    ref = BinanceFeed(symbols, check_crossed=check_crossed)
    want = reference_outcomes(ref, messages, recv_ts)
    nat = native.BinanceFeed(symbols, check_crossed=check_crossed)
    got = nat.on_messages(messages, np.array(recv_ts, np.int64)).by_message(len(messages))
    assert first_difference(want, got) is None, first_difference(want, got)
    assert nat.book_symbols() == list(ref.books)
    for symbol, book in ref.books.items():
        assert nat.book_dict(symbol) == book.to_dict(), symbol
        sync = ref.syncs[symbol]
        assert nat.sync(symbol) == (sync.live, sync.last_seq, sync.resyncs, sync.snapshots, len(sync.buffer))
        stats = ref.stats.get(symbol)
        want_stats = None if stats is None else {k: v for k, v in vars(stats).items() if k != "mismatches"}
        assert nat.stats(symbol) == want_stats, symbol
    return ref


@pytest.mark.realdata
@pytest.mark.parametrize("name", CAPTURES, ids=lambda n: n.split("/")[1].split(".gz")[0])
def test_native_binance_equals_reference_on_every_capture(shared_data: Path, name: str) -> None:
    records = list(itertools.islice(BinanceFeed.read_capture(shared_data / name), CAPTURE_HEAD))
    ref = compare([r.raw for r in records], [r.recv_ts for r in records])
    assert sum(s.applied for s in ref.stats.values()) > 0  # books were live, not just buffering


@pytest.mark.realdata
def test_native_binance_follows_only_its_symbols(shared_data: Path) -> None:
    records = list(BinanceFeed.read_capture(shared_data / "cryptofeed-captures/BINANCE.ws.1.0.gz"))
    compare([r.raw for r in records], [r.recv_ts for r in records], symbols={"NKNUSDT", "LRCBTC"})


@pytest.mark.parametrize(("key", "value"), [("u", 2**64), ("E", 2**62), ("b", [["1" * 12 + ".0", "1.0"]])])
def test_native_binance_refuses_numbers_beyond_int64(key: str, value: Any) -> None:
    """The documented difference: an update id, a time in ns or a price in 1e-8 units past int64
    (no real one is near) is refused as malformed, where the reference would carry a Python int
    into events that numpy's int64 columns cannot hold."""
    diff = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 1, "u": 2, "b": [], "a": []} | {key: value}
    batch = native.BinanceFeed().on_messages([json.dumps(diff).encode()])
    assert [type(e).__name__ for _, e in batch.errors()] == ["DecodeError"]


# --- hypothesis: the start of real captures, mangled ------------------------------------------------

_HEADS: dict[str, list[tuple[int, bytes]]] = {}


def head(shared: Path, name: str, n: int = 120) -> list[tuple[int, bytes]]:
    if name not in _HEADS:
        records = itertools.islice(BinanceFeed.read_capture(shared / name), n)
        _HEADS[name] = [(r.recv_ts, r.raw) for r in records]
    return _HEADS[name]


# (integers stay inside what int64 events hold once ms become ns: past it is the documented difference)
WRONG = [
    None,
    True,
    1.5,
    -1,
    0,
    2**40,
    -(2**70),
    "",
    "abc",
    "-1.0",
    "1e5",
    "0.000000001",
    "1.123456780",
    "١٢",
    "5.",
    ".5",
]
WRONG += [[], {}, ["1", "2", "3"], [["1.0", "2.0"]], "0.00000000", "  1.0", "1_000.0", "+1.0", "NaN"]
# past what an event's int64 holds: an integer, as ns from ms, and a decimal in 1e-8 units (both refuse it)
WRONG += [2**63, 2**70, 9_223_372_036_855, "92233720368.54775808", "99999999999999999999999"]


def paths(obj: Any, at: tuple = ()) -> list[tuple]:
    """Every path to a value inside a parsed message."""
    out = [at]
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        out += paths(v, (*at, k))
    return out


def mangle_json(rng: random.Random, raw: bytes) -> bytes:
    try:
        msg = json.loads(raw)
    except ValueError:  # mangled before: the byte-level mutations take it from here
        return raw
    where = rng.choice(paths(msg)[1:] or [()])
    parent = msg
    for k in where[:-1]:
        parent = parent[k]
    op = rng.randrange(7)
    if not where:
        return json.dumps(rng.choice(WRONG)).encode()
    k = where[-1]
    if op == 0 and isinstance(parent, dict):
        del parent[k]
    elif op == 1:
        parent[k] = rng.choice(WRONG)
    elif op == 2 and isinstance(parent[k], int) and not isinstance(parent[k], bool):
        parent[k] += rng.choice([-2, -1, 1, 2, 1000])  # update ids and times moved: gaps, stale diffs
    elif op == 3 and isinstance(parent, dict):  # the key again, earlier in the text: the last one wins
        text = json.dumps(msg)
        return text.replace("{", "{" + json.dumps(k) + ":" + json.dumps(rng.choice(WRONG)) + ",", 1).encode()
    elif op == 4 and isinstance(parent[k], str):  # the same string, \\u-escaped
        escaped = "".join(f"\\u{ord(c):04x}" for c in parent[k])
        return json.dumps(msg).replace(json.dumps(parent[k]), '"' + escaped + '"', 1).encode()
    elif op == 5:
        return json.dumps(msg, allow_nan=True).replace('"NaN"', "NaN").encode()
    elif op == 6 and isinstance(parent, dict) and "data" in msg and parent is msg["data"]:
        return json.dumps(msg["data"]).encode()  # the bare event, no combined-stream wrapper
    return json.dumps(msg, separators=(",", ":")).encode()


@st.composite
def mangled(draw: st.DrawFn, base: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    rng = random.Random(draw(st.integers(0, 2**32)))
    msgs = list(base)
    for _ in range(draw(st.integers(1, 12))):
        i = rng.randrange(len(msgs))
        recv, raw = msgs[i]
        op = draw(st.sampled_from(["json", "json", "json", "flip", "cut", "drop", "repeat", "swap"]))
        if op in ("json", "flip"):
            if op == "json":
                new = mangle_json(rng, raw)
            else:
                at = rng.randrange(len(raw))
                new = raw[:at] + bytes([rng.randrange(256)]) + raw[at + 1 :]
            msgs[i] = (recv, new)
        elif op == "cut":
            msgs[i] = (recv, raw[: rng.randrange(len(raw))])
        elif op == "drop":
            del msgs[i]
        elif op == "repeat":
            msgs.insert(i, msgs[i])
        elif i + 1 < len(msgs):
            msgs[i], msgs[i + 1] = msgs[i + 1], msgs[i]
    return msgs


def run_mangled(msgs: list[tuple[int, bytes]]) -> None:
    compare([raw for _, raw in msgs], [recv for recv, _ in msgs])


@pytest.mark.realdata
@SETTINGS
@given(data=st.data())
def test_native_binance_equals_reference_on_mangled_spot_messages(shared_data: Path, data: st.DataObject) -> None:
    run_mangled(data.draw(mangled(head(shared_data, "binance-hftbacktest/spot_btcusdt_20240808.gz"))))


@pytest.mark.realdata
@SETTINGS
@given(data=st.data())
def test_native_binance_equals_reference_on_mangled_futures_messages(shared_data: Path, data: st.DataObject) -> None:
    run_mangled(data.draw(mangled(head(shared_data, "binance-hftbacktest/usdm_btcusdt_20240808.gz"))))


@pytest.mark.realdata
@SETTINGS
@given(data=st.data())
def test_native_binance_equals_reference_on_mangled_combined_streams(shared_data: Path, data: st.DataObject) -> None:
    run_mangled(data.draw(mangled(head(shared_data, "cryptofeed-captures/BINANCE.ws.1.0.gz", 400))))


LONE_SURROGATES = [  # JSON escapes of no Unicode text: a Rust string cannot hold one, so the native decoder refuses
    b'{"stream":"\\ud800","data":{"e":"depthUpdate","E":1,"s":"XY","U":2,"u":2,"b":[],"a":[]}}',  # where it reads
    b'{"stream":"x@depth","data":{"e":"depthUpdate","E":1,"s":"X\\udfff","U":2,"u":2,"b":[],"a":[]}}',
    b'{"symbol":"\\ud800Y","snapshot":{"lastUpdateId":1,"bids":[["1.0","1.0"]],"asks":[["2.0","1.0"]]}}',
    b'{"stream":"x@trade","data":{"e":"trade","E":1,"T":1,"s":"\\ud800","t":1,"p":"1.0","q":"1.0","m":true}}',
    b'{"stream":"x@depth","data":{"e":"\\ud800","s":"XY"}}',  # an event type is compared, not kept: unknown
]


def test_strings_that_are_not_unicode_text_are_refused_alike_on_both_paths() -> None:
    """The Python feed took a stream name and symbols that the native decoder refuses (a lone surrogate):
    a book of such a symbol could not be written anywhere (md.state, Redis); both refuse them now."""
    ref = reference_outcomes(BinanceFeed(), LONE_SURROGATES)
    assert [type(r).__name__ for r in ref] == ["DecodeError"] * 4 + ["UnknownMessageType"]
    nat = native.BinanceFeed(None).on_messages(LONE_SURROGATES, np.zeros(len(LONE_SURROGATES), np.int64))
    assert first_difference(ref, nat.by_message(len(LONE_SURROGATES))) is None


@pytest.mark.parametrize(
    ("kind", "shown"),
    [("eepthUpdate", '"eepthUpdate"'), ('a"b\\c', '"a\\"b\\\\c"'), ("x" * 60, '"' + "x" * 39), ("é", "<str>"),
     ("tab\there", "<str>"), (None, "None"), (5, "<int>"), (2**70, "<int>"), (1.5, "<float>"), (True, "<bool>"),
     ([1], "<list>"), ({"a": 1}, "<dict>")],
)  # fmt: skip
def test_an_unknown_event_type_is_named_alike_on_both_paths(kind: Any, shown: str) -> None:
    """Found by make fuzz: the native text printed Rust's Option (`Some("eepthUpdate")`) where the
    reference printed Python's repr; an unknown type is no decode error, so its text must match."""
    raw = json.dumps({"stream": "btcusdt@x", "data": {"e": kind, "s": "BTCUSDT"}}).encode()
    with pytest.raises(Exception) as ref:
        BinanceFeed().on_message(raw)
    assert str(ref.value) == f"unknown Binance event type {shown} [venue=binance, symbol=BTCUSDT]"
    (got,) = native.BinanceFeed(None).on_messages([raw], np.zeros(1, np.int64)).by_message(1)
    assert str(got) == str(ref.value) and got.reason == ref.value.reason == "unknown_message_type"
