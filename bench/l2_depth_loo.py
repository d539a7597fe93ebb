"""The L2 depth head (model/network/l2_depth.py) left one instrument out: per real capture of the
given files, the head fitted on the L2 windows of every other capture, beside the checkpoint's own
head and the best of persistence, EWMA and HAR on the same windows (CRPS of depth in log1p(lots),
and the gain over that baseline).

Why: the head reads only the book's depth stats and the depth memory (OrderFlowModel.l2_depth_inputs,
no learned input), so it can be fitted on any capture without the network seeing it, and refitting it
per fold is the issue's leave-one-out evaluation at no training cost. The demo's head is fitted on the
training set's captures alone (spot and USD-M BTCUSDT, a few hundred Coinbase and Kraken windows);
this says what it gains from more instruments ("in-sample" marks the captures the checkpoint's own
head was fitted on: the training file's, where it is here to read). Captures are told apart by file name, so the same
capture in two files is one instrument. About 2 minutes on 2 cores after make checkpoint and
make evaluate-unseen.

    python bench/l2_depth_loo.py [--model model/checkpoints/demo]
        [--data build/demo-data/train.npz build/demo-data/unseen.npz build/demo-data/heldout.npz]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from l2_depth_probe import collect

from model.evaluation.baselines import LIQUIDITY_BASELINES, baseline_forecasts
from model.evaluation.metrics import crps_quantiles
from model.evaluation.outputs import training_seeds, training_sources
from model.network import checkpoint, quantile_regression
from model.network.orderflow import L2_DEPTH_TARGETS, QUANTILES
from model.training.train import TrainData

Fold = dict[str, np.ndarray]  # one capture's windows of one target: x, y, median, served, baselines


def captures(model: torch.nn.Module, paths: list[Path]) -> dict[str, dict[str, Fold]]:
    """target -> capture name -> its L2 windows with a known depth (the simulated ones left out)."""
    out: dict[str, dict[str, Fold]] = {t: {} for t in L2_DEPTH_TARGETS}
    for path in paths:
        data = TrainData.load(path)
        names = {s["seed"]: Path(s["name"].rsplit(":", 1)[-1]).name.split(".gz")[0] for s in data.meta["sources"]}
        base = baseline_forecasts(data.arrays, data.meta)
        for t, a in collect(model, data).items():
            for seed in np.unique(a["seed"][a["seed"] < 0]):
                k = a["seed"] == seed
                rows = a["index"][k]
                fold = {"x": np.hstack([a["stats"], a["memory"]])[k], "y": a["y"][k], "median": a["median"][k],
                        "served": a["served"][k]} | {m: base[m][t][rows] for m in LIQUIDITY_BASELINES}  # fmt: skip
                have = out[t].get(names[int(seed)])
                out[t][names[int(seed)]] = (
                    fold if have is None else {n: np.concatenate([have[n], fold[n]]) for n in fold}
                )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=Path("model/checkpoints/demo"))
    ap.add_argument("--data", type=Path, nargs="+", default=[Path(f"build/demo-data/{n}.npz") for n in
                                                             ("train", "unseen", "heldout")])  # fmt: skip
    args = ap.parse_args()
    torch.manual_seed(0)
    model, _, extra = checkpoint.load(args.model)
    pool = captures(model.eval(), args.data)
    trained = training_sources(extra, training_seeds(extra))
    seen = {Path(s["name"].rsplit(":", 1)[-1]).name.split(".gz")[0] for s in trained or ()}
    for t, by_name in pool.items():
        if len(by_name) < 2:
            sys.exit(f"{t}: {len(by_name)} real capture(s) in {[str(p) for p in args.data]}; leaving one out needs two")
        print(f"\n{t}, CRPS in log1p(lots); gain over the best baseline in brackets")
        print(f"{'capture':>28s} {'windows':>8s} {'best baseline':>20s} {'checkpoint head':>28s} "
              f"{'head fitted on the others':>28s}")  # fmt: skip
        for name, fold in by_name.items():
            others = [f for n, f in by_name.items() if n != name]
            wb = quantile_regression.fit(np.vstack([f["x"] for f in others]),
                                         np.concatenate([f["y"] - f["median"] for f in others]))  # fmt: skip
            left_out = fold["median"][:, None] + quantile_regression.predict(fold["x"], wb)
            best, method = min((crps_quantiles(fold["y"], fold[m], QUANTILES), m) for m in LIQUIDITY_BASELINES)
            cells = [crps_quantiles(fold["y"], q, QUANTILES) for q in (fold["served"], left_out)]
            gains = [f"{c:.4f} ({100 * (1 - c / best):+.1f}%)" for c in cells]
            gains[0] = ("in-sample " if name in seen else "") + gains[0]
            print(f"{name[:28]:>28s} {len(fold['y']):8d} {f'{best:.4f} {method}':>20s} {gains[0]:>28s} {gains[1]:>28s}")


if __name__ == "__main__":
    main()
