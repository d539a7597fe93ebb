"""`megatrading reset VENUE`: start a venue over: its records, offsets, books and forecasts gone.

What goes (docs/design.md for each): `md.raw.<venue>` (deleted and created again with as many
partitions and replicas), the consumer group's committed offsets for it, the group's state snapshots
of its partitions in `md.state` (tombstones: the topic is compacted, and the offsets that pointed at
the snapshots are gone with the group's offsets), and in Redis the venue's books: `mt:latest:<venue>:*`,
`mt:hist:<venue>:*`, `mt:window:<venue>:*`, `mt:book:<venue>:*` (their levels: a reset book's old levels
would stand over the new ones, which start from a lower window), their `drift:<venue>:*` fields of
`mt:meta`, and the venue's entries in `mt:alerts`.
Kept: the venue's dead letters in `md.dlq`, a topic every venue shares.

Why it is needed: the worker keeps every book from its partition's first record, so a second
simulation published into the same topic meets the first one's books (a second `simulate --kafka`
into `md.raw.itch` sent 99.6% of its records to `md.dlq` as `crossed_book`, issue 14).
A worker that runs meanwhile would write it all back: a fresh heartbeat refuses the reset.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orderbook.venues import FEEDS
from streams.config import Settings
from streams.snapshots import state_key
from streams.topics import STATE_TOPIC, raw_topic

HEARTBEAT_FRESH_S = 15.0  # a worker writes one every second; a stopped one's last stays behind
RECREATE_WAIT_S = 30.0  # a deleted topic's name is taken again only once the broker has removed it
PAGE = 1000
# md.dlq is shared by every venue and its records cannot be deleted one by one
KEPT = "md.dlq's records of the venue: they name offsets of the old topic; `megatrading dlq --since` skips them"
ATTEMPTS = 40  # of a retriable admin request, 0.25 s apart


@dataclass
class Plan:
    """What a reset of one venue removes, found before anything is touched."""

    venue: str
    group: str
    topic: str
    partitions: int = 0  # 0: the topic does not exist
    replication: int = 1
    records: int = 0
    state_keys: list[bytes] = field(default_factory=list)  # empty: md.state does not exist
    redis_keys: list[str] = field(default_factory=list)
    drift_fields: list[str] = field(default_factory=list)
    count_fields: list[str] = field(default_factory=list)  # the workers' counts of the venue (messages, dlq...)
    alert_ids: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        topic = f"{self.topic}: does not exist (nothing to delete)"
        if self.partitions:
            topic = f"{self.topic}: {self.records} records in {self.partitions} partitions (created again, empty)"
        return [
            topic,
            f"consumer group {self.group}: its committed offsets of {self.topic}",
            f"{STATE_TOPIC}: the group's snapshots of {self.topic} ({len(self.state_keys)} keys, tombstoned)"
            if self.state_keys
            else f"{STATE_TOPIC}: does not exist (no snapshots)",
            f"redis: {len(self.redis_keys)} keys (mt:latest:{self.venue}:*, mt:hist:{self.venue}:*, "
            f"mt:window:{self.venue}:*, mt:book:{self.venue}:*), {len(self.drift_fields)} drift fields and "
            f"{len(self.count_fields)} count fields of mt:meta, {len(self.alert_ids)} entries of mt:alerts",
        ]


def fresh_heartbeats(redis_url: str, max_age_s: float = HEARTBEAT_FRESH_S) -> dict[str, float]:
    """Workers whose heartbeat in mt:meta is younger than `max_age_s`: id -> age in seconds."""
    import redis

    from streams.sink import META

    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
    try:
        meta = client.hgetall(META)
    finally:
        client.close()
    now = time.time_ns()
    ages = {k.removeprefix("heartbeat:"): (now - int(v)) / 1e9 for k, v in meta.items() if k.startswith("heartbeat:")}
    return {worker: age for worker, age in ages.items() if age < max_age_s}


def _redis_plan(plan: Plan, redis_url: str) -> None:
    import redis

    from streams.sink import ALERTS, BOOK, DRIFT_FIELD, HIST, LATEST, META, WINDOW, count_field

    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=10)
    try:
        # an alert window's key: its symbol then its window number, one `*` for both
        for match in (*(k.format(venue=plan.venue, symbol="*") for k in (LATEST, HIST, BOOK)),
                      WINDOW.format(venue=plan.venue, symbol="*", window="").removesuffix(":")):  # fmt: skip
            plan.redis_keys += sorted(client.scan_iter(match=match, count=PAGE))
        drift = DRIFT_FIELD.format(venue=plan.venue, symbol="")
        fields = client.hkeys(META)
        plan.drift_fields = [f for f in fields if f.startswith(drift)]
        plan.count_fields = [f for f in fields if (c := count_field(f)) is not None and c.venue == plan.venue]
        start = "-"
        while True:
            page = client.xrange(ALERTS, min=start, count=PAGE)
            plan.alert_ids += [i for i, fields in page if fields.get("venue") == plan.venue]
            if len(page) < PAGE:
                break
            start = "(" + page[-1][0]
    finally:
        client.close()


def make_plan(settings: Settings, venue: str) -> Plan:
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    plan = Plan(venue, settings.app_id, raw_topic(venue))
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap)
    try:
        topics = set(admin.list_topics())
        if plan.topic in topics:
            (described,) = admin.describe_topics([plan.topic])
            plan.partitions = len(described["partitions"])
            plan.replication = max(len(p["replica_nodes"]) for p in described["partitions"])
        if STATE_TOPIC in topics and plan.partitions:
            plan.state_keys = [state_key(plan.group, plan.topic, p) for p in range(plan.partitions)]
    finally:
        admin.close()
    if plan.partitions:
        consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
        try:
            tps = [TopicPartition(plan.topic, p) for p in range(plan.partitions)]
            first, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
            plan.records = sum(end[tp] - first[tp] for tp in tps)
        finally:
            consumer.close()
    _redis_plan(plan, settings.redis_url)
    return plan


def _delete_offsets(admin, plan: Plan) -> None:
    from kafka import TopicPartition
    from kafka.errors import GroupIdNotFoundError, KafkaError, UnknownTopicOrPartitionError

    tps = [TopicPartition(plan.topic, p) for p in range(plan.partitions)]
    for attempt in range(ATTEMPTS):
        try:
            results = admin.delete_group_offsets(plan.group, tps)
            break
        except GroupIdNotFoundError:
            return  # the group never committed: nothing to delete
        except KafkaError as err:
            # a broker whose offsets topic is still being created has no coordinator yet (retriable)
            if not err.retriable or attempt == ATTEMPTS - 1:
                raise
            time.sleep(0.25)
    bad = {tp.partition: err.__name__ for tp, err in results.items()
           if err.__name__ != "NoError" and not issubclass(err, UnknownTopicOrPartitionError)}  # fmt: skip
    if bad:
        raise RuntimeError(f"group {plan.group}: offsets of {plan.topic} not deleted: {bad} (a worker in the group?)")


def _recreate_topic(admin, plan: Plan) -> None:
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

    with contextlib.suppress(UnknownTopicOrPartitionError):  # deleted meanwhile
        admin.delete_topics([plan.topic])
    deadline = time.monotonic() + RECREATE_WAIT_S
    while True:
        try:
            admin.create_topics([NewTopic(plan.topic, plan.partitions, plan.replication)])
            break
        except TopicAlreadyExistsError:  # still being deleted
            if time.monotonic() > deadline:
                raise TimeoutError(f"{plan.topic} still exists {RECREATE_WAIT_S:.0f} s after its deletion") from None
            time.sleep(0.2)
    admin.wait_for_topics([plan.topic], timeout_ms=int(RECREATE_WAIT_S * 1000))


def _tombstones(bootstrap: str, keys: list[bytes]) -> None:
    from kafka import KafkaProducer

    prod = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key in keys:
            # the key alone picks the partition, as it did for the worker's snapshots (murmur2 both)
            prod.send(STATE_TOPIC, key=key, value=None)
        prod.flush()
    finally:
        prod.close()


def _redis_reset(plan: Plan, redis_url: str) -> None:
    import redis

    from streams.sink import ALERTS, META

    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    try:
        for i in range(0, len(plan.redis_keys), PAGE):
            client.delete(*plan.redis_keys[i : i + PAGE])
        if plan.drift_fields or plan.count_fields:
            client.hdel(META, *plan.drift_fields, *plan.count_fields)
        for i in range(0, len(plan.alert_ids), PAGE):
            client.xdel(ALERTS, *plan.alert_ids[i : i + PAGE])
    finally:
        client.close()


def execute(settings: Settings, plan: Plan) -> None:
    """Offsets first (the group must forget them before the topic comes back), then the topic, the
    snapshots, Redis."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap)
    try:
        if plan.partitions:
            _delete_offsets(admin, plan)
            _recreate_topic(admin, plan)
    finally:
        admin.close()
    if plan.state_keys:
        _tombstones(settings.bootstrap, plan.state_keys)
    _redis_reset(plan, settings.redis_url)


