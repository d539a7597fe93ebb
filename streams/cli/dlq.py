"""`megatrading dlq count|show|replay`: what the worker dead-lettered to `md.dlq`, and sending it back.

`md.dlq` (docs/design.md, headers from streams/partition.py `dlq_headers`) is read from its beginning,
or from `--since`, up to its end, read committed: the copies of aborted transactions are not dead
letters. A replay republishes the payloads of one reason to their source topic, keyed as they came.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from orderbook.clock import clock
from orderbook.venues import FEEDS
from streams.config import Settings
from streams.topics import raw_topic

READ_TIMEOUT_S = 60.0
PAYLOAD_SHOWN = 48  # bytes of a payload `show` prints

# rejected after the message had been applied to its book (the check runs on the whole message's
# result): a replay would apply it a second time
APPLIED_BEFORE_REJECT = {
    "crossed_book": "the message was applied before the crossed book was seen",
    "checksum_mismatch": "the message was applied before its checksum was compared",
}
# what a venue's feed does with a message whose sequence its book has passed (orderbook/venues/)
STALE_RULE = {
    "binance": "a depth diff whose final update id `u` the book has passed is dropped as stale",
    "coinbase": "a full-channel message whose `sequence` the book has passed is dropped as stale",
}

REPLAY_HELP = """\
replay: republish the payloads dead-lettered with --reason R to their source topic (its end), keyed as
they came, after a fix. The worker takes each as a new record: its dedupe of redelivered records is by
Kafka offset, which a replay does not share, and each venue's feed then applies its own sequence rules
in the book's present state. Binance depth diffs and Coinbase full-channel messages carry a book
sequence: one the book has passed is dropped as stale, so a replay of an old one changes nothing (a
resync, or `megatrading reset` and a replay of the capture, is the fix there). ITCH, LOBSTER and Kraken
messages carry none: they are applied to the present book (an order added again is `duplicate_order`).
Reasons where the message was applied before it was rejected (crossed_book, checksum_mismatch) are
refused without --force. Replay suits records never applied: malformed, unknown_message_type, oversized,
bad_frame, unknown_symbol, internal_error, once the decoder or the limit is fixed."""


@dataclass(frozen=True)
class DeadLetter:
    key: bytes | None
    value: bytes
    timestamp_ms: int
    partition: int  # on md.dlq
    offset: int  # on md.dlq
    reason: str
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    frame_index: int | None
    error: str

    @classmethod
    def of(cls, record) -> DeadLetter:  # a kafka-python ConsumerRecord
        h = {k: v.decode(errors="replace") for k, v in (record.headers or [])}

        def number(name: str) -> int | None:
            return int(h[name]) if h.get(name, "").lstrip("-").isdigit() else None

        return cls(record.key, record.value or b"", record.timestamp, record.partition, record.offset,
                   h.get("reason", "?"), h.get("source_topic", "?"), number("partition"), number("offset"),
                   number("frame_index"), h.get("error", ""))  # fmt: skip

    @property
    def time(self) -> str:
        return clock(self.timestamp_ms * 10**6) + "Z" if self.timestamp_ms > 0 else "-"

    @property
    def source(self) -> str:
        where = f"{self.source_topic}[{self.source_partition}]@{self.source_offset}"
        return where if self.source_partition is not None else self.source_topic


def parse_since(text: str, flag: str = "--since") -> int:
    """An ISO 8601 time (UTC when it names no zone) as epoch milliseconds."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{flag} {text!r}: an ISO 8601 time, e.g. 2026-11-30T09:30:00 (UTC) or ...+01:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def read_dlq(
    bootstrap: str, topic: str, since_ms: int | None = None, timeout: float = READ_TIMEOUT_S
) -> list[DeadLetter]:
    """Every committed record of the dead-letter topic (from `since_ms`), in (partition, offset) order."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed",
                             allow_auto_create_topics=False, max_partition_fetch_bytes=16 << 20)  # fmt: skip
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        if since_ms is not None:
            for tp, found in consumer.offsets_for_times(dict.fromkeys(tps, since_ms)).items():
                if found is None:  # nothing that recent: start at the end
                    consumer.seek_to_end(tp)
                else:
                    consumer.seek(tp, found.offset)
        ends = consumer.end_offsets(tps)  # read committed: the last stable offsets
        out = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} not read to its end in {timeout:.0f} s ({len(out)} records read)")
            for records in consumer.poll(timeout_ms=500).values():
                out += [DeadLetter.of(r) for r in records if r.offset < ends[TopicPartition(topic, r.partition)]]
        return sorted(out, key=lambda d: (d.partition, d.offset))
    finally:
        consumer.close()


def select(letters: Iterable[DeadLetter], venue: str | None = None, reason: str | None = None) -> list[DeadLetter]:
    source = raw_topic(venue) if venue else None
    return [
        d for d in letters if (source is None or d.source_topic == source) and (reason is None or d.reason == reason)
    ]


def count_lines(letters: Sequence[DeadLetter]) -> list[str]:
    counts = Counter((d.reason, d.source_topic) for d in letters)
    lines = [f"{'records':>8}  {'reason':22} source topic"]
    lines += [f"{n:>8}  {reason:22} {source}" for (reason, source), n in sorted(counts.items(), key=lambda x: -x[1])]
    lines.append(f"{len(letters):>8}  in all")
    return lines


def payload_text(value: bytes, shown: int = PAYLOAD_SHOWN) -> str:
    """The payload's first bytes: as text where they are printable, else hex."""
    head = value[:shown]
    more = f"... ({len(value)} bytes)" if len(value) > shown else ""
    try:
        text = head.decode("ascii")
        if text.isprintable():
            return repr(text) + more
    except UnicodeDecodeError:
        pass
    return head.hex(" ") + more


