"""A linear quantile regression (Koenker & Bassett 1978) fitted by Adam on the pinball loss: y's
q10 / q50 / q90 as x @ W + b. The L2 books' depth head (model/network/l2_depth.py) and the bench
probes (bench/depth_memory.py, bench/depth_loss_probe.py) fit with it. Full-batch from zero weights:
the same inputs give the same weights.

The pinball loss's gradient and Adam's step are written out in numpy: the fit has a few dozen weights
and thousands of steps, so torch's autograd and optimizer cost more per step than the arithmetic. The
torch loop this replaced (807774a) took 4-6 s for 3,000 steps on 3,000 windows of 30 inputs, this 0.7 s,
to the same loss within 2e-5 (weights within 1e-2: Adam's path near the optimum is rounding's)"""

from __future__ import annotations

import numpy as np

from model.network.orderflow import QUANTILES

LR, BETAS, EPS = 0.01, (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults at lr 0.01, as fitted before


def fit(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None, steps: int = 3000
) -> tuple[np.ndarray, np.ndarray]:
    """(W (F, 3), b (3,)) minimizing the mean pinball loss of y - (x @ W + b), each row weighed by
    `weight` (1 if None)."""
    q = np.asarray(QUANTILES, np.float32)[:, None]
    xt = np.ascontiguousarray(np.concatenate([x, np.ones((len(x), 1))], 1).T, np.float32)  # (F + 1, N): W then b
    y = np.asarray(y, np.float32)[None, :]
    row = np.ones(y.shape, np.float32) if weight is None else np.asarray(weight, np.float32)[None, :]
    row = row / np.float32(y.size * len(q))  # the mean over N x 3 terms
    # d loss / d prediction is -q where the outcome is above, 1 - q below, and torch.maximum's half of
    # each at a tie (the start's zero prediction ties every row whose y is 0): (sign(u) + 1) / 2 picks
    below, half_gap = (1 - q) * row, -0.5 * row
    theta = np.zeros((len(q), len(xt)), np.float32)
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    b1, b2 = BETAS
    for t in range(1, steps + 1):
        grad = (below + (np.sign(y - theta @ xt) + 1) * half_gap) @ xt.T
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad * grad
        theta -= LR / (1 - b1**t) * m / (np.sqrt(v) / np.sqrt(1 - b2**t) + EPS)
    return theta[:, :-1].T.copy(), theta[:, -1].copy()


def predict(x: np.ndarray, wb: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(N, 3) the fitted quantiles, sorted (rearrangement: never raises the summed pinball loss)."""
    return np.sort(x.astype(np.float32) @ wb[0] + wb[1], axis=1)
