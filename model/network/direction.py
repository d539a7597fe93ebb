"""The direction head's fit: mid-price direction (down / stationary / up) at each horizon, a
multinomial logistic regression on the network's window state, fitted after fine-tuning with the
transformer frozen (as the quantile recalibration is).

Why a head of its own: the served p_up / p_down were first read off the mid quantiles (the CDF
through q10/q50/q90). Those quantiles are trained for the size of the move, and in a one-tick book
the mid does not move within 10 messages in ~90% of windows, so all three sit at 0 and the CDF says
nothing about the side: on the demo's held-out real capture that reading had a direction AUC of
0.505 where a queue-imbalance regression had 0.789. The head reads the same window state the other
heads read (the newest event, the pooled rows and headlines) beside the newest book-state row and
the rows' mean, so the imbalance and the order-flow imbalance are one linear map away, and the
transformer's state adds what they miss. Fitted frozen, it changes no other output of a checkpoint.

Classes as the field defines them (FI-2010; DeepLOB): the mid's move over the horizon in ticks,
stationary below THRESHOLD_TICKS (the mid lives on a half-tick grid: stationary is an unchanged mid).
Real and simulated windows weigh half each where a set holds both: the simulator's windows
outnumber the captures' several times, and its books move unlike a one-tick crypto book.

The penalty is L2 at both horizons. `choose_penalty` picks one per horizon by leaving each real
capture out in turn (the lowest log loss on the windows left out); bench/direction_loo_probe.py
fits the head on the real captures alone so, fold by fold. What it showed on 2026-12-01:
- Fitted on the real captures alone, with the penalty chosen so (1e-2 at 10 messages, 3e-2 or 1e-1
  at 100), the head left one instrument out beats both regressions in 21 of the 24 comparisons
  (six instruments, two horizons, F1 and AUC). At 1e-3 it does so in 19.
- With the simulator's windows in the fit (half the weight), leaving each capture out prefers the
  largest penalty at both horizons. At 100 messages the left-out log loss (1.094 on the demo's
  training set) is worse than the captures' class shares would score (1.081): the simulator's
  direction does not carry over to a one-tick crypto book at 100 messages.
- A head of the L2 books fitted on the demo's two training instruments alone (spot and USD-M
  BTCUSDT, penalty 1e-1 chosen) did worse on the three instruments it never saw than the served
  head: AUC 0.699-0.813 against 0.769-0.843 at 10 messages, and still under the queue-imbalance
  regression at 100. Two instruments are too few; the served head keeps the simulator's windows.

Hence the L2 books' head (`fit_captures`; OrderFlowModel.l2_direction_*): the same regression on the
real captures alone, each window weighing the same, fitted when enough instruments are at hand
(`train --stage l2-direction` on several files; make checkpoint: the training set's captures and three
more Binance instruments). Books of orders (ITCH, the simulator) keep the head above. Fitted so on every
capture but one (model/evaluation/direction_folds.py), it beat the head fitted with the simulator on
each of the three instruments left out in AUC and Brier at both horizons (docs/design.md).
"""

from __future__ import annotations

import numpy as np
import torch

THRESHOLD_TICKS = 0.5
DIRECTIONS: tuple[str, ...] = ("down", "stationary", "up")
L2 = 1e-3  # on the standardized inputs' weights: the window state is ~200 wide, the set ~40k windows
PENALTIES = (1e-3, 1e-2, 3e-2, 1e-1)  # what `choose_penalty` chooses from
MIN_HELD = 100  # windows a real capture needs to be left out when choosing the penalty: fewer say little
MAX_ITER = 200


def direction_labels(move: np.ndarray, threshold: float = THRESHOLD_TICKS) -> np.ndarray:
    """0 down (move <= -threshold), 1 stationary (|move| < threshold), 2 up (move >= threshold)."""
    move = np.asarray(move, np.float64)
    return np.where(move >= threshold, 2, np.where(move <= -threshold, 0, 1)).astype(np.int64)


def window_weights(real: np.ndarray) -> np.ndarray:
    """(B,) weights averaging 1: real and simulated windows weigh half each when both are present."""
    real = np.asarray(real, bool)
    n_real, n_sim = int(real.sum()), int((~real).sum())
    if n_real == 0 or n_sim == 0:
        return np.ones(len(real))
    return np.where(real, 0.5 / n_real, 0.5 / n_sim) * len(real)


