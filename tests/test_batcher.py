"""The micro-batcher: one model call per batch, in the model thread, alert explanations included;
the overload policies (`every` scores every window, `latest` only the newest waiting one per book)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import redis
from test_baseline import calm_then_burst

from model.serving.baseline import BaselineForecaster
from model.serving.forecaster import Prediction, Predictions
from orderbook.windows import Window
from streams.batcher import MicroBatcher, Scored
from streams.config import Settings
from streams.partition import Partition, Services
from streams.retry import Waits
from streams.sink import RedisSink


class WatchedBaseline(BaselineForecaster):
    """The baseline, noting the thread each of its model calls ran in; a model that blocks (the
    generative one) unless told otherwise."""

    def __init__(self, blocks: bool = True) -> None:
        super().__init__()
        self.blocks = blocks
        self.threads: dict[str, set[str]] = {"predict": set(), "explain": set()}

    def predict(self, windows: Sequence[Window]) -> Predictions:
        self.threads["predict"].add(threading.current_thread().name)
        return super().predict(windows)

    def explain(self, window: Window, prediction: Prediction) -> str:
        self.threads["explain"].add(threading.current_thread().name)
        return super().explain(window, prediction)


def _serve(forecaster: BaselineForecaster, requests: list[list[Window]], explain_above: float) -> list[Scored]:
    async def main() -> list[Scored]:
        batcher = MicroBatcher(forecaster, explain_above=explain_above, max_wait=0.05)
        try:
            return list(await asyncio.gather(*(batcher.submit(r) for r in requests)))
        finally:
            await batcher.stop()

    return asyncio.run(main())


def test_alert_reasons_are_computed_in_the_model_thread_not_on_the_event_loop():
    calm, burst = calm_then_burst()
    windows = calm[-10:] + burst
    f = WatchedBaseline()
    (scored,) = _serve(f, [windows], explain_above=0.99)
    got = scored.forecasts
    assert any(got.reasons) and not all(got.reasons)  # some alerts, explained, and windows below the threshold
    assert got.reasons == BaselineForecaster().forecast(windows, explain_above=0.99).reasons
    loop_thread = threading.current_thread().name  # asyncio.run's loop runs in this thread
    assert f.threads["explain"] and loop_thread not in f.threads["explain"]
    assert f.threads["explain"] == f.threads["predict"] and all(t.startswith("model") for t in f.threads["explain"])


def test_a_forecaster_cheaper_than_a_thread_hop_is_called_on_the_event_loop():
    calm, burst = calm_then_burst()
    f = WatchedBaseline(blocks=False)
    (scored,) = _serve(f, [calm[-10:] + burst], explain_above=0.99)
    assert any(scored.forecasts.reasons)
    assert f.threads["predict"] == f.threads["explain"] == {threading.current_thread().name}
    assert BaselineForecaster.blocks is False  # the worker's default forecaster is such a one


def test_each_request_gets_its_own_share_of_the_batch():
    calm, burst = calm_then_burst()
    requests = [calm[-7:-3], burst, calm[-3:]]
    f = BaselineForecaster()
    got = _serve(f, requests, explain_above=0.99)
    for windows, scored in zip(requests, got, strict=True):
        alone = f.forecast(windows, explain_above=0.99)
        assert scored.windows == windows and scored.skipped == 0
        assert np.array_equal(scored.forecasts.predictions, alone.predictions)
        assert scored.forecasts.reasons == alone.reasons


def test_an_empty_request_gets_empty_forecasts_of_the_models_dtype():
    f = BaselineForecaster()
    (got,) = _serve(f, [[]], explain_above=0.5)
    assert len(got.forecasts) == 0 and got.forecasts.predictions.dtype == f.dtype and got.skipped == 0


# ---- overload: `every` and `latest`


class SlowBaseline(BaselineForecaster):
    """The baseline, as slow as a model that falls behind: each call sleeps `delay` seconds first,
    and notes the windows it scored, call by call."""

    blocks = True

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.calls: list[list[Window]] = []

    def predict(self, windows: Sequence[Window]) -> Predictions:
        time.sleep(self.delay)
        self.calls.append(list(windows))
        return super().predict(windows)


def books(*names: str) -> dict[str, list[Window]]:
    """Real windows of the baseline tests' book, relabelled as the books `names`, 20 each, in order."""
    calm, _ = calm_then_burst()
    return {name: [dataclasses.replace(w, symbol=name) for w in calm[-20:]] for name in names}


def scored_names(forecaster: SlowBaseline, call: int, of: dict[str, list[Window]]) -> list[str]:
    """The model's call `call` as `<book><position>` names ("A3": book A's window 3)."""
    where = {id(w): f"{name}{i}" for name, ws in of.items() for i, w in enumerate(ws)}
    return [where[id(w)] for w in forecaster.calls[call]]


