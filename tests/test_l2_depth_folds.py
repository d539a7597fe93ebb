"""The L2 depth head left one capture out (model/evaluation/l2_depth_folds.py): each capture's depth
served by the head fitted on the others, never on its own windows, and the windows the head does not
serve left as the model served them."""

import numpy as np
import pytest

pytest.importorskip("torch")

from model.evaluation.l2_depth_folds import L2Windows, l2_windows, left_one_out
from model.evaluation.outputs import ModelOutputs
from model.network import l2_depth
from model.network.orderflow import L2_DEPTH_INPUTS, L2_DEPTH_TARGETS
from model.serving.forecaster import HORIZONS
from model.training.dataset import capture_names

CAPTURES = {-1: "real:binance-hftbacktest/a_20240808.gz", -2: "real:b.gz", -3: "real:c.gz"}


def lab(slope: dict[int, float], n: int = 600, seed: int = 0) -> tuple[dict, dict, ModelOutputs]:
    """Windows of three captures and a simulated seed (7) whose depth is median + slope * x0 + noise;
    the head serves every real window but the last of each capture."""
    rng = np.random.default_rng(seed)
    seeds = np.repeat([-1, -2, -3, 7], n)
    x = rng.normal(size=(len(seeds), L2_DEPTH_INPUTS))
    median = rng.uniform(3, 6, len(seeds))
    k = np.array([slope.get(int(s), 0.0) for s in seeds])
    y = median + k * x[:, 0] + rng.normal(scale=0.2, size=len(seeds))
    arrays = {"seed": seeds, "target_mask": np.ones((len(seeds), len(HORIZONS)), bool)}
    arrays |= {t: y for t in L2_DEPTH_TARGETS}
    meta = {"sources": [{"seed": s, "name": name} for s, name in CAPTURES.items()] + [{"seed": 7, "name": "sim:7"}]}
    served = seeds < 0
    served[np.flatnonzero(np.diff(seeds, append=99))] = False  # each capture's last window
    quantiles = {t: np.full((len(seeds), 3), -1.0) for t in L2_DEPTH_TARGETS}
    none = np.zeros(len(seeds))
    outputs = ModelOutputs("m", "dir", none, none, none, quantiles, {}, {}, none, none.astype(int),
                           l2_depth={"inputs": x, "median": median, "served": served})  # fmt: skip
    return arrays, meta, outputs


def test_each_capture_is_served_by_the_head_fitted_on_the_others_only(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(l2_depth, "STEPS", 600)  # enough from zero weights for a slope of 1; six folds
    arrays, meta, outputs = lab({-1: 1.0, -2: 1.0, -3: 1.0})
    names = capture_names(arrays, meta)
    assert list(np.unique(names)) == ["", "a_20240808", "b", "c"]
    windows = l2_windows(outputs, arrays, meta)
    assert set(windows) == {"a_20240808", "b", "c"} and all(len(w.y) == 599 for w in windows.values())
    served, folds = left_one_out(outputs, arrays, meta, windows)
    assert folds == {"a_20240808": ["b", "c"], "b": ["a_20240808", "c"], "c": ["a_20240808", "b"]}
    q50 = served["depth_h10"][:, 1]
    k = outputs.l2_depth["served"]
    truth = outputs.l2_depth["median"] + outputs.l2_depth["inputs"][:, 0]
    assert np.abs(q50[k] - truth[k]).mean() < 0.05
    assert (served["depth_h100"][~k] == -1.0).all()  # not served by the head: the model's quantiles

    # a capture's own targets never reach its fold: change a's relation, and a's quantiles stay
    arrays2, meta2, outputs2 = lab({-1: -3.0, -2: 1.0, -3: 1.0})
    served2, _ = left_one_out(outputs2, arrays2, meta2, l2_windows(outputs2, arrays2, meta2))
    a = names == "a_20240808"
    np.testing.assert_allclose(served2["depth_h10"][a], served["depth_h10"][a], atol=1e-5)
    assert not np.allclose(served2["depth_h10"][names == "b"], served["depth_h10"][names == "b"], atol=1e-3)


def test_windows_add_up_and_a_pool_of_one_capture_is_refused():
    arrays, meta, outputs = lab({-1: 1.0})
    windows = l2_windows(outputs, arrays, meta)
    both = windows["b"] + windows["c"]
    assert isinstance(both, L2Windows) and len(both.y) == 1198 and both.inputs.shape == (1198, L2_DEPTH_INPUTS)
    with pytest.raises(ValueError, match="leaves no capture"):
        left_one_out(outputs, arrays, meta, {"a_20240808": windows["a_20240808"]})
