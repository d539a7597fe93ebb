"""Native against reference, message by message: what the differential tests compare.

    ref = reference_outcomes(ItchFeed(), messages)           # per message: its events, or its FeedError
    nat = native.ItchFeed().on_messages(messages).by_message(len(messages))
    assert first_difference(ref, nat) is None

An outcome is compared by value: every field of every event (venue, symbol, ts, seq, side, price,
size, order ids, flags, recv_ts), or the error's class, reason, symbol, seq and ts (and a gap's
expected/got). Error texts are not compared: they are for people.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple

from ..errors import FeedError, SequenceGap
from ..events import Event
from ..venues.base import Feed

Outcome = list[Event] | FeedError


def reference_outcomes(feed: Feed, messages: Sequence[bytes], recv_ts: Sequence[int] | None = None) -> list[Outcome]:
    """Each message through the reference feed: the events it returned, or the error it raised."""
    out: list[Outcome] = []
    for i, raw in enumerate(messages):
        try:
            out.append(feed.on_message(raw, recv_ts[i] if recv_ts is not None else 0))
        except FeedError as err:
            out.append(err)
    return out


def comparable(outcome: Outcome) -> tuple:
    if isinstance(outcome, FeedError):
        gap = (outcome.expected, outcome.got) if isinstance(outcome, SequenceGap) else ()
        return ("error", type(outcome).__name__, outcome.reason, outcome.symbol, outcome.seq, outcome.ts, *gap)
    return tuple((int(e.kind), *astuple(e)[1:]) for e in outcome)


def first_difference(reference: Sequence[Outcome], native: Sequence[Outcome]) -> str | None:
    """None when equal, else a line naming the first message whose outcomes differ."""
    if len(reference) != len(native):
        return f"{len(reference)} reference outcomes, {len(native)} native"
    for i, (r, n) in enumerate(zip(reference, native, strict=True)):
        if comparable(r) != comparable(n):
            return f"message {i}: reference {comparable(r)!r:.600} != native {comparable(n)!r:.600}"
    return None
