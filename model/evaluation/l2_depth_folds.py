"""The post-hoc parts of L2 books that read no learned input left one capture out: each real capture's
depth quantiles served by the L2 depth head (model/network/l2_depth.py), its traded volume by the L2
volume head (model/network/l2_volume.py) combined with the book's own record of realized volumes (its
weight chosen on those other captures, each by a head fitted on the rest of them, as train chooses it),
and its spread and mid by the recalibration's L2 level maps
(recalibration.fit_l2), all fitted on the L2 windows of every other capture of a pool of datasets, never
on its own: the issue's leave-one-out evaluation at no training cost.

Why it is honest without retraining anything: the depth head reads only the book's depth stats and the
depth memory (OrderFlowModel.l2_depth_inputs, from the feature normalization, no learned weight), the
volume head the newest row's trade statistics (l2_volume_inputs, likewise), and the level maps map the
frozen network's quantiles in the recalibration's bins, so a fold needs them refitted and nothing else.
What it measures is them as fitted on every instrument there is and served on a new one: the
checkpoint's own may have been fitted on the evaluated captures too (`train --stage l2-depth`, `--stage
l2-volume`, `--stage l2-recalibration` on several files; make checkpoint does so), and then these rows
are the honest ones for them. The folds take the windows the depth head serves (a book of price levels with a
two-sided row); the rare L2 window without one keeps its served quantiles.
Captures are told apart by file name: the same file in two datasets is one capture.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from model.evaluation.outputs import ModelOutputs, model_outputs, target_ok
from model.network import l2_depth, l2_volume, recalibration
from model.network.orderflow import L2_DEPTH_TARGETS, L2_VOLUME_TARGETS, QUANTILES, TARGETS, recalibration_supports
from model.training.dataset import capture_names

W = TypeVar("W")

LEFT_ONE_OUT = "L2 heads left one out"  # the evaluation's name of the variant: "<model> L2 heads left one out"


@dataclass
class L2Windows:
    """One capture's windows that the L2 depth head serves."""

    inputs: np.ndarray  # (N, F) OrderFlowModel.l2_depth_inputs
    median: np.ndarray  # (N,) the depth band's median
    y: np.ndarray  # (N, T) the depth targets (L2_DEPTH_TARGETS), NaN where unknown
    valid: np.ndarray  # (N, T) bool
    head: np.ndarray  # (N, 8, 3) the quantile head's, before the recalibration
    band: np.ndarray  # (N, 8, 3) the band the recalibration's bins are read off
    y_all: np.ndarray  # (N, 8) every target, NaN where unknown
    valid_all: np.ndarray  # (N, 8) bool
    volume_inputs: np.ndarray  # (N, F') OrderFlowModel.l2_volume_inputs
    volume_record: np.ndarray  # (N, H, 3) the book's record of realized volumes (NaN where unknown)

    def __add__(self, other: L2Windows) -> L2Windows:
        return L2Windows(
            *(np.concatenate([a, b]) for a, b in zip(vars(self).values(), vars(other).values(), strict=True))
        )


def l2_windows(outputs: ModelOutputs, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, L2Windows]:
    """Per real capture, the windows the model's L2 depth head serves, with what it reads."""
    if not outputs.l2_depth:
        raise ValueError(f"{outputs.directory}: the model has no anchor, so no L2 depth head to refit")
    names = capture_names(arrays, meta)
    y = np.stack([arrays[t] for t in TARGETS], 1)
    valid = np.stack([target_ok(arrays, t) for t in TARGETS], 1)
    depth = [TARGETS.index(t) for t in L2_DEPTH_TARGETS]
    l2 = outputs.l2_depth
    out = {}
    for name in sorted(set(names[l2["served"]]) - {""}):
        k = l2["served"] & (names == name)
        out[name] = L2Windows(l2["inputs"][k], l2["median"][k], y[k][:, depth], valid[k][:, depth], l2["head"][k],
                              l2["band"][k], y[k], valid[k], l2["volume_inputs"][k],
                              l2["volume_record"][k])  # fmt: skip
    return out


