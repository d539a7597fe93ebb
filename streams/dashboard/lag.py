"""Consumer lag per partition: the workers' group's committed offsets (an admin request, as
streams/offsets.py reads them: no group membership) against each raw topic's end offsets.

With them, the offsets the dead-letter topic (md.dlq) spans, end minus beginning summed over its
partitions: the workers write it in their transactions, and each transaction's commit marker takes an
offset too, so this is the most messages it can hold (all the workers' since it was made, a past
worker's included), not their exact count: the exact counts are the workers' (`dlq:` in mt:meta).

Read in a thread of its own every few seconds and kept: a page request never waits for Kafka, and
Kafka down shows as the last error, not as a page that hangs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from streams.offsets import committed_offsets
from streams.topics import DLQ_TOPIC, raw_topic

log = logging.getLogger(__name__)


class LagReader:
    def __init__(self, bootstrap: str, group: str, venues: Sequence[str], every: float = 2.0,
                 dlq_topic: str = DLQ_TOPIC) -> None:  # fmt: skip
        self.bootstrap = bootstrap
        self.group = group
        self.venues = tuple(venues)
        self.dlq_topic = dlq_topic
        self.every = every
        self.last: dict[str, Any] = {"state": "not read yet", "group": group, "partitions": []}
        self._consumer: KafkaConsumer | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lag")

    def read(self) -> dict[str, Any]:
        """One reading (blocking): per existing raw topic and partition, end offset, committed, lag."""
        if self._consumer is None:
            self._consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                           request_timeout_ms=5000)  # fmt: skip
        rows = []
        for venue in self.venues:
            topic = raw_topic(venue)
            parts = self._consumer.partitions_for_topic(topic)
            if not parts:
                continue
            ends = self._consumer.end_offsets([TopicPartition(topic, p) for p in parts])
            done = committed_offsets(self.bootstrap, self.group, topic, parts)
            for p in sorted(parts):
                end = ends[TopicPartition(topic, p)]
                rows.append({"topic": topic, "partition": p, "end": end, "committed": done[p],
                             "lag": end - done[p]})  # fmt: skip
        return {"state": "ok", "group": self.group, "partitions": rows, "dlq": self._dlq(), "read_at": time.time()}

    def _dlq(self) -> dict[str, Any]:
        """The offsets `dlq_topic` spans (module docstring: records plus transaction markers); None: no such topic."""
        assert self._consumer is not None
        parts = self._consumer.partitions_for_topic(self.dlq_topic)
        if not parts:
            return {"topic": self.dlq_topic, "offsets": None}
        tps = [TopicPartition(self.dlq_topic, p) for p in parts]
        ends, begins = self._consumer.end_offsets(tps), self._consumer.beginning_offsets(tps)
        return {"topic": self.dlq_topic, "offsets": sum(ends[tp] - begins[tp] for tp in tps)}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                self.last = await loop.run_in_executor(self._executor, self.read)
            except Exception as err:  # an outage or a missing topic: shown on the page, read again later
                self.close_consumer()
                self.last = {"state": f"unavailable: {type(err).__name__}: {err}", "group": self.group,
                             "partitions": [], "read_at": time.time()}  # fmt: skip
            await asyncio.sleep(self.every)

    def close_consumer(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()
            except Exception:  # closing a broken client: nothing more to do with it
                log.debug("closing the lag consumer failed", exc_info=True)
            self._consumer = None

    def close(self) -> None:
        self._executor.submit(self.close_consumer)
        self._executor.shutdown(wait=False)
