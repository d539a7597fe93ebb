"""Drift per book on normal flow, as the worker tracks it (issue 13; docs/design.md, "Drift").

Every book of the datasets (a real capture, or one simulated symbol-hour) is fed to the worker's
DriftTracker in time order with its windows' calibrated surprise from the checkpoint, in batches of
64 windows, with the worker's defaults (the last 512 windows, the first 1024 as the reference), and
read after each batch as the heartbeat reads it. Per book: its windows, the share of readings in
`drift`, the last reading's statistics, and, for comparison, the statistics the state followed
before 2026-12-05: the last 512 scores' PSI against uniform and the feature PSI max, with the share
of readings in which either passed 0.25. The flow here is normal: the simulated hours hold the
demo's anomalies and headlines, the captures are a Binance day's flow; none of it is a regime the
model never saw. A simulated symbol-hour has 100-1,400 windows, too few for the PSIs
(1,536): the level alone judges those books, and those under 512 windows are still warming at their
end (left out of the table, counted).

About 1 minute on 2 cores after make checkpoint and make evaluate-unseen (their datasets):

    python bench/drift_probe.py [--model model/checkpoints/demo]
        [--data build/demo-data/train.npz build/demo-data/heldout.npz build/demo-data/unseen.npz]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapt_bench import newest_rows
from columns import print_columns
from pool_args import pool_parser

from model.evaluation.outputs import model_outputs
from model.serving.drift import DRIFT, DriftTracker, fractions, psi
from model.training.train import TrainData

BATCH = 64  # windows between two readings
OLD_THRESHOLD = 0.25


def uniform_psi(scores: np.ndarray) -> float:
    return float(psi(np.full(10, 0.1), fractions(np.histogram(scores, 10, (0.0, 1.0))[0])))


def book_rows(path: str, model: str) -> list[tuple]:
    data = TrainData.load(path)
    scores = model_outputs(model, data.arrays, data.meta, "drift").surprise
    valid_rows, has = newest_rows(data)
    rows = np.zeros((len(has), valid_rows.shape[1]), valid_rows.dtype)
    rows[has] = valid_rows
    out = []
    for seed in np.unique(data.arrays["seed"]):
        for symbol in np.unique(data.arrays["symbol"][data.arrays["seed"] == seed]):
            idx = np.flatnonzero((data.arrays["seed"] == seed) & (data.arrays["symbol"] == symbol))
            idx = idx[np.argsort(data.arrays["event_ts"][idx], kind="stable")]
            tracker = DriftTracker(data.meta["feature_names"])
            states, old = [], []
            for i in range(0, len(idx), BATCH):
                b = idx[i : i + BATCH]
                tracker.observe("v", str(symbol), rows[b][has[b]][:, tracker.cols], scores[b], windows=len(b))
                stat = tracker.report()[0]["v", str(symbol)]
                states.append(stat.state)
                seen = scores[idx[: i + len(b)]][-tracker.n_windows :]
                known = [v for v in (uniform_psi(seen) if len(seen) >= tracker.n_windows else None,
                                     stat.feature_psi_max) if v is not None]  # fmt: skip
                old.append(bool(known) and max(known) > OLD_THRESHOLD)
            source = "real" if seed < 0 else "simulated"
            last = scores[idx][-tracker.n_windows :]
            out.append((source, f"{seed}", str(symbol), len(idx), np.mean([s == DRIFT for s in states]),
                        stat.surprise_psi, stat.surprise_level, stat.feature_psi_max, stat.feature, stat.state,
                        uniform_psi(last) if len(last) >= tracker.n_windows else None, np.mean(old)))  # fmt: skip
    return out


def main() -> int:
    args = pool_parser(__doc__).parse_args()
    rows = [r for path in args.data if Path(path).is_file() for r in book_rows(path, args.model)]
    if not rows:
        print("no dataset found: run make checkpoint (and make evaluate-unseen)", file=sys.stderr)
        return 1

    def f(v: float | None, spec: str = ".3f") -> str:
        return "-" if v is None else format(v, spec)

    short = [r for r in rows if r[6] is None]
    rows = [r for r in rows if r[6] is not None]
    print("Per book, in time order, the worker's tracker (512 windows against the first 1,024), read every "
          f"{BATCH} windows\n")  # fmt: skip
    print_columns(
        ["source", "seed", "symbol", "windows", "in drift", "surprise PSI", "level", "feature PSI max", "feature",
         "state", "| before: uniform PSI", "past 0.25"],
        [[src, seed, sym, f"{n:,}", f(d, ".0%"), f(sp), f(lv), f(fm), ft or "-", st, f(up), f(o, ".0%")]
         for src, seed, sym, n, d, sp, lv, fm, ft, st, up, o in rows],
    )  # fmt: skip
    print(f"\n{len(short)} books with fewer than 512 windows (simulated: {sum(r[0] == 'simulated' for r in short)}) "
          "are left out: still warming, never in drift")  # fmt: skip
    for source in ("real", "simulated"):
        sel = [r for r in rows if r[0] == source]
        if not sel:
            continue
        levels = [r[6] for r in sel if r[6] is not None]
        print(f"\n{source}: {len(sel)} books, readings in drift {np.mean([r[4] for r in sel]):.1%} "
              f"(before: {np.mean([r[11] for r in sel]):.1%}); level "
              f"{min(levels, default=float('nan')):.2f}-{max(levels, default=float('nan')):.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
