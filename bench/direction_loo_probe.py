"""The direction head (model/network/direction.py) left one capture out, beside the queue-imbalance
and multi-level OFI regressions left out the same way: does the head carry over to an instrument it
was not fitted on?

The head reads the frozen network's window state (`direction_input`), so a fold refits the head alone,
as model/evaluation/l2_depth_folds.py does for depth. For each Binance capture of the --data files
(spot, USD-M and COIN-M), every method is fitted on the real windows of every other capture (Coinbase
and Kraken included), each window weighing the same, and scored on the capture's own: macro F1 and AUC
(model/evaluation/direction.py's metrics) at 10 and 100 messages. The head on the captures alone,
its penalty chosen by `direction.choose_penalty` (leaving each of the fold's training captures out in
turn, so the left-out capture plays no part in it), and beside it at fixed penalties 1e-3 (direction.L2,
the served head's) and 1e-1. The evaluation's direction table differs on purpose:
there, the baselines are fitted on the training file (simulated and real windows) and the model serves
its own head, fitted on its training captures and the simulator at the penalty direction.L2.

About 6-12 minutes on 2 cores after make checkpoint and make evaluate-unseen's datasets.

    python bench/direction_loo_probe.py [--model model/checkpoints/demo]
        [--data build/demo-data/train.npz build/demo-data/heldout.npz build/demo-data/unseen.npz]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a plain script: the working tree

from columns import print_columns
from pool_args import EVALUATED, pool_parser

from model.evaluation.direction import HORIZONS, OFI, QI, fit_predict, macro_auc, macro_f1
from model.evaluation.direction_folds import STATE, Windows, capture_windows, join
from model.evaluation.l2_depth_folds import pool, score_real
from model.network.direction import choose_penalty, fit_horizon, probabilities

FIXED = (1e-3, 1e-1)
CHOSEN = "head, L2 chosen"


def collect(model: str, paths: list[str]) -> dict[str, Windows]:
    """capture -> its real windows' head state, QI and OFI inputs, and per horizon the labels and validity."""
    found = []
    for path in paths:
        run = score_real(model, path, direction_state=True)
        if run is not None:
            found.append(capture_windows(*run, deeplob=False))
            print(f"{path}: {', '.join(f'{n} {len(w[STATE])}' for n, w in found[-1].items())}", file=sys.stderr)
    return pool(found, join)


def head_probs(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, l2: float) -> np.ndarray:
    w, b, _ = fit_horizon(x, y, np.ones(len(y)), l2)
    return probabilities(x_test, w, b)


def scored_pool(doc: str | None, argv: list[str] | None) -> tuple[dict[str, Windows], list[str]]:
    """The command line's pool (`collect`) and its Binance captures, each scored left out; exits 2 without one."""
    args = pool_parser(doc).parse_args(argv)
    pool = collect(args.model, args.data)
    evaluated = [c for c in sorted(pool) if c.startswith(EVALUATED)]
    if not evaluated:
        print("no Binance capture in --data", file=sys.stderr)
        raise SystemExit(2)
    return pool, evaluated


def main(argv: list[str] | None = None) -> int:
    pool, evaluated = scored_pool(__doc__, argv)
    methods = [CHOSEN] + [f"head L2 {p:g}" for p in FIXED] + [QI, OFI]
    rows = []
    for h in HORIZONS:
        for c in evaluated:
            ok = pool[c][f"ok{h}"]
            y = pool[c][f"y{h}"][ok]
            others = [o for o in pool if o != c]

            def fit_set(key: str, others: list[str] = others, h: int = h) -> np.ndarray:
                return np.concatenate([pool[o][key][pool[o][f"ok{h}"]] for o in others])

            y_fit, x_fit = fit_set(f"y{h}"), fit_set(STATE)
            groups = np.concatenate([np.full(int(pool[o][f"ok{h}"].sum()), i) for i, o in enumerate(others)])
            chosen, _ = choose_penalty(x_fit, y_fit, groups, np.ones(len(y_fit), bool))
            penalties = {CHOSEN: chosen} | {f"head L2 {p:g}": p for p in FIXED}
            probs = {m: head_probs(x_fit, y_fit, pool[c][STATE][ok], p) for m, p in penalties.items()}
            probs |= {m: fit_predict(fit_set(m), y_fit, pool[c][m][ok]) for m in (QI, OFI)}
            rows.append(
                (
                    str(h),
                    c,
                    str(int(ok.sum())),
                    f"{chosen:g}",
                    *(f"{macro_f1(y, probs[m]):.3f} / {macro_auc(y, probs[m]):.3f}" for m in methods),
                )
            )
            print(f"h{h} {c} done", file=sys.stderr)
    print("Macro F1 / AUC, each capture scored by the fit on every other capture's real windows\n")
    print_columns(("h", "capture left out", "n", "L2 chosen", *methods), rows, left=(1,))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
