"""Mid-price direction left one capture out (model/evaluation/direction_folds.py): each capture scored by
the head and the baselines fitted on the other captures only, simulated windows left unscored, and the
summary of where the model is above all three baselines."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from model.evaluation.direction import DEEPLOB, OFI, QI, direction_rows
from model.evaluation.direction_folds import (
    capture_windows,
    folds_markdown,
    join,
    left_one_out,
    loo_name,
    wins,
)
from model.evaluation.l2_depth_folds import pool
from model.evaluation.outputs import ModelOutputs
from orderbook.features import FEATURE_NAMES

CAPTURES = {-1: "real:binance-hftbacktest/a_20240808.gz", -2: "real:b.gz", -3: "real:c.gz"}


def lab(sign: dict[int, float], n: int = 300, seed: int = 0) -> tuple[dict, dict, ModelOutputs]:
    """Windows of three captures and a simulated seed (7): the newest row's queue imbalance (and the
    model's window state) decide the next mid move, its side times `sign` of the capture (10% noise)."""
    rng = np.random.default_rng(seed)
    seeds = np.repeat([-1, -2, -3, 7], n)
    b, f, t = len(seeds), len(FEATURE_NAMES), 4
    signal = rng.uniform(-1, 1, b)
    feats = rng.normal(0, 0.1, (b, t, f))
    feats[:, -1, FEATURE_NAMES.index("queue_imbalance")] = signal
    feats[:, :, FEATURE_NAMES.index("ofi_1")] = signal[:, None] + rng.normal(0, 0.1, (b, t))
    side = np.array([sign.get(int(s), 1.0) for s in seeds])
    move = side * np.where(signal > 0.33, 1.0, np.where(signal < -0.33, -1.0, 0.0))
    flip = rng.random(b) < 0.1
    move[flip] = rng.choice([-1.0, 0.0, 1.0], flip.sum())
    arrays = {
        "features": feats.astype(np.float32),
        "row_mask": np.ones((b, t), bool),
        "target_mask": np.ones((b, 2), bool),
        "mid_h10": move.astype(np.float32),
        "mid_h100": move.astype(np.float32),
        "seed": seeds,
        "label": np.zeros(b, np.int64),
    }
    sources = [{"seed": s, "name": name} for s, name in CAPTURES.items()] + [{"seed": 7, "name": "sim:7"}]
    meta = {"feature_mean": [0.0] * f, "feature_std": [1.0] * f, "horizons": [10, 100], "sources": sources}
    state = np.stack([signal, rng.normal(size=b), rng.normal(size=b)], 1)
    none = np.zeros(b)
    outputs = ModelOutputs("model", "dir", none, none, none, {}, {}, {}, none, none.astype(int), direction_state=state)
    return arrays, meta, outputs


def folds(sign: dict[int, float], steps: int = 0) -> tuple[dict, dict, dict, dict]:
    arrays, meta, outputs = lab(sign)
    evaluated = capture_windows(outputs, arrays, meta, deeplob=steps > 0)
    probs, fold = left_one_out("model", arrays, meta, evaluated, evaluated, steps)
    return arrays, meta, probs, fold


def test_each_capture_is_scored_by_the_methods_fitted_on_the_other_captures_only():
    arrays, _, probs, fold = folds({})
    assert fold["a_20240808"]["fitted_on"] == ["b", "c"] and set(fold) == {"a_20240808", "b", "c"}
    assert set(fold["b"]["penalty"]) == {"10", "100"} and len(fold["b"]["log_loss"]["10"]) == 4
    names = {loo_name("model"), loo_name(QI), loo_name(OFI)}
    assert set(probs) == {10, 100} and set(probs[10]) == names
    real = arrays["seed"] < 0
    for p in probs[10].values():
        assert np.isfinite(p[real]).all() and np.isnan(p[~real]).all()  # the simulator's windows: no fold
        np.testing.assert_allclose(p[real].sum(1), 1.0, atol=1e-6)

    # a capture's own labels never reach its fold: turn a's side around, and a's forecasts stay
    _, _, turned, _ = folds({-1: -1.0})
    a, b = arrays["seed"] == -1, arrays["seed"] == -2
    for name in names:
        np.testing.assert_allclose(turned[10][name][a], probs[10][name][a], atol=1e-6)
        assert not np.allclose(turned[10][name][b], probs[10][name][b], atol=1e-3)


def test_the_table_scores_the_left_out_rows_on_real_windows_and_says_where_the_model_is_above_all():
    arrays, meta, probs, fold = folds({}, steps=30)
    assert loo_name(DEEPLOB) in probs[100]
    rows = direction_rows(arrays, meta, n_boot=5, deeplob_steps=0, extra=probs)
    head = [r for r in rows if r["method"] == loo_name("model") and r["horizon"] == 10]
    by_source = {r["source"]: r for r in head}
    b = "real:b.gz (-2)"
    assert by_source["all"]["n"] == 900 and by_source["sim:7 (7)"]["n"] == 0
    assert by_source[b]["n"] == 300 and by_source[b]["AUC"] > 0.85  # the planted side carries over
    verdicts = wins(rows, "model")
    sources = ("all", f"{CAPTURES[-1]} (-1)", b, f"{CAPTURES[-3]} (-3)")
    assert {(w["source"], w["horizon"]) for w in verdicts} == {(s, h) for s in sources for h in (10, 100)}
    for w in verdicts:  # "above all" is the model's metric above the best baseline's, in both metrics
        assert w["beats all"] == (w["macro F1"] > w["best baseline macro F1"] and w["AUC"] > w["best baseline AUC"])
        assert w["best baseline AUC by"] in (QI, OFI, DEEPLOB)
    text = folds_markdown(fold, rows, "model")
    assert "| a_20240808 | " in text and "b, c" in text and f"| {b} | 10 | 300 | " in text


def test_a_pool_of_the_capture_alone_is_refused_and_captures_in_two_files_are_one():
    arrays, meta, outputs = lab({})
    found = capture_windows(outputs, arrays, meta, deeplob=False)
    both = pool([found, {"a_20240808": found["a_20240808"]}], join)
    assert len(both["a_20240808"]["y10"]) == 600 and len(both["b"]["y10"]) == 300
    with pytest.raises(ValueError, match="leaves no capture"):
        left_one_out("model", arrays, meta, found, {"a_20240808": found["a_20240808"]}, 0)
    outputs.direction_state = None
    with pytest.raises(ValueError, match="direction_state"):
        capture_windows(outputs, arrays, meta)
