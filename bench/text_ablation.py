"""The text encoders side by side on held-out news-driven windows (issue 13: the pretrained sentence
encoder beside the built-in hashed-word one, chosen by an ablation on news-driven windows).

Each model is given with the held-out dataset encoded as it reads it (the same windows: `make checkpoint`'s
recipe, once with `dataset --text-encoder minilm`), as NAME=CHECKPOINT:DATASET. Printed, on the windows
with a headline of their symbol (news_kind > 0): CRPS per target, the next-event perplexity, and the
direction head's macro AUC at 10 / 100 messages after earnings headlines (the simulator's positive and
negative kinds), each model beside the first.

    python bench/text_ablation.py \\
        hashed=model/checkpoints/demo:build/demo-data/heldout.npz \\
        minilm=build/demo-minilm:build/minilm/heldout.npz \\
        none=build/demo-nonews:build/demo-data/heldout.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.evaluation.direction import EARNINGS_NEWS, HORIZONS, _valid, macro_auc
from model.evaluation.evaluate import window_crps
from model.evaluation.outputs import ModelOutputs, model_outputs
from model.network.direction import direction_labels
from model.network.orderflow import TARGETS
from model.training.dataset import load, subset


def parse(text: str) -> tuple[str, Path, Path]:
    name, _, rest = text.partition("=")
    ckpt, _, data = rest.rpartition(":")
    if not (name and ckpt and data):
        raise argparse.ArgumentTypeError(f"{text!r}: NAME=CHECKPOINT:DATASET")
    return name, Path(ckpt), Path(data)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", type=parse, nargs="+", metavar="NAME=CHECKPOINT:DATASET")
    args = p.parse_args(argv)
    rows: dict[str, tuple[ModelOutputs, dict[str, np.ndarray]]] = {}
    for name, ckpt, data in args.models:
        ds = load(data)
        ds = subset(ds, ds.arrays["news_kind"] > 0)
        rows[name] = (model_outputs(ckpt, ds.arrays, ds.meta, name, data_name=str(data)), ds.arrays)
    first = next(iter(rows))
    arrays = rows[first][1]
    for name, (_, a) in rows.items():
        if not np.array_equal(a["event_ts"], arrays["event_ts"]) or not np.array_equal(a["seed"], arrays["seed"]):
            raise SystemExit(f"{name}: its dataset's news-driven windows are not {first}'s")
    crps = window_crps(arrays, {name: out.quantiles for name, (out, _) in rows.items()})
    print(f"{len(arrays['label']):,} held-out news-driven windows; change against {first} (negative: better)")
    print(f"{'target':<14}" + "".join(f"{n:>18}" for n in rows))
    for t in TARGETS:
        base = np.nanmean(crps[first][t])
        cells = []
        for n in rows:
            v = np.nanmean(crps[n][t])
            cells.append(f"{v:>10.4f}" + (f" ({(v - base) / base:+.1%})" if n != first else " " * 8))
        print(f"{t:<14}" + "".join(f"{c:>18}" for c in cells))
    print(f"{'perplexity':<14}" + "".join(f"{out.perplexity():>18.2f}" for out, _ in rows.values()))
    earnings = np.isin(arrays["news_kind"], EARNINGS_NEWS)
    for h in HORIZONS:
        ok = _valid(arrays, h, HORIZONS) & earnings
        y = direction_labels(arrays[f"mid_h{h}"])[ok]
        cells = [f"{macro_auc(y, out.direction[f'mid_h{h}'][ok]):>18.3f}" if out.direction else f"{'-':>18}"
                 for out, _ in rows.values()]  # fmt: skip
        print(f"{'AUC ' + str(h) + ' earn.':<14}" + "".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
