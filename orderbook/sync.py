"""Per-book sync state: live, or waiting for a snapshot with the updates that arrive meanwhile.

Every venue's procedure has the same shape (cryptofeed's `_check_update_id`): an update
older than the snapshot is skipped, the first one after it must straddle it, later ones
must be contiguous; anything else (a gap, a checksum mismatch) drops the book to
AWAITING_SNAPSHOT, where updates are buffered until a fresh snapshot arrives and the
buffer is replayed on top of it. The venue modules hold the sequence rules; this holds
the state they share.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .errors import OutOfSync


class SyncState(Enum):
    AWAITING_SNAPSHOT = "awaiting_snapshot"
    LIVE = "live"


@dataclass
class BookSync:
    venue: str
    symbol: str
    max_buffer: int = 100_000
    state: SyncState = SyncState.AWAITING_SNAPSHOT
    last_seq: int | None = None  # last sequence number applied to the book
    buffer: deque[Any] = field(default_factory=deque)
    resyncs: int = 0  # times the book fell out of sync after having been live
    snapshots: int = 0

    @property
    def live(self) -> bool:
        return self.state is SyncState.LIVE

    def go_live(self, seq: int | None) -> None:
        self.state = SyncState.LIVE
        self.last_seq = seq
        self.snapshots += 1

    def lose_sync(self) -> None:
        """Drop to AWAITING_SNAPSHOT; the caller raises the typed error that says why."""
        if self.state is SyncState.LIVE:
            self.resyncs += 1
        self.state = SyncState.AWAITING_SNAPSHOT
        self.buffer.clear()

    def hold(self, item: Any) -> None:
        """Buffer an update until the snapshot arrives; a full buffer is itself a loss of sync."""
        if len(self.buffer) >= self.max_buffer:
            self.buffer.clear()
            raise OutOfSync(
                f"more than {self.max_buffer} updates buffered without a snapshot", venue=self.venue, symbol=self.symbol
            )
        self.buffer.append(item)

    def drain(self) -> list[Any]:
        items = list(self.buffer)
        self.buffer.clear()
        return items
