"""A consumer group's committed offsets, with the metadata each commit carries.

Read with an admin request: a consumer carrying the group id would be one more member of the
group and keep it rebalancing. The worker commits each partition's offset inside the Kafka
transaction that carries its forecasts (streams/txn.py), with a pointer to the partition's
newest state snapshot as the commit's metadata (streams/snapshots.py).
"""

from __future__ import annotations

import time
from typing import NamedTuple

from kafka import KafkaAdminClient, TopicPartition
from kafka.errors import KafkaError


class Committed(NamedTuple):
    offset: int  # the next record to process; 0 where the group has committed nothing
    metadata: str


def committed(
    bootstrap: str, group: str, topic: str, partitions: set[int] | list[int], attempts: int = 20
) -> dict[int, Committed]:
    """The group's committed offsets and metadata per partition. The coordinator of a group that
    has just been created may not be known yet, or may still be loading the offsets topic:
    errors that Kafka marks retriable are retried."""
    if not partitions:
        return {}
    tps = [TopicPartition(topic, p) for p in partitions]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        for attempt in range(attempts):
            try:
                got = admin.list_group_offsets({group: tps}).get(group, {})
                break
            except KafkaError as exc:
                if not exc.retriable or attempt == attempts - 1:
                    raise
                time.sleep(0.25)
    finally:
        admin.close()
    out = {}
    for p in partitions:
        om = got.get(TopicPartition(topic, p))
        offset = getattr(om, "offset", 0) or 0
        out[p] = Committed(max(offset, 0), (getattr(om, "metadata", "") or "") if offset > 0 else "")
    return out


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: set[int]) -> dict[int, int]:
    """The committed offsets alone (0 where none)."""
    return {p: c.offset for p, c in committed(bootstrap, group, topic, partitions).items()}
