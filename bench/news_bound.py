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

The last column groups by kind and by the headline's age (seconds from it to the window's newest event,
in AGE_EDGES bins): what a forecaster that also knew when the headline came would save. The model does not
see that age unless its config reads `news_age` (checkpoints trained since 2026-12-03), and on the demo's
windows it is worth more than the kind. The ages are the dataset's `news_age` (the newest headline's); for a
set written before it had them, they come from the simulated headlines regenerated per seed
(model.sim.news.schedule_news) with --sim-symbols, --sim-duration and --news as `make checkpoint`'s dataset
drew them, and a window whose newest headline is not of its recorded kind stops the run (a dataset
simulated otherwise).

    python bench/news_bound.py [--train build/demo-data/train.npz] [--held-out build/demo-data/heldout.npz]
    python bench/news_bound.py --model build/demo-nonews
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.evaluation.metrics import TAUS, crps_quantiles
from model.evaluation.outputs import target_ok
from model.network.orderflow import TARGETS
from model.sim.engine import SEC, SimConfig
from model.sim.news import schedule_news
from model.training.dataset import NEWS_KINDS

AGE_EDGES = np.array([0.05, 1.0, 5.0, 15.0, 40.0])  # seconds; six bins
MIN_GROUP = 20  # training windows a group needs to get its own quantiles, else the kind's


def headline_ages(arrays: dict[str, np.ndarray], sim: SimConfig) -> np.ndarray:
    """(B,) seconds from each news-driven window's newest headline to its newest event, NaN elsewhere."""
    if "news_age" in arrays:  # the window's headlines are its symbol's: the newest is the youngest
        youngest = np.where(arrays["news_mask"], arrays["news_age"], np.inf).min(1)
        return np.where(arrays["news_kind"] > 0, youngest, np.nan)
    ages = np.full(len(arrays["news_kind"]), np.nan)
    for seed in np.unique(arrays["seed"][arrays["news_kind"] > 0]):
        cfg = replace(sim, seed=int(seed))
        news = schedule_news(cfg.seed, cfg.specs(), cfg.start_ns, cfg.start_ns + cfg.duration_ns, cfg.news_rate)
        for i in np.flatnonzero((arrays["seed"] == seed) & (arrays["news_kind"] > 0)):
            ts = arrays["event_ts"][i]
            newest = max(
                (n for n in news if n.symbol == arrays["symbol"][i] and n.ts <= ts), key=lambda n: n.ts, default=None
            )
            if newest is None or NEWS_KINDS.get(newest.kind) != arrays["news_kind"][i]:
                raise SystemExit(f"seed {seed}: window at {ts} has no headline of its kind: were its headlines "
                                 "drawn with these --sim-symbols, --sim-duration and --news?")  # fmt: skip
            ages[i] = (ts - newest.ts) / SEC
    return ages