def test_latest_scores_only_the_newest_waiting_window_of_each_book_and_skips_the_others():
    w = books("A", "B", "C")
    f = SlowBaseline(delay=0.2)

    async def main() -> tuple[list[Scored], bool]:
        batcher = MicroBatcher(f, explain_above=0.99, max_wait=0.001, overload="latest")
        try:
            first = asyncio.create_task(batcher.submit([w["A"][0]]))
            await asyncio.sleep(0.05)  # the model is busy with A0: what follows waits
            r1 = asyncio.create_task(batcher.submit([w["A"][1], w["B"][1], w["A"][2]]))
            await asyncio.sleep(0)
            r2 = asyncio.create_task(batcher.submit([w["B"][2], w["C"][1]]))
            await asyncio.sleep(0)
            r3 = asyncio.create_task(batcher.submit([w["A"][3]]))
            await asyncio.sleep(0.01)
            superseded_early = r1.done() and not first.done()  # skipped: resolved without waiting for the model
            return list(await asyncio.gather(first, r1, r2, r3)), superseded_early
        finally:
            await batcher.stop()

    (first, r1, r2, r3), superseded_early = asyncio.run(main())
    assert scored_names(f, 0, w) == ["A0"]
    # A's place in the queue went to A2 (over A1), then to A3; B's to B2: one model call, a window per book
    assert scored_names(f, 1, w) == ["A3", "B2", "C1"] and len(f.calls) == 2
    assert r1.skipped == 3 and r1.windows == [] and len(r1.forecasts) == 0 and superseded_early
    assert r2.windows == [w["B"][2], w["C"][1]] and r2.index.tolist() == [0, 1]
    assert r3.windows == [w["A"][3]] and first.windows == [w["A"][0]]
    for got in (first, r2, r3):  # each scored window's own row, whatever batch it rode in
        alone = BaselineForecaster().forecast(got.windows, 0.99)
        assert np.array_equal(got.forecasts.predictions, alone.predictions) and got.forecasts.reasons == alone.reasons


def test_latest_skips_the_older_windows_of_a_book_within_one_request_too():
    w = books("A", "B")
    f = SlowBaseline(delay=0.0)
    (got,) = asyncio.run(_submit_all(f, "latest", [[w["A"][0], w["B"][0], w["A"][1], w["A"][2], w["B"][1]]]))
    assert got.index.tolist() == [3, 4] and got.windows == [w["A"][2], w["B"][1]] and got.skipped == 3


def test_every_scores_every_window_in_order():
    w = books("A", "B", "C")
    f = SlowBaseline(delay=0.05)
    requests = [[w["A"][1], w["B"][1], w["A"][2]], [w["B"][2], w["C"][1]], [w["A"][3]]]
    got = asyncio.run(_submit_all(f, "every", requests))
    for request, scored in zip(requests, got, strict=True):
        assert scored.windows == request and scored.skipped == 0
    assert [x for call in f.calls for x in call] == [x for r in requests for x in r]


async def _submit_all(f: SlowBaseline, overload: str, requests: list[list[Window]], **kw: float) -> list[Scored]:
    batcher = MicroBatcher(f, explain_above=0.99, max_wait=0.001, overload=overload, **kw)  # type: ignore[arg-type]
    try:
        return list(await asyncio.gather(*(batcher.submit(r) for r in requests)))
    finally:
        await batcher.stop()


@pytest.mark.parametrize("overload", ["every", "latest"])
def test_a_books_forecasts_keep_its_order_and_its_newest_window_is_always_scored(overload):
    """Four producers, each submitting its books' windows in small requests at random moments,
    without waiting for their results, against a model slower than they are."""
    w = books("A", "B", "C", "D", "E", "F", "G", "H")
    f = SlowBaseline(delay=0.01)
    rng = random.Random(3)

    async def produce(batcher: MicroBatcher, names: str) -> list[Scored]:
        pending = []
        for i in range(0, 20, 2):
            request = [w[n][j] for j in (i, i + 1) for n in names]
            pending.append(asyncio.create_task(batcher.submit(request)))
            await asyncio.sleep(rng.uniform(0, 0.01))
        return list(await asyncio.gather(*pending))

    async def main() -> list[Scored]:
        batcher = MicroBatcher(f, explain_above=0.99, max_batch=5, max_wait=0.001, overload=overload)
        try:
            done = await asyncio.gather(*(produce(batcher, names) for names in ("AB", "CD", "EF", "GH")))
            assert batcher.stats.windows + batcher.stats.skipped == 8 * 20
            return [s for results in done for s in results]
        finally:
            await batcher.stop()

    results = asyncio.run(main())
    scored = [x for call in f.calls for x in call]
    assert sum(len(s.windows) for s in results) == len(scored)
    position = {id(x): i for ws in w.values() for i, x in enumerate(ws)}
    for name in w:
        order = [position[id(x)] for x in scored if x.symbol == name]
        assert order == sorted(set(order)) and order[-1] == 19  # in order, once each, the newest among them
        if overload == "every":
            assert order == list(range(20))
    skipped = sum(s.skipped for s in results)
    assert (skipped == 0) if overload == "every" else (skipped > 0)  # the model is slower than the producers


