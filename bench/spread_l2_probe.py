"""The spread on L2 books (the Binance captures): where its CRPS comes from, and what the
recalibration's maps would do refitted on the L2 books alone (issue 13; docs/design.md, "Model
decisions", the row on a spread map of L2 books' own).

(a) Per Binance capture and horizon, the windows by the spread they end at (one tick, or wider), the
    share of the wider ones whose spread is as wide at the horizon, and each class's part of the
    mean CRPS, the served model beside persistence: on a one-tick book the few windows that end wide
    decide the sign of the gain.
(b) The recalibration's level maps of L2 books (recalibration.fit_l2, in the checkpoint's own bins)
    refitted on the real windows of every capture but the scored one (a bin with fewer than
    MIN_BIN_WINDOWS L2 windows serves the pooled map), then served on the scored capture's windows:
    the gain over the best of persistence, EWMA and HAR, served and refitted. `evaluate --l2-depth-loo`
    serves the same refits, on the windows the L2 depth head serves (a two-sided row), hence figures a
    few tenths apart. Real captures have no headlines, so no news map comes in.

About 1 minute on 2 cores after make checkpoint and make evaluate-unseen (their datasets):

    python bench/spread_l2_probe.py [--model model/checkpoints/demo]
        [--data build/demo-data/train.npz build/demo-data/heldout.npz build/demo-data/unseen.npz]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from columns import print_columns
from pool_args import EVALUATED, pool_parser

from model.evaluation.baselines import baseline_forecasts
from model.evaluation.l2_depth_folds import pool, score_real
from model.evaluation.metrics import crps_per_window
from model.evaluation.outputs import target_ok
from model.network import checkpoint, recalibration
from model.network.orderflow import QUANTILES, TARGETS, support_of
from model.training.dataset import capture_names

SPREADS = ("spread_h10", "spread_h100")
BASELINES = ("persistence", "ewma", "har")
Windows = dict[str, dict[str, np.ndarray]]  # target -> what a fold reads, one row per window


def capture_windows(path: str, model: str) -> dict[str, Windows]:
    """capture -> target -> its real windows' head quantiles before recalibration and the band its bins
    are read off (both unrounded), the served quantiles, the baselines' and the outcome, over the windows
    whose target is known."""
    run = score_real(model, path)
    if run is None:
        return {}
    outputs, arrays, meta = run
    base = baseline_forecasts(arrays, meta)
    names = capture_names(arrays, meta)
    out: dict[str, Windows] = {}
    for name in sorted(set(names) - {""}):
        out[name] = {}
        for t in SPREADS:
            k = (names == name) & target_ok(arrays, t)
            j = TARGETS.index(t)  # the recalibration reads the head and band unrounded, as served
            parts = {"raw": outputs.l2_depth["head"][:, j], "band": outputs.l2_depth["band"][:, j],
                     "served": outputs.quantiles[t]}  # fmt: skip
            out[name][t] = {key: v[k] for key, v in parts.items()} | {"y": arrays[t][k]}
            out[name][t] |= {b: base[b][t][k] for b in BASELINES}
    print(f"{path}: {', '.join(out)}", file=sys.stderr)
    return out


def join(a: dict[str, Windows] | Windows, b: dict[str, Windows] | Windows) -> Windows:
    """One capture's windows of two files, target by target."""
    return {t: {k: np.concatenate([a[t][k], v]) for k, v in b[t].items()} for t in b}


def left_out(fit: list[Windows], scored: Windows, t: str, edges: np.ndarray, pooled: np.ndarray) -> np.ndarray:
    """(N, 3) target t's quantiles of the `scored` windows from its level maps of L2 books fitted on the
    windows of `fit` (recalibration.fit_l2; the `pooled` maps where a bin is short of them), served as
    the model serves them (recalibration.apply, then the support)."""
    raw, band, y = (np.concatenate([w[t][key] for w in fit])[:, None] for key in ("raw", "band", "y"))
    coef, fitted = recalibration.fit_l2(raw, band, y, np.ones_like(y, bool), QUANTILES, [support_of(t)], edges[None])
    w = scored[t]
    maps = (np.ones(len(w["y"]), bool), coef, fitted)
    return support_of(t)(
        recalibration.apply(w["raw"][:, None], w["band"][:, None], edges[None], pooled[None], l2=maps)[:, 0]
    )


def gain(y: np.ndarray, q: np.ndarray, w: dict[str, np.ndarray]) -> str:
    best = min(crps_per_window(y, w[b]).mean() for b in BASELINES)
    return f"{1 - crps_per_window(y, q).mean() / best:+.1%}"


def main(argv: list[str] | None = None) -> int:
    args = pool_parser(__doc__).parse_args(argv)
    captures = pool((capture_windows(p, args.model) for p in args.data), join)
    evaluated = [c for c in sorted(captures) if c.startswith(EVALUATED)]
    if not evaluated:
        print("no Binance capture in --data", file=sys.stderr)
        return 2
    model, _, _ = checkpoint.load(args.model)
    edges, coef = model.recal_edges.numpy(), model.recal_coef.numpy()

    rows_a, rows_b = [], []
    for t in SPREADS:
        j = TARGETS.index(t)
        for c in evaluated:
            w = captures[c][t]
            y, now = w["y"], w["persistence"][:, 1]
            wide = now > 1.5
            model_crps, persist_crps = crps_per_window(y, w["served"]), crps_per_window(y, w["persistence"])
            stay = float(np.mean(np.abs(y[wide] - now[wide]) < 0.5)) if wide.any() else float("nan")
            parts = [f"{x[s].sum() / len(y):.4f}" for s in (~wide, wide) for x in (model_crps, persist_crps)]
            rows_a.append((t, c, f"{len(y):,}", f"{int(wide.sum())}", f"{stay:.2f}", *parts))
            q = left_out([captures[o] for o in captures if o != c], captures[c], t, edges[j], coef[j])
            rows_b.append((t, c, gain(y, w["served"], w), gain(y, q, w)))
    print("(a) The spread's CRPS by the spread a window ends at, its part of the mean: served model / persistence\n")
    print_columns(("target", "capture", "windows", "wider", "as wide at h", "1 tick: model", "persistence",
                   "wider: model", "persistence"), rows_a, left=(0, 1))  # fmt: skip
    print("\n(b) Gain over the best of persistence, EWMA and HAR: the served maps, and the level maps refitted")
    print("    on every other capture's real windows (left one out)\n")
    print_columns(("target", "capture left out", "served", "L2 maps left one out"), rows_b, left=(0, 1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
