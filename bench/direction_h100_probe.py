"""Why the direction head left one instrument out loses macro F1 and AUC to the queue-imbalance
regression at 100 messages on USD-M ETHUSDT (and ties it on spot ETHUSDT), and what was tried against it
(issue 13; docs/design.md, Model decisions).

The folds are bench/direction_loo_probe.py's: each Binance capture scored by fits on every other
capture's real windows. Per capture and horizon, each method's
- macro F1 of its argmax (what model/evaluation/direction.py reports) and of the plug-in rule that
  maximizes the macro F1 its own probabilities expect (per-class weights on the probabilities, chosen
  on the scored windows' probabilities alone, no label: Lipton et al. 2014's thresholding, the same for
  every method), so a method is not judged by how its calibration happens to suit argmax;
- AUC (one-vs-rest macro) and the stationary class's one-vs-rest AUC;
- its mean P(stationary) beside the capture's stationary share, and the share of windows it calls
  stationary.
Methods: the head as evaluate refits it (`fit_captures`, penalty chosen inside the fold); the same with
|QI| and QI^2 beside its state (the queue-imbalance regression's three-class fit can favour stationary
at a balanced queue, a linear head on QI alone cannot); the head fitted with an intercept per
training capture (slopes within instruments; scored with the captures' mean intercept); the head's
logits (out of fold: each training capture's from a fit without it) stacked with QI, |QI|, QI^2 in one
regression; the head's probabilities shifted to the capture's trailing class shares (label shift,
Saerens et al. 2002: the last 100 windows whose move is over before the window ends, by the dataset's
`message` count); the head with the log of those shares beside its state (fitted at the head's penalty:
how often the mid moved at the horizon lately); neither helps (docs/design.md). The head on the book rows
alone in their own units, each depth as its ratio to the instrument's slow depth average (a lot size
and a depth level of another instrument mean nothing here); and the two regressions.

About 15 minutes on 2 cores after make checkpoint and make evaluate-unseen's datasets, or on one dataset of
every real capture (bench/README.md).

    python bench/direction_h100_probe.py [--model model/checkpoints/demo] [--data ...]
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a plain script: the working tree

from columns import print_columns
from direction_loo_probe import scored_pool
from pool_args import pool_parser

from model.evaluation.direction import HORIZONS, OFI, QI, fit_predict, macro_auc, macro_f1
from model.evaluation.direction_folds import MESSAGE, STATE, Windows
from model.evaluation.metrics import auroc
from model.inputs import FeatureNorm
from model.network.direction import fit_captures, fit_horizon, probabilities
from model.training.dataset import CheckpointEncoding
from orderbook.features import FEATURE_NAMES

TRAILING = 100  # windows of known move the trailing class shares count
SLOW_DEPTH = "log_depth_5_ewma_2048"  # the book row's slowest average of its top-5 depth
WEIGHTS = np.exp(np.linspace(-3.0, 3.0, 61))  # the plug-in rule's grid for the stationary class's weight
TILTS = np.exp(np.linspace(-1.0, 1.0, 21))  # and for up's against down's


def qi_terms(w: Windows) -> np.ndarray:
    q = w[QI][:, :1]
    return np.hstack([q, np.abs(q), q**2])


def logits(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(x, np.float64)) @ w.T.astype(np.float64) + b


def plug_in(p: np.ndarray) -> np.ndarray:
    """`p` reweighted per class by the weights whose argmax maximizes the macro F1 that `p` itself expects
    (2 sum of p over the calls / (calls + sum of p), per class): no label is read."""
    best, chosen = -1.0, np.ones(3)
    mass = p.sum(0)
    for ws in WEIGHTS:
        for wu in TILTS:
            w = np.array([1.0, ws, wu])
            calls = (p * w).argmax(1)
            expected = np.mean([2 * p[calls == k, k].sum() / ((calls == k).sum() + mass[k]) for k in range(3)])
            if expected > best:
                best, chosen = expected, w
    q = p * chosen
    return q / q.sum(1, keepdims=True)


def trailing_shares(
    y: np.ndarray, message: np.ndarray, h: int, n: int = TRAILING, known: np.ndarray | None = None
) -> np.ndarray:
    """(B, 3) per window the class shares (add-one) of the moves at h `known` (default all) of the last `n`
    windows resolved by its end: what a worker knows of its symbol's recent moves then. Window s's move is
    resolved at window t once message[t] >= message[s] + h (the dataset's `message`: horizons count messages,
    and a window spans 1-20 of a Binance capture's, so a count of windows would read moves not yet over).
    `message` restarting (files joined) begins a new stream, with nothing known."""
    message = np.asarray(message, np.int64)
    seen = np.eye(3)[y] * (np.ones(len(y)) if known is None else np.asarray(known, float))[:, None]
    out = np.empty((len(y), 3))
    starts = [0, *(np.flatnonzero(np.diff(message) <= 0) + 1), len(y)]
    for lo, hi in itertools.pairwise(starts):
        m = message[lo:hi]
        counts = np.vstack([np.zeros((1, 3)), np.cumsum(seen[lo:hi], 0)])
        top = np.searchsorted(m, m - h, side="right")  # the windows s with m[s] + h <= m[t]
        c = counts[top] - counts[np.clip(top - n, 0, None)]
        out[lo:hi] = (c + 1) / (c.sum(1, keepdims=True) + 3)
    return out


def own_units(state: np.ndarray, norm: FeatureNorm) -> np.ndarray:
    """The state's two book rows (the newest and the mean: its last 2F columns) back in their own units,
    each depth as its difference to the row's slowest depth average (log lots: a ratio, so an instrument's
    lot size drops out), the raw depths left out; the transformer's part left out too."""
    f = len(FEATURE_NAMES)
    depth = [i for i, n in enumerate(FEATURE_NAMES) if n.startswith("log_depth")]
    rest = [i for i in range(f) if i not in depth]
    slow = FEATURE_NAMES.index(SLOW_DEPTH)
    parts = []
    for row in np.split(state[:, -2 * f :], 2, axis=1):
        raw = norm.invert(row, np.ones(len(row), bool))  # a state's rows are real rows (0 for a window without)
        parts += [raw[:, rest], raw[:, depth] - raw[:, [slow]]]
    return np.hstack(parts)


