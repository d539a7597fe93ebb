"""The L2 heads left one capture out (model/evaluation/l2_depth_folds.py): each capture's depth and
volume served by the heads fitted on the others, never on its own windows, and the windows the heads do
not serve left as the model served them."""

import numpy as np
import pytest

pytest.importorskip("torch")

from model.evaluation.l2_depth_folds import L2Windows, l2_windows, left_one_out
from model.evaluation.outputs import ModelOutputs
from model.network import l2_depth, l2_volume
from model.network.orderflow import (
    L2_DEPTH_INPUTS,
    L2_DEPTH_TARGETS,
    L2_VOLUME_INPUTS,
    L2_VOLUME_TARGETS,
    N_BINS,
    QUANTILES,
    TARGETS,
)
from model.serving.forecaster import HORIZONS
from model.training.dataset import capture_names

CAPTURES = {-1: "real:binance-hftbacktest/a_20240808.gz", -2: "real:b.gz", -3: "real:c.gz"}


def lab(
    slope: dict[int, float], n: int = 600, seed: int = 0, volume_slope: dict[int, float] | None = None
) -> tuple[dict, dict, ModelOutputs]:
    """Windows of three captures and a simulated seed (7) whose depth is median + slope * x0 + noise, and
    whose volume is 0 in about half the windows, else 12 + volume_slope * (volume input 0) + noise; the
    heads serve every real window but the last of each capture."""
    rng = np.random.default_rng(seed)
    seeds = np.repeat([-1, -2, -3, 7], n)
    x = rng.normal(size=(len(seeds), L2_DEPTH_INPUTS))
    median = rng.uniform(3, 6, len(seeds))
    k = np.array([slope.get(int(s), 0.0) for s in seeds])
    y = median + k * x[:, 0] + rng.normal(scale=0.2, size=len(seeds))
    arrays = {"seed": seeds, "target_mask": np.ones((len(seeds), len(HORIZONS)), bool)}
    arrays |= {t: y if t in L2_DEPTH_TARGETS else np.ones(len(seeds)) for t in TARGETS}
    xv = rng.normal(size=(len(seeds), L2_VOLUME_INPUTS))
    kv = np.array([(volume_slope or {}).get(int(s), 1.0) for s in seeds])
    traded = rng.random(len(seeds)) < 1 / (1 + np.exp(-xv[:, 1]))
    volume = np.where(traded, 12 + kv * xv[:, 0] + rng.normal(scale=0.3, size=len(seeds)), 0.0)
    arrays |= {t: volume for t in L2_VOLUME_TARGETS}
    meta = {"sources": [{"seed": s, "name": name} for s, name in CAPTURES.items()] + [{"seed": 7, "name": "sim:7"}]}
    served = seeds < 0
    served[np.flatnonzero(np.diff(seeds, append=99))] = False  # each capture's last window
    quantiles = {t: np.full((len(seeds), 3), -1.0) for t in (*L2_DEPTH_TARGETS, *L2_VOLUME_TARGETS)}
    none = np.zeros(len(seeds))
    identity = np.zeros((len(TARGETS), N_BINS, len(QUANTILES), 2))
    identity[..., 1] = 1.0
    recal = {
        "head": np.ones((len(seeds), len(TARGETS), 3)),
        "band": np.ones((len(seeds), len(TARGETS), 3)),
        "recal_edges": np.full((len(TARGETS), 3), np.inf),
        "recal_coef": identity,
    }  # no maps: none refitted
    no_record = np.full((len(seeds), len(L2_VOLUME_TARGETS), 3), np.nan)  # the head alone is served
    outputs = ModelOutputs("m", "dir", none, none, none, quantiles, {}, {}, none, none.astype(int),
                           l2_depth={"inputs": x, "median": median, "served": served, "volume_inputs": xv,
                                     "volume_record": no_record} | recal)  # fmt: skip
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