def show_lines(letters: Sequence[DeadLetter]) -> list[str]:
    lines = []
    for d in letters:
        index = f" frame_index={d.frame_index}" if d.frame_index is not None else ""
        key = (d.key or b"").decode(errors="replace")
        lines.append(f"{d.time}  {d.reason}  {d.source}{index}  key={key!r}  dlq[{d.partition}]@{d.offset}")
        lines.append(f"    payload {payload_text(d.value)}")
        if d.error:
            lines.append(f"    error   {d.error}")
    return lines


def replay_notes(letters: Sequence[DeadLetter], reason: str) -> list[str]:
    """What the worker will do with the replayed records, said before they go."""
    venues = sorted({d.source_topic.removeprefix("md.raw.") for d in letters if d.source_topic.startswith("md.raw.")})
    notes = [f"{v}: {STALE_RULE[v]}: a replay of an old one changes nothing" for v in venues if v in STALE_RULE]
    if reason in APPLIED_BEFORE_REJECT:
        notes.append(f"{reason}: {APPLIED_BEFORE_REJECT[reason]}: a replay applies it a second time")
    return notes


def replay(bootstrap: str, letters: Sequence[DeadLetter], dlq_topic: str) -> Counter[str]:
    """Each payload to its source topic, keyed as it came, acknowledged; the count per topic. A header
    names the dead letter it came from, so that a second dead-lettering can be traced back."""
    from kafka import KafkaProducer

    prod = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=16 << 20, linger_ms=5)
    sent: Counter[str] = Counter()
    try:
        for d in letters:
            origin = f"{dlq_topic}[{d.partition}]@{d.offset}".encode()
            prod.send(d.source_topic, key=d.key, value=d.value, headers=[("replayed_from", origin)])
            sent[d.source_topic] += 1
        prod.flush()
    finally:
        prod.close()
    return sent


def cmd_dlq(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from streams.infra import reach_kafka

    settings = Settings.load(args)
    if args.action == "replay" and not args.reason:
        raise ValueError("dlq replay needs --reason R (`megatrading dlq count` lists them)")
    since = parse_since(args.since) if args.since else None
    reach_kafka(settings.bootstrap)
    try:
        return _run(args, settings, since)
    except KafkaError as err:
        raise RuntimeError(f"dlq {args.action}: Kafka at {settings.bootstrap}: {err}") from err


def _run(args: argparse.Namespace, settings: Settings, since: int | None) -> int:
    letters = select(read_dlq(settings.bootstrap, settings.dlq_topic, since), args.venue, args.reason)
    matched = len(letters)
    if args.limit is not None:
        letters = letters[: args.limit]
    if args.action == "count":
        print("\n".join(count_lines(letters)))
    elif args.action == "show":
        print("\n".join(show_lines(letters)) if letters else f"no records on {settings.dlq_topic} match")
        if matched > len(letters):
            print(f"{len(letters)} of {matched} shown (--limit)")
    else:
        notes = replay_notes(letters, args.reason)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        if args.reason in APPLIED_BEFORE_REJECT and not args.force:
            raise ValueError(f"not replaying {args.reason}: {APPLIED_BEFORE_REJECT[args.reason]} (--force to anyway)")
        if not letters:
            print(f"no {args.reason} records on {settings.dlq_topic} match: nothing replayed")
            return 0
        sent = replay(settings.bootstrap, letters, settings.dlq_topic)
        print(", ".join(f"replayed {n} to {topic}" for topic, n in sorted(sent.items())))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser(
        "dlq",
        help="md.dlq: count by reason, show records, replay one reason after a fix",
        description=f"{__doc__}\n{REPLAY_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("action", choices=["count", "show", "replay"])
    d.add_argument("--venue", choices=sorted(FEEDS), help="only records dead-lettered from md.raw.<venue>")
    d.add_argument("--since", help="only records dead-lettered since this ISO 8601 time (UTC unless it says)")
    d.add_argument("--limit", type=int, help="at most N records (the oldest first)")
    d.add_argument("--reason", help="only this reason (replay: required)")
    d.add_argument("--force", action="store_true", help="replay: also a reason whose messages were applied")
    d.add_argument("--bootstrap", help="Kafka bootstrap servers (env MT_KAFKA_BOOTSTRAP, default 127.0.0.1:9092)")
    d.add_argument("--config", type=Path, help="settings file, TOML (env MT_CONFIG; default $MT_HOME/config.toml)")
    d.set_defaults(run=cmd_dlq)
