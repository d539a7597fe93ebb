"""`megatrading dashboard` in a real headless Chromium: a simulated ITCH feed with labeled manipulation
through a real worker on the embedded servers, the page loaded while forecasts stream in, and every
number it shows compared with what Redis holds (messages/s per venue from the workers' counts among
them); then one alert clicked and its window (events, book series, most surprising event, drivers)
compared with the key its worker wrote. The worker serves the shipped order-flow model on the CPU where
torch and the checkpoint are there (the model that names a most surprising event and drivers), else
the baseline. Screenshots go to build/screenshots/ (git-ignored artifacts).

Needs Debian's chromium (`make browser` installs it) and playwright (the dev extra); skips without them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from faults import REPO, WorkerProcess, publish, wait_for
from kafka import KafkaConsumer, TopicPartition

from model.sim.engine import SEC, SimConfig
from model.sim.run import simulate
from model.sim.writers import messages
from orderbook.clock import clock
from streams.config import SHIPPED_MODEL, Settings, torch_installed
from streams.infra import free_port
from streams.offsets import committed_offsets
from streams.pipeline import VenuePipeline
from streams.sink import ALERTS, BOOK, HIST, LATEST, META, WINDOW
from streams.topics import raw_topic

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's package
# no internet here: without these, Chromium's own background services flood refused connections
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
SHOTS = REPO / "build" / "screenshots"
DB = 11  # this test's Redis database
GROUP = "dashboard-browser"
ITCH_PRICE_DECIMALS = 4  # ITCH Price(4): 1/10000 dollar (orderbook/venues/itch.py)

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright: the dev extra (pip install -e .[dev])")
if not Path(CHROMIUM).exists():
    pytest.skip("no chromium: run `make browser` (as root: apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def infra(lab):
    """Servers of this module's own: its worker's message count must be the feed's, and tests elsewhere write
    to md.raw.itch too (in another order under make test's two workers)."""
    return lab


def dollars(units: int | Decimal) -> Decimal:
    return Decimal(units).scaleb(-ITCH_PRICE_DECIMALS)


def feed() -> list[tuple[bytes, bytes]]:
    """Six simulated minutes of two ITCH symbols with manipulation in them, so that alerts exist."""
    rates = {"quote_stuffing": 20.0, "spoofing": 20.0, "flash_crash": 10.0}  # per symbol per hour
    result = simulate(SimConfig(n_symbols=2, duration_ns=6 * 60 * SEC, seed=11, anomaly_rates=rates))
    return [(m.symbol.encode(), m.raw) for m in messages("itch", result)]


class Dashboard:
    """`megatrading dashboard` as a process of its own, as a user starts it."""

    def __init__(self, redis_url: str, bootstrap: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        argv = [sys.executable, "-m", "streams.cli", "dashboard", "--port", str(self.port), "--redis-url", redis_url,
                "--bootstrap", bootstrap, "--app-id", GROUP, "--venues", "itch"]  # fmt: skip
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=REPO)  # fmt: skip
        self.log = log
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "api/books", timeout=2).read()
                return
            except OSError:
                assert self.proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"the dashboard did not answer in 30 s:\n{log.read_text()}"
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)


