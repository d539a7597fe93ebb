"""Mid-price direction left one capture out: the model's direction head and the three baselines, each
fitted on the real windows of every capture of a pool of datasets but the one scored (issue 13's
evaluation: whole instruments held out), as model/evaluation/l2_depth_folds.py does for depth.

Why the head can be refitted per fold without retraining anything: it reads the frozen network's window
state (`direction_input`), so a fold needs the head alone. The network itself stays what the checkpoint
is: trained on its training captures and the simulator, so a capture of its training file is held out
from the head and the baselines only (direction.md's section says so; the model card names the
training sources).

Per fold, on the same windows (each weighing the same, no simulated ones: the simulator's direction does
not carry over to a one-tick crypto book, docs/design.md):
- the head, its L2 penalty chosen inside the fold by `direction.choose_penalty` (each of the fold's
  captures left out in turn, the lowest log loss on the windows left out), so the scored capture plays
  no part in it;
- the queue-imbalance and multi-level OFI regressions and the DeepLOB-style net of
  model/evaluation/direction.py, fitted as there.

Captures are told apart by file name (model.training.dataset.capture_names): the same file in two datasets is
one capture.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from model.evaluation.direction import (
    DEEPLOB,
    HORIZONS,
    OFI,
    QI,
    _valid,
    deeplob_fit_predict,
    deeplob_inputs,
    fit_predict,
    window_inputs,
)
from model.evaluation.outputs import ModelOutputs
from model.network.direction import direction_labels, fit_captures, probabilities
from model.training.dataset import capture_names

LEFT_ONE_OUT = "left one out"  # a method's name in the table: "<method> left one out"
STATE = "state"  # the network's window state, what the head reads
MESSAGE = "message"  # the dataset's: where a window's horizons count from (a set before 2026-12-04 lacks it)
METRICS = ("macro F1", "AUC")  # the must-show: the model above every baseline in both

Windows = dict[str, np.ndarray]  # input name (STATE, QI, OFI, DEEPLOB) or f"y{h}" / f"ok{h}" -> (N, ...)


def loo_name(method: str) -> str:
    return f"{method} {LEFT_ONE_OUT}"


def capture_windows(
    outputs: ModelOutputs, arrays: dict[str, np.ndarray], meta: dict[str, Any], deeplob: bool = True
) -> dict[str, Windows]:
    """Per real capture, what every method reads and the labels: STATE (the model run with
    `direction_state`), the baselines' inputs (DEEPLOB's where `deeplob`), MESSAGE where the set has it,
    and per horizon `y{h}` (direction labels) and `ok{h}` (whether the move is known)."""
    if outputs.direction_state is None:
        raise ValueError(f"{outputs.directory}: run the model with direction_state to refit its direction head")
    names = capture_names(arrays, meta)
    x = window_inputs(arrays, meta) | {STATE: outputs.direction_state}
    if MESSAGE in arrays:
        x[MESSAGE] = arrays[MESSAGE]
    if deeplob:
        x[DEEPLOB] = deeplob_inputs(arrays, meta)
    x |= labels(arrays, meta)
    return {name: {k: v[names == name] for k, v in x.items()} for name in sorted(set(names) - {""})}


def labels(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Windows:
    """Per horizon of HORIZONS the set has, `y{h}` (direction labels) and `ok{h}` (whether the move is known)."""
    horizons = meta.get("horizons") or HORIZONS
    out: Windows = {}
    for h in HORIZONS:
        if h in horizons:
            out[f"ok{h}"] = _valid(arrays, h, horizons)
            out[f"y{h}"] = direction_labels(np.nan_to_num(arrays[f"mid_h{h}"]))
    return out


def join(a: Windows, b: Windows) -> Windows:
    """One capture's windows of two files, concatenated (l2_depth_folds.pool's `join`)."""
    return {k: np.concatenate([a[k], v]) for k, v in b.items()}


def fold_probs(
    fit: list[Windows], scored: Windows, h: int, deeplob_steps: int
) -> tuple[dict[str, np.ndarray], float, dict[str, float]]:
    """(method -> (n, 3) probabilities on `scored`'s windows, the head's chosen penalty, the log loss per
    penalty): every method fitted on the windows of `fit` (one Windows per capture) known at horizon h."""
    ok = [w[f"ok{h}"] for w in fit]
    y = np.concatenate([w[f"y{h}"][k] for w, k in zip(fit, ok, strict=True)])

    def stacked(key: str) -> np.ndarray:
        return np.concatenate([w[key][k] for w, k in zip(fit, ok, strict=True)])

    groups = np.concatenate([np.full(int(k.sum()), i) for i, k in enumerate(ok)])
    w, b, report = fit_captures(stacked(STATE), y, groups)
    penalty, losses = report["penalty"], report["held_out_log_loss"]
    probs = {STATE: probabilities(scored[STATE], w, b)}
    probs |= {m: fit_predict(stacked(m), y, scored[m]) for m in (QI, OFI)}
    if deeplob_steps and DEEPLOB in scored:
        probs[DEEPLOB] = deeplob_fit_predict(stacked(DEEPLOB), y, scored[DEEPLOB], deeplob_steps)
    return probs, penalty, losses


def left_one_out(
    model: str,
    arrays: dict[str, np.ndarray],
    meta: dict[str, Any],
    evaluated: dict[str, Windows],
    pool: dict[str, Windows],
    deeplob_steps: int,
) -> tuple[dict[int, dict[str, np.ndarray]], dict[str, dict[str, Any]]]:
    """({horizon: {method name: (B, 3) probabilities}}, {capture: its fold}) for the evaluated windows
    (`arrays`, `evaluated`: their capture_windows): each real capture's windows scored by the methods
    fitted on every other capture of `pool`; NaN rows elsewhere (simulated windows). Methods: `model`'s
    head and the baselines, each named loo_name(...). A fold records the captures it was fitted on and,
    per horizon, the head's penalty and the log loss per penalty that chose it. Raises ValueError when a
    fold would be fitted on nothing."""
    names = capture_names(arrays, meta)
    horizons = [h for h in HORIZONS if f"ok{h}" in next(iter(evaluated.values()), {})]
    methods = {STATE: loo_name(model), QI: loo_name(QI), OFI: loo_name(OFI)}
    if deeplob_steps:
        methods[DEEPLOB] = loo_name(DEEPLOB)
    out = {h: {name: np.full((len(names), 3), np.nan) for name in methods.values()} for h in horizons}
    folds: dict[str, dict[str, Any]] = {}
    for capture, scored in evaluated.items():
        others = [n for n in pool if n != capture]
        if not others:
            raise ValueError(f"leaving {capture} out leaves no capture to fit the direction methods on")
        rows = np.flatnonzero(names == capture)
        folds[capture] = {"fitted_on": others, "penalty": {}, "log_loss": {}}
        for h in horizons:
            probs, penalty, losses = fold_probs([pool[n] for n in others], scored, h, deeplob_steps)
            for key, p in probs.items():
                out[h][methods[key]][rows] = p
            folds[capture]["penalty"][str(h)] = penalty
            folds[capture]["log_loss"][str(h)] = losses
    return out, folds


def wins(rows: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    """Per source and horizon where `model`'s left-one-out row is present: its macro F1 and AUC, the best
    left-one-out baseline's of each, and whether the model's is the higher of both (the issue's must-show:
    above all three baselines on each held-out instrument, at both horizons)."""
    head = loo_name(model)
    baselines = {loo_name(m) for m in (QI, OFI, DEEPLOB)}
    out = []
    for source, h in dict.fromkeys((r["source"], r["horizon"]) for r in rows if r["method"] == head):
        mine = next(r for r in rows if (r["source"], r["horizon"], r["method"]) == (source, h, head))
        rivals = [r for r in rows if (r["source"], r["horizon"]) == (source, h) and r["method"] in baselines]
        if not rivals or not mine["n"]:
            continue
        row: dict[str, Any] = {"source": source, "horizon": h, "n": mine["n"]}
        for metric in METRICS:
            best = max(rivals, key=lambda r: -np.inf if np.isnan(r[metric]) else r[metric])
            row |= {metric: mine[metric], f"best baseline {metric}": best[metric]}
            row[f"best baseline {metric} by"] = best["method"].removesuffix(f" {LEFT_ONE_OUT}")
            # the paired difference to that baseline (direction_rows' `compare`), where it was computed
            row[f"{metric} difference"] = mine.get(f"{metric} - {best['method']}", [math.nan] * 3)
        row["beats all"] = all(row[m] > row[f"best baseline {m}"] for m in METRICS)
        out.append(row)
    return out


def loo_rivals(model: str) -> dict[str, list[str]]:
    """direction_rows' `compare` for the left-one-out rows: the model's against each baseline's."""
    return {loo_name(model): [loo_name(m) for m in (QI, OFI, DEEPLOB)]}


