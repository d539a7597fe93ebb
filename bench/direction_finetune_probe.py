"""Does training the network itself on mid direction carry to an instrument it never saw, where the
linear head on its frozen state stops short (issue 13: USD-M ETHUSDT at 100 messages; docs/design.md,
Model decisions)?

The checkpoint's network is fine-tuned on the real windows of every capture of the --data files but the
--held ones, on direction alone (cross-entropy of down / stationary / up at 10 and 100 messages, a
linear layer on its `direction_input` state, the whole network trained). After each of --steps, each
held capture is scored as evaluate's left-one-out folds score it: a head fitted on the new state of
every other capture (direction.fit_horizon at the penalties the folds chose, 1e-2 at 10 messages and
3e-2 at 100), beside the queue-imbalance regression fitted on the same windows; macro F1 and AUC. Step 0
is the checkpoint as it is. The held captures play no part in the fine-tuning.

What it showed (2026-12-04, on a lent H200, --data one dataset of the nine real captures encoded as the
demo checkpoint, bench/README.md; 107 s there): the training loss (the two horizons' cross-entropies
summed, mean of the last 100 steps of 256 windows) 1.19 / 0.92 / 0.46 after 500 / 1,500 / 4,000 steps,
and the held-out AUC did not follow: USD-M ETHUSDT at 100 messages 0.606 -> 0.600 / 0.608 / 0.598 (F1
0.375 -> 0.371 / 0.379 / 0.396, the regression 0.445 / 0.624), at 10 messages 0.852 -> 0.844 / 0.819 /
0.797 (F1 up, 0.415 -> 0.494); spot ETHUSDT at 100 0.600 -> 0.602 /
0.585 / 0.543. Seven captures of one day are memorized, not generalized from.

    python bench/direction_finetune_probe.py [--model model/checkpoints/demo] [--data build/realpool/all.npz]
        [--held usdm_ethusdt_20240808,spot_ethusdt_20240808] [--steps 500,1500,4000] [--device auto]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a plain script: the working tree

from columns import print_columns

from model.evaluation.direction import HORIZONS, QI, fit_predict, macro_auc, macro_f1, window_inputs
from model.evaluation.direction_folds import labels
from model.network import checkpoint
from model.network.direction import fit_horizon, probabilities
from model.network.orderflow import to_batch
from model.serving.orderflow import best_device
from model.training.dataset import capture_names, load

PENALTY = {10: 1e-2, 100: 3e-2}  # what the left-one-out folds chose for the head (direction.py's docstring)
HELD = ("usdm_ethusdt_20240808", "spot_ethusdt_20240808")


def real_windows(paths: list[Path], every: int) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """(arrays, capture names, labels and QI inputs) of the real windows of `paths` (every `every`-th),
    files joined."""
    parts, names, extra = [], [], []
    for path in paths:
        ds = load(path)
        n = capture_names(ds.arrays, ds.meta)
        keep = np.flatnonzero(n != "")[::every]
        part = {k: v[keep] for k, v in ds.arrays.items()}
        parts.append(part)
        names.append(n[keep])
        extra.append(labels(part, ds.meta) | {QI: window_inputs(part, ds.meta)[QI]})

    def joined(dicts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {k: np.concatenate([d[k] for d in dicts]) for k in set.intersection(*(set(d) for d in dicts))}

    return joined(parts), np.concatenate(names), joined(extra)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="model/checkpoints/demo")
    p.add_argument("--data", nargs="+", type=Path, default=[Path("build/realpool/all.npz")])
    p.add_argument("--held", default=",".join(HELD), help="captures left out of the fine-tuning and scored")
    p.add_argument("--steps", default="500,1500,4000", help="scored after each of these many steps")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-4, help="the network's (the direction layer's: 10x)")
    p.add_argument("--device", default="auto")
    p.add_argument("--every", type=int, default=1, help="every N-th real window only (a smoke run)")
    args = p.parse_args(argv)
    device = best_device(args.device)
    arrays, names, w = real_windows(args.data, args.every)
    held = [c for c in args.held.split(",") if c in set(names)]
    if not held:
        print(f"none of {args.held} in --data", file=sys.stderr)
        return 2
    model, _, _ = checkpoint.load(args.model, device)
    keys = [k for k in model.batch_keys if k in arrays]
    bf16 = device.type == "cuda"

    def state() -> np.ndarray:
        model.eval()
        out = []
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            for lo in range(0, len(names), 1024):
                b = to_batch({k: arrays[k][lo : lo + 1024] for k in keys}, device)
                out.append(model(b)["direction_input"].float().cpu().numpy())
        return np.concatenate(out)

    rows: list[tuple[str, ...]] = []

    def score(step: int, loss: float) -> int:
        """The rows after `step` steps; the state's width."""
        s = state()
        for c in held:
            for h in HORIZONS:
                fit, scored = (names != c) & w[f"ok{h}"], (names == c) & w[f"ok{h}"]
                y = w[f"y{h}"]
                wt, bt, _ = fit_horizon(s[fit], y[fit], np.ones(int(fit.sum())), PENALTY[h])
                head = probabilities(s[scored], wt, bt)
                qi = fit_predict(w[QI][fit], y[fit], w[QI][scored])
                rows.append((f"{step:,}", f"{loss:.3f}" if step else "-", c, str(h),
                             f"{macro_f1(y[scored], head):.3f} / {macro_auc(y[scored], head):.3f}",
                             f"{macro_f1(y[scored], qi):.3f} / {macro_auc(y[scored], qi):.3f}"))  # fmt: skip
        print(f"step {step:,} scored", file=sys.stderr)
        return s.shape[1]

    t0 = time.perf_counter()
    layer = torch.nn.Linear(score(0, 0.0), len(HORIZONS) * 3).to(device)
    groups = [{"params": model.parameters(), "lr": args.lr}, {"params": layer.parameters(), "lr": 10 * args.lr}]
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    fit_rows = np.flatnonzero(~np.isin(names, held) & np.logical_or.reduce([w[f"ok{h}"] for h in HORIZONS]))
    y_t = {h: torch.from_numpy(w[f"y{h}"]).to(device) for h in HORIZONS}
    ok_t = {h: torch.from_numpy(w[f"ok{h}"]).to(device) for h in HORIZONS}
    rng = np.random.default_rng(0)
    step, losses = 0, []
    for target in (int(s) for s in args.steps.split(",")):
        model.train()
        while step < target:
            idx = rng.choice(fit_rows, args.batch)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                s = model(to_batch({k: arrays[k][idx] for k in keys}, device))["direction_input"]
            logits = layer(s.float()).view(-1, len(HORIZONS), 3)
            it = torch.from_numpy(idx).to(device)
            loss = sum(torch.nn.functional.cross_entropy(logits[ok_t[h][it], j], y_t[h][it][ok_t[h][it]])
                       for j, h in enumerate(HORIZONS) if ok_t[h][it].any())  # fmt: skip
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
        score(step, float(np.mean(losses[-100:])))
    print(f"{args.model} fine-tuned on direction on {len(fit_rows):,} real windows ({device}), "
          f"{time.perf_counter() - t0:.0f} s; scored left one out: {', '.join(held)}\n")  # fmt: skip
    head = ("step", "train loss", "capture left out", "h", "head F1 / AUC", "queue imbalance LR F1 / AUC")
    print_columns(head, rows, left=(2,))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
