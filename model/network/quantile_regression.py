"""A linear quantile regression (Koenker & Bassett 1978) fitted by Adam on the pinball loss: y's
q10 / q50 / q90 as x @ W + b. The L2 books' depth head (model/network/l2_depth.py) and the bench
probes (bench/depth_memory.py, bench/depth_loss_probe.py) fit with it. Full-batch from zero weights:
the same inputs give the same weights."""

from __future__ import annotations

import numpy as np
import torch

from model.network.orderflow import QUANTILES


def fit(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None, steps: int = 3000
) -> tuple[np.ndarray, np.ndarray]:
    """(W (F, 3), b (3,)) minimizing the mean pinball loss of y - (x @ W + b), each row weighed by
    `weight` (1 if None)."""
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    wt = None if weight is None else torch.tensor(weight, dtype=torch.float32)[:, None]
    q = torch.tensor(QUANTILES)
    w = torch.zeros(x.shape[1], len(QUANTILES), requires_grad=True)
    b = torch.zeros(len(QUANTILES), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.01)
    with torch.enable_grad():  # also when called under no_grad (a post-hoc fit on a frozen model)
        for _ in range(steps):
            u = yt[:, None] - (xt @ w + b)
            loss = torch.maximum(q * u, (q - 1) * u)
            loss = (loss if wt is None else loss * wt).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return w.detach().numpy(), b.detach().numpy()


def predict(x: np.ndarray, wb: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(N, 3) the fitted quantiles, sorted (rearrangement: never raises the summed pinball loss)."""
    return np.sort(x.astype(np.float32) @ wb[0] + wb[1], axis=1)
