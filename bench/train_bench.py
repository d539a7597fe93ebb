"""Training speed: optimizer steps per second of `train` for each model size on this machine's device
(CUDA where there is one, bf16 autocast there; else CPU), over one dataset file, side by side.

    python bench/train_bench.py --data build/demo-data/unseen.npz [--presets tiny,base,small] [--steps 200]

Each preset trains `--steps` pretraining steps from scratch at `--batch` windows a step (the rate is
train()'s own, taken over the loop: the first steps' warm-up included, the checkpoint and the calibration
after it not); printed: steps/s, windows/s and events/s (windows x 128 event tokens).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.training.train import TrainData, train


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("build/demo-data/unseen.npz"))
    p.add_argument("--presets", default="tiny,base,small")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    args = p.parse_args(argv)
    import torch

    data = TrainData.load(args.data)
    events = data.arrays["kind"].shape[1]
    where = torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != "cpu" else "CPU"
    print(f"{len(data):,} windows of {args.data}; {args.steps} steps of {args.batch} windows on {where} "
          f"(torch {torch.__version__}, {torch.get_num_threads()} CPU threads)")  # fmt: skip
    print(f"{'preset':<8}{'parameters':>12}{'steps/s':>10}{'windows/s':>12}{'events/s':>14}")
    for preset in args.presets.split(","):
        with tempfile.TemporaryDirectory() as out:
            run = train("pretrain", args.data, out, steps=args.steps, batch=args.batch, preset=preset,
                        device=args.device, checkpoint_every=args.steps, log_every=10**9, calib_windows=64,
                        data=data)  # fmt: skip
        w = run.steps_per_s * args.batch
        print(f"{preset:<8}{run.n_parameters:>12,}{run.steps_per_s:>10.1f}{w:>12,.0f}{w * events:>14,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
