"""What a forecast costs to write to Redis (streams/sink.py), and where that time goes.

Real forecasts: the baseline's on a real capture's windows, as a worker makes them (the capture's
records through `VenuePipeline`, `forecast_records`), copied under `--symbols` symbol names so that
the batches touch as many books as a busy partition does; written in batches of `--batch` (a 20k-record
partition batch closes about 2,400 windows) to the project's Redis (`streams.infra`, loopback), side by
side in one run:

- encoding: `encode_forecast` (each float formatted once, for the pub/sub JSON and the hash's strings)
  beside formatting them twice, as `json.dumps` of the forecast and of its fields (the sink's encoding
  before it), microseconds per forecast and their ratio;
- writing: `RedisSink.write` (one Lua script per forecast: idempotence, the alert, the window) beside
  the floor of the same writes as plain pipelined commands without the script or its check (HSET,
  XADD, PUBLISH: what a sink that could not be replayed safely would send), and the server's own time
  per call from `INFO commandstats`.

    python bench/sink_bench.py [--capture ../shared/data/binance-hftbacktest/spot_ethusdt_20240808.gz]
        [--records 60000] [--symbols 10] [--batch 2400]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # a plain script: the working tree's code

import redis  # noqa: E402
from outputs_check import HELD_OUT_CAPTURE as CAPTURE  # noqa: E402
from pipeline_bench import FakeMsg  # noqa: E402

from model.serving.baseline import BaselineForecaster  # noqa: E402
from model.serving.forecaster import forecast_records  # noqa: E402
from orderbook.venues import feed_class  # noqa: E402
from streams.config import Settings  # noqa: E402
from streams.infra import RedisServer, free_port  # noqa: E402
from streams.pipeline import VenuePipeline  # noqa: E402
from streams.publish import keyed  # noqa: E402
from streams.sink import CHANNEL, HIST, LATEST, RedisSink, encode_forecast  # noqa: E402


def real_forecasts(capture: Path, records: int, symbols: int) -> list[dict]:
    """The baseline's forecasts on the capture's first `records` messages, once per symbol copy."""
    raw = [(key, rec.raw) for key, rec in keyed("binance", feed_class("binance").read_capture(capture))][:records]
    pipe = VenuePipeline("binance", Settings().window, max_bytes=Settings().max_record_bytes)
    windows, _ = pipe.process_batch([FakeMsg(k, v, 0, i) for i, (k, v) in enumerate(raw)])
    model = BaselineForecaster()
    predicted = model.forecast(windows, Settings().alert_threshold)
    made = forecast_records(model.model_id, windows, predicted, time.time_ns())
    return [f | {"symbol": f"{f['symbol']}-{k}"} for k in range(symbols) for f in made]


def twice(f: Mapping[str, object]) -> tuple[str, str]:
    """The sink's encoding before `encode_forecast`: every float formatted twice."""
    flat = [x for k, v in f.items() for x in (k, repr(v) if type(v) is float else str(v))]
    return json.dumps(f, separators=(",", ":")), json.dumps(flat, ensure_ascii=False, separators=(",", ":"))


def per_forecast_us(fn: Callable[[Mapping[str, object]], object], forecasts: Sequence[Mapping[str, object]]) -> float:
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for f in forecasts:
            fn(f)
        best = min(best, time.perf_counter() - t)
    return 1e6 * best / len(forecasts)


def plain_write(client: redis.Redis, batch: Sequence[Mapping[str, object]], maxlen: int) -> None:
    """The floor: the same keys written by plain pipelined commands (no check, no script)."""
    pipe = client.pipeline(transaction=False)
    for f in batch:
        payload, _ = encode_forecast(f)
        fields = {k: repr(v) if type(v) is float else str(v) for k, v in f.items()}
        pipe.hset(LATEST.format(**f), mapping=fields)
        pipe.xadd(HIST.format(**f), fields, maxlen=maxlen, approximate=True)
        pipe.publish(CHANNEL, payload)
    pipe.execute()


def timed_batches(write: Callable[[Sequence[Mapping[str, object]]], object], batches: list) -> float:
    t = time.perf_counter()
    for b in batches:
        write(b)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--capture", type=Path, default=CAPTURE, help="a Binance capture (hftbacktest .gz)")
    ap.add_argument("--records", type=int, default=60_000, help="its first N messages")
    ap.add_argument("--symbols", type=int, default=10, help="copies of its forecasts under as many symbols")
    ap.add_argument("--batch", type=int, default=2_400, help="forecasts per write (one partition batch's)")
    args = ap.parse_args()

    forecasts = real_forecasts(args.capture, args.records, args.symbols)
    print(f"{len(forecasts):,} forecasts of {len(forecasts[0])} fields ({args.capture.name}, "
          f"{args.symbols} symbol copies), batches of {args.batch:,}")  # fmt: skip
    if any(encode_forecast(f) != twice(f) for f in forecasts):
        raise SystemExit("encode_forecast differs from json.dumps on these forecasts")
    once_us, twice_us = per_forecast_us(encode_forecast, forecasts), per_forecast_us(twice, forecasts)
    print(f"encoding, us a forecast: once {once_us:.1f}, twice (json.dumps) {twice_us:.1f}: "
          f"{twice_us / once_us:.2f}x")  # fmt: skip

    batches = [forecasts[i : i + args.batch] for i in range(0, len(forecasts), args.batch)]
    with tempfile.TemporaryDirectory() as d:
        server = RedisServer("redis", Path(d), port=free_port())
        server.start()
        try:
            sink = RedisSink.from_url(server.url)
            client = sink.redis
            figures = {}
            for name, write in (("sink (script)", sink.write),
                                ("plain commands", lambda b: plain_write(client, b, sink.history_maxlen))):  # fmt: skip
                client.flushall()
                client.config_resetstat()
                seconds = timed_batches(write, batches)
                stats = client.info("commandstats")
                figures[name] = seconds
                server_us = {k.removeprefix("cmdstat_"): v["usec_per_call"] for k, v in stats.items()
                             if k.removeprefix("cmdstat_") in ("evalsha", "hset", "xadd", "publish")}  # fmt: skip
                print(f"{name:15s}: {1e6 * seconds / len(forecasts):6.1f} us a forecast, "
                      f"{1e3 * seconds / len(batches):6.1f} ms a batch; server us a call: "
                      + ", ".join(f"{k} {v:.1f}" for k, v in sorted(server_us.items())))  # fmt: skip
            print(f"the script's write against the plain commands: "
                  f"{figures['sink (script)'] / figures['plain commands']:.2f}x")  # fmt: skip
        finally:
            server.stop()


if __name__ == "__main__":
    main()
