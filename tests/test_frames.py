"""orderbook/frames.py: the md.raw frame layout, its errors, and the producer's framer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderbook.errors import DecodeError
from orderbook.frames import MAGIC, FrameError, Framer, encode_frame, framed, is_frame, messages_of


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=80))
def test_a_frame_gives_back_its_messages_byte_for_byte(messages):
    assert messages_of(encode_frame(messages)) == messages


@pytest.mark.parametrize("plain", [b'{"e":"depthUpdate"}', b"[1,2]", b"A\x00\x01", b"34200.1,1,5,100,1000000,1", b""])
def test_a_plain_message_is_one_message(plain):
    assert not is_frame(plain)
    assert messages_of(plain) == [plain]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (MAGIC + b"\x01", "shorter than its header"),
        (MAGIC + b"\x02\x00\x01\x00\x00\x00\x00", "version 2"),
        (MAGIC + b"\x01\x00\x00", "0 messages"),
        (encode_frame([b"abc", b"de"])[:-1], "cut short in message 1"),
        (encode_frame([b"abc"])[:9], "cut short in the length of message 0"),
        (encode_frame([b"abc"]) + b"x", "1 bytes after"),
    ],
)
def test_a_broken_frame_is_a_bad_frame_decode_error(value, why):
    with pytest.raises(FrameError, match=why) as err:
        messages_of(value, venue="binance")
    assert isinstance(err.value, DecodeError) and err.value.reason == "bad_frame"


def test_the_framer_closes_a_frame_at_its_message_bound_and_keeps_each_keys_order():
    recs = [(b"A" if i % 3 else b"B", f"m{i}".encode(), i) for i in range(20)]
    out = list(framed(recs, Framer(max_messages=4, max_span_ns=10**9)))
    assert all(f.count <= 4 for f in out)
    for key in (b"A", b"B"):
        got = [m for f in out if f.key == key for m in messages_of(f.value)]
        assert got == [m for k, m, _ in recs if k == key]
    assert sum(f.count for f in out) == 20


def test_the_framer_closes_frames_past_their_span_a_quiet_keys_too():
    f = Framer(max_messages=64, max_span_ns=1_000)
    assert list(f.add(b"Q", b"q0", 0)) == []
    assert list(f.add(b"A", b"a0", 500)) == []
    closed = list(f.add(b"A", b"a1", 1_200))  # 1.2 us: Q's frame (opened at 0) is past its span
    assert closed == [(b"Q", b"q0", 1, 0)]
    closed = list(f.add(b"A", b"a2", 2_000))
    assert closed == [(b"A", encode_frame([b"a0", b"a1"]), 2, 500)]
    assert f.open_bytes == 2  # a2, still open
    assert list(f.flush()) == [(b"A", b"a2", 1, 2_000)]
    assert f.open_bytes == 0


def test_one_message_per_frame_turns_framing_off():
    recs = [(b"A", b"x", 1), (b"A", b"y", 2)]
    assert list(framed(recs, Framer(max_messages=1))) == [(b"A", b"x", 1, 1), (b"A", b"y", 1, 2)]


def test_a_frame_waits_its_span_of_the_streams_clock_whatever_the_times_it_was_opened_with():
    """A frame opened by a message without a time, or while a capture's clock steps back, waits its
    span of the stream's clock from its opening, like any other (not closed by the next message that
    has a time, nor held behind one), and its first time stays what its first message said (0: none)."""
    f = Framer(max_messages=2, max_span_ns=1_000)
    assert list(f.add(b"A", b"a0", 10_000)) == []
    assert list(f.add(b"B", b"b0", None)) == []  # no time: opened at the clock, 10 us
    assert list(f.add(b"C", b"c0", 9_500)) == []  # the capture's clock stepped back: opened at 10 us
    assert list(f.add(b"A", b"a1", 10_100)) == [(b"A", encode_frame([b"a0", b"a1"]), 2, 10_000)]  # full
    assert list(f.add(b"D", b"d0", 10_900)) == []  # B and C at the front, 0.9 us old on the clock
    closed = list(f.add(b"D", b"d1", 11_001)) + list(f.add(b"E", b"e0", 11_950))
    assert closed == [(b"B", b"b0", 1, 0), (b"C", b"c0", 1, 9_500), (b"D", encode_frame([b"d0", b"d1"]), 2, 10_900)]
    assert list(f.flush()) == [(b"E", b"e0", 1, 11_950)]
