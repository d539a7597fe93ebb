"""Does `make checkpoint` reproduce the committed demo? A working tree where it ran, beside this one.

`make checkpoint` overwrites the committed checkpoint and its evaluation, so it runs in a clean clone
(2 CPU cores: 40 to 80 minutes), and this script compares that clone with this checkout:

    git clone -q . /tmp/ck && cp orderbook/native/_core*.so /tmp/ck/orderbook/native/
    (cd /tmp/ck && PYTHONPATH=/tmp/ck make -o $PWD/.venv/.installed checkpoint VENV=$PWD/.venv SHARED=$PWD/../shared)
    python bench/checkpoint_repro.py --other /tmp/ck

(PYTHONPATH: the venv's editable install points at this checkout; the clone's own code must run. `-o`:
make must not reinstall that venv from the clone, which would point it at /tmp/ck; the recipe passes `-o`
to its own sub-make, which does not inherit it.)

Printed:
- the dataset: the fingerprint of build/demo-data/{train,heldout}.npz here and there (arrays and
  metadata, bench/outputs_check.py's), equal or not;
- the networks: the committed checkpoint and the two ablations (build/demo-nonews, build/demo-nobook),
  per file how many tensors differ and the largest difference in a weight or bias;
- where each trained: torch, numpy and the CPU its config.json records (a network that differs with
  code, data and seed alike most likely trained on another torch build or CPU);
- the figures: every CRPS gain over the best of persistence, EWMA and HAR of the checkpoints in
  model/checkpoints/demo/evaluation{,-unseen}/metrics.json, here -> there, the moves largest first, and
  the anomaly AUROC and real next-event perplexity of each.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # a plain script: the working tree's code

from columns import print_columns  # noqa: E402
from outputs_check import arrays_md5  # noqa: E402

from model.evaluation.report import GAIN_REFERENCES  # noqa: E402

NETWORKS = ("model/checkpoints/demo", "build/demo-nonews", "build/demo-nobook")
EVALUATIONS = ("model/checkpoints/demo/evaluation", "model/checkpoints/demo/evaluation-unseen")
SHOWN = 12  # the largest moves printed per evaluation


def tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(path / "model.safetensors")


def network_difference(a: Path, b: Path) -> tuple[int, int, float, str]:
    """(tensors that differ, tensors, the largest absolute difference among the weights and biases
    (the trained parameters; buffers such as the calibration tables move with them, in their own
    units), the tensor it is in; inf where a shape differs)."""
    ta, tb = tensors(a), tensors(b)
    differ, largest, where = 0, 0.0, ""
    for name in sorted(set(ta) | set(tb)):
        x, y = ta.get(name), tb.get(name)
        if x is None or y is None or x.shape != y.shape:
            differ, largest, where = differ + 1, np.inf, name
        elif not np.array_equal(x, y, equal_nan=True):
            differ += 1
            gap = float(np.nanmax(np.abs(x.astype(np.float64) - y.astype(np.float64))))
            if name.endswith((".weight", ".bias")) and gap > largest:
                largest, where = gap, name
    return differ, len(set(ta) | set(tb)), largest, where


def gains(metrics: dict) -> dict[tuple[str, str, str], float]:
    """(part, target, checkpoint) -> 1 - its CRPS / the best reference's, for the checkpoints evaluated."""
    names = {m["name"] for m in metrics.get("models", [])} or {"model"}
    out = {}
    for part, p in metrics["parts"].items():
        for target, crps in p["crps"].items():
            best = min((crps[r] for r in GAIN_REFERENCES if crps.get(r) is not None), default=math.nan)
            for name in names & set(crps):
                if best > 0 and crps[name] is not None:  # as evaluation.md's gain (report.GAIN_REFERENCES)
                    out[part, target, name] = 1.0 - crps[name] / best
    return out


def training_environment(path: Path) -> dict | None:
    """The torch, numpy, CPU a checkpoint's last training stage ran on (model.training.train.environment)."""
    try:
        return (json.loads((path / "config.json").read_text()).get("train") or {}).get("environment")
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--other", type=Path, required=True, help="the working tree where make checkpoint ran")
    parser.add_argument("--here", type=Path, default=ROOT, help="the checkout compared with it (default: this one)")
    args = parser.parse_args(argv)
    here, other = args.here, args.other

    print("dataset (arrays and metadata):")
    for name in ("train", "heldout"):
        a, b = here / f"build/demo-data/{name}.npz", other / f"build/demo-data/{name}.npz"
        if not (a.is_file() and b.is_file()):
            print(f"  {name}.npz: not in both trees")
            continue
        print(f"  {name}.npz: {'identical' if arrays_md5(a) == arrays_md5(b) else 'DIFFERENT'}")

    print("\nnetworks (model.safetensors):")
    rows = []
    for rel in NETWORKS:
        if not ((here / rel / "model.safetensors").is_file() and (other / rel / "model.safetensors").is_file()):
            rows.append((rel, "not in both trees", "", "", ""))
            continue
        differ, total, largest, where = network_difference(here / rel, other / rel)
        rows.append((rel, "identical" if differ == 0 else "differ", f"{differ}/{total}", f"{largest:.3g}", where))
    print_columns(("checkpoint", "tensors", "differing", "largest in a weight", "in"), rows, left=(0, 4))
    print("\nwhere each network trained (config.json's train.environment; absent before 2026-12-06):")
    for rel in NETWORKS:
        envs = [training_environment(t / rel) for t in (here, other)]
        same = "the same" if envs[0] == envs[1] and envs[0] else "DIFFERENT" if all(envs) else "not recorded"
        print(f"  {rel}: {same}")
        for side, env in zip(("here", "there"), envs, strict=True):
            if env and same != "the same":
                print(f"    {side}: {env}")

    for rel in EVALUATIONS:
        a, b = (json.loads((t / rel / "metrics.json").read_text()) for t in (here, other))
        ga, gb = gains(a), gains(b)
        keys = sorted(set(ga) & set(gb), key=lambda k: -abs(gb[k] - ga[k]))
        print(f"\n{rel}: CRPS gain over the best of {', '.join(GAIN_REFERENCES)}, here -> there "
              f"({len(keys)} figures, the {min(SHOWN, len(keys))} largest moves)")  # fmt: skip
        moves = [(p, t, n, f"{100 * ga[p, t, n]:+.1f}%", f"{100 * gb[p, t, n]:+.1f}%",
                  f"{100 * (gb[p, t, n] - ga[p, t, n]):+.1f}") for p, t, n in keys[:SHOWN]]  # fmt: skip
        print_columns(("part", "target", "checkpoint", "here", "there", "points"), moves, left=(0, 1, 2))
        for name in sorted(a.get("perplexity", {})):
            auroc = [m.get("overall", {}).get(name) for m in (a.get("anomaly", {}), b.get("anomaly", {}))]
            real = [m["perplexity"][name].get("real") for m in (a, b)]
            line = f"  {name}: real next-event perplexity {real[0]:.1f} -> {real[1]:.1f}"
            if all(x and x[0] is not None for x in auroc):
                line += f"; anomaly AUROC {auroc[0][0]:.4f} -> {auroc[1][0]:.4f}"
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