def methods(pool: dict[str, Windows], c: str, h: int, norm: FeatureNorm) -> dict[str, np.ndarray]:
    """method -> (n, 3) probabilities on capture c's windows of known move at h, every fit on the others
    (`norm`: the checkpoint's feature normalization, which the state's book rows carry)."""
    others = [o for o in pool if o != c]
    ok = {o: pool[o][f"ok{h}"] for o in pool}
    y = {o: pool[o][f"y{h}"][ok[o]] for o in pool}

    def rows(key: str | Callable[[Windows], np.ndarray], names: list[str]) -> list[np.ndarray]:
        return [(pool[o][key] if isinstance(key, str) else key(pool[o]))[ok[o]] for o in names]

    def with_qi(w: Windows) -> np.ndarray:
        return np.hstack([w[STATE], qi_terms(w)])

    y_fit = np.concatenate([y[o] for o in others])
    x_fit = np.concatenate(rows(STATE, others))
    groups = np.concatenate([np.full(len(y[o]), i) for i, o in enumerate(others)])
    w, b, report = fit_captures(x_fit, y_fit, groups)
    penalty = report["penalty"]
    x_c = pool[c][STATE][ok[c]]
    out = {"head": probabilities(x_c, w, b)}
    wq, bq, _ = fit_captures(np.concatenate(rows(with_qi, others)), y_fit, groups)
    out["head + |QI|, QI^2"] = probabilities(with_qi(pool[c])[ok[c]], wq, bq)

    onehot = np.eye(len(others))[groups]
    wf, bf, _ = fit_horizon(np.hstack([x_fit, onehot]), y_fit, np.ones(len(y_fit)), penalty)
    mean_intercept = np.tile(onehot.mean(0), (len(x_c), 1))
    out["head, intercept per capture"] = probabilities(np.hstack([x_c, mean_intercept]), wf, bf)

    oof = []
    for f in others:  # each training capture's logits from a head fitted without it
        inner = [g for g in others if g != f]
        wi, bi, _ = fit_horizon(np.concatenate(rows(STATE, inner)), np.concatenate([y[g] for g in inner]),
                                np.ones(sum(len(y[g]) for g in inner)), penalty)  # fmt: skip
        oof.append(np.hstack([logits(pool[f][STATE][ok[f]], wi, bi), qi_terms(pool[f])[ok[f]]]))
    ws, bs, _ = fit_horizon(np.concatenate(oof), y_fit, np.ones(len(y_fit)), penalty)
    out["head stacked with QI terms"] = probabilities(np.hstack([logits(x_c, w, b), qi_terms(pool[c])[ok[c]]]), ws, bs)

    # labels of the scored capture enter only here, and only those known before each window ends
    trailing = {o: trailing_shares(pool[o][f"y{h}"], pool[o][MESSAGE], h, known=ok[o])[ok[o]] for o in pool}
    fit_shares = np.bincount(y_fit, minlength=3) / len(y_fit)
    shifted = out["head"] * trailing[c] / fit_shares
    out["head, trailing class shares"] = shifted / shifted.sum(1, keepdims=True)
    x_trail = np.hstack([x_fit, np.log(np.concatenate([trailing[o] for o in others]))])
    wt, bt, _ = fit_horizon(x_trail, y_fit, np.ones(len(y_fit)), penalty)
    out["head + trailing class shares"] = probabilities(np.hstack([x_c, np.log(trailing[c])]), wt, bt)

    def book(w: Windows) -> np.ndarray:
        return own_units(w[STATE], norm)

    wb, bb, _ = fit_captures(np.concatenate(rows(book, others)), y_fit, groups)
    out["book rows, depths against their own"] = probabilities(book(pool[c])[ok[c]], wb, bb)

    for m in (QI, OFI):
        out[m] = fit_predict(np.concatenate(rows(m, others)), y_fit, pool[c][m][ok[c]])
    return out


