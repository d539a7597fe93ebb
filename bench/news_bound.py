"""How much a headline can be worth on the simulated news-driven windows: an upper bound for the text
ablation (issue 13 asks the model with headlines to beat its no-text ablation by 10% in CRPS there).

In the simulator a headline's text says one thing, its kind (model/sim/news.py: negative, positive, halt,
neutral, each from a few templates), so no text encoder can read more from it than the kind. Printed per
target: the CRPS on the held-out news-driven windows of q10/q50/q90 taken from the training windows'
targets pooled over every news-driven window, and of the same quantiles taken per headline kind; the gain
of the second over the first is what knowing the text is worth to a forecaster that has nothing else. A
model that also reads the book gains less from the text, since the book shows the news's effect too.

With `--model CKPT` (a checkpoint trained without headlines: make checkpoint's build/demo-nonews), the
same question on top of the book: its quantiles on the news-driven windows corrected by the quantiles of
its residuals (target - quantile) on the training news-driven windows, pooled, then per headline kind.
The gain of the per-kind correction is what the headline's kind adds to that model, read this way.

    python bench/news_bound.py [--train build/demo-data/train.npz] [--held-out build/demo-data/heldout.npz]
    python bench/news_bound.py --model build/demo-nonews
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.evaluation.metrics import TAUS, crps_quantiles
from model.evaluation.outputs import target_ok
from model.network.orderflow import TARGETS


def bound(train: dict[str, np.ndarray], held: dict[str, np.ndarray], target: str) -> tuple[float, float, int]:
    """(CRPS pooled, CRPS by kind, windows) on the held-out news-driven windows of `target`."""
    y_tr, k_tr, y_ho, k_ho = train[target], train["news_kind"], held[target], held["news_kind"]
    news_tr, news_ho = (k_tr > 0) & target_ok(train, target), (k_ho > 0) & target_ok(held, target)
    pooled = np.quantile(y_tr[news_tr], TAUS)
    by_kind = {int(k): np.quantile(y_tr[news_tr & (k_tr == k)], TAUS) for k in np.unique(k_tr[news_tr])}
    q_kind = np.stack([by_kind.get(int(k), pooled) for k in k_ho[news_ho]])
    q_pool = np.broadcast_to(pooled, q_kind.shape)
    return crps_quantiles(y_ho[news_ho], q_pool, TAUS), crps_quantiles(y_ho[news_ho], q_kind, TAUS), int(news_ho.sum())


def residual_bound(ckpt: Path, train_path: Path, held_path: Path) -> None:
    """The --model table (module docstring)."""
    from model.evaluation.outputs import model_outputs
    from model.training.dataset import load, subset

    parts = []
    for path in (train_path, held_path):
        ds = load(path)
        ds = subset(ds, ds.arrays["news_kind"] > 0)
        parts.append((ds.arrays, model_outputs(ckpt, ds.arrays, ds.meta, "no-text", data_name=str(path)).quantiles))
    (train, q_train), (held, q_held) = parts
    print(f"\n{ckpt} on the held-out news-driven windows, its quantiles corrected by its training residuals")
    print(f"{'target':<14}{'windows':>9}{'as served':>11}{'pooled':>11}{'by kind':>11}{'gain':>8}")
    for t in TARGETS:
        ok_tr, ok_ho = target_ok(train, t), target_ok(held, t)
        r = train[t][ok_tr, None] - q_train[t][ok_tr]  # (n, 3) residual against each quantile
        k_tr, k_ho = train["news_kind"][ok_tr], held["news_kind"][ok_ho]
        pooled = np.array([np.quantile(r[:, j], tau) for j, tau in enumerate(TAUS)])
        by_kind = {int(k): np.array([np.quantile(r[k_tr == k, j], tau) for j, tau in enumerate(TAUS)])
                   for k in np.unique(k_tr)}  # fmt: skip
        y, q = held[t][ok_ho], q_held[t][ok_ho]
        shift = np.stack([by_kind.get(int(k), pooled) for k in k_ho])
        served = crps_quantiles(y, q, TAUS)
        a, b = crps_quantiles(y, np.sort(q + pooled, 1), TAUS), crps_quantiles(y, np.sort(q + shift, 1), TAUS)
        print(f"{t:<14}{len(y):>9}{served:>11.4f}{a:>11.4f}{b:>11.4f}{(a - b) / a:>+8.1%}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=Path, default=Path("build/demo-data/train.npz"))
    p.add_argument("--held-out", type=Path, default=Path("build/demo-data/heldout.npz"))
    p.add_argument("--model", type=Path, help="a checkpoint trained without headlines: the gain on top of it")
    args = p.parse_args(argv)
    with np.load(args.train) as z:
        train = {k: z[k] for k in (*TARGETS, "news_kind", "target_mask")}
    with np.load(args.held_out) as z:
        held = {k: z[k] for k in (*TARGETS, "news_kind", "target_mask")}
    print(f"{'target':<14}{'windows':>9}{'pooled':>11}{'by kind':>11}{'gain':>8}")
    for t in TARGETS:
        a, b, n = bound(train, held, t)
        print(f"{t:<14}{n:>9}{a:>11.4f}{b:>11.4f}{(a - b) / a:>+8.1%}")
    print("gain: the CRPS a forecaster with nothing but the headline's kind saves against one without it")
    if args.model:
        residual_bound(args.model, args.train, args.held_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
