"""Why depth's pinball loss is taken in its own units: a linear quantile head on the anchor's stats,
trained on standardized residuals against trained in log1p(lots).

The network's quantile head predicts (target - band) / scale from its hidden state and the anchor's
stats (OrderFlowModel.anchor). This probe keeps the anchor (the checkpoint's own, on the checkpoint's
feature normalization) and replaces the network by a linear map of the depth stats, fitted on the
training windows twice: on the pinball loss of the standardized residual (every window weighs the
same), and on the pinball loss in log1p(lots) (a window weighs its scale). CRPS of depth at
`--target` per source of the evaluated file, beside persistence (the band's median). docs/design.md, "Model
decisions", has the figures of the day. About a minute on 2 cores after make checkpoint and make
evaluate-unseen.

    python bench/depth_loss_probe.py [--model model/checkpoints/demo] [--train build/demo-data/train.npz]
                                     [--eval build/demo-data/unseen.npz] [--target depth_h100]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.evaluation.metrics import crps_quantiles
from model.network import checkpoint
from model.network import quantile_regression as linear_quantiles
from model.network.orderflow import LEVEL_STATS, QUANTILES, TARGETS
from model.training.dataset import source_file
from model.training.train import TrainData

DEPTH_STATS = slice(LEVEL_STATS, LEVEL_STATS + 6)  # the depth level's six stats


@torch.no_grad()
def anchored(model: torch.nn.Module, data: TrainData, target: str) -> dict[str, np.ndarray]:
    """Per valid window: the target, the band's median, the scale and the depth stats."""
    j = TARGETS.index(target)
    y, valid = data._targets
    parts: dict[str, list[np.ndarray]] = {"y": [], "median": [], "scale": [], "stats": [], "seed": []}
    for lo in range(0, len(data), 1024):
        idx = np.arange(lo, min(lo + 1024, len(data)))
        idx = idx[valid[idx, j]]
        band, scale, stats = model.anchor(data.batch(idx, torch.device("cpu")))
        parts["y"].append(y[idx, j])
        parts["median"].append(band[:, j, 1].numpy())
        parts["scale"].append(scale[:, j].numpy())
        parts["stats"].append(stats[:, DEPTH_STATS].numpy())
        parts["seed"].append(data.arrays["seed"][idx])
    return {k: np.concatenate(v) for k, v in parts.items()}


def fit(a: dict[str, np.ndarray], in_units: bool) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) of quantiles median + scale * (stats @ W + b), on the standardized or the unit loss."""
    weight = a["scale"] / a["scale"].mean() if in_units else None
    return linear_quantiles.fit(a["stats"], (a["y"] - a["median"]) / a["scale"], weight)


def quantiles(a: dict[str, np.ndarray], wb: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return np.sort(a["median"][:, None] + a["scale"][:, None] * linear_quantiles.predict(a["stats"], wb), axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=Path("model/checkpoints/demo"))
    ap.add_argument("--train", type=Path, default=Path("build/demo-data/train.npz"))
    ap.add_argument("--eval", type=Path, default=Path("build/demo-data/unseen.npz"))
    ap.add_argument("--target", default="depth_h100", choices=[t for t in TARGETS if t.startswith("depth_")])
    args = ap.parse_args()
    torch.manual_seed(0)
    model = checkpoint.load(args.model)[0].eval()
    train = anchored(model, TrainData.load(args.train), args.target)
    evaluated = TrainData.load(args.eval)
    held = anchored(model, evaluated, args.target)
    names = {src["seed"]: source_file(src["name"]) for src in evaluated.meta.get("sources", [])}
    heads = {"standardized loss": fit(train, in_units=False), "loss in log1p(lots)": fit(train, in_units=True)}
    print(f"{args.target}, CRPS in log1p(lots); linear heads fitted on {len(train['y'])} windows of {args.train}")
    print(f"{'source':>30s} {'windows':>8s} {'persistence':>12s} " + " ".join(f"{h:>20s}" for h in heads))
    for seed in np.unique(held["seed"]):
        k = held["seed"] == seed
        part = {n: v[k] for n, v in held.items()}
        persistence = crps_quantiles(part["y"], np.repeat(part["median"][:, None], len(QUANTILES), axis=1), QUANTILES)
        cells = [f"{crps_quantiles(part['y'], quantiles(part, wb), QUANTILES):20.3f}" for wb in heads.values()]
        print(f"{names.get(seed, str(seed)):>30s} {k.sum():8d} {persistence:12.3f}", *cells)


if __name__ == "__main__":
    main()