def text(page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def js(value: float | int | None) -> str:
    """A JSON number as the page's JavaScript writes it (null for None; 1.0 as "1")."""
    if value is None:
        return "null"
    return str(int(value)) if float(value).is_integer() else repr(value)


def wait_text(page, selector: str, want: str, timeout_ms: int = 15_000) -> None:
    """Until the element shows `want` (the page refreshes on its own clock and the live feed's)."""
    page.wait_for_function("([s, w]) => document.querySelector(s)?.textContent.trim() === w", arg=[selector, want],
                           timeout=timeout_ms)  # fmt: skip


def test_the_page_shows_what_redis_holds_live_and_the_window_of_a_clicked_alert(infra, tmp_path):
    redis_url = f"redis://127.0.0.1:{infra.redis.port}/{DB}"
    r = redis.Redis(port=infra.redis.port, db=DB, decode_responses=True)
    r.flushdb()
    bootstrap, topic = infra.kafka.bootstrap, raw_topic("itch")
    records = feed()
    half = len(records) // 2
    publish(bootstrap, topic, records[:half], frames=64)
    # the shipped model names each alert's most surprising event and drivers; the baseline names neither
    model = str(SHIPPED_MODEL) if torch_installed() and (SHIPPED_MODEL / "model.safetensors").is_file() else "baseline"
    worker = WorkerProcess(bootstrap, redis_url, GROUP, ("itch",), tmp_path / "worker.log", "dash-w",
                           extra_env={"MT_MODEL": model, "MT_DEVICE": "cpu"})  # fmt: skip
    dashboard = None
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        wait_for(bootstrap, GROUP, [topic], 1.0, 60, [worker])
        dashboard = Dashboard(redis_url, bootstrap, tmp_path / "dashboard.log")
        with playwright_api.sync_playwright() as pw:
            # playwright gives the launch a fresh profile (a temporary user-data dir); HOME keeps
            # Chromium's other files in the test's folder
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                                         env={**os.environ, "HOME": str(tmp_path)})  # fmt: skip
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 1300})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(dashboard.url)
                page.wait_for_selector("#live.on")
                page.wait_for_function("document.querySelector('#now-window').textContent.trim() !== '-'")

                # the second half streams in while the page is open: it must arrive over the live feed
                publish(bootstrap, topic, records[half:], frames=64)
                wait_for(bootstrap, GROUP, [topic], 1.0, 60, [worker])
                page.wait_for_function("Number(document.querySelector('#live-count').textContent) > 0")

                # messages/s per venue: positive while the second half went through (the rate covers the
                # heartbeats of the last 10 s), and no more than the counts in Redis account for
                itch_rate = '#mps .mps[data-venue="itch"]'
                page.wait_for_function(f"Number(document.querySelector('{itch_rate}')?.dataset.rate) > 0")
                rate = float(page.get_attribute(itch_rate, "data-rate"))
                shown = int(page.get_attribute(itch_rate, "data-messages"))
                span = float(page.get_attribute("#mps-window", "data-span"))
                counted = int(r.hget(META, "messages:dash-w:itch"))  # the one worker's: the venue's count
                assert 0 < rate * span <= shown <= counted <= len(records)
                assert text(page, itch_rate).startswith("itch ")

                # the book of the newest alert, now that the worker has written everything: Redis holds still
                (newest_id, newest), *_ = r.xrevrange(ALERTS, count=1)
                venue, symbol = newest["venue"], newest["symbol"]
                page.select_option("#symbol", f"{venue}:{symbol}")
                latest = r.hgetall(LATEST.format(venue=venue, symbol=symbol))
                wait_text(page, "#now-window", latest["window"])
                bid, ask = int(latest["best_bid"]), int(latest["best_ask"])
                assert Decimal(text(page, "#now-bid")) == dollars(bid)
                assert Decimal(text(page, "#now-ask")) == dollars(ask)
                assert Decimal(text(page, "#now-mid")) == dollars(Decimal(bid + ask) / 2)
                assert Decimal(text(page, "#now-spread")) == dollars(ask - bid)
                assert abs(float(text(page, "#now-score")) - float(latest["anomaly_score"])) <= 5e-5
                assert "USD" in text(page, "#units")  # the page names the units it shows
                check_ladder(page, r, records, venue, symbol, latest)
                n_alerts = r.xlen(ALERTS)
                assert n_alerts > 0, "the simulated manipulation raised no alert"
                wait_text(page, "#alert-total", str(n_alerts))
                assert page.locator("#live-count").inner_text() != "0"

                # health: the worker's own mt:meta fields, and lag per partition equal to Kafka's
                meta = r.hgetall(META)
                row = page.locator('#workers tr[data-worker="dash-w"]')
                row.wait_for()
                cells = row.locator("td").all_inner_texts()
                assert cells[2] == meta["model:dash-w"] and cells[4] == meta["skipped:dash-w"]
                # every message of the feed counted once, in Redis (from the heartbeat after the last batch)
                # and on the page
                deadline = time.monotonic() + 10
                while int(r.hget(META, "messages:dash-w:itch")) < len(records) and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert int(r.hget(META, "messages:dash-w:itch")) == len(records)
                assert int(r.hget(META, "records:dash-w:itch")) > 0
                page.wait_for_function(
                    f"document.querySelector('{itch_rate}')?.dataset.messages === '{len(records)}'", timeout=15_000
                )
                # the worker's model device and batch latency, as its mt:meta fields say
                meta = r.hgetall(META)
                row.locator("td.latency").first.wait_for()
                cells = row.locator("td").all_inner_texts()
                assert cells[6] == meta["device:dash-w"] == "cpu"
                p50 = row.locator("td.latency").first.get_attribute("data-p50")
                assert p50 and float(p50) > 0 and cells[7].endswith(" ms")
                # dead letters: the table is mt:meta's dlq:dash-w:<venue>:<reason> counts (the one live worker's)
                dead = {tuple(k.split(":")[2:]): v for k, v in meta.items() if k.startswith("dlq:dash-w:")}
                want_rows = [[reason, dead[venue, reason]] for venue, reason in sorted(dead, key=lambda x: x[1])]
                page.wait_for_function(
                    """(want) => JSON.stringify([...document.querySelectorAll('#dlq tbody tr')]
                        .map(r => [...r.cells].map(c => c.textContent))) === JSON.stringify(want)""",
                    arg=want_rows or [["none"]],
                )
                assert text(page, '#resyncs .resyncs[data-venue="itch"]') == "itch n/a"  # ITCH books never resync
                # drift per book: a row per drift:<venue>:<symbol> field, its state and statistics as mt:meta holds them
                meta = r.hgetall(META)
                drift = {k.split(":", 1)[1]: json.loads(v) for k, v in meta.items() if k.startswith("drift:")}
                assert drift, "the worker published no drift"
                want_drift = sorted([book, d["state"], *(js(d[k]) for k in ("surprise_psi", "surprise_level",
                                     "feature_psi_max")), d["feature"] or "-", js(d["windows"])]
                                    for book, d in drift.items())  # fmt: skip
                page.wait_for_function(
                    """(want) => JSON.stringify([...document.querySelectorAll('#drift tbody tr')]
                        .map(r => [...r.cells].map(c => c.textContent)).sort()) === JSON.stringify(want)""",
                    arg=want_drift,
                )
                ends = expected_lag(bootstrap, topic)
                assert all(end == done for end, done in ends.values())  # the worker took everything
                want = sorted([t, str(p), str(end), str(done), str(end - done)] for (t, p), (end, done) in ends.items())
                # the page reads lag on its own clock: until its reading is the one after the last batch
                page.wait_for_function(
                    """(want) => JSON.stringify([...document.querySelectorAll('#lag tbody tr')]
                        .map(r => [...r.cells].map(c => c.textContent)).sort()) === JSON.stringify(want)""",
                    arg=want,
                )

                # one alert clicked: the detail is that alert's, with its book's forecasts around it
                item = page.locator(f'#alerts-list li[data-id="{newest_id}"]')
                item.click()
                page.locator("#alert-detail").wait_for()
                wait_text(page, "#detail-window", newest["window"])
                assert text(page, "#detail-reason") == newest["reason"] != ""
                assert text(page, "#detail-book") == f"{newest['venue']}:{newest['symbol']}"
                assert abs(float(text(page, "#detail-score")) - float(newest["anomaly_score"])) <= 5e-5
                around = [int(w) for w in page.get_attribute("#alert-detail", "data-windows").split(",")]
                book = HIST.format(venue=newest["venue"], symbol=newest["symbol"])
                hist = [int(f["window"]) for _, f in r.xrange(book)]
                at = hist.index(int(newest["window"]))
                assert around == hist[max(0, at - 40) : at + 41]
                # its window, as the worker wrote it: every event, the most surprising one marked, the drivers
                stored = json.loads(r.get(WINDOW.format(venue=venue, symbol=symbol, window=newest["window"])))
                page.locator("#window-detail").wait_for()
                page.wait_for_function(
                    "(n) => document.querySelectorAll('#window-events tbody tr').length === n",
                    arg=len(stored["events"]["rows"]),
                )
                rows = page.locator("#window-events tbody tr")
                ts, kind, side, price, size = stored["events"]["rows"][-1]
                assert rows.last.locator("td").all_inner_texts() == [
                    str(len(stored["events"]["rows"]) - 1), clock(ts), kind, side, f"{price:+d}" if price else "0",
                    f"{size:,}"]  # fmt: skip
                assert page.locator("#chart-window canvas").count() == 1  # the window's book series, drawn
                if model != "baseline":
                    i = stored["surprising"]["event"]
                    ts, kind, side, price, size = stored["events"]["rows"][i]
                    marked = page.locator("#window-events tbody tr.surprising")
                    assert marked.count() == 1 and marked.get_attribute("data-i") == str(i)
                    assert marked.locator("td").all_inner_texts()[1:4] == [clock(ts), kind, side]
                    assert f"#{i} {kind} {side}" in text(page, "#window-surprising")
                    assert stored["drivers"] and text(page, "#window-drivers").startswith(
                        "driven by " + stored["drivers"][0]["feature"]
                    )
                else:
                    assert stored["surprising"] is None and page.locator("#window-events tr.surprising").count() == 0
                page.locator("#alerts-panel").screenshot(path=str(SHOTS / "alert-detail.png"))
                page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)
                assert errors == []
            finally:
                browser.close()
    finally:
        if dashboard is not None:
            dashboard.stop()
        worker.stop()