def test_each_captures_volume_is_served_by_the_volume_head_fitted_on_the_others_only():
    arrays, meta, outputs = lab({-1: 1.0, -2: 1.0, -3: 1.0})
    names = capture_names(arrays, meta)
    k = outputs.l2_depth["served"]
    served, _ = left_one_out(outputs, arrays, meta, l2_windows(outputs, arrays, meta))
    fit_on = k & np.isin(names, ["b", "c"])
    y = np.stack([arrays[t][fit_on] for t in L2_VOLUME_TARGETS], 1)
    params = l2_volume.fit(outputs.l2_depth["volume_inputs"][fit_on], y, np.ones(y.shape, bool))
    a = k & (names == "a_20240808")
    expected = l2_volume.predict(outputs.l2_depth["volume_inputs"][a], *params, QUANTILES)
    for h, t in enumerate(L2_VOLUME_TARGETS):
        np.testing.assert_allclose(served[t][a], expected[:, h], atol=1e-9)
        assert (served[t][~k] == -1.0).all()  # not served: the model's

    # a capture's own volumes never reach its fold
    arrays2, meta2, outputs2 = lab({-1: 1.0, -2: 1.0, -3: 1.0}, volume_slope={-1: -4.0})
    served2, _ = left_one_out(outputs2, arrays2, meta2, l2_windows(outputs2, arrays2, meta2))
    np.testing.assert_allclose(served2["volume_h10"][a], served["volume_h10"][a], atol=1e-9)
    assert not np.allclose(served2["volume_h10"][k & (names == "b")], served["volume_h10"][k & (names == "b")])


def test_each_captures_volume_weighs_the_books_record_as_the_other_captures_chose():
    """On b and c the book's record is the outcome itself, on a it is 5 off: a's fold, chosen on b and
    c, serves a's record alone (weight 0 for the head), off as it is; a's own record never chose it."""
    arrays, meta, outputs = lab({-1: 1.0, -2: 1.0, -3: 1.0})
    names = capture_names(arrays, meta)
    y = np.stack([arrays[t] for t in L2_VOLUME_TARGETS], 1)
    record = np.repeat(y[..., None], 3, axis=2) + np.where(names == "a_20240808", 5.0, 0.0)[:, None, None]
    outputs.l2_depth["volume_record"] = record
    served, _ = left_one_out(outputs, arrays, meta, l2_windows(outputs, arrays, meta))
    a = outputs.l2_depth["served"] & (names == "a_20240808")
    for h, t in enumerate(L2_VOLUME_TARGETS):
        np.testing.assert_allclose(served[t][a], record[a, h])
    b = outputs.l2_depth["served"] & (names == "b")  # chosen on a (5 off) and c: not the record alone
    assert not np.allclose(served["volume_h10"][b], record[b, 0])


def test_windows_add_up_and_a_pool_of_one_capture_is_refused():
    arrays, meta, outputs = lab({-1: 1.0})
    windows = l2_windows(outputs, arrays, meta)
    both = windows["b"] + windows["c"]
    assert isinstance(both, L2Windows) and len(both.y) == 1198 and both.inputs.shape == (1198, L2_DEPTH_INPUTS)
    with pytest.raises(ValueError, match="leaves no capture"):
        left_one_out(outputs, arrays, meta, {"a_20240808": windows["a_20240808"]})


def test_each_captures_spread_takes_the_level_maps_fitted_on_the_others():
    """The level maps of L2 books (recalibration.fit_l2) refitted per fold like the depth head: a capture's
    spread never from its own windows; the others' windows move it."""

    def served_spread(a_spread: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        arrays, meta, outputs = lab({-1: 1.0, -2: 1.0, -3: 1.0})
        j = TARGETS.index("spread_h10")
        outputs.quantiles["spread_h10"] = np.full((len(arrays["seed"]), 3), -1.0)
        l2 = outputs.l2_depth
        l2["recal_edges"][j] = [1.5, 3.0, 6.0]
        l2["head"][:, j], l2["band"][:, j] = 4.0, 4.0  # one bin above the floor for every window
        names = capture_names(arrays, meta)
        arrays["spread_h10"] = np.where(names == "a_20240808", a_spread, np.where(names == "b", 6.0, 5.0))
        served, _ = left_one_out(outputs, arrays, meta, l2_windows(outputs, arrays, meta))
        return served["spread_h10"], names, l2["served"]

    low, names, k = served_spread(9.0)
    high, _, _ = served_spread(30.0)
    a, b = k & (names == "a_20240808"), k & (names == "b")
    assert np.array_equal(low[a], high[a]) and set(low[a][:, 1]) <= {5.0, 6.0}  # a's fold: b and c alone
    assert (high[b][:, 2] > low[b][:, 2]).all()  # b's fold holds a's windows: its upper quantile follows them
    assert (low[~k] == -1.0).all() and (low[k] >= 1.0).all()  # not served: the model's; served: on the support
