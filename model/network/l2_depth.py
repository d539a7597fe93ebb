"""The depth head of L2 books: the q10 / q50 / q90 of depth at each horizon, for windows of a book of
price levels (a LEVEL_SET token), as the band's median plus a linear quantile regression
(model/network/quantile_regression.py) on the anchor's depth stats and the depth memory
(OrderFlowModel.l2_depth_inputs), fitted after fine-tuning on the training set's L2 windows, the rest
of the model frozen (as the direction head is). Order books (ITCH, LOBSTER) keep the network's.

Why: the training set's L2 windows are the real captures (the simulator writes order-by-order ITCH),
a sixth of the windows, and the network's depth quantiles, fitted mostly to the simulator's books,
carried over to the Binance instruments it never saw worse than this head fitted on the captures
alone. Depth at 100 messages, CRPS in log1p(lots), COIN-M ETHUSD_PERP / BTCUSD_PERP / USD-M
ETHUSDT / spot ETHUSDT (held out), best of persistence, EWMA and HAR 0.238 / 0.237 / 0.294 / 0.256:
the network 0.218 / 0.202 / 0.245 / 0.206 (the committed one, retrained since on anomalies of every
intensity: 0.202 / 0.201 / 0.259 / 0.220); this head 0.179 / 0.181 / 0.216 / 0.183; this head
without the depth memory 0.196 / 0.197 / 0.237 / 0.199. Stacking the network's own quantiles onto
the inputs did worse (0.195 / 0.185 / 0.232 / 0.194; with the committed network 0.178 / 0.185 / 0.235
/ 0.195): on its training windows they are in-sample, and the fit trusts them more than they carry
over. The same head fitted on the simulated windows was worse on the captures (0.218 / 0.213 / 0.259
/ 0.222), and fitted on the captures it is worse on the simulator (0.289 against the committed
network's 0.204), hence one for L2 books only. Measured by bench/l2_depth_probe.py; docs/design.md,
"Model decisions". Its data is the limit: the training captures are two Binance instruments, and
refitted on every other capture (model/evaluation/l2_depth_folds.py) it gains on each one left out;
so make checkpoint refits it on eight captures (`train --stage l2-depth` with several files). Fitted so,
it also reads the log of the depth scale as it is (OrderFlowModel.l2_depth_inputs says why).
"""

from __future__ import annotations

import numpy as np

from model.network import quantile_regression

STEPS = 3000  # full-batch Adam steps; the fit has 30 weights per target and a few thousand windows


def fit(inputs: np.ndarray, median: np.ndarray, y: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The head's weight (H, F, 3) and bias (H, 3): per depth target h, the quantiles of y[:, h] -
    median as inputs @ W[h] + b[h], on the windows where valid[:, h]. `inputs` (N, F) are
    OrderFlowModel.l2_depth_inputs of the L2 windows, `median` (N,) their band's median."""
    weights, biases = [], []
    for h in range(y.shape[1]):
        ok = np.asarray(valid[:, h], bool)
        if not ok.any():
            raise ValueError(f"L2 depth head: no L2 window with a known depth at target {h}")
        w, b = quantile_regression.fit(inputs[ok], y[ok, h] - median[ok], steps=STEPS)
        weights.append(w)
        biases.append(b)
    return np.stack(weights), np.stack(biases)


def predict(inputs: np.ndarray, median: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(N, H, 3) the head's quantiles as OrderFlowModel.l2_depth_quantiles serves them: the median plus
    inputs @ W[h] + b[h], sorted, floored at 0."""
    return np.sort(median[:, None, None] + np.einsum("nf,tfq->ntq", inputs, weight) + bias, -1).clip(min=0.0)
