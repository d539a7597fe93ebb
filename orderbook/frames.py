"""Frames: several raw venue messages of one key in one `md.raw.<venue>` record (issue 12).

Faust pays its per-record cost once per record; a frame carries consecutive messages of one symbol,
each byte for byte as the venue sent it, so the cost is paid once per frame. The layout (all
integers big-endian):

    b"\\x00MTF"       magic: no venue message starts with a zero byte (ITCH types are ASCII
                     letters, LOBSTER rows digits, the JSON venues `{` or `[`)
    u8 version       1
    u16 count        messages in the frame, at least 1
    count x (u32 length, length bytes)

and nothing after the last message. A record without the magic is one plain message, as before:
frames are optional for every producer and every reader.

Pure: no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from .errors import DecodeError

MAGIC = b"\x00MTF"
VERSION = 1
_HEAD = struct.Struct(">4sBH")
_LEN = struct.Struct(">I")
MAX_MESSAGES = 0xFFFF  # the u16 count
# a producer's default bounds: a frame closes at 64 messages or once it spans 1 ms of venue time
FRAME_MESSAGES = 64
FRAME_SPAN_NS = 1_000_000


class FrameError(DecodeError):
    """A record that says it is a frame and is not a valid one: the whole record is rejected."""

    reason = "bad_frame"


def is_frame(value: bytes) -> bool:
    return value[:4] == MAGIC


def encode_frame(messages: Sequence[bytes]) -> bytes:
    """The frame of `messages` (1 to MAX_MESSAGES of them, each as the venue sent it)."""
    if not 1 <= len(messages) <= MAX_MESSAGES:
        raise ValueError(f"a frame holds 1 to {MAX_MESSAGES} messages, not {len(messages)}")
    parts = [_HEAD.pack(MAGIC, VERSION, len(messages))]
    for m in messages:
        parts.append(_LEN.pack(len(m)))
        parts.append(m)
    return b"".join(parts)


def messages_of(value: bytes, venue: str = "") -> list[bytes]:
    """The messages a record carries: those of its frame, or the record itself when it is no frame.
    A frame that is cut short, has bytes after its last message, another version or a count of 0
    raises FrameError: its messages cannot be trusted one by one."""
    if not is_frame(value):
        return [value]
    if len(value) < _HEAD.size:
        raise FrameError(f"frame of {len(value)} bytes is shorter than its header", venue=venue)
    _, version, count = _HEAD.unpack_from(value)
    if version != VERSION:
        raise FrameError(f"frame version {version}, this reader knows {VERSION}", venue=venue)
    if count == 0:
        raise FrameError("frame of 0 messages", venue=venue)
    out: list[bytes] = []
    pos = _HEAD.size
    end = len(value)
    for i in range(count):
        if pos + 4 > end:
            raise FrameError(f"frame cut short in the length of message {i} of {count}", venue=venue)
        (n,) = _LEN.unpack_from(value, pos)
        pos += 4
        if pos + n > end:
            raise FrameError(f"frame cut short in message {i} of {count} ({n} bytes announced)", venue=venue)
        out.append(value[pos : pos + n])
        pos += n
    if pos != end:
        raise FrameError(f"{end - pos} bytes after the last of the frame's {count} messages", venue=venue)
    return out


class Frame(NamedTuple):
    """A closed frame: its key, the record's value (a frame, or the plain message when it holds one),
    how many messages it carries and the venue time of its first (0: unknown)."""

    key: bytes | None
    value: bytes
    count: int
    first_ts: int


@dataclass
class _Open:
    messages: list[bytes] = field(default_factory=list)
    first_ts: int = 0
    opened: int = 0  # the stream's clock when the frame opened: its span runs from there


@dataclass
class Framer:
    """Groups a stream of (key, message, venue time) into records: consecutive messages of one key
    go into one frame until it holds `max_messages` or the stream's clock (the latest venue time seen,
    every key's) has moved `max_span_ns` past the frame's opening; then the frame is emitted. The
    clock never steps back, so a message without a time, or one from a capture whose clock steps
    back, opens a frame that waits no longer than any other. Messages of other keys wait in their
    own frame, so each key's order is kept (and with it the partition order a key-partitioned topic
    gives). A frame of one message is emitted as the plain message. `max_messages=1` turns framing
    off."""

    max_messages: int = FRAME_MESSAGES
    max_span_ns: int = FRAME_SPAN_NS
    open_bytes: int = 0  # the messages waiting in open frames, together: a producer may bound it
    _open: dict[bytes | None, _Open] = field(default_factory=dict)
    _clock: int = 0  # the latest venue time seen

    def __post_init__(self) -> None:
        if not 1 <= self.max_messages <= MAX_MESSAGES:
            raise ValueError(f"max_messages {self.max_messages}: 1 to {MAX_MESSAGES}")

    def add(self, key: bytes | None, message: bytes, ts: int | None) -> Iterator[Frame]:
        """Take one message; yield every frame it closes."""
        if self.max_messages == 1:
            yield Frame(key, message, 1, ts or 0)
            return
        if ts is not None and ts > self._clock:
            self._clock = ts
            # the clock closes every frame it has carried past its span, a quiet key's too: frames
            # open in the clock's order, which never steps back, so the expired ones are at the front
            while self._open:
                k = next(iter(self._open))
                if ts - self._open[k].opened <= self.max_span_ns:
                    break
                yield self._close(k)
        f = self._open.get(key)
        if f is None:
            f = self._open[key] = _Open(first_ts=ts or 0, opened=self._clock)
        f.messages.append(message)
        self.open_bytes += len(message)
        if len(f.messages) >= self.max_messages:
            yield self._close(key)

    def flush(self) -> Iterator[Frame]:
        """Every frame still open, in the order they were opened."""
        for key in list(self._open):
            yield self._close(key)

    def _close(self, key: bytes | None) -> Frame:
        f = self._open.pop(key)
        msgs = f.messages
        self.open_bytes -= sum(map(len, msgs))
        return Frame(key, msgs[0] if len(msgs) == 1 else encode_frame(msgs), len(msgs), f.first_ts)


def framed(records: Iterable[tuple[bytes | None, bytes, int | None]], framer: Framer | None = None) -> Iterator[Frame]:
    """(key, message, venue time) in, frames out, every message once."""
    framer = framer or Framer()
    for key, message, ts in records:
        yield from framer.add(key, message, ts)
    yield from framer.flush()