@pytest.mark.parametrize("overload", ["every", "latest"])
def test_at_most_max_queue_requests_wait_then_submit_waits(overload):
    w = books("A", "B", "C", "D", "E")
    f = SlowBaseline(delay=0.2)

    async def main() -> None:
        batcher = MicroBatcher(f, explain_above=0.99, max_wait=0.001, max_queue=2, overload=overload)
        try:
            first = asyncio.create_task(batcher.submit(w["A"][:2]))
            await asyncio.sleep(0.05)  # taken by the model: no longer waiting
            rest = [asyncio.create_task(batcher.submit(w[n][:2])) for n in "BCDE"]
            await asyncio.sleep(0.05)
            # B's and C's windows (`latest`: the newest of each book); D and E wait in submit, outside the queue
            assert batcher.waiting == (2 if overload == "latest" else 4)
            assert not any(t.done() for t in rest)
            await asyncio.gather(first, *rest)
            assert batcher.waiting == 0
        finally:
            await batcher.stop()

    asyncio.run(main())
    latest = overload == "latest"  # one window per book: the second of each book's pair supersedes the first
    assert [len(c) for c in f.calls] == ([1, 2, 2] if latest else [2, 4, 4])


def test_an_unknown_overload_policy_is_refused():
    with pytest.raises(ValueError, match="'newest'"):
        MicroBatcher(BaselineForecaster(), explain_above=0.99, overload="newest")


# ---- what a partition publishes


class RecordingSink(RedisSink):
    """A sink that keeps what it is asked to write instead of sending it (no server needed)."""

    def __init__(self) -> None:
        super().__init__(redis.Redis())  # not connected: no command is ever sent
        self.batches: list[list[dict]] = []

    async def write_async(
        self,
        forecasts: Iterable[Mapping[str, object]],
        windows: Sequence[str | None] | None = None,
        books: Sequence[tuple[str, str, int, str]] = (),
    ) -> int:
        self.batches.append([dict(f) for f in forecasts])
        return len(self.batches[-1])


def test_a_partition_publishes_forecasts_for_the_scored_windows_only():
    w = books("A", "B")
    windows = [w["A"][0], w["B"][0], w["A"][1], w["A"][2]]
    f = BaselineForecaster()

    async def main() -> tuple[list[dict], RecordingSink]:
        sink = RecordingSink()
        services = Services(
            settings=Settings(model="baseline", overload="latest"), forecaster=f,
            batcher=MicroBatcher(f, explain_above=0.99, max_wait=0.001, overload="latest"), sink=sink,
            waits=Waits(), io=ThreadPoolExecutor(1), state_io=ThreadPoolExecutor(1), news_log=deque(),
        )  # fmt: skip
        try:
            return await Partition(services, "md.raw.t", 0, "binance")._forecasts(windows), sink
        finally:
            await services.batcher.stop()
            services.io.shutdown()
            services.state_io.shutdown()

    published, sink = asyncio.run(main())
    assert sink.batches == [published]
    assert [(r["symbol"], r["window"]) for r in published] == [("B", w["B"][0].n_seen), ("A", w["A"][2].n_seen)]


def test_the_first_batch_warms_the_model_up_once_in_the_model_thread_before_scoring():
    """Forecaster.warm_up (on a GPU: every CUDA-graph bucket and an explanation's backward pass) runs on
    the first batch's first window, in the model thread, before that batch is scored, and never again."""
    calm, _ = calm_then_burst()

    class Warmed(WatchedBaseline):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[str, object, str]] = []

        def warm_up(self, example: Window) -> None:
            self.calls.append(("warm_up", example, threading.current_thread().name))

        def predict(self, windows: Sequence[Window]) -> Predictions:
            self.calls.append(("predict", windows[0], threading.current_thread().name))
            return super().predict(windows)

    forecaster = Warmed()

    async def main() -> None:
        batcher = MicroBatcher(forecaster, explain_above=2.0, max_wait=0.01)
        try:
            await batcher.submit(calm[:3])
            await batcher.submit(calm[3:6])
        finally:
            await batcher.stop()

    asyncio.run(main())
    kinds = [c[0] for c in forecaster.calls]
    assert kinds[0] == "warm_up" and kinds.count("warm_up") == 1 and kinds.count("predict") == 2
    assert forecaster.calls[0][1] is calm[0] and forecaster.calls[0][2].startswith("model")
