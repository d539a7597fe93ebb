"""The simulated spread: what combining a checkpoint's served quantiles with a classic baseline's band
adds (issue 5's goal, 10% over the best of persistence, EWMA and HAR at every horizon, missed on the
simulator since its efficient price). Since 2026-12-05 the served spread is itself such a combination
with the EWMA's band (OrderFlowModel.classic_weight, fitted on the training windows that are not of
books of price levels); on a checkpoint that serves it, this says what a further one would add.

Per spread target, the served quantiles q and a baseline's q10/q50/q90 band e (model/serving/baseline.py,
as `evaluate` recomputes it: `ewma`, `har`, `baseline` = their average) are combined quantile by quantile,
w q + (1 - w) e (Vincentization; Genest 1992, Lichtendahl, Grushka-Cockayne & Winkler 2013), with w
from a grid of 0.05 steps chosen on the training set's simulated windows (every third: the network
trained on them all) and scored on the held-out simulated windows: the gain over the best of the three
classic baselines with w = 1 (served) and with the chosen w. Real windows are left out: on a one-tick
L2 book the baselines' bands are worse than the served quantiles by far (EWMA 0.262 against 0.101
ticks on spot ETHUSDT at 10 messages), and the served model takes its L2 maps there.

On the demo's network before the combination was served (2026-12-05): w 0.70 / 0.60 with the EWMA's
band, +5.9% -> +7.6% at 10 messages and +9.3% -> +10.9% at 100; HAR's band +7.2% / +10.7%, their
average's +7.5% / +10.7%.

About a minute on 2 cores after make checkpoint (its datasets):

    python bench/spread_blend_probe.py [--model model/checkpoints/demo] [--data build/demo-data]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from columns import print_columns

from model.evaluation.baselines import baseline_forecasts
from model.evaluation.metrics import crps_per_window
from model.evaluation.outputs import model_outputs
from model.network.orderflow import QUANTILES

TARGETS = {"spread_h10": 0, "spread_h100": 1}  # target -> its column of target_mask
PEERS = ("ewma", "har", "baseline")
CLASSIC = ("persistence", "ewma", "har")
WEIGHTS = np.round(np.arange(0.0, 1.0001, 0.05), 2)


def simulated(path: Path, model: str, every: int) -> tuple[dict, dict, dict, dict]:
    """The simulated windows of a dataset (every `every`-th), the model's served quantiles and the classic baselines."""
    arrays = dict(np.load(path))
    meta = json.loads(path.with_suffix(".json").read_text())
    idx = np.flatnonzero(arrays["seed"] > 0)[::every]
    arrays = {k: v[idx] for k, v in arrays.items()}
    return arrays, meta, model_outputs(model, arrays, meta, path.stem).quantiles, baseline_forecasts(arrays, meta)


def crps(q: np.ndarray, y: np.ndarray) -> float:
    return float(crps_per_window(y, q, QUANTILES).mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="model/checkpoints/demo")
    ap.add_argument("--data", type=Path, default=Path("build/demo-data"))
    args = ap.parse_args()
    train = simulated(args.data / "train.npz", args.model, 3)
    held = simulated(args.data / "heldout.npz", args.model, 1)
    rows = []
    for target, col in TARGETS.items():
        sets = []
        for arrays, _, served, classic in (train, held):
            ok = arrays["target_mask"][:, col] & np.isfinite(arrays[target])
            y = arrays[target][ok]
            best = min(crps(classic[m][target][ok], y) for m in CLASSIC)
            sets.append((served[target][ok], {m: classic[m][target][ok] for m in PEERS}, y, best))
        for peer in PEERS:
            (q_fit, e_fit, y_fit, _), (q, e, y, best) = sets[0], sets[1]
            w = min(WEIGHTS, key=lambda w: crps(w * q_fit + (1 - w) * e_fit[peer], y_fit))
            rows.append([target, peer, f"{len(y_fit):,}", f"{w:.2f}", f"{len(y):,}", f"{1 - crps(q, y) / best:+.1%}",
                         f"{1 - crps(w * q + (1 - w) * e[peer], y) / best:+.1%}"])  # fmt: skip
    print("Simulated spread: the served quantiles combined with a baseline's band, w chosen on training windows\n")
    print_columns(["target", "band", "fit windows", "w", "held-out windows", "served gain", "combined gain"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