def confirmed(plan: Plan, ask: Callable[[str], str] = input) -> bool:
    """The plan said, and the venue's name typed back."""
    print(f"reset {plan.venue}: this removes", file=sys.stderr)
    for line in plan.lines():
        print(f"  - {line}", file=sys.stderr)
    print(f"  (kept: {KEPT})", file=sys.stderr)
    return ask(f"type {plan.venue} to go on: ").strip() == plan.venue


def cmd_reset(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from streams.infra import reach_kafka, reach_redis

    settings = Settings.load(args)
    reach_kafka(settings.bootstrap)
    reach_redis(settings.redis_url)
    alive = fresh_heartbeats(settings.redis_url)
    if alive and not args.force:
        shown = ", ".join(f"{w} ({age:.0f} s ago)" for w, age in sorted(alive.items()))
        raise RuntimeError(f"a worker is running (heartbeat in mt:meta: {shown}): stop it first, or --force")
    plan = make_plan(settings, args.venue)
    if not args.yes and not sys.stdin.isatty():
        raise ValueError("reset asks for a confirmation: run it in a terminal, or pass --yes")
    if not args.yes and not confirmed(plan):
        print("nothing reset", file=sys.stderr)
        return 1
    try:
        execute(settings, plan)
    except KafkaError as err:  # said in one line, with how far the reset got
        raise RuntimeError(f"reset {args.venue} stopped: Kafka at {settings.bootstrap}: {err}") from err
    print(f"reset {args.venue}: " + "; ".join(plan.lines()))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("reset", help="start a venue over: its raw topic, group offsets, snapshots, Redis keys",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    r.add_argument("venue", choices=sorted(FEEDS))
    r.add_argument("--yes", action="store_true", help="no confirmation prompt")
    r.add_argument("--force", action="store_true", help="even while a worker's heartbeat is fresh")
    r.add_argument("--bootstrap", help="Kafka bootstrap servers (env MT_KAFKA_BOOTSTRAP, default 127.0.0.1:9092)")
    r.add_argument("--redis-url", help="Redis URL (env MT_REDIS_URL, default redis://127.0.0.1:6379/0)")
    r.add_argument("--app-id", help="the consumer group whose offsets and snapshots go (env MT_APP_ID)")
    r.add_argument("--config", type=Path, help="settings file, TOML (env MT_CONFIG; default $MT_HOME/config.toml)")
    r.set_defaults(run=cmd_reset)
