"""Coinbase Exchange `full`-channel messages and level-3 snapshots, for simulated order flow.

The inverse of the L3 path of `CoinbaseFeed` (see `orderbook/venues/coinbase.py`): normalized
L3 events written as the websocket messages Coinbase documents ("Full Channel": received, open,
done, match, change), and a REST level-3 book as the `l3_snapshot` message the feed takes from
the topic. Pure: no I/O.

Mapping of `Event` kinds (Coinbase docs, "Full Channel"):
- ADD -> `open` (the order is now on the book, `remaining_size` resting). Coinbase sends a
  `received` first for every order; the feed consumes its sequence number and changes nothing,
  so `full_message` writes `open` alone. A caller that wants the venue's exact message pattern
  writes `received_message(e, n)` then `full_message(e, n + 1)`: each message takes its own
  sequence number.
- DELETE -> `done` with reason `canceled`; `remaining_size` is `event.size` (what was left
  on the book; the feed checks it against its book) and is left out when the size is 0.
- EXECUTE -> `match`: `maker_order_id` is the resting order (`event.order_id`), `side` the
  MAKER's side (Coinbase: "the side is sell ... the maker was a sell order"), `taker_order_id`
  a deterministic UUID derived from the product and sequence, `trade_id` the sequence unless
  given.
- CHANGE -> `change` with `new_size` = `event.size`; `old_size` needs the book, so it is an
  optional argument (left out when not given; the feed does not read it).
- CANCEL (a partial cancel) -> `change` to `old_size - event.size`: Coinbase has no partial
  cancel message, a resize down is how it shows one, so `old_size` is required.
Other kinds (REPLACE, LEVEL_SET, TRADE, ...) have no full-channel message: ValueError.

Ids: Coinbase order ids are UUID strings; a string id is written as it is, an integer id `n`
as `str(uuid.UUID(int=n))` (`order_uuid`), which is unique and reversible.
Units: prices and sizes are 1e-8 integers printed with 8 places (the feed parses 8 places).
Time: ISO-8601 UTC with microseconds (`2021-04-17T16:43:37.075687Z`, as in the captures),
from `event.ts` in ns since the epoch, or since midnight of `base_date` when one is given
(ITCH/LOBSTER-style times); sub-microsecond digits are truncated.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from typing import Any

from ..events import Event, Kind, OrderId, Side
from ..numbers import format_fixed

DECIMALS = 8
_SIDE = {Side.BID: "buy", Side.ASK: "sell"}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TAKER_NAMESPACE = uuid.UUID("6f1c7a52-2d0e-4c1b-9a57-3f2b8f0e9d11")  # fixed: taker ids are reproducible

L3Entry = tuple[int, int, OrderId]


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _num(x: int) -> str:
    return format_fixed(x, DECIMALS)


def order_uuid(order_id: OrderId) -> str:
    """Coinbase's order id for ours: strings as they are, integers as `UUID(int=n)`."""
    if isinstance(order_id, str):
        return order_id
    return str(uuid.UUID(int=order_id))


def taker_uuid(product_id: str, sequence: int) -> str:
    """A deterministic taker order id for a simulated match (uuid5 of product and sequence)."""
    return str(uuid.uuid5(_TAKER_NAMESPACE, f"{product_id}:{sequence}"))


