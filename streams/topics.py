"""The Kafka topics of docs/design.md, named once: every producer, consumer and test reads them from here.

`md.forecasts` and `md.dlq` are the defaults of `Settings.forecasts_topic` / `Settings.dlq_topic`:
a deployment may name its own so that two of them share a cluster without mixing their output.
"""

from __future__ import annotations

RAW_TOPIC = "md.raw.{venue}"  # one per venue, key = symbol (a book's messages stay in one partition)
NEWS_TOPIC = "md.news"
FORECASTS_TOPIC = "md.forecasts"
DLQ_TOPIC = "md.dlq"
STATE_TOPIC = "md.state"  # compacted: the newest state snapshot per (group, topic, partition)
# how every reader of a raw topic reads it (the worker's consumer, its restores and gap reads, adapt, the
# stall probe): a feed handler that writes in Kafka transactions (Kafka Connect's exactly-once sources,
# Flink's exactly-once sink) leaves aborted records behind, which are not messages
RAW_ISOLATION = "read_committed"


def raw_topic(venue: str) -> str:
    """`md.raw.<venue>`: where a venue's raw messages are published and the worker reads them."""
    return RAW_TOPIC.format(venue=venue)
