"""The normalized event: one flat record for every venue (after hftbacktest's event row).

Prices and sizes are exact integers in the venue's own units, never floats; each venue module
states them:

- ITCH and LOBSTER: a price in 1/10000 dollar (ITCH `Price(4)`, LOBSTER's price column), a size in
  shares. The tick is 100 of those units, one cent (`Feed.tick`).
- Binance and Coinbase: 1e-8 of the quote currency and 1e-8 of the base (every decimal they print).
- Kraken: 10^-p of the quote and 10^-q of the base, p and q the decimals Kraken prints for the pair.

On the crypto venues the tick is an instrument's multiple of the unit, inferred from its book
(`Feed.window_tick`). Floats appear only when features are computed (spreads and offsets in ticks).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Kind(IntEnum):
    """What an event does to a book."""

    ADD = 1  # new resting order (L3)
    CANCEL = 2  # partial cancel: `size` is the cancelled quantity (L3)
    DELETE = 3  # whole order removed (L3)
    EXECUTE = 4  # resting order filled by `size` (L3); also a trade print
    REPLACE = 5  # order `order_id` replaced by `new_order_id` at `price`/`size` (L3)
    LEVEL_SET = 6  # absolute size at a price level, 0 removes it (L2)
    TRADE = 7  # a print that does not touch the visible book (hidden, cross, off-book)
    SNAPSHOT_BEGIN = 8  # the book is about to be replaced by a snapshot
    SNAPSHOT_END = 9  # snapshot complete: the book is live
    CLEAR = 10  # empty the book
    STATUS = 11  # trading status: `flags` carries a Status value
    CHANGE = 12  # resting order resized to `size` in place, keeping its queue priority (L3)


class Side(IntEnum):
    NONE = 0
    BID = 1
    ASK = -1


class Status(IntEnum):
    """Trading state carried by STATUS events in `flags`."""

    HALTED = -1
    QUOTATION_ONLY = 0
    TRADING = 1


# Trade flags (bit set) carried in `flags` by EXECUTE and TRADE events.
FLAG_HIDDEN = 1
FLAG_CROSS = 2
FLAG_BROKEN = 4
FLAG_AGGRESSOR_BID = 8  # the aggressor bought (taker was the bid)
FLAG_AGGRESSOR_ASK = 16  # the aggressor sold
FLAG_NON_PRINTABLE = 32  # an execution not to be counted as volume (ITCH C with printable N)

OrderId = int | str
NS_PER_S = 1_000_000_000  # Event.ts counts nanoseconds


@dataclass(slots=True)
class Event:
    kind: Kind
    venue: str
    symbol: str
    ts: int  # exchange timestamp, ns since the epoch (ITCH/LOBSTER: ns since midnight)
    seq: int  # venue sequence number (or message index where the venue has none)
    side: Side = Side.NONE
    price: int = 0  # venue price units (module docstring)
    size: int = 0  # venue size units (lots)
    order_id: OrderId = 0
    new_order_id: OrderId = 0  # REPLACE only
    flags: int = 0
    recv_ts: int = 0  # local receive time, ns, where the capture has one


EVENT_DTYPE = np.dtype(
    [
        ("kind", np.int8),
        ("side", np.int8),
        ("flags", np.int16),
        ("ts", np.int64),
        ("seq", np.int64),
        ("price", np.int64),
        ("size", np.int64),
    ]
)


def to_array(events: Iterable[Event]) -> np.ndarray:
    """A batch of events as a numpy structured array (venue, symbol and ids dropped)."""
    rows = [(e.kind, e.side, e.flags, e.ts, e.seq, e.price, e.size) for e in events]
    return np.array(rows, dtype=EVENT_DTYPE)
