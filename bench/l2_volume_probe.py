"""Why the traded volume of L2 books is served by a hurdle head (model/network/l2_volume.py), and what it
lacks: on each real capture of a pool, left out in turn, the volume CRPS of the network's own quantiles
beside heads on the same inputs (OrderFlowModel.l2_volume_inputs) fitted on the L2 windows of every
other capture: a linear quantile regression (q10 / q50 / q90, floored at 0) and the hurdle (the chance of
no trade, then a Normal of the traded log volume), as make checkpoint's evaluate-unseen fold refits it;
then the EWMA of the book's own realized volumes (the evaluation's classic, baselines.volume_levels) and
the hurdle with that EWMA's three quantiles and its persistence as four inputs more: what a slow memory
of traded volume in the rows could hand the head at best; and what is served since 2026-12-05, the
hurdle's quantiles combined with the EWMA's, w x hurdle + (1 - w) x EWMA, w per horizon chosen on the
other captures with their heads out of fold (l2_volume.fit_record_weight; the window builders carry the
record: orderbook/volume_record.py). The windows are those the L2 heads serve
(model/evaluation/l2_depth_folds.py) whose book has realized volumes to read. Also the share of windows
that trade nothing and each forecast's q90 coverage (ideal 0.9). About 3 minutes on 2 cores after make
checkpoint and make evaluate-unseen.

    python bench/l2_volume_probe.py [--model model/checkpoints/demo]
        [--pool build/demo-data/train.npz build/demo-data/unseen.npz build/demo-data/heldout.npz]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.evaluation.baselines import volume_levels
from model.evaluation.l2_depth_folds import l2_windows, pool, score_real
from model.evaluation.metrics import crps_quantiles
from model.network import checkpoint, l2_volume, quantile_regression
from model.network.orderflow import L2_VOLUME_TARGETS, QUANTILES, TARGETS
from model.training.dataset import capture_names

MIN_WINDOWS = 200  # a capture with fewer L2 windows is fitted on but not scored


def network_alone(directory: str, into: Path) -> Path:
    """A copy of the checkpoint with its L2 volume head off: what the network serves by itself."""
    model, config, extra = checkpoint.load(directory, "cpu")
    model.l2_volume_fitted.fill_(False)
    return checkpoint.save(model, config, extra, into)


def linear(x: np.ndarray, y: np.ndarray, x_new: np.ndarray) -> np.ndarray:
    """(N, 3) a linear quantile regression on standardized inputs, floored at 0."""
    loc, scale = x.mean(0), np.where(x.std(0) > 1e-6, x.std(0), 1.0)
    wb = quantile_regression.fit((x - loc) / scale, y)
    return quantile_regression.predict(np.clip((x_new - loc) / scale, -10, 10), wb).clip(min=0.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="model/checkpoints/demo")
    ap.add_argument("--pool", nargs="+", type=Path, default=[Path(f"build/demo-data/{n}.npz")
                                                           for n in ("train", "unseen", "heldout")])  # fmt: skip
    args = ap.parse_args()
    volume = [TARGETS.index(t) for t in L2_VOLUME_TARGETS]
    with tempfile.TemporaryDirectory() as tmp:
        directory = str(network_alone(args.model, Path(tmp) / "network"))
        runs = [r for r in (score_real(directory, p) for p in args.pool) if r is not None]
        windows = pool(l2_windows(*run) for run in runs)
        # capture -> (N, 2, 3) the network's volume quantiles and (N, 2, 4) the book's record (the EWMA's
        # three quantiles, persistence) on the windows l2_windows took, in its order
        served: dict[str, np.ndarray] = {}
        record: dict[str, np.ndarray] = {}
        for outputs, arrays, meta in runs:
            names = capture_names(arrays, meta)
            levels = [volume_levels(arrays, int(t.rsplit("_h", 1)[1])) for t in L2_VOLUME_TARGETS]
            both = np.stack([np.concatenate([ewma, last[:, :1]], 1) for last, ewma in levels], 1)
            for name in set(names[outputs.l2_depth["served"]]) - {""}:
                k = outputs.l2_depth["served"] & (names == name)
                q = np.stack([outputs.quantiles[t][k] for t in L2_VOLUME_TARGETS], 1)
                served[name] = np.concatenate([served[name], q]) if name in served else q
                record[name] = np.concatenate([record[name], both[k]]) if name in record else both[k]
    methods = ("network", "linear QR", "hurdle", "EWMA of the book", "hurdle + record", "served: combined")
    print("volume CRPS in log1p(lots), q90 coverage in brackets; each head fitted on the other captures")
    print(f"{'h':>3} {'capture':<28} {'n':>6} {'no trade':>8} " + " ".join(f"{m:>16}" for m in methods))
    totals: dict[str, list[float]] = {m: [] for m in methods}
    weights: list[str] = []
    for h, t in enumerate(L2_VOLUME_TARGETS):
        known = {n: w.valid_all[:, volume[h]] & np.isfinite(record[n][:, h, 0]) for n, w in windows.items()}
        for name in sorted(windows):
            w, ok = windows[name], known[name]
            if ok.sum() < MIN_WINDOWS:
                continue
            others = [n for n in windows if n != name]
            x_fit = np.concatenate([windows[n].volume_inputs[known[n]] for n in others])
            r_fit = np.concatenate([record[n][known[n], h] for n in others])
            y_fit = np.concatenate([windows[n].y_all[known[n], volume[h]] for n in others])
            y = w.y_all[ok, volume[h]]
            x, r = w.volume_inputs[ok], record[name][ok, h]
            one = np.ones((len(y_fit), 1), bool)
            alone = l2_volume.fit(x_fit, y_fit[:, None], one)
            with_record = l2_volume.fit(np.concatenate([x_fit, r_fit], 1), y_fit[:, None], one)
            groups = np.concatenate([np.full(int(known[n].sum()), i) for i, n in enumerate(others)])
            oof = l2_volume.out_of_fold(x_fit, y_fit[:, None], one, groups, QUANTILES)
            weight, _ = l2_volume.fit_record_weight(oof, r_fit[:, None, :3], y_fit[:, None], one, QUANTILES)
            weights.append(f"{name} h{t.rsplit('_h', 1)[1]} {weight[0]:.2f}")
            hurdle = l2_volume.predict(x, *alone, QUANTILES)
            forecasts = {
                "network": served[name][ok, h],
                "linear QR": linear(x_fit, y_fit, x),
                "hurdle": hurdle[:, 0],
                "EWMA of the book": r[:, :3],
                "hurdle + record": l2_volume.predict(np.concatenate([x, r], 1), *with_record, QUANTILES)[:, 0],
                "served: combined": l2_volume.with_record(hurdle, r[:, None, :3], weight)[:, 0],
            }
            cells = []
            for method, q in forecasts.items():
                crps = crps_quantiles(y, q, QUANTILES)
                totals[method].append(crps)
                cells.append(f"{crps:8.3f} [{np.mean(y <= q[:, 2]):.2f}]")
            print(f"{t.rsplit('_h', 1)[1]:>3} {name:<28} {len(y):>6} {np.mean(y <= 0):>8.2f} " + " ".join(cells))
    print("mean over the rows: " + ", ".join(f"{m} {np.mean(v):.3f}" for m, v in totals.items()))
    print("the combination's weight of the hurdle, chosen on the other captures: " + ", ".join(weights))
    return 0


if __name__ == "__main__":
    sys.exit(main())