def iso_time(ts: int, base_date: dt.date | None = None) -> str:
    """`ts` ns since the epoch (or since midnight of `base_date`) -> `YYYY-MM-DDTHH:MM:SS.ffffffZ`."""
    origin = _EPOCH if base_date is None else dt.datetime(base_date.year, base_date.month, base_date.day, tzinfo=dt.UTC)
    when = origin + dt.timedelta(microseconds=ts // 1_000)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _side(e: Event) -> str:
    side = _SIDE.get(e.side)
    if side is None:
        raise ValueError(f"{e.kind.name} event needs a side, got {e.side!r}")
    return side


def l3_snapshot_message(
    product_id: str, sequence: int, bids: Sequence[L3Entry], asks: Sequence[L3Entry], *, time: str | None = None
) -> bytes:
    """A whole REST level-3 book as one `l3_snapshot` message (`part` 0 of `parts` 1).

    Entries are `(price, size, order_id)` in queue order within a level (the order the REST
    body lists them and the feed queues them). For a book too big for one Kafka record, use
    `orderbook.venues.coinbase.snapshot_messages` on the REST-shaped body instead.
    """
    msg: dict[str, Any] = {"type": "l3_snapshot", "product_id": product_id, "sequence": sequence, "part": 0, "parts": 1}
    if time is not None:
        msg["time"] = time
    msg["bids"] = [[_num(p), _num(s), order_uuid(oid)] for p, s, oid in bids]
    msg["asks"] = [[_num(p), _num(s), order_uuid(oid)] for p, s, oid in asks]
    return _dumps(msg)


def received_message(event: Event, sequence: int, *, base_date: dt.date | None = None) -> bytes:
    """The `received` message that precedes an ADD's `open` on Coinbase (a limit order)."""
    if event.kind != Kind.ADD:
        raise ValueError(f"received is written for ADD events, got {event.kind.name}")
    return _dumps(
        {
            "type": "received",
            "time": iso_time(event.ts, base_date),
            "product_id": event.symbol,
            "sequence": sequence,
            "order_id": order_uuid(event.order_id),
            "size": _num(event.size),
            "price": _num(event.price),
            "side": _side(event),
            "order_type": "limit",
        }
    )


def full_message(
    event: Event,
    sequence: int,
    *,
    old_size: int | None = None,
    base_date: dt.date | None = None,
    trade_id: int | None = None,
) -> bytes:
    """One L3 event as the `full`-channel message Coinbase sends for it (see the module docstring)."""
    head: dict[str, Any] = {"time": iso_time(event.ts, base_date), "product_id": event.symbol, "sequence": sequence}
    k = event.kind
    if k == Kind.ADD:
        body = {
            "type": "open",
            **head,
            "order_id": order_uuid(event.order_id),
            "price": _num(event.price),
            "remaining_size": _num(event.size),
            "side": _side(event),
        }
    elif k == Kind.DELETE:
        body = {
            "type": "done",
            **head,
            "order_id": order_uuid(event.order_id),
            "reason": "canceled",
            "price": _num(event.price),
            "side": _side(event),
        }
        if event.size > 0:
            body["remaining_size"] = _num(event.size)
    elif k == Kind.EXECUTE:
        body = {
            "type": "match",
            "trade_id": sequence if trade_id is None else trade_id,
            "maker_order_id": order_uuid(event.order_id),
            "taker_order_id": taker_uuid(event.symbol, sequence),
            "side": _side(event),
            "size": _num(event.size),
            "price": _num(event.price),
            "product_id": event.symbol,  # a match lists these three last (as captured)
            "sequence": sequence,
            "time": head["time"],
        }
    elif k in (Kind.CHANGE, Kind.CANCEL):
        body = _change(event, head, old_size)
    else:
        raise ValueError(f"{k.name} has no Coinbase full-channel message")
    return _dumps(body)


def _change(event: Event, head: dict[str, Any], old_size: int | None) -> dict[str, Any]:
    """`change`: CHANGE gives the new size; a partial CANCEL is a resize down from `old_size`."""
    if event.kind == Kind.CANCEL:
        if old_size is None:
            raise ValueError("a partial CANCEL is written as a change and needs old_size")
        new_size = old_size - event.size
        if new_size <= 0:
            raise ValueError(f"cancel of {event.size} from {old_size} leaves nothing: write a DELETE (done)")
    else:
        new_size = event.size
    body: dict[str, Any] = {
        "type": "change",
        **head,
        "order_id": order_uuid(event.order_id),
        "new_size": _num(new_size),
    }
    if old_size is not None:
        body["old_size"] = _num(old_size)
    body["price"] = _num(event.price)
    body["side"] = _side(event)
    return body
