"""Native against reference: what the differential tests and the fuzzing (tests/fuzz/) compare.

    ref = reference_outcomes(ItchFeed(), messages)           # per message: its events, or its FeedError
    nat = native.ItchFeed().on_messages(messages).by_message(len(messages))
    assert first_difference(ref, nat) is None
    assert pipeline_difference(want, got) is None            # a VenuePipeline's (windows, rejects, stats) each
    assert rebuild_outcome(path, 10, native=False) == rebuild_outcome(path, 10, native=True)  # megatrading book

An outcome is compared by value: every field of every event (venue, symbol, ts, seq, side, price,
size, order ids, flags, recv_ts), or the error's class, reason, symbol, seq and ts (and a gap's
expected/got). Error texts are not compared: they are for people.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FeedError, SequenceGap
from ..events import Event
from ..rebuild import NATIVE, RebuildStats, Row, rebuild, rows_of
from ..venues import feed_class
from ..venues.base import Feed
from ..windows import Window

Outcome = list[Event] | FeedError
# every field but the kind, read plainly: dataclasses.astuple deep-copies each value, and was 85% of a
# whole-capture comparison's time; an Event's fields are all scalars, so the tuples are the same
_EVENT_FIELDS = attrgetter(*(f.name for f in fields(Event)[1:]))


def reference_outcomes(
    feed: Feed,
    messages: Sequence[bytes],
    recv_ts: Sequence[int] | None = None,
    keys: Sequence[bytes | None] | None = None,
) -> list[Outcome]:
    """Each message through the reference feed (as a keyed record where `keys` are given): the events it
    returned, or the error it raised."""
    out: list[Outcome] = []
    for i, raw in enumerate(messages):
        t = recv_ts[i] if recv_ts is not None else 0
        try:
            out.append(feed.on_message(raw, t) if keys is None else feed.on_record(keys[i], raw, t))
        except FeedError as err:
            out.append(err)
    return out


def comparable(outcome: Outcome) -> tuple:
    if isinstance(outcome, FeedError):
        gap = (outcome.expected, outcome.got) if isinstance(outcome, SequenceGap) else ()
        return ("error", type(outcome).__name__, outcome.reason, outcome.symbol, outcome.seq, outcome.ts, *gap)
    return tuple((int(e.kind), *_EVENT_FIELDS(e)) for e in outcome)


def first_difference(reference: Sequence[Outcome], native: Sequence[Outcome]) -> str | None:
    """None when equal, else a line naming the first message whose outcomes differ."""
    if len(reference) != len(native):
        return f"{len(reference)} reference outcomes, {len(native)} native"
    for i, (r, n) in enumerate(zip(reference, native, strict=True)):
        if comparable(r) != comparable(n):
            return f"message {i}: reference {comparable(r)!r:.600} != native {comparable(n)!r:.600}"
    return None


def placed(reject: tuple) -> tuple:
    """A reject (reason, error, *where) without its text's wording: the native decoders word a few
    errors more briefly (b"{x" is "not JSON" without json's detail), so the text is held to its
    `[venue= symbol= seq=]` part, which names the same place."""
    reason, error, *rest = reject
    return (reason, error[error.rfind(" [") :] if error.endswith("]") else "", *rest)


def pipeline_difference(
    want: tuple[list[Window], list[tuple], Any], got: tuple[list[Window], list[tuple], Any]
) -> str | None:
    """None when the reference's (windows, rejects, stats) equal the native path's, else a line naming
    the first difference: every field of every window, every reject but the wording of a malformed
    message's error, the stats."""
    (ww, wr, ws), (gw, gr, gs) = want, got
    if [placed(r) for r in gr] != [placed(r) for r in wr]:
        i = next(
            (i for i, (a, b) in enumerate(zip(wr, gr, strict=False)) if placed(a) != placed(b)), min(len(wr), len(gr))
        )
        return f"reject {i}: reference {wr[i : i + 1]!r:.600} != native {gr[i : i + 1]!r:.600}"
    worded = sum(a[1] != b[1] for a, b in zip(wr, gr, strict=True))
    if worded > sum(r[0] == "malformed" for r in wr):
        return f"{worded} rejects worded otherwise, more than the malformed ones"
    if len(gw) != len(ww):
        return f"{len(ww)} reference windows, {len(gw)} native"
    for i, (a, b) in enumerate(zip(ww, gw, strict=True)):
        for f in fields(Window):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if isinstance(x, np.ndarray):
                equal = (
                    x.dtype == y.dtype
                    and x.shape == y.shape
                    and (
                        x.tolist() == y.tolist()
                        if x.dtype == object
                        else np.array_equal(x, y, equal_nan=x.dtype.kind == "f")
                    )
                )
            else:
                equal = type(x) is type(y) and x == y
            if not equal:
                return f"window {i} ({a.symbol} at {a.offset}), {f.name}: reference {x!r:.300} != native {y!r:.300}"
    if gs != ws:
        return f"stats: reference {ws} != native {gs}"
    return None


def rebuild_outcome(
    path: str | Path, levels: int, symbol: str | None = None, *, native: bool, check_crossed: bool = True,
    chunk: int | None = None, venue: str = "itch",
) -> tuple[list[Row], RebuildStats, list[tuple[str, str, int | None]]]:  # fmt: skip
    """`megatrading book` of a capture (an ITCH day file, a Binance capture, a LOBSTER file) on one path
    (`native`: the venue's rebuild in `orderbook.rebuild.NATIVE`, `chunk` at a time where given; else
    `rebuild` with the Python feed): its rows, its stats and its errors (class, symbol, seq), in order; the
    error it stops with is raised."""
    rows, stats, errors, stopped = rebuild_until_stopped(
        path, levels, symbol, native=native, check_crossed=check_crossed, chunk=chunk, venue=venue
    )
    if stopped is not None:
        raise stopped
    return rows, stats, errors


def rebuild_until_stopped(
    path: str | Path, levels: int, symbol: str | None = None, *, native: bool, check_crossed: bool = True,
    chunk: int | None = None, venue: str = "itch",
) -> tuple[list[Row], RebuildStats, list[tuple[str, str, int | None]], FeedError | None]:  # fmt: skip
    """`rebuild_outcome` of a capture whose reading may stop (a damaged file, one not of the venue): the rows,
    stats and errors up to the error it stops with, and that error (None where it reads to its end)."""
    stats, errors, got = RebuildStats(), [], []
    if native:
        size = {} if chunk is None else {"chunk": chunk}
        rows = rows_of(NATIVE[venue](path, levels, symbol, stats, errors.append, check_crossed=check_crossed, **size))
    else:
        cls = feed_class(venue)
        feed = cls.for_capture(path, symbol, check_crossed=check_crossed)
        rows = rebuild(feed, cls.read_capture(path), levels, symbol, stats, errors.append)
    stopped = None
    try:
        got.extend(rows)  # keeps the rows a generator gave before it raised
    except FeedError as err:  # a CaptureError too
        stopped = err
    return got, stats, [(type(e).__name__, e.symbol, e.seq) for e in errors], stopped
