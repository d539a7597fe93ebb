"""Serving from CUDA graphs (model/serving/graphs.py): a batch padded to its bucket, chunked past the top
bucket, scores every window as an exact-size eager batch does. The padding and slicing run eagerly on CPU
(capture=False); the capture itself runs where there is a GPU (here when CUDA is present, and in
bench/gpu_parity.py on the device machine)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model.network.orderflow import ModelConfig, OrderFlowModel, to_batch  # noqa: E402
from model.serving.graphs import GraphedScore, bucket_of  # noqa: E402
from tests.test_network import SHAPES, arrays  # noqa: E402


def test_bucket_is_the_next_power_of_two_up_to_the_top():
    assert [bucket_of(n, 8) for n in (1, 2, 3, 4, 5, 8, 9)] == [1, 2, 4, 4, 8, 8, 8]


def _model(device: str = "cpu") -> OrderFlowModel:
    torch.manual_seed(0)
    return OrderFlowModel(ModelConfig.tiny(**SHAPES)).eval().to(device)


def _assert_same(got: dict, want: dict, atol: float) -> None:
    assert set(got) == set(want)
    for k in want:
        assert got[k].shape == want[k].shape, k
        torch.testing.assert_close(got[k].float(), want[k].float(), atol=atol, rtol=0, msg=k)


@pytest.mark.parametrize("n", [1, 3, 4, 5, 11])
def test_padded_and_chunked_batches_score_each_window_as_an_exact_batch(n):
    model = _model()
    graphed = GraphedScore(model, k=4, top=4, capture=False)
    graphed(to_batch(arrays(model.config, 4, seed=99)))  # leaves other windows in the padding rows
    batch = to_batch(arrays(model.config, n, seed=n))
    with torch.inference_mode():
        want = model.score(batch, k=4)
    _assert_same(graphed(batch), want, atol=1e-5)
    assert set(graphed.buckets) <= {1, 2, 4}


def test_a_failed_capture_is_logged_once_and_the_model_served_eagerly(caplog):
    """Here the capture fails for real (no GPU: the side stream cannot be made); on a GPU an op the
    graph refuses fails it the same way, as a RuntimeError out of the capture."""
    if torch.cuda.is_available():
        pytest.skip("the capture would succeed here")
    model = _model()
    graphed = GraphedScore(model, k=4, top=4, capture=True)
    for n in (3, 1):
        batch = to_batch(arrays(model.config, n, seed=n))
        with torch.inference_mode():
            want = model.score(batch, k=4)
        _assert_same(graphed(batch), want, atol=1e-5)
    assert not graphed.capture and graphed.capture_error
    failures = [r for r in caplog.records if "capture failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelname == "ERROR"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_replayed_graphs_give_the_eager_outputs_on_cuda():
    model = _model("cuda")
    graphed = GraphedScore(model, k=4, top=8)
    assert graphed.capture
    for n in (1, 3, 8, 13):
        batch = to_batch(arrays(model.config, n, seed=n), torch.device("cuda"))
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            want = model.score(batch, k=4)
        _assert_same(graphed(batch), want, atol=2e-2)
    assert all(b.graph is not None for b in graphed.buckets.values())
    np.testing.assert_array_equal(sorted(graphed.buckets), [1, 4, 8])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_the_forecaster_predicts_from_graphs_exactly_as_eager_on_cuda():
    """The worker's own path (OrderFlowForecaster.predict: model_inputs, to_batch, the graphs) on live
    windows cut by the worker's pipeline, against the same forecaster without graphs."""
    from pathlib import Path

    from model.serving.orderflow import OrderFlowForecaster
    from tests.test_direction_head import windows_of

    shipped = Path(__file__).resolve().parents[1] / "model" / "checkpoints" / "demo"
    windows = windows_of(48)
    graphed = OrderFlowForecaster(shipped, device="cuda")
    eager = OrderFlowForecaster(shipped, device="cuda", cuda_graphs=False)
    assert graphed.graphed is not None and eager.graphed is None
    for n in (1, 5, len(windows)):
        got, want = graphed.predict(windows[:n]), eager.predict(windows[:n])
        for name in want.dtype.names:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert sorted(graphed.graphed.buckets) == [1, 8, 32 if len(windows) <= 32 else 64]


def test_warm_up_makes_every_bucket_before_the_first_batch_and_changes_no_forecast():
    """The worker's warm-up (OrderFlowForecaster.warm_up, GraphedScore.capture_all): every bucket up to
    the top made from one window, so no live batch waits for a capture; forecasts as without it. Here
    the buckets run eagerly (capture=False); on a GPU each is a captured graph."""
    from model.serving.orderflow import OrderFlowForecaster
    from model.sim.engine import SEC, SimConfig
    from streams.pipeline import simulated_windows

    windows = simulated_windows(SimConfig(n_symbols=2, duration_ns=60 * SEC, seed=8))[:5]
    plain = OrderFlowForecaster("model/checkpoints/demo", device="cpu")
    want = plain.predict(windows)
    warmed = OrderFlowForecaster("model/checkpoints/demo", device="cpu")
    warmed.graphed = GraphedScore(warmed.model, warmed.k, top=8, capture=False)
    warmed.warm_up(windows[0])
    assert sorted(warmed.graphed.buckets) == [1, 2, 4, 8]
    got = warmed.predict(windows)
    for name in want.dtype.names:
        if want.dtype[name].kind == "f":
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=name)
    plain.warm_up(windows[0])  # on the CPU no graph to make; the explanation's backward pass runs
    assert plain.graphed is None and plain._drivers_of is None
