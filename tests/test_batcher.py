"""The micro-batcher: one model call per batch, in the model thread, alert explanations included."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
from test_baseline import calm_then_burst

from model.serving.baseline import BaselineForecaster
from model.serving.forecaster import Forecasts, Prediction, Predictions
from orderbook.windows import Window
from streams.batcher import MicroBatcher


class WatchedBaseline(BaselineForecaster):
    """The baseline, noting the thread each of its model calls ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: dict[str, set[str]] = {"predict": set(), "explain": set()}

    def predict(self, windows: Sequence[Window]) -> Predictions:
        self.threads["predict"].add(threading.current_thread().name)
        return super().predict(windows)

    def explain(self, window: Window, prediction: Prediction) -> str:
        self.threads["explain"].add(threading.current_thread().name)
        return super().explain(window, prediction)


def _serve(forecaster: BaselineForecaster, requests: list[list[Window]], explain_above: float) -> list[Forecasts]:
    async def main() -> list[Forecasts]:
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
    (got,) = _serve(f, [windows], explain_above=0.99)
    assert any(got.reasons) and not all(got.reasons)  # some alerts, explained, and windows below the threshold
    assert got.reasons == BaselineForecaster().forecast(windows, explain_above=0.99).reasons
    loop_thread = threading.current_thread().name  # asyncio.run's loop runs in this thread
    assert f.threads["explain"] and loop_thread not in f.threads["explain"]
    assert f.threads["explain"] == f.threads["predict"] and all(t.startswith("model") for t in f.threads["explain"])


def test_each_request_gets_its_own_share_of_the_batch():
    calm, burst = calm_then_burst()
    requests = [calm[-7:-3], burst, calm[-3:]]
    f = BaselineForecaster()
    got = _serve(f, requests, explain_above=0.99)
    for windows, forecasts in zip(requests, got, strict=True):
        alone = f.forecast(windows, explain_above=0.99)
        assert np.array_equal(forecasts.predictions, alone.predictions) and forecasts.reasons == alone.reasons


def test_an_empty_request_gets_empty_forecasts_of_the_models_dtype():
    f = BaselineForecaster()
    (got,) = _serve(f, [[]], explain_above=0.5)
    assert len(got) == 0 and got.predictions.dtype == f.dtype