def main(argv: list[str] | None = None) -> int:
    pool, evaluated = scored_pool(__doc__, argv)
    norm = CheckpointEncoding.of_checkpoint(pool_parser(__doc__).parse_args(argv).model).norm
    if stale := [c for c, w in pool.items() if MESSAGE not in w]:
        print(f"no `message` array for {', '.join(stale)}: rebuild the datasets (since 2026-12-04)", file=sys.stderr)
        return 2
    rows = []
    for h in HORIZONS:
        for c in evaluated:
            y = pool[c][f"y{h}"][pool[c][f"ok{h}"]]
            for name, p in methods(pool, c, h, norm).items():
                stationary = (f"{p[:, 1].mean():.2f} / {np.mean(y == 1):.2f}", f"{np.mean(p.argmax(1) == 1):.2f}")
                rows.append((str(h), c, name, f"{macro_f1(y, p):.3f}", f"{macro_f1(y, plug_in(p)):.3f}",
                             f"{macro_auc(y, p):.3f}", f"{auroc(p[:, 1], y == 1):.3f}", *stationary))  # fmt: skip
            print(f"h{h} {c} done", file=sys.stderr)
    print("Each capture scored by fits on every other capture's real windows\n")
    head = ("h", "capture left out", "method", "F1 argmax", "F1 plug-in", "AUC", "AUC stationary",
            "P(stat) / share", "called stationary")  # fmt: skip
    print_columns(head, rows, left=(1, 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
