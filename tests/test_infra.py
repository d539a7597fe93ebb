"""The embedded default: real servers, started and stopped by the project's own code."""

import time

import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.cli import main
from streams.infra import free_port


def test_kafka_round_trips_a_record(infra):
    producer = KafkaProducer(bootstrap_servers=infra.kafka.bootstrap)
    producer.send("t.infra", key=b"AAPL", value=b"hello").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=infra.kafka.bootstrap, consumer_timeout_ms=10000)
    parts = [TopicPartition("t.infra", p) for p in consumer.partitions_for_topic("t.infra")]
    consumer.assign(parts)
    consumer.seek_to_beginning()
    values = [m.value for m in consumer]
    consumer.close()
    assert values == [b"hello"]


def test_redis_answers(infra):
    r = redis.Redis.from_url(infra.redis.url)
    r.set("mt:test", "1")
    assert r.get("mt:test") == b"1"


def test_status_reports_both_healthy(infra, capsys):
    state = str(infra.state)
    rc = main(
        [
            "infra",
            "status",
            "--state",
            state,
            "--kafka-port",
            str(infra.kafka.port),
            "--controller-port",
            str(infra.kafka.controller_port),
            "--redis-port",
            str(infra.redis.port),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.count("healthy") == 2


def test_down_stops_only_what_up_started(tmp_path):
    from streams.infra import Infra

    other = Infra.on_free_ports(tmp_path)
    other.redis.start()
    pid = other.redis.pid()
    assert pid is not None
    assert other.down() == ["redis"]  # kafka was never started here: nothing else is touched
    assert other.redis.pid() is None and not other.redis.healthy()


def test_reachable_servers_pass_the_pre_checks_at_once(infra):
    from streams.infra import reach_kafka, reach_redis

    t0 = time.monotonic()
    reach_kafka(f"127.0.0.1:{free_port()},{infra.kafka.bootstrap}")  # one bootstrap server answering is enough
    reach_redis(infra.redis.url)
    assert time.monotonic() - t0 < 2


def test_bootstrap_servers_parse_as_kafka_writes_them():
    from streams.infra import _host_port

    assert _host_port("kafka:9092", 9092) == ("kafka", 9092)
    assert _host_port(" PLAINTEXT://10.0.0.1:9094", 9092) == ("10.0.0.1", 9094)
    assert _host_port("[::1]:9095", 9092) == ("::1", 9095)
    assert _host_port("broker", 9092) == ("broker", 9092)


def test_cluster_ids_never_begin_with_a_dash(monkeypatch):
    """The storage tool reads an id that begins with "-" as an option and fails (1 start in 64)."""
    import uuid

    from streams import infra as infra_mod

    dash_first = uuid.UUID(bytes=b"\xf8" + bytes(15))  # url-safe base64 "-A..."
    ids = iter([dash_first, uuid.UUID(int=7)])
    monkeypatch.setattr(infra_mod.uuid, "uuid4", lambda: next(ids))
    cid = infra_mod.cluster_id()
    assert not cid.startswith("-") and len(cid) == 22