def offline_levels(records: list[tuple[bytes, bytes]], symbol: str, window: int) -> tuple[int, int, list, list]:
    """The book of `symbol` rebuilt offline (the reference path, message by message) as it stood when its
    window builder had seen `window` tokens: (last ts, last seq, top bids, top asks) as the worker's
    `mt:book` holds them."""
    settings = Settings()
    pipe = VenuePipeline("itch", settings.window, native=False)
    got = None
    for offset, (key, value) in enumerate(records):
        pipe.process(key, value, 0, offset)
        b = pipe.builders.get(symbol)
        if b is not None and b._count == window:  # the last message at that count: the book's state there
            bids, asks = pipe.core.feed.books[symbol].top(settings.book_levels)
            got = (b._last_ts, b._last_seq, [list(x) for x in bids], [list(x) for x in asks])
        elif b is not None and b._count > window:
            break
    assert got is not None, f"{symbol}: no message left its builder at {window} tokens"
    return got


def check_ladder(page, r: redis.Redis, records: list[tuple[bytes, bytes]], venue: str, symbol: str,
                 latest: dict[str, str]) -> None:  # fmt: skip
    """The ladder: the rows of `mt:book` in the units of the best bid and ask above them (dollars, shares,
    the sizes summed from the best), the book's age; the levels themselves the book rebuilt offline at the
    same point; their best the shown best bid and ask where the levels are the shown forecast's book."""
    stored = json.loads(r.get(BOOK.format(venue=venue, symbol=symbol)))
    assert (stored["venue"], stored["symbol"]) == (venue, symbol)
    # not `seq`: an ITCH seq counts the messages of the worker's partition, this rebuild's counts all of them
    ts, _, bids, asks = offline_levels(records, symbol, stored["window"])
    assert (stored["ts"], stored["bids"], stored["asks"]) == (ts, bids, asks)
    assert 0 < len(bids) <= Settings().book_levels and 0 < len(asks) <= Settings().book_levels
    page.wait_for_function("(w) => document.querySelector('#ladder')?.dataset.window === w", arg=str(stored["window"]))
    for side, rows in (("bids", bids), ("asks", asks)):
        shown = [tr.locator("td").all_inner_texts() for tr in page.locator(f"#ladder-{side} tbody tr").all()]
        cum = [sum(size for _, size in rows[: i + 1]) for i in range(len(rows))]
        assert [(Decimal(p), int(s), int(c)) for p, s, c in shown] == [
            (dollars(price), size, total) for (price, size), total in zip(rows, cum, strict=True)
        ]
    best_bid, best_ask = page.locator("#ladder-bids tbody tr").first, page.locator("#ladder-asks tbody tr").first
    after = stored["window"] - int(latest["window"])
    if after == 0:  # the levels are the shown forecast's book
        assert best_bid.locator("td").first.inner_text() == text(page, "#now-bid")
        assert best_ask.locator("td").first.inner_text() == text(page, "#now-ask")
    else:  # the last batch took messages after the book's last window: the page says how many tokens
        assert after > 0
    more = f", {after} tokens after the forecast shown" if after else ""
    want = f"book at {clock(ts)} (window {stored['window']}, seq {stored['seq']}{more}); written "
    page.wait_for_function("(w) => document.querySelector('#ladder-state').textContent.startsWith(w)", arg=want)
    assert text(page, "#ladder-state").endswith(" s ago")
    page.locator("#now-panel").screenshot(path=str(SHOTS / "ladder.png"))
    # a book without levels published says so
    r.delete(BOOK.format(venue=venue, symbol=symbol))
    wait_text(page, "#ladder-state", f"no levels published ({BOOK.format(venue=venue, symbol=symbol)})")
    assert page.locator("#ladder-bids tbody tr").count() == 0
    r.set(BOOK.format(venue=venue, symbol=symbol), json.dumps(stored, separators=(",", ":")))


def expected_lag(bootstrap: str, topic: str) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) -> (end offset, the group's committed offset), read from Kafka directly."""
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = c.partitions_for_topic(topic)
        ends = c.end_offsets([TopicPartition(topic, p) for p in parts])
    finally:
        c.close()
    done = committed_offsets(bootstrap, GROUP, topic, parts)
    return {(topic, p): (ends[TopicPartition(topic, p)], done[p]) for p in parts}