def score_real(
    directory: str | Path, path: str | Path, device: str = "cpu", batch: int = 256, direction_state: bool = False
) -> tuple[ModelOutputs, dict[str, np.ndarray], dict[str, Any]] | None:
    """The checkpoint `directory` run over the real windows of the dataset `path` (outputs, arrays, meta);
    None when it has none. What a leave-one-capture-out fold needs from a file of the pool."""
    from model.training.dataset import load, subset

    ds = load(Path(path))
    real = subset(ds, ds.arrays["seed"] < 0)
    if not len(real):
        return None
    o = model_outputs(directory, real.arrays, real.meta, "pool", device, batch, data_name=str(path),
                      direction_state=direction_state)  # fmt: skip
    return o, real.arrays, real.meta


def pool(found: Iterable[dict[str, W]], join: Callable[[W, W], W] = operator.add) -> dict[str, W]:
    """One pool from several files' windows per capture (l2_windows; direction_folds.capture_windows with
    its own `join`): a capture in two files is one capture, its windows joined in file order."""
    out: dict[str, W] = {}
    for windows in found:
        for name, w in windows.items():
            out[name] = join(out[name], w) if name in out else w
    return out


def left_one_out(
    outputs: ModelOutputs, arrays: dict[str, np.ndarray], meta: dict[str, Any], windows: dict[str, L2Windows]
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """(target -> (B, 3) the model's quantiles with, on each window its L2 heads serve, the depth and the
    volume of those heads and the spread and mid of the recalibration's L2 level maps, all fitted on
    `windows` (pool) less that window's capture; {capture: the captures its fold was fitted on}). Raises
    ValueError when a fold would be fitted on nothing."""
    names = capture_names(arrays, meta)
    l2 = outputs.l2_depth
    served = l2["served"] if l2 else np.zeros(len(names), bool)
    quantiles = {t: q.copy() for t, q in outputs.quantiles.items()}
    supports = recalibration_supports()
    mapped_targets = [(j, t) for j, t in enumerate(TARGETS) if supports[j] is not None and t in quantiles]
    folds = {}
    for name in sorted(set(names[served]) - {""}):
        others = [n for n in windows if n != name]
        if not others:
            raise ValueError(f"leaving {name} out leaves no capture to fit the L2 depth head on")
        fit = sum((windows[n] for n in others[1:]), windows[others[0]])
        weight, bias = l2_depth.fit(fit.inputs, fit.median, fit.y, fit.valid)
        k = served & (names == name)
        q = l2_depth.predict(l2["inputs"][k], l2["median"][k], weight, bias)
        for h, t in enumerate(L2_DEPTH_TARGETS):
            quantiles[t][k] = q[:, h]
        volume = [TARGETS.index(t) for t in L2_VOLUME_TARGETS]
        y_volume, valid_volume = np.nan_to_num(fit.y_all[:, volume]), fit.valid_all[:, volume]
        loc, scale, coef = l2_volume.fit(fit.volume_inputs, y_volume, valid_volume)
        q = l2_volume.predict(l2["volume_inputs"][k], loc, scale, coef, QUANTILES)
        # its weight against the book's record chosen as train's is, on the others alone (each by a head
        # fitted on the rest of them)
        groups = np.concatenate([np.full(len(windows[n].y), i) for i, n in enumerate(others)])
        oof = l2_volume.out_of_fold(fit.volume_inputs, y_volume, valid_volume, groups, QUANTILES)
        weight, _ = l2_volume.fit_record_weight(oof, fit.volume_record, y_volume, valid_volume, QUANTILES)
        q = l2_volume.with_record(q, l2["volume_record"][k], weight)
        for h, t in enumerate(L2_VOLUME_TARGETS):
            quantiles[t][k] = q[:, h]
        edges, y = l2["recal_edges"], np.nan_to_num(fit.y_all)
        coef, fitted = recalibration.fit_l2(fit.head, fit.band, y, fit.valid_all, QUANTILES, supports, edges)
        maps = (np.ones(int(k.sum()), bool), coef, fitted)
        mapped = recalibration.apply(l2["head"][k], l2["band"][k], edges, l2["recal_coef"], l2=maps)
        for j, t in mapped_targets:
            quantiles[t][k] = supports[j](mapped[:, j])
        folds[name] = others
    return quantiles, folds