def groups_of(arrays: dict[str, np.ndarray], ages: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each window's group: its headline kind; its kind and age bin."""
    kind = arrays["news_kind"].astype(np.int64) * 10
    return kind, kind + np.searchsorted(AGE_EDGES, np.nan_to_num(ages, nan=np.inf))


def quantiles_by(values: np.ndarray, groups: np.ndarray) -> dict[int, np.ndarray]:
    """Per group of at least MIN_GROUP rows: each column's TAUS quantile (values (n, 3) or (n,) for all three)."""
    v = values if values.ndim == 2 else np.repeat(values[:, None], len(TAUS), 1)
    return {int(g): np.array([np.quantile(v[groups == g, j], tau) for j, tau in enumerate(TAUS)])
            for g in np.unique(groups) if (groups == g).sum() >= MIN_GROUP}  # fmt: skip


def corrections(
    y: np.ndarray,
    base: np.ndarray,
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    held: tuple[np.ndarray, np.ndarray],
) -> tuple[float, float, float]:
    """CRPS of the held-out y (n,) served base (n, 3) plus the training values' quantiles: pooled, per
    kind, per kind and age bin (a group short of MIN_GROUP training rows takes its kind's, then the pool's).
    train: (values (m,) or (m, 3), kind groups, kind-and-age groups); held: (kind groups, kind-and-age groups)."""
    values, kind_tr, age_tr = train
    pooled = quantiles_by(values, np.zeros(len(values), np.int64))[0]
    by_kind, by_age = quantiles_by(values, kind_tr), quantiles_by(values, age_tr)
    kind_q = [by_kind.get(int(k), pooled) for k in held[0]]
    shifts = (
        np.broadcast_to(pooled, base.shape),
        np.stack(kind_q),
        np.stack([by_age.get(int(g), q) for g, q in zip(held[1], kind_q, strict=True)]),
    )
    return tuple(crps_quantiles(y, np.sort(base + s, 1), TAUS) for s in shifts)


def table(title: str, rows: list[tuple], served: bool) -> None:
    print(title)
    head = f"{'target':<14}{'windows':>9}" + (f"{'as served':>11}" if served else "")
    print(head + f"{'pooled':>11}{'by kind':>11}{'gain':>8}{'kind, age':>11}{'gain':>8}")
    for t, n, *served_crps, pooled, kind, age in rows:
        gains = f"{kind:>11.4f}{1 - kind / pooled:>+8.1%}{age:>11.4f}{1 - age / pooled:>+8.1%}"
        print(f"{t:<14}{n:>9}" + "".join(f"{c:>11.4f}" for c in served_crps) + f"{pooled:>11.4f}" + gains)


def bound(train: Windows, held: Windows) -> None:
    """The first table (module docstring): the training targets' quantiles on the held-out news-driven windows."""
    rows = []
    for t in TARGETS:
        ok_tr, ok_ho = target_ok(train.arrays, t), target_ok(held.arrays, t)
        groups_tr, groups_ho = [g[ok_tr] for g in train.groups], [g[ok_ho] for g in held.groups]
        y = held.arrays[t][ok_ho]
        rows.append(
            (t, len(y), *corrections(y, np.zeros((len(y), len(TAUS))), (train.arrays[t][ok_tr], *groups_tr), groups_ho))
        )
    table("the training windows' targets, pooled, per headline kind, per kind and age", rows, served=False)
    print("gain: the CRPS a forecaster with nothing but the headline (its kind; its kind and age) saves against "
          "one without it")  # fmt: skip


def residual_bound(ckpt: Path, train: Windows, held: Windows) -> None:
    """The --model table (module docstring)."""
    from model.evaluation.outputs import model_outputs

    q_train, q_held = (model_outputs(ckpt, w.arrays, w.meta, "no-text", data_name=str(w.path)).quantiles
                       for w in (train, held))  # fmt: skip
    tr, ho = train.arrays, held.arrays
    rows = []
    for t in TARGETS:
        ok_tr, ok_ho = target_ok(tr, t), target_ok(ho, t)
        r = tr[t][ok_tr, None] - q_train[t][ok_tr]  # (n, 3) residual against each quantile
        groups_tr, groups_ho = [g[ok_tr] for g in train.groups], [g[ok_ho] for g in held.groups]
        y, q = ho[t][ok_ho], q_held[t][ok_ho]
        rows.append((t, len(y), crps_quantiles(y, q, TAUS), *corrections(y, q, (r, *groups_tr), groups_ho)))
    table(f"\n{ckpt} on the held-out news-driven windows, its quantiles corrected by its training residuals",
          rows, served=True)  # fmt: skip


@dataclass
class Windows:
    """A dataset file's news-driven windows, and their groups (`groups_of`)."""

    path: Path
    arrays: dict[str, np.ndarray]
    meta: dict
    groups: tuple[np.ndarray, np.ndarray]

    @classmethod
    def of(cls, path: Path, sim: SimConfig) -> Windows:
        from model.training.dataset import load, subset

        ds = load(path)
        ds = subset(ds, ds.arrays["news_kind"] > 0)
        return cls(path, ds.arrays, ds.meta, groups_of(ds.arrays, headline_ages(ds.arrays, sim)))


def main(argv: list[str] | None = None) -> int:
    from streams.cli.simulate import parse_duration

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=Path, default=Path("build/demo-data/train.npz"))
    p.add_argument("--held-out", type=Path, default=Path("build/demo-data/heldout.npz"))
    p.add_argument("--model", type=Path, help="a checkpoint trained without headlines: the gain on top of it")
    p.add_argument(
        "--sim-symbols", type=int, default=3, help="as a set without news_age was simulated (make checkpoint's: 3)"
    )
    p.add_argument("--sim-duration", type=parse_duration, default=parse_duration("1h"), help="(make checkpoint's: 1h)")
    p.add_argument("--news", type=float, default=12.0, help="headlines per symbol-hour (make checkpoint's: 12)")
    args = p.parse_args(argv)
    sim = SimConfig(n_symbols=args.sim_symbols, duration_ns=args.sim_duration, news_rate=args.news)
    train, held = Windows.of(args.train, sim), Windows.of(args.held_out, sim)
    bound(train, held)
    if args.model:
        residual_bound(args.model, train, held)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
