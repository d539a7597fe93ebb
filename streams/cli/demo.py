"""`megatrading demo`: the main job end to end on the embedded default.

`run_streaming` (the default): a real Kafka broker and Redis started on free loopback ports,
a simulated ITCH 5.0 feed with news and labeled manipulation published to `md.raw.itch` and
`md.news`, a `megatrading worker` process consuming it, and the forecasts printed as they
land in Redis; then everything is shut down. `run_offline` (`--offline`): the book round
trip without servers: a generated ITCH day decoded and rebuilt order by order, written out
as LOBSTER rows and rebuilt again, the two books compared at every row. Every figure either
prints is computed in the run.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from model.sim.itch_day import itch_day_stream
from orderbook.clock import clock
from orderbook.errors import FeedError
from orderbook.venues.itch import ItchFeed, frame
from orderbook.venues.lobster import LobsterFeed, LobsterWriter, orderbook_row
from streams.client import ForecastClient


def run_offline(seed: int = 7, messages: int = 50_000, levels: int = 5, out: Path | None = None) -> int:
    out = out or Path(tempfile.mkdtemp(prefix="megatrading-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    stream = itch_day_stream(seed, messages)
    day = out / stream.filename()
    day.write_bytes(frame(stream.messages))
    print(f"generated {len(stream.messages):,} ITCH 5.0 messages for {', '.join(stream.symbols)} -> {day}")

    feed = ItchFeed()
    writers = {s: LobsterWriter(levels, s) for s in stream.symbols}
    lobster_rows: dict[str, list[tuple[bytes, list[int]]]] = {s: [] for s in stream.symbols}
    errors: Counter[str] = Counter()
    t0 = time.perf_counter()
    for rec in tqdm(ItchFeed.read_capture(day), total=len(stream.messages), unit="msg", desc="rebuild"):
        try:
            events = feed.on_message(rec.raw)
        except FeedError as err:
            errors[err.reason] += 1
            continue
        for e in events:
            if e.symbol in writers:
                lobster_rows[e.symbol].extend(writers[e.symbol].rows(e))
    elapsed = time.perf_counter() - t0
    print(
        f"rebuilt {len(stream.messages):,} messages in {elapsed:.2f} s "
        f"({len(stream.messages) / elapsed:,.0f} msg/s, pure Python)"
    )
    print(
        "rejected (typed errors, the generator injects unknown order references on purpose): "
        + (", ".join(f"{n} {r}" for r, n in errors.most_common()) or "none")
    )

    print(f"\n{'symbol':8} {'orders':>7} {'bid':>10} {'ask':>10} {'spread':>7} {'depth5 bid':>11} {'depth5 ask':>11}")
    for sym in stream.symbols:
        b = feed.books[sym]
        bid, ask = b.best_bid(), b.best_ask()
        print(
            f"{sym:8} {len(b.orders):>7} {_px(bid):>10} {_px(ask):>10} {_px((b.spread() or 0, 0)):>7} "
            f"{sum(s for _, s in b.top(5)[0]):>11} {sum(s for _, s in b.top(5)[1]):>11}"
        )

    # LOBSTER round trip: our rows rebuilt by the LOBSTER decoder must give the same book every row
    mismatches = 0
    for sym, rows in lobster_rows.items():
        lob = LobsterFeed(symbol=sym, check_crossed=False)
        for raw, book_row in rows:
            lob.on_message(raw)
            mismatches += orderbook_row(lob.books[sym], levels) != book_row
    total = sum(len(r) for r in lobster_rows.values())
    print(f"\nLOBSTER round trip: {total:,} message rows re-decoded, {mismatches} rows differ from the ITCH book")
    return 1 if mismatches else 0


def _px(level: tuple[int, int] | None) -> str:
    return "-" if level is None else f"{level[0] / 10_000:.2f}"


def run_streaming(
    seed: int = 7,
    minutes: float = 20.0,
    symbols: int = 3,
    timeout: float = 90.0,
    model: str | None = None,
    config: Path | None = None,
    dashboard_port: int | None = None,
    linger: float = 0.0,
) -> int:
    """`model`: the worker's (streams.config.model_spec; default: default_model()); `config`: a
    settings file the worker reads too (the demo's own servers and names override its addresses);
    `dashboard_port`: `megatrading dashboard` on that loopback port while the demo runs (None: none);
    `linger`: seconds the servers, the worker and the dashboard stay up once the feed is processed."""
    import os
    import sys

    from model.sim.engine import SimConfig
    from model.sim.run import simulate
    from streams.cli.forecasts import _latest_rows, table
    from streams.config import default_model, model_spec
    from streams.infra import Infra
    from streams.offsets import committed_offsets
    from streams.publish import publish_simulation
    from streams.topics import raw_topic

    model = model_spec(model) if model else default_model()

    state = Path(tempfile.mkdtemp(prefix="megatrading-demo-"))
    infra = Infra.on_free_ports(state)
    print(f"starting Kafka (KRaft) and Redis on loopback, state in {state}")
    infra.up()
    worker = dashboard = None
    try:
        cfg = SimConfig(n_symbols=symbols, duration_ns=int(minutes * 60e9), seed=seed, news_rate=3.0,
                        anomaly_rates={"quote_stuffing": 2.0, "spoofing": 2.0, "flash_crash": 1.0})  # fmt: skip
        result = simulate(cfg)
        counts = publish_simulation(result, "itch", infra.kafka.bootstrap, speed=None)
        sent = ", ".join(f"{n} to {t}" for t, n in counts.items())
        print(f"simulated {minutes:g} min of {symbols} symbols: {sent}; {len(result.labels)} labeled anomalies")
        env = dict(os.environ, MT_KAFKA_BOOTSTRAP=infra.kafka.bootstrap, MT_REDIS_URL=infra.redis.url,
                   MT_VENUES="itch", MT_APP_ID="demo", MT_WORKER_ID="demo-worker", MT_MODEL=model)  # fmt: skip
        if config is not None:
            env["MT_CONFIG"] = str(config)
        log_path = state / "worker.log"
        with open(log_path, "wb") as log:
            worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        print(f"worker started with model {model} (log: {log_path}); forecasts as they land in Redis:")
        if dashboard_port is not None:
            dashboard = _start_dashboard(env, dashboard_port, state / "dashboard.log")
        topic = raw_topic("itch")
        total = counts[topic].records if topic in counts else 0  # committed offsets count records, not messages
        client = ForecastClient(infra.redis.url)
        t0 = time.monotonic()
        done = 0
        while time.monotonic() - t0 < timeout:
            time.sleep(3.0)
            if worker.poll() is not None:
                print(f"the worker exited with {worker.returncode}; see {log_path}")
                return 1
            parts = set(range(8))
            done = sum(committed_offsets(infra.kafka.bootstrap, "demo", topic, parts).values())
            print(f"\n{time.monotonic() - t0:5.1f} s: {done:,} of {total:,} records committed")
            table(_latest_rows(client, "itch", None), sys.stdout)
            if done >= total:
                break
        alerts = client.alerts(max(client.alert_count(), 1))
        print("\n" + alert_summary(alerts, result.labels))
        for a in alerts[-5:]:
            print(f"  {clock(int(a['event_ts']))} {a['symbol']} score {a['anomaly_score']:.4f}: {a['reason']}")
        if linger > 0:
            where = f" (dashboard: http://127.0.0.1:{dashboard_port}/)" if dashboard is not None else ""
            print(f"\nthe servers and the worker stay up {linger:g} s more{where}; Ctrl-C ends the demo", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                time.sleep(linger)
        return 0 if done >= total else 1
    finally:
        for proc in (dashboard, worker):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, 15)
                proc.wait(30)
        infra.down()
        print("worker and servers stopped")


def _start_dashboard(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes] | None:
    """`megatrading dashboard` on the demo's Redis and Kafka, its URL printed once it answers (None,
    said so, when it does not: a port already taken)."""
    import sys
    import urllib.request

    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "dashboard", "--port", str(port)], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(url + "api/health", timeout=1).close()
            print(f"dashboard: {url} (live while the demo runs)", flush=True)
            return proc
        except OSError:
            time.sleep(0.2)
    print(f"no dashboard: it did not answer on {url} (log: {log_path}); the demo goes on without it")
    if proc.poll() is None:
        proc.terminate()
    return None


def alert_summary(alerts: list[dict], labels: list) -> str:
    """How many alerts, and how many of their windows end inside a labeled anomaly of their symbol (the
    simulator's labels, `model.sim.anomalies.Label`): the figure that says whether they are noise. A
    window that began inside one and ends after it (an aftermath) counts as outside."""
    inside = sum(
        any(lab.symbol == a["symbol"] and lab.start_ns <= int(a["event_ts"]) <= lab.end_ns for lab in labels)
        for a in alerts
    )
    return (f"{len(alerts)} alerts in mt:alerts (anomaly score >= the alert threshold): {inside} of their "
            f"windows end inside the {len(labels)} labeled anomalies, {len(alerts) - inside} outside; the last "
            "ones:")  # fmt: skip
