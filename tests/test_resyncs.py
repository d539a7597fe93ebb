"""Books' resyncs as the worker publishes them (`resyncs:<worker>:<venue>` in mt:meta, Prometheus
`megatrading_resyncs_total`): read from each partition's pipeline at heartbeat time, on both paths
(reference and native), and counted only while the worker holds the state: what a restored state
brought is not this worker's, a state replaced by a restore starts from its own count."""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from orderbook import native
from streams.metrics import WorkerMetrics
from streams.pipeline import VenuePipeline

SYM = "BTCUSDT"


@dataclass(frozen=True)
class Rec:
    key: bytes | None
    value: bytes
    partition: int
    offset: int


def enc(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def snapshot(last_update_id: int) -> bytes:
    body = {"lastUpdateId": last_update_id, "bids": [["100.00", "1"]], "asks": [["101.00", "1"]]}
    return enc({"symbol": SYM, "snapshot": body})


def diff(first: int, last: int) -> bytes:
    ev = {"e": "depthUpdate", "E": 1_700_000_000_000 + last, "s": SYM, "U": first, "u": last,
          "b": [["100.00", str(last)]], "a": []}  # fmt: skip
    return enc({"stream": f"{SYM.lower()}@depth@100ms", "data": ev})


def feed(pipe: VenuePipeline, values: list[bytes]) -> None:
    start = pipe.position.get(0, 0)
    pipe.process_batch([Rec(SYM.encode(), v, 0, start + i) for i, v in enumerate(values)])


def with_gaps(n: int, at: int = 100) -> list[bytes]:
    """A snapshot, then `n` times: a diff in sequence, one past a gap (a resync), a fresh snapshot."""
    out = [snapshot(at)]
    for _ in range(n):
        out += [diff(at + 1, at + 2), diff(at + 5, at + 6), snapshot(at + 10)]
        at += 10
    return out


PATHS = [False, pytest.param(True, marks=pytest.mark.skipif(not native.enabled(), reason="native path not built"))]


@pytest.mark.parametrize("native_path", PATHS)
def test_a_pipeline_sums_its_books_resyncs_on_either_path(native_path):
    pipe = VenuePipeline("binance", native=native_path)
    assert pipe.resyncing and pipe.resyncs() == 0
    feed(pipe, with_gaps(3))
    assert pipe.resyncs() == 3
    assert not VenuePipeline("itch", native=False).resyncing  # ITCH books have no sync state


def test_the_worker_counts_the_resyncs_of_the_states_it_holds_since_it_started():
    metrics = WorkerMetrics(SimpleNamespace(settings=SimpleNamespace(venues=("binance", "itch"))))  # type: ignore[arg-type]
    assert metrics.resyncs == {"binance": 0}  # published as 0 before any batch; ITCH: none to publish
    restored = VenuePipeline("binance", native=False)
    feed(restored, with_gaps(2))  # a previous owner's resyncs, in the state restored from its snapshot
    part = SimpleNamespace(topic="md.raw.binance", partition=0, venue="binance", pipeline=restored,
                           resyncs_base=restored.resyncs())  # fmt: skip
    assert metrics.read_resyncs([part]) == {"binance": 0}
    feed(restored, with_gaps(1, at=1000))
    assert metrics.read_resyncs([part]) == {"binance": 1}
    assert metrics.read_resyncs([part]) == {"binance": 1}  # read again: nothing new, nothing counted twice
    # the state dropped and restored again (a failed batch, a fencing): counted from the new state's own count
    again = VenuePipeline("binance", native=False)
    feed(again, with_gaps(4))
    part.pipeline, part.resyncs_base = again, again.resyncs()
    feed(again, with_gaps(1, at=2000))
    assert metrics.read_resyncs([part]) == {"binance": 2}
    # the partition went to another worker: what it counted here stays counted
    assert metrics.read_resyncs([]) == {"binance": 2}
