"""`megatrading train`: pretrain or fine-tune the order-flow model on a dataset file.

    megatrading train --stage pretrain --data train.npz --out ckpt/pre --steps 2000
    megatrading train --stage finetune --data train.npz --init ckpt/pre --out ckpt/fine --steps 1000
    megatrading train --stage pretrain --data train.npz --out ckpt/pre --steps 4000 --resume
    megatrading train --stage pretrain --data train.npz --out ckpt/pre-nonews --without news   (ablation)
    megatrading train --stage finetune --data mine.npz --init model/checkpoints/demo --out ckpt/mine --steps 300
    megatrading train --stage direction --data train.npz --init ckpt/fine --out ckpt/fine-dir   (the head alone)
    megatrading train --stage l2-depth --data train.npz --init ckpt/fine --out ckpt/fine-l2   (the head alone)
    megatrading train --stage l2-volume --data train.npz unseen.npz --init ckpt/fine --out ckpt/fine-l2vol
    megatrading train --stage l2-direction --data train.npz unseen.npz --init ckpt/fine --out ckpt/fine-l2dir
    megatrading train --stage recalibration --data train.npz --init ckpt/fine --out ckpt/fine-recal
    megatrading train --stage l2-recalibration --data train.npz unseen.npz --init ckpt/fine --out ckpt/fine-l2recal
    megatrading train --stage classic-weight --data train.npz --init ckpt/fine --out ckpt/fine-classic
    megatrading train --stage calibration --data train.npz --init ckpt/fine --out ckpt/fine-cal
    megatrading train --stage event-chain --data train.npz --init ckpt/fine --out ckpt/fine-chain

`--stage direction` fits only the mid-direction head (what p_up / p_down are served from) on --init's
frozen network, as finetune does at its end, and copies everything else: for a checkpoint written
before the head existed (its p_up / p_down come from its mid quantiles until then). `--stage l2-depth`
likewise fits only the depth head of L2 books (model/network/l2_depth.py) on the data's L2 windows, and
`--stage l2-volume` their traded-volume head (model/network/l2_volume.py).
`--stage l2-direction` fits a direction head of its own for L2 books on the real captures alone, each
left out in turn to choose its penalty (it needs two captures at least; finetune never fits it).
`--stage recalibration` refits the spread and mid quantiles' recalibration (model/network/recalibration.py)
as finetune fits it at its end, bins and maps: for a checkpoint fitted under an earlier rule;
`--stage l2-recalibration` fits the level maps of L2 books on the real captures' windows alone, in the
recalibration's own bins (finetune never fits them, and switches off a checkpoint's); `--stage
classic-weight` fits only the weight of the spread's served quantiles against the EWMA's band, the
recalibration as --init has it (the recalibration fits it at its end); `--stage
calibration` likewise refits the anomaly score's surprise calibration (on every normal window); `--stage
event-chain` fits the scenario generator's joint draw of the next event's fields (model/network/event_chain.py),
as finetune does at its end. A head
stage takes several --data files, each encoded as --init, and fits on them together: the checkpoint
records them, and `evaluate` counts their seeds as seen.

From --init (or when resuming), the data must be encoded as that checkpoint: its training set, or a file of
`megatrading dataset --like CHECKPOINT_DIR` (anything else is refused, naming both encodings); the
checkpoint written carries the same encoding, and the target units of the one it started from.

The checkpoint folder gets model.safetensors + config.json (the model), optimizer.safetensors +
train_state.json (for --resume), losses.csv and curves.png. torch is needed (pip install .[model]).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model.inputs import ABLATIONS

# the stages that fit one post-hoc head of a trained checkpoint (model.training.train.HEADS)
HEAD_STAGES = {"direction": "direction", "l2-depth": "l2_depth", "l2-volume": "l2_volume",
               "l2-direction": "l2_direction", "recalibration": "recalibration", "l2-recalibration": "l2_recalibration",
               "classic-weight": "classic_weight", "calibration": "calibration",
               "event-chain": "event_chain"}  # fmt: skip


def cmd_train(args: argparse.Namespace) -> int:
    from model.training.train import STAGES, fit_head, train

    if args.stage in HEAD_STAGES:
        if args.init is None:
            raise ValueError(f"--stage {args.stage} fits a head of a trained checkpoint: give it as --init")
        from model.network.checkpoint import read_extra

        head = HEAD_STAGES[args.stage]
        out = fit_head(head, args.init, args.data, args.out, device=args.device)
        if (read_extra(out).get(head) or {}).get("windows") == 0:  # the fit's log line says why
            print(f"{args.stage}: no head fitted, the model's kept as --init had it -> {out}", file=sys.stderr)
        else:
            print(f"{args.stage}: head fitted on {', '.join(map(str, args.data))} -> {out}", file=sys.stderr)
        return 0
    if args.stage not in STAGES:
        raise ValueError(f"--stage {args.stage}: use one of {STAGES}")
    if len(args.data) != 1:
        raise ValueError(f"--stage {args.stage} trains on one --data file; several are for the head stages")
    run = train(
        args.stage,
        args.data[0],
        args.out,
        init=args.init,
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        device=args.device,
        seed=args.seed,
        resume=args.resume,
        preset=args.preset,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        without=tuple(args.without),
        real_weight=args.real_weight,
    )
    last = run.history[-1] if run.history else {}
    print(
        f"{args.stage}: step {run.step}, loss {last.get('loss', float('nan')):.4f}, "
        f"{run.n_parameters:,} parameters, {run.steps_per_s:.2f} steps/s -> {run.out_dir}",
        file=sys.stderr,
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `train` verb to the `megatrading` parser."""
    t = subparsers.add_parser(
        "train",
        help="pretrain or fine-tune the generative order-flow model (checkpoints in safetensors + JSON)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--stage", choices=("pretrain", "finetune", *HEAD_STAGES), required=True)
    t.add_argument(
        "--data",
        type=Path,
        nargs="+",
        required=True,
        help="a training set .npz (model.training.dataset) and its .json; a head stage takes several",
    )
    t.add_argument(
        "--init",
        type=Path,
        help="checkpoint folder to start from (finetune: the pretrained model, or any checkpoint whose encoding "
        "--data has: see `dataset --like`)",
    )
    t.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    t.add_argument("--steps", type=int, default=2000, help="total optimizer steps (default 2000)")
    t.add_argument("--batch", type=int, default=64, help="windows per step (default 64)")
    t.add_argument("--lr", type=float, help="peak learning rate (default 1e-3 pretrain, 3e-4 finetune)")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true", help="continue the run saved in --out up to --steps")
    t.add_argument(
        "--preset", choices=("tiny", "base", "small"), default="small", help="model size (ignored with --init)"
    )
    t.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)")
    t.add_argument("--log-every", type=int, default=50, help="steps between log lines (default 50)")
    t.add_argument(
        "--without",
        action="append",
        choices=ABLATIONS,
        default=[],
        help="leave a part out, for an ablation: rows (the book-state series), news (the headlines), news_age "
        "(each headline's age); repeatable",
    )
    t.add_argument(
        "--real-weight",
        type=float,
        default=1.0,
        help="draw windows of the real captures this many times as often as simulated ones (default 1)",
    )
    t.set_defaults(run=cmd_train)
    return t
