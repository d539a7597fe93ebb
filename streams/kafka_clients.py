"""The worker's short-lived kafka-python consumers (a snapshot's fetch, a partition's replay), made with
the broker's API version once the process knows it.

A KafkaConsumer made without `api_version` bootstraps eagerly to learn it, and its first request for a
topic's metadata then took about 110 ms on a loopback broker (kafka-python 3.0.12), against 10 ms for
one made with the version: a restore with nothing to replay makes two such consumers and took 0.25 s.
The first consumer made for a cluster learns the version; every later one is given it. A broker
upgraded while a worker runs answers the older version's requests as before (Kafka keeps each API's
old versions across many releases); the next worker learns the new one.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer

_versions: dict[str, tuple[int, ...]] = {}  # bootstrap -> the broker's API version, as a consumer learned it


def consumer(bootstrap: str, **config: Any) -> KafkaConsumer:
    """`KafkaConsumer(bootstrap_servers=bootstrap, **config)`, without the version probe where the process
    has made one for this cluster before."""
    version = _versions.get(bootstrap)
    if version is not None:
        return KafkaConsumer(bootstrap_servers=bootstrap, api_version=version, **config)
    c = KafkaConsumer(bootstrap_servers=bootstrap, **config)
    _versions[bootstrap] = tuple(c.config["api_version"])
    return c