def _cell(w: dict[str, Any], metric: str) -> str:
    """ "model / best baseline (its name), difference [lo, hi]" of a wins() row."""
    d = w[f"{metric} difference"]
    diff = "" if math.isnan(d[1]) else f", {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]"
    return f"{w[metric]:.3f} / {w[f'best baseline {metric}']:.3f} ({w[f'best baseline {metric} by']}){diff}"


def folds_markdown(folds: dict[str, dict[str, Any]], rows: list[dict[str, Any]], model: str) -> str:
    """direction.md's section on the left-one-out rows: each fold's captures and penalties, then wins()."""
    lines = [
        "",
        "## Left one capture out",
        "",
        f"Rows `... {LEFT_ONE_OUT}`: each real capture scored by the method fitted on the real windows of every "
        "other capture of the pool (each window weighing the same), never on its own; the head's L2 penalty "
        "chosen inside the fold (each of its captures left out in turn). The network is the checkpoint's: "
        "a capture of its training file is held out from the head and the baselines only.",
        "",
        "| capture | L2 chosen (per horizon) | fitted on |",
        "|---|---|---|",
    ]
    for capture, fold in folds.items():
        penalty = " / ".join(f"{v:g} ({h})" for h, v in fold["penalty"].items())
        lines.append(f"| {capture} | {penalty} | {', '.join(fold['fitted_on'])} |")
    lines += [
        "",
        f"`{loo_name(model)}` beside the best left-one-out baseline of each metric, then the model's difference "
        "to it with its 95% interval over windows resampled together for both (paired: what both find hard "
        "cancels out, so the interval is narrower than either's own):",
        "",
        "| source | h | n | macro F1: model / best baseline | AUC: model / best baseline | above all three |",
        "|---|---|---|---|---|---|",
    ]
    for w in wins(rows, model):
        cells = [_cell(w, m) for m in METRICS]
        verdict = "yes" if w["beats all"] else "no"
        lines.append(f"| {w['source']} | {w['horizon']} | {w['n']} | {' | '.join(cells)} | {verdict} |")
    return "\n".join(lines) + "\n"
