"""What a longer memory of the book is worth for depth forecasts, beside what the window holds.

A window's book rows span its last 32 messages, and the model forecasts the top-5 depth 10 and
100 messages on. This probe asks how much a slower view of depth (EWMAs with half-lives of 128,
512 and 2,048 messages, over the symbol's whole stream so far) would add: a linear quantile
regression (q10 / q50 / q90, pinball loss) of the depth change, fitted on the two Binance BTCUSDT
captures of the training set, on the window's own statistics alone (the EWMA with the anchor's
half-life, the last-5 and window means less the last value, log dispersion), then on those and the
slow EWMAs; CRPS per capture, every Binance capture in ../shared/data (the four others are
instruments the demo model never trained on). Window-end messages are the dataset's own
(model.training.dataset.replay_source). About a minute on 2 cores.

    python bench/depth_memory.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.evaluation.metrics import crps_quantiles
from model.network import quantile_regression as linear_quantiles
from model.network.orderflow import ANCHOR_FLOOR, ANCHOR_HALFLIFE, QUANTILES
from model.training.dataset import capture_source, replay_source

ROWS = 32
SLOW_HALFLIVES = (128, 512, 2048)
FIT_ON = ("spot_btcusdt", "usdm_btcusdt")


def ewma(x: np.ndarray, halflife: float) -> np.ndarray:
    """The causal EWMA of `x` after each element."""
    a = 1.0 - 0.5 ** (1.0 / halflife)
    out, m = np.empty_like(x), x[0]
    for i, v in enumerate(x):
        m += a * (v - m)
        out[i] = m
    return out


def design(depth: np.ndarray, ends: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y - last, window stats, slow EWMAs less last) at the window-end messages `ends`."""
    x = np.log1p(depth)
    ends = ends[(ends >= ROWS - 1) & (ends + horizon < len(x))]
    last = x[ends]
    win = np.stack([x[i - ROWS + 1 : i + 1] for i in ends])
    w = 0.5 ** (np.arange(ROWS - 1, -1, -1) / ANCHOR_HALFLIFE)
    w /= w.sum()
    scale = (np.abs(win - last[:, None]) * w).sum(1) + ANCHOR_FLOOR["depth"]
    own = np.stack([win @ w - last, win[:, -5:].mean(1) - last, win.mean(1) - last, np.log(scale)], 1)
    slow = np.stack([ewma(x, h)[ends] - last for h in SLOW_HALFLIVES], 1)
    return x[ends + horizon] - last, own, slow


def crps(x: np.ndarray, r: np.ndarray, wb: tuple[np.ndarray, np.ndarray]) -> float:
    """evaluate's CRPS of the fitted quantiles."""
    return crps_quantiles(r, linear_quantiles.predict(x, wb), QUANTILES)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = ap.parse_args()
    torch.manual_seed(0)
    series = {}
    for path in sorted((args.data / "binance-hftbacktest").glob("*.gz")):
        rep = replay_source(capture_source("binance", path))
        for sym, s in rep.series.items():
            ends = np.array([i for i, w in zip(rep.msg_index, rep.windows, strict=True) if w.symbol == sym])
            series[path.name.split("_2")[0]] = (np.asarray(s.depth, np.float64), ends)
    for horizon in (10, 100):
        rows = {name: design(depth, ends, horizon) for name, (depth, ends) in series.items()}
        fitted = [rows[n] for n in FIT_ON if n in rows]
        r = np.concatenate([f[0] for f in fitted])
        own = linear_quantiles.fit(np.concatenate([f[1] for f in fitted]), r)
        both = linear_quantiles.fit(np.concatenate([np.hstack(f[1:]) for f in fitted]), r)
        print(f"\ndepth at {horizon} messages, CRPS in log1p(lots); fitted on {', '.join(FIT_ON)}")
        print(f"{'capture':16s} {'windows':>8s} {'persistence':>12s} {'window':>8s} {'+ slow':>8s} {'gain':>7s}")
        for name, (dr, o, s) in rows.items():
            c_own, c_both = crps(o, dr, own), crps(np.hstack([o, s]), dr, both)
            mark = " (fitted on)" if name in FIT_ON else ""
            print(f"{name:16s} {len(dr):8d} {np.abs(dr).mean():12.3f} {c_own:8.3f} {c_both:8.3f} "
                  f"{1 - c_both / c_own:+7.1%}{mark}")  # fmt: skip


if __name__ == "__main__":
    main()