def fit_horizon(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray, l2: float = L2
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(W (3, D), b (3,)) on the raw inputs x (n, D) and a report: a weighted multinomial logistic
    regression with an L2 penalty `l2`, fitted by L-BFGS on standardized inputs from zero weights and the
    prior's bias (deterministic: no random start), the standardization then folded into W and b."""
    x = np.nan_to_num(np.asarray(x, np.float64))
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy((x - mu) / sd)
    yt = torch.from_numpy(np.asarray(y, np.int64))
    wt = torch.from_numpy(np.asarray(weights, np.float64))
    lin = torch.nn.Linear(x.shape[1], len(DIRECTIONS), dtype=torch.float64)
    torch.nn.init.zeros_(lin.weight)
    prior = np.bincount(y, weights=weights, minlength=len(DIRECTIONS)) / wt.sum().item()
    with torch.no_grad():
        lin.bias.copy_(torch.from_numpy(np.log(np.maximum(prior, 1e-9))))
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=MAX_ITER, line_search_fn="strong_wolfe")

    def nll() -> torch.Tensor:
        return (torch.nn.functional.cross_entropy(lin(xt), yt, reduction="none") * wt).mean()

    with torch.no_grad():
        before = float(nll())

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nll() + l2 * (lin.weight**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        after = float(nll())
        w = lin.weight.numpy() / sd
        b = lin.bias.numpy() - w @ mu
    report = {"windows": len(y), "class_shares": [round(float(p), 4) for p in prior],
              "log_loss_prior": round(before, 5), "log_loss": round(after, 5)}  # fmt: skip
    return w.astype(np.float32), b.astype(np.float32), report


def probabilities(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, 3) class probabilities of a fitted horizon's (w, b) on raw inputs x (n, D)."""
    logits = np.nan_to_num(np.asarray(x, np.float64)) @ w.T.astype(np.float64) + b
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def choose_penalty(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, real: np.ndarray, penalties: tuple[float, ...] = PENALTIES
) -> tuple[float, dict[str, float]]:
    """The penalty of `penalties` whose fits leave-one-capture-out have the lowest log loss on the windows
    left out, and that loss per penalty. `groups` (n,): a window's source (a real capture's own value);
    each real capture of at least MIN_HELD windows is left out once, its fit on every other window
    (simulated ones included) weighted as `fit` weighs them. The loss is over all windows left out
    together, so a capture counts by its windows: a small capture of another venue (a few hundred
    windows) would otherwise pull the choice as hard as an instrument's day. L2 where fewer than two
    captures qualify."""
    held = [g for g in np.unique(groups[real]) if int((groups == g).sum()) >= MIN_HELD]
    if len(held) < 2:
        return L2, {}
    losses: dict[str, float] = {}
    for l2 in penalties:
        total = 0.0
        for g in held:
            out = groups == g
            w, b, _ = fit_horizon(x[~out], y[~out], window_weights(real[~out]), l2)
            p = probabilities(x[out], w, b)
            total -= float(np.log(np.maximum(p[np.arange(out.sum()), y[out]], 1e-12)).sum())
        losses[f"{l2:g}"] = round(total / sum(int((groups == g).sum()) for g in held), 5)
    best = min(penalties, key=lambda l2: losses[f"{l2:g}"])
    return best, losses


def fit_captures(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """(W (3, D), b (3,)) and a report of one horizon fitted on real windows alone, each weighing the same
    (x (n, D), labels y, `groups` (n,) each window's capture), the penalty chosen by `choose_penalty`
    leaving each capture out in turn: the L2 books' head and its left-one-out refits
    (model/evaluation/direction_folds.py) are this same fit."""
    real = np.ones(len(y), bool)
    penalty, losses = choose_penalty(x, y, groups, real)
    w, b, report = fit_horizon(x, y, np.ones(len(y)), penalty)
    return w, b, report | {"penalty": penalty, "held_out_log_loss": losses}


def fit(
    state: np.ndarray, moves: np.ndarray, valid: np.ndarray, real: np.ndarray, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """The head's weight (H*3, D) and bias (H*3,) for `state` (B, D) (the network's `direction_input`),
    `moves` (B, H) the mid moves in ticks at each horizon, `valid` (B, H) where a move is known, `real`
    (B,) whether a window is from a capture; and a report per horizon (training log loss against the
    class prior's). With `groups` (B,) (each window's capture; all windows real), each horizon is
    `fit_captures`' instead: the L2 books' head."""
    weights, biases, report = [], [], {}
    for j in range(moves.shape[1]):
        ok = np.asarray(valid[:, j], bool) & np.isfinite(moves[:, j])
        if not ok.any():
            raise ValueError(f"direction head: no window with a known mid move at horizon {j}")
        y = direction_labels(moves[ok, j])
        if groups is None:
            w, b, rep = fit_horizon(state[ok], y, window_weights(real[ok]))
        else:
            w, b, rep = fit_captures(state[ok], y, groups[ok])
        weights.append(w)
        biases.append(b)
        report[str(j)] = rep
    return np.concatenate(weights), np.concatenate(biases), report
