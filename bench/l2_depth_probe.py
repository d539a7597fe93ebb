"""Why the depth of L2 books is served by a head fitted on the captures (model/network/l2_depth.py):
linear quantile heads of depth, fitted on the training windows with three sets of inputs and on two
subsets of windows, beside the network's own quantiles.

Inputs (OrderFlowModel.l2_depth_inputs, in log1p(lots) from the band's median): the anchor's six
depth stats and the log-scale stat as it is ("stats"); those and the depth memory ("stats+memory",
what the served head reads); and those and the network's own three quantiles
("network+stats+memory"). Windows: the training set's
real ones (the captures: L2 books) or its simulated ones (ITCH: order books). CRPS of depth at 10 and
100 messages per source of each evaluated file, real sources by name, the simulated ones together.
docs/design.md, "Model decisions", has the figures of the day. About 3 minutes on 2 cores after
make checkpoint and make evaluate-unseen.

    python bench/l2_depth_probe.py [--model model/checkpoints/demo] [--train build/demo-data/train.npz]
                                   [--eval build/demo-data/unseen.npz build/demo-data/heldout.npz]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.evaluation.metrics import crps_quantiles
from model.network import checkpoint, quantile_regression
from model.network.orderflow import L2_DEPTH_TARGETS, QUANTILES, TARGETS, OrderFlowModel
from model.training.dataset import source_file
from model.training.train import TrainData

INPUTS = {"stats": ("stats",), "stats+memory": ("stats", "memory"), "network+stats+memory": ("q", "stats", "memory")}


@torch.no_grad()
def collect(model: OrderFlowModel, data: TrainData) -> dict[str, dict[str, np.ndarray]]:
    """Per depth target, over the windows with a known depth: y, the band's median, the inputs, the
    network's quantiles and the window's source seed."""
    y, valid = data._targets
    parts: dict[str, list[np.ndarray]] = {"median": [], "x": [], "q": [], "seed": []}
    for lo in range(0, len(data), 1024):
        idx = np.arange(lo, min(lo + 1024, len(data)))
        out = model(data.batch(idx, torch.device("cpu")))
        parts["median"].append(out["anchor"][:, TARGETS.index(L2_DEPTH_TARGETS[0]), 1].numpy())
        parts["x"].append(model.l2_depth_inputs(out["anchor_scale"], out["anchor_stats"]).numpy())
        parts["q"].append(model.network_quantiles(out["quantiles_head"], out["anchor"]).numpy())
        parts["seed"].append(data.arrays["seed"][idx])
    whole = {k: np.concatenate(v) for k, v in parts.items()}
    result = {}
    for t in L2_DEPTH_TARGETS:
        j = TARGETS.index(t)
        ok = valid[:, j]
        x = whole["x"][ok]  # the six depth stats, the depth memory, the log-scale stat last
        result[t] = {"y": y[ok, j], "median": whole["median"][ok], "stats": np.concatenate([x[:, :6], x[:, -1:]], 1),
                     "memory": x[:, 6:-1], "q": whole["q"][ok, j] - whole["median"][ok, None],
                     "seed": whole["seed"][ok]}  # fmt: skip
    return result


def design(a: dict[str, np.ndarray], inputs: tuple[str, ...]) -> np.ndarray:
    return np.hstack([a[k] for k in inputs])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=Path("model/checkpoints/demo"))
    ap.add_argument("--train", type=Path, default=Path("build/demo-data/train.npz"))
    ap.add_argument("--eval", type=Path, nargs="+",
                    default=[Path("build/demo-data/unseen.npz"), Path("build/demo-data/heldout.npz")])  # fmt: skip
    args = ap.parse_args()
    torch.manual_seed(0)
    model = checkpoint.load(args.model)[0].eval()
    train = collect(model, TrainData.load(args.train))
    evaluated = []
    for path in args.eval:
        data = TrainData.load(path)
        names = {s["seed"]: source_file(s["name"]) for s in data.meta.get("sources", [])}
        evaluated.append((path, collect(model, data), names))
    for t in L2_DEPTH_TARGETS:
        a = train[t]
        heads = {}
        for subset, rows in (("real", a["seed"] < 0), ("sim", a["seed"] >= 0)):
            if not rows.any():
                continue
            for name, inputs in INPUTS.items():
                part = {k: v[rows] for k, v in a.items()}
                wb = quantile_regression.fit(design(part, inputs), part["y"] - part["median"])
                heads[f"{name} / {subset}"] = (inputs, wb)
        print(f"\n{t}, CRPS in log1p(lots); heads fitted on {args.train} (real {int((a['seed'] < 0).sum())} windows, "
              f"simulated {int((a['seed'] >= 0).sum())})")  # fmt: skip
        print(f"{'source':>32s} {'windows':>8s} {'network':>8s} " + " ".join(f"{h:>26s}" for h in heads))
        for path, ev, names in evaluated:
            e = ev[t]
            groups: dict[str, np.ndarray] = {}
            for seed in np.unique(e["seed"]):
                g = f"{path.stem}:" + (names.get(seed, str(seed))[:22] if seed < 0 else "simulated")
                groups[g] = groups.get(g, np.zeros(len(e["seed"]), bool)) | (e["seed"] == seed)
            for g, k in groups.items():
                part = {n: v[k] for n, v in e.items()}
                cells = [crps_quantiles(part["y"], part["median"][:, None] + part["q"], QUANTILES)]
                for inputs, wb in heads.values():
                    q = part["median"][:, None] + quantile_regression.predict(design(part, inputs), wb)
                    cells.append(crps_quantiles(part["y"], q, QUANTILES))
                print(f"{g:>32s} {k.sum():8d} {cells[0]:8.4f} " + " ".join(f"{c:26.4f}" for c in cells[1:]))


if __name__ == "__main__":
    main()
