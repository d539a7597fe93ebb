"""The native ITCH 5.0 decode + apply against the reference `ItchFeed`, message by message.

Same events (every field), same refusals (class, reason, symbol, seq), same books, locates and
counters: on simulated days (model/sim/itch_day.py, unknown references included), on the same
days mangled by hypothesis (bytes flipped, messages cut, lengthened, dropped, repeated, junk
inserted), through the framed buffer reader and through message lists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.sim.itch_day import SYMBOLS, itch_day_stream
from orderbook import native
from orderbook.native.check import first_difference, reference_outcomes
from orderbook.venues.itch import ItchFeed, encode, frame

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_same_feed(ref: ItchFeed, nat: native.ItchFeed) -> None:
    assert sorted(nat.book_symbols()) == sorted(ref.books)
    for symbol, book in ref.books.items():
        assert nat.book_dict(symbol) == book.to_dict(), symbol
        orders = {oid: (int(o.side), o.price, o.size) for oid, o in book.orders.items()}
        assert nat.orders(symbol) == orders, symbol
        for side in (book.bids, book.asks):
            for price in list(side)[:3]:
                s = 1 if side is book.bids else -1
                assert nat.queue(symbol, s, price) == book.queue(s, price)  # FIFO order kept
    assert nat.locates == ref.locates
    assert nat.messages == ref.messages
    assert nat.system_event == ref.system_event


def compare(messages: list[bytes], symbols: set[str] | None = None, check_crossed: bool = True) -> int:
    """Run both over `messages`; returns how many were refused (so a test can insist on some)."""
    ref = ItchFeed(symbols, check_crossed=check_crossed)
    want = reference_outcomes(ref, messages)
    nat = native.ItchFeed(symbols, check_crossed=check_crossed)
    got = nat.on_messages(messages).by_message(len(messages))
    assert first_difference(want, got) is None, first_difference(want, got)
    assert_same_feed(ref, nat)
    return sum(1 for o in want if not isinstance(o, list))


@pytest.mark.parametrize(("seed", "preopen"), [(1, False), (2, True), (3, True), (11, False)])
def test_native_itch_equals_reference_on_simulated_days(seed: int, preopen: bool) -> None:
    s = itch_day_stream(seed, 3000, SYMBOLS, preopen_orders=preopen)
    refused = compare(s.messages)
    assert refused >= len(s.unknown) > 0  # the unknown references are refused alike


def test_native_itch_follows_only_its_symbols_like_the_reference() -> None:
    s = itch_day_stream(5, 2000, SYMBOLS)
    assert compare(s.messages, symbols={"AAPL", "SPY"}) > 100  # UnknownSymbol for the others


def test_native_itch_without_the_crossed_check() -> None:
    s = itch_day_stream(6, 1500, SYMBOLS)
    crossing = [
        encode("A", locate=1, timestamp=10**9, order_ref=1, side="B", shares=100, stock="AAPL", price=10**9),
        encode("A", locate=1, timestamp=10**9, order_ref=2, side="S", shares=100, stock="AAPL", price=10**8),
    ]
    for check in (True, False):
        compare(s.messages[:60] + crossing + s.messages[60:], check_crossed=check)


def test_native_itch_framed_buffer_reads_as_read_capture(tmp_path: Path) -> None:
    """decode_apply(frame bytes) == the reference over read_capture of the same file: zero-length
    frames skipped, a frame cut short by the end handed on as it is (and refused)."""
    s = itch_day_stream(8, 800, SYMBOLS)
    data = frame(s.messages[:400]) + b"\x00\x00" + frame(s.messages[400:]) + frame([s.messages[5]])[:-7]
    path = tmp_path / s.filename()
    path.write_bytes(data)
    records = list(ItchFeed.read_capture(path))
    want = reference_outcomes(ItchFeed(), [r.raw for r in records])
    batch = native.ItchFeed().decode_apply(data)
    assert first_difference(want, batch.by_message(len(records))) is None
    assert isinstance(want[-1], Exception)


def test_native_itch_carries_receive_times() -> None:
    s = itch_day_stream(9, 300, SYMBOLS)
    recv = np.arange(len(s.messages), dtype=np.int64) * 7 + 10**18
    want = reference_outcomes(ItchFeed(), s.messages, recv.tolist())
    got = native.ItchFeed().on_messages(s.messages, recv).by_message(len(s.messages))
    assert first_difference(want, got) is None


def test_native_itch_refuses_a_cross_too_large_for_int64() -> None:
    """The one documented difference: a Q cross of 2^63 shares or more (the field is 8 bytes; no
    real cross comes near) does not fit the int64 size column, so the native path refuses it as
    malformed where the reference returns a TRADE with a Python int."""
    q = encode("Q", locate=1, timestamp=1, shares=2**63, stock="AAPL", price=100, match=1, cross_type="O")
    batch = native.ItchFeed().on_messages([q])
    assert len(batch) == 0 and [type(e).__name__ for _, e in batch.errors()] == ["DecodeError"]


# --- recycled event rows ------------------------------------------------------------------------


def busy_day(n: int, shift: int = 0) -> list[bytes]:
    """n orders on two stocks, each added, then cut, replaced or executed, then deleted: about 3n
    events, enough for a batch whose rows (72 bytes each) are recycled (1 MiB and more)."""
    msgs = [encode("S", timestamp=1, event_code="Q")]
    msgs += [encode("R", locate=k, timestamp=1, stock=s, market_category="Q") for k, s in ((1, "AAPL"), (2, "MSFT"))]
    for i in range(1, n + 1):
        side, price = ("B", 10**6 - (i % 40) * 100) if i % 2 else ("S", 10**6 + (1 + i % 40) * 100)
        stock, locate = ("AAPL", 1) if i % 3 else ("MSFT", 2)
        kw = dict(locate=locate, timestamp=10**9 + i)
        msgs.append(encode("A", order_ref=i, side=side, shares=300, stock=stock, price=price + shift, **kw))
        if i % 4 == 0:
            msgs.append(encode("X", order_ref=i, shares=100, **kw))
        if i % 5 == 0:
            msgs.append(encode("E", order_ref=i, shares=100, match=i, **kw))
        if i % 7 == 0:
            msgs.append(encode("U", order_ref=i, new_order_ref=n + i, shares=50, price=price + shift, **kw))
        msgs.append(encode("D", order_ref=n + i if i % 7 == 0 else i, **kw))
    msgs.append(encode("D", locate=1, timestamp=2 * 10**9, order_ref=10 * n))  # refused: unknown order
    return msgs


def data_address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def test_native_itch_reuses_let_go_rows_with_the_same_results() -> None:
    """A large batch's event rows go back to a pool once Python lets go of them, and the next large
    batch is written into them: its events and rejects are those of a fresh call, and those of the
    reference."""
    msgs = busy_day(8000)
    data = frame(msgs)
    native._core.row_pool(release=True)  # what earlier tests left: the first batch gets fresh memory
    first = native.ItchFeed().decode_apply(data)
    assert first.events.nbytes >= 1 << 20  # large enough to be recycled
    want_rows = first.events.copy()
    want_errors = [(i, repr(e)) for i, e in first.errors()]
    address = data_address(first.events)
    del first  # the rows go back to the pool, not to the allocator
    assert native._core.row_pool()[0] == 1
    again = native.ItchFeed().decode_apply(data)
    assert data_address(again.events) == address  # the same memory, written afresh
    assert np.array_equal(again.events, want_rows)
    assert [(i, repr(e)) for i, e in again.errors()] == want_errors
    want = reference_outcomes(ItchFeed(), msgs)
    assert first_difference(want, again.by_message(len(msgs))) is None
    # on_messages (the worker's call) draws on the same pool
    del again
    listed = native.ItchFeed().on_messages(msgs)
    assert np.array_equal(listed.events, want_rows)


def test_native_itch_rows_kept_alive_are_never_reused() -> None:
    """A batch, or a view of its events, that a caller keeps is never written by later calls."""
    feed = native.ItchFeed()
    kept = feed.decode_apply(frame(busy_day(6000)))
    kept_rows = kept.events.copy()
    prices = kept.events["price"]  # a view: it alone keeps the rows alive after `kept` goes
    kept_prices = prices.copy()
    for shift in (1, 2, 3):  # other large batches, each let go before the next
        other = native.ItchFeed().decode_apply(frame(busy_day(6000, shift=shift)))
        assert data_address(other.events) != data_address(kept.events)
        del other
    assert np.array_equal(kept.events, kept_rows)
    del kept
    for shift in (4, 5):
        other = native.ItchFeed().decode_apply(frame(busy_day(6000, shift=shift)))
        assert not np.shares_memory(other.events, prices)
        del other
    assert np.array_equal(prices, kept_prices)


# --- hypothesis: the same days, mangled ---------------------------------------------------------

BASE = itch_day_stream(21, 600, SYMBOLS[:3]).messages


@st.composite
def mangled(draw: st.DrawFn) -> list[bytes]:
    msgs = list(BASE)
    for _ in range(draw(st.integers(1, 25))):
        i = draw(st.integers(0, len(msgs) - 1))
        op = draw(st.sampled_from(["flip", "cut", "grow", "drop", "repeat", "junk", "retype"]))
        m = msgs[i]
        if op == "flip" and m:
            at = draw(st.integers(0, len(m) - 1))
            msgs[i] = m[:at] + bytes([draw(st.integers(0, 255))]) + m[at + 1 :]
        elif op == "cut":
            msgs[i] = m[: draw(st.integers(0, max(len(m) - 1, 0)))]
        elif op == "grow":
            msgs[i] = m + draw(st.binary(min_size=1, max_size=4))
        elif op == "drop":
            del msgs[i]
        elif op == "repeat":
            msgs.insert(i, m)
        elif op == "junk":
            msgs.insert(i, draw(st.binary(max_size=50)))
        elif m:  # retype: the same bytes under another type letter (right length or not)
            msgs[i] = draw(st.sampled_from(b"AFECXDUPQBHRSLVWKJhYINOZ")).to_bytes(1, "big") + m[1:]
    return msgs


@SETTINGS
@given(mangled())
def test_native_itch_equals_reference_on_mangled_streams(msgs: list[bytes]) -> None:
    compare(msgs)


@SETTINGS
@given(mangled(), st.sampled_from([None, {"AAPL"}, {"MSFT", "SPY", "locate:2"}]))
def test_native_itch_equals_reference_on_mangled_streams_with_symbols(msgs: list[bytes], symbols: set[str]) -> None:
    compare(msgs, symbols=symbols)


def test_an_unknown_message_type_is_named_alike_on_both_paths_for_every_byte() -> None:
    """Found by make fuzz: the native text wrote b'\\x0d' where Python's repr writes b'\\r'; an unknown
    type is no decode error, so md.dlq carries the same text on both paths (every byte tried)."""
    known = 0
    for b in range(256):
        raw = bytes([b]) + bytes(11)
        (want,) = reference_outcomes(ItchFeed(), [raw])
        (got,) = native.ItchFeed().on_messages([raw]).by_message(1)
        if isinstance(want, list) or want.reason != "unknown_message_type":
            known += 1
            continue
        assert str(got) == str(want), (b, str(got), str(want))
    assert 0 < known < 40  # the spec's message types, refused as too short, not as unknown
