"""The per-worker processing of one venue: raw record -> feed (decode, book) -> windows.

Plain code, no Kafka and no asyncio, so the agent in `streams/app.py` stays a short loop and
everything that needs a test is tested here. The work itself is `orderbook.venue_windows.VenueWindows.process`
(the path offline scoring and the training data take too); what the worker adds is the position
reached in each partition and, for a record the feed rejects, a `Rejected` headed for `md.dlq` with
its reason. The worker goes on with the next record.

A record may be a frame (orderbook/frames.py): consecutive messages of one key, each as the venue
sent it. Its messages go through `VenueWindows.process` one after the other, all with the record's
key and offset, exactly as the same messages sent as plain records would (the windows and
`stats` count messages, not records). A message the feed rejects becomes a `Rejected` of its own
(its bytes, its `index` in the frame) and its neighbours go on; a frame that cannot be split
(FrameError, `bad_frame`) or a record over the size limit, frame or not, is rejected whole and unread.
Exactly-once stays per record offset: a frame is processed whole, in one batch.

A worker keeps one pipeline per source partition. After a crash or a rebalance it is
restored from the partition's newest state snapshot (streams/snapshots.py) and the records
after it are fed again with `warm=True` up to the committed offset (streams/recovery.py): the
books, features and window counters come back exactly as they were, and no window is emitted
for records whose forecasts were already written.
"""

from __future__ import annotations

from dataclasses import dataclass

from orderbook.errors import MAX_MESSAGE_BYTES
from orderbook.frames import FrameError, is_frame, messages_of
from orderbook.venue_windows import VenueWindows, WindowStats
from orderbook.windows import Window, WindowBuilder, WindowConfig


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record (or one message of a frame) the pipeline could not use, with why: what `md.dlq` carries."""

    reason: str
    error: str
    key: bytes | None
    value: bytes  # the record's value; for one message of a frame, that message's bytes alone
    partition: int
    offset: int
    index: int | None = None  # the message's index in its frame; None: the whole record


class VenuePipeline:
    """One venue's books and window builders (`core`, a VenueWindows, which a snapshot holds) fed one
    Kafka record at a time, and the position reached in each partition."""

    def __init__(
        self,
        venue: str,
        config: WindowConfig | None = None,
        *,
        symbols: set[str] | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.venue = venue
        self.max_bytes = max_bytes  # as configured (a snapshot records it); None: MAX_MESSAGE_BYTES
        limit = MAX_MESSAGE_BYTES if max_bytes is None else max_bytes
        self.core = VenueWindows(venue, config, symbols=symbols, max_bytes=limit)
        self.position: dict[int, int] = {}  # partition -> next offset to process

    @property
    def builders(self) -> dict[str, WindowBuilder]:
        return self.core.builders

    @property
    def stats(self) -> WindowStats:
        return self.core.stats

    def process(
        self, key: bytes | None, value: bytes, partition: int, offset: int, *, warm: bool = False
    ) -> tuple[list[Window], list[Rejected]]:
        """Apply one record, plain or a frame: the windows its messages completed (none when `warm`)
        and the rejections, one per rejected message (a whole record: one with index None)."""
        self.position[partition] = offset + 1
        at = (partition, offset)
        if not is_frame(value) or len(value) > self.core.max_bytes:
            # a plain message, or a record too long to read whatever it is: VenueWindows checks the
            # size first, so an oversized frame is rejected unread and never split
            done = self.core.process(key, value, at, warm=warm)
            if done.reject is not None:
                return [], [Rejected(done.reject.reason, done.reject.error, key, value, partition, offset)]
            return done.windows, []
        try:
            messages = messages_of(value, self.venue)
        except FrameError as err:
            # no message of a broken frame can be trusted: the record is one reject
            done = self.core.refuse(err.reason, str(err))
            return [], [Rejected(done.reject.reason, done.reject.error, key, value, partition, offset)]
        windows: list[Window] = []
        rejects: list[Rejected] = []
        for index, message in enumerate(messages):
            done = self.core.process(key, message, at, warm=warm)
            if done.reject is not None:
                rejects.append(Rejected(done.reject.reason, done.reject.error, key, message, partition, offset, index))
            windows += done.windows
        return windows, rejects

    def add_news(self, ts: int, symbols: list[str], headline: str) -> None:
        self.core.add_news(ts, symbols, headline)

    def reset(self) -> None:
        """Forget every book. A feed keeps per-symbol state beyond its books (ITCH order routing,
        Binance pending tickers...), so after a rebalance the pipeline starts afresh and the
        worker replays the partitions it owns (`warm=True`) instead of pruning symbols."""
        self.core.reset()
        self.position.clear()
