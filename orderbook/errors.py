"""Typed errors. Every one names the venue, the symbol and the sequence number where known,
so an operator reading a dead-letter record or a log line knows where to look."""

from __future__ import annotations

import json


class FeedError(Exception):
    """Base of every error raised while decoding a message or applying it to a book."""

    reason = "feed_error"

    def __init__(self, message: str, *, venue: str = "", symbol: str = "", seq: int | None = None, ts: int = 0) -> None:
        self.venue = venue
        self.ts = ts  # exchange time of the offending message, ns, where known
        self.symbol = symbol
        self.seq = seq
        where = ", ".join(
            part
            for part in (
                f"venue={venue}" if venue else "",
                f"symbol={symbol}" if symbol else "",
                f"seq={seq}" if seq is not None else "",
            )
            if part
        )
        super().__init__(f"{message} [{where}]" if where else message)


class DecodeError(FeedError):
    """The bytes are not a valid message of the venue's format (truncated, wrong types, NaN...)."""

    reason = "malformed"


class UnknownMessageType(DecodeError):
    reason = "unknown_message_type"


class OversizedMessage(DecodeError):
    reason = "oversized"


class UnknownSymbol(FeedError):
    reason = "unknown_symbol"


class BookError(FeedError):
    """A message that decodes but cannot be applied to the book as it stands."""

    reason = "book_error"


class UnknownOrder(BookError):
    reason = "unknown_order"


class DuplicateOrder(BookError):
    reason = "duplicate_order"


class CrossedBook(BookError):
    reason = "crossed_book"


class VenueErrorMessage(FeedError):
    """The venue sent an error message (Coinbase's `{"type": "error", ...}`: a rejected subscription or
    request): counted and dead-lettered, never silent."""

    reason = "venue_error"


class OutOfSync(FeedError):
    """The book left the live state: it waits for a fresh snapshot."""

    reason = "out_of_sync"


class SequenceGap(OutOfSync):
    reason = "sequence_gap"

    def __init__(self, message: str, *, expected: int, got: int, **where: object) -> None:
        self.expected = expected
        self.got = got
        super().__init__(f"{message}: expected {expected}, got {got}", **where)  # type: ignore[arg-type]


class ChecksumMismatch(OutOfSync):
    reason = "checksum_mismatch"

    def __init__(self, message: str, *, expected: int, got: int, **where: object) -> None:
        self.expected = expected
        self.got = got
        super().__init__(f"{message}: venue {expected}, book {got}", **where)  # type: ignore[arg-type]


MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Largest raw message any decoder accepts. A Binance depth-5000 snapshot is about 300 kB;
anything past this is rejected as OversizedMessage before it is parsed."""


def check_size(raw: bytes, venue: str) -> None:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise OversizedMessage(f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}", venue=venue)


def is_text(value: str) -> bool:
    """Whether a str is Unicode text: JSON's escapes spell lone surrogates ("\\ud800"), which `json.loads`
    returns and no UTF-8 writer takes (the compiled code, msgpack in md.state, Redis)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class CaptureError(DecodeError, ValueError):
    """A capture file that cannot be read as the format given: cut short, corrupt, or another format.
    Raised by a capture reader (`Feed.read_capture`), whose iteration stops there; the message names the
    file, where reading stopped (line and byte) and what to do. A DecodeError, as the readers raised
    before (a caller counting a reader's failure by reason keeps doing so), and a ValueError (a bad input
    file, which the CLI prints in one line)."""

    def __init__(self, path: object, message: str, *, line: int | None = None, offset: int | None = None) -> None:
        self.path = str(path)
        self.line = line  # 1-based number of the line (text) or message (binary) reading stopped at
        self.offset = offset  # bytes of the (uncompressed) content read before it
        super().__init__(f"{self.path}: {message}")


def not_configured(symbol: str) -> str:
    """What an UnknownSymbol says, alike on the Python and the native paths (errors.rs `not_configured`): the
    name whole, JSON-quoted with its non-ASCII kept (Python's repr, which the native path cannot print, picks
    its quotes and escapes by Unicode's tables)."""
    return f"symbol {json.dumps(symbol, ensure_ascii=False)} is not configured"


def shown(value: object) -> str:
    """A value an error names (an unknown event type, channel), alike on the Python and the native paths, which
    cannot print Python's repr of any string: a printable-ASCII string JSON-quoted and cut at 40 characters, None
    where absent or null, else its type."""
    if value is None:
        return "None"
    if isinstance(value, str) and value.isascii() and value.isprintable():
        return json.dumps(value)[:40]
    return f"<{type(value).__name__}>"
