"""What exactly-once output costs: a batch's forecasts published in a Kafka transaction with its
offset commit (what the worker does, streams/txn.py) beside the same records published
at-least-once (sent by an idempotent producer and acknowledged; the offsets committed apart, as
Faust's commit timer did), on the embedded broker, in one run, batches interleaved.

    python bench/txn_bench.py [--batches 1,10,100,1000] [--rounds 40] [--quick]

Each record is a real forecast's size (a msgpack map of the published fields, about 1 KB).
Prints per batch size: ms per batch (median, p99) and records/s for both, and their ratio.
A worker batch holds the forecasts of one partition's share of a `take_events` batch (up to
2,000 records: a few to a few hundred forecasts), so the rows around 10-100 are the ones that
matter; every partition has its own transactions, side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgpack
from aiokafka import AIOKafkaProducer
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from model.serving.forecaster import PREDICTION_FIELDS, RECORD_FIELDS
from streams.infra import Infra
from streams.retry import Waits
from streams.txn import Out, PartitionCommitter

SOURCE, OUT, GROUP = "bench.source", "bench.forecasts", "bench-txn"


def forecast(i: int) -> bytes:
    rec: dict[str, object] = dict.fromkeys(RECORD_FIELDS, 0)
    rec.update({"venue": "binance", "symbol": "ETHUSDT", "window": i, "model": "baseline-har-ewma:1", "reason": ""})
    rec.update({name: 0.123456789 + i for name in PREDICTION_FIELDS})
    return msgpack.packb(rec)


async def at_least_once(producer: AIOKafkaProducer, values: list[bytes]) -> None:
    futs = [await producer.send(OUT, key=b"ETHUSDT", value=v) for v in values]
    for f in futs:
        await f


async def run(bootstrap: str, sizes: list[int], rounds: int) -> list[tuple[int, list[float], list[float]]]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(SOURCE, 1, 1), NewTopic(OUT, 4, 1)])
    admin.close()
    committer = PartitionCommitter(bootstrap, GROUP, SOURCE, 0, Waits())
    await committer.start()
    plain = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=2,
                             max_batch_size=1 << 20)  # fmt: skip
    await plain.start()
    offset = 0
    out = []
    try:
        for n in sizes:
            values = [forecast(i) for i in range(n)]
            records = [Out(OUT, b"ETHUSDT", v) for v in values]
            txn, alo = [], []
            for _ in range(rounds):  # interleaved: load on the machine hits both alike
                t0 = time.perf_counter()
                offset += 100
                await committer.commit(records, offset - 100, offset, None)
                txn.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                await at_least_once(plain, values)
                alo.append(time.perf_counter() - t0)
            out.append((n, txn, alo))
    finally:
        await committer.stop()
        await plain.stop()
    return out


def p99(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(0.99 * len(s)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", default="1,10,100,1000", help="forecasts per batch")
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--quick", action="store_true", help="two sizes, five rounds: a smoke run")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.batches.split(",")]
    rounds = args.rounds
    if args.quick:
        sizes, rounds = [1, 100], 5
    with tempfile.TemporaryDirectory(prefix="txn-bench-") as tmp:
        servers = Infra.on_free_ports(Path(tmp))
        servers.up()
        try:
            rows = asyncio.run(run(servers.kafka.bootstrap, sizes, rounds))
        finally:
            servers.down()
    print(f"Kafka {servers.kafka.bootstrap}, {rounds} batches of each size, interleaved; ms per batch")
    print("| forecasts per batch | transaction (median / p99 ms) | at-least-once (median / p99 ms) | "
          "records/s transaction | records/s at-least-once | cost |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    for n, txn, alo in rows:
        mt, ma = statistics.median(txn), statistics.median(alo)
        print(f"| {n} | {mt * 1e3:.1f} / {p99(txn) * 1e3:.1f} | {ma * 1e3:.1f} / {p99(alo) * 1e3:.1f} | "
              f"{n / mt:,.0f} | {n / ma:,.0f} | {mt / ma:.1f}x |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
