"""The outputs a refactor must not change, fingerprinted: `make outputs-check` (issue 11).

    python bench/outputs_check.py --record bench/outputs.json   # once, on the code before a move
    python bench/outputs_check.py --check bench/outputs.json    # after it: exit 1 on any difference

Fingerprints, each an md5 over exact bytes:
- the demo dataset: `make checkpoint`'s `megatrading dataset` command (the Makefile's own arguments),
  train and held-out files, every array's name, dtype, shape and bytes, and the json metadata;
- the committed checkpoint's scores on the held-out file: `megatrading evaluate` of
  model/checkpoints/demo on that held-out file, every figure of metrics.json that is the model's own
  (the classic baselines beside it are not the checkpoint's scores), compared within 1e-12 relative;
- the committed checkpoint's forecasts row by row (`megatrading score`'s CSV) on the held-out real
  capture (Binance spot ETHUSDT) and on a simulated ITCH file.

bench/outputs.json was recorded on 347f6cd, the code before issue 11's restructure, and re-recorded on
00b3183, when the demo checkpoint got its direction head: `--check` against the old record then differed
in the score CSVs' p_up / p_down columns alone (the dataset and every evaluate figure the same), and
re-recorded when the demo was retrained with depth's pinball loss in its units (the dataset's
fingerprints the same, every score of the model new), and when the rows got the depth memory and the
checkpoint its L2 depth head (a new dataset, a new model), and when the demo's anomalies were each
drawn at an intensity from 0.4 to 1 (a new dataset, a new model), and when the heads of L2 books were
refitted on eight captures (the dataset the same; the direction and depth of L2 windows new), and when
the simulator's efficient price became its default (a new dataset, a new model), and when the
recalibration's floor bins got one map (the dataset the same; the spread and mid quantiles new), and
when the demo was retrained reading the headlines' ages (the dataset with news_age added, a new model), and
when the demo's earnings were priced over seconds and the recalibration got its news bins (a new dataset, a
new model), and when books of price levels got level maps of their own (the dataset the same; the spread
and mid of L2 windows new), and when the simulator's market makers repriced the book through cancels (a
new dataset, a new model), and when the spread's served quantiles were combined with the EWMA's band (the
dataset the same; the spread of windows that are not of books of price levels new), and when books of
price levels got a volume head of their own (the dataset the same; the volume of L2 windows new: `--check`
before the record differed in the evaluate figures and the spot ETHUSDT CSV's two volume columns alone),
and when the volume got persistence and EWMA baselines (the model's volume gains over them are new
figures of metrics.json; every other figure and fingerprint the same). The checkpoint then changed twice
(003e4d6, 4d1a324) with no new record, and `--check` differed in 4 of 5 outputs until it was re-recorded
(2026-12-06); the record now names the checkpoint files' md5s, and make test fails where they are not
the committed ones. About 11 minutes on
2 cores (2026-12-03: the dataset 8, evaluate 3). The dataset's md5s are of the CPU that recorded them:
numpy's log1p differs in a last bit between SIMD paths (README, "Reproducing it"), so a record is
checked on the machine that made it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT / "model" / "checkpoints" / "demo"
SHARED = Path(os.environ.get("SHARED", ROOT.parent / "shared"))
HELD_OUT_CAPTURE = SHARED / "data" / "binance-hftbacktest" / "spot_ethusdt_20240808.gz"
BIN = Path(sys.executable).parent


def megatrading(*args: str) -> None:
    cmd = [str(BIN / "megatrading"), *args]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL)
    print(f"  {time.perf_counter() - t0:6.1f} s  megatrading {shlex.join(args)[:140]}", file=sys.stderr)


def checkpoint_dataset_args() -> list[str]:
    """The arguments of `make checkpoint`'s dataset step, read from the Makefile so the two never differ."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    m = re.search(r"^DEMO_SOURCES := (.*)$", text, re.MULTILINE)
    if m is None:
        raise SystemExit("outputs_check: no DEMO_SOURCES in the Makefile")
    return shlex.split(m[1].replace("$(SHARED)", str(SHARED)))


def arrays_md5(npz: Path) -> str:
    h = hashlib.md5()
    with np.load(npz, allow_pickle=False) as z:
        for name in sorted(z.files):
            a = z[name]
            h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
            h.update(np.ascontiguousarray(a).tobytes())
    meta = json.loads(npz.with_suffix(".json").read_text())
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()


def model_figures(x: Any, path: str = "", mine: bool = False) -> dict[str, float]:
    """Every number of metrics.json that is the checkpoint's own (methods named `model...`: the model,
    its surprise, head, anchor, unrecalibrated quantiles), flattened to {path: value}; the baselines
    beside them and the run's bookkeeping (`data`, `models`) left out."""
    out: dict[str, float] = {}
    if isinstance(x, dict):
        for k, v in x.items():
            if not path and k in ("data", "models", "sources", "seeds"):
                continue
            out |= model_figures(v, f"{path}/{k}", mine or str(k).startswith("model"))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            out |= model_figures(v, f"{path}/{i}", mine)
    elif mine and isinstance(x, int | float) and not isinstance(x, bool):
        out[path] = float(x)
    return out


def figures_equal(a: dict[str, float], b: dict[str, float], rel: float = 1e-12) -> tuple[bool, str]:
    """Equal keys and values within `rel` (a ranking metric's implementation changed, as the AUROC's from
    scikit-learn's to the U statistic over ranks, gives the same figures summed in another order, 1 ulp
    apart)."""
    if set(a) != set(b):
        return False, f"keys differ: {sorted(set(a) ^ set(b))[:5]}"
    worst = max((abs(a[k] - b[k]) / max(abs(a[k]), 1e-300) for k in a if a[k] != b[k]), default=0.0)
    return worst <= rel, f"{len(a)} figures, largest relative difference {worst:.2g}"


def file_md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


KEPT = ("ethusdt.csv", "sim.csv", "eval/metrics.json")


def max_differences(a: Path, b: Path) -> dict[str, float]:
    """Per CSV column, the largest |a - b| (the files must have the same rows)."""
    import csv

    with open(a) as fa, open(b) as fb:
        ra, rb = list(csv.DictReader(fa)), list(csv.DictReader(fb))
    if len(ra) != len(rb):
        return {"rows": float(abs(len(ra) - len(rb)))}
    out: dict[str, float] = {}
    for x, y in zip(ra, rb, strict=True):
        for k in x:
            try:
                d = abs(float(x[k]) - float(y[k]))
            except ValueError:
                d = float(x[k] != y[k])
            out[k] = max(out.get(k, 0.0), d)
    return {k: v for k, v in out.items() if v > 0}


def checkpoint_md5s() -> dict[str, str]:
    """The committed checkpoint's files the other fingerprints are of (tests/test_outputs_check.py: a new
    checkpoint without a new record fails make test)."""
    return {name: file_md5(CKPT / name) for name in ("model.safetensors", "config.json")}


def fingerprints(work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"checkpoint": checkpoint_md5s()}
    train, held = work / "train.npz", work / "heldout.npz"
    megatrading("dataset", *checkpoint_dataset_args(), "--out", str(train), "--held-out-out", str(held))
    out["dataset train.npz"] = arrays_md5(train)
    out["dataset heldout.npz"] = arrays_md5(held)
    print(f"  {out}", file=sys.stderr)

    ev = work / "eval"
    megatrading("evaluate", "--data", str(held), "--model", f"generative:{CKPT}", "--out", str(ev))
    out["evaluate: the model's figures"] = model_figures(json.loads((ev / "metrics.json").read_text()))

    scores = work / "ethusdt.csv"
    megatrading("score", str(HELD_OUT_CAPTURE), "--format", "binance", "--model", f"generative:{CKPT}",
                "--out", str(scores))  # fmt: skip
    out["score spot_ethusdt csv"] = file_md5(scores)

    sim = work / "sim"
    megatrading("simulate", "--seed", "9", "--duration", "10m", "--symbols", "2", "--format", "itch",
                "--news", "6", "--anomalies", "all", "--anomaly-rate", "6", "--out", str(sim))  # fmt: skip
    itch = sorted(sim.glob("*ITCH50"))
    news = sorted(sim.glob("news.jsonl"))
    cmd = [
        "score",
        *map(str, itch),
        "--format",
        "itch",
        "--model",
        f"generative:{CKPT}",
        "--out",
        str(work / "sim.csv"),
    ]
    if news:
        cmd += ["--news", str(news[0])]
    megatrading(*cmd)
    out["score simulated itch csv"] = file_md5(work / "sim.csv")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--record", type=Path, help="write the fingerprints here")
    g.add_argument("--check", type=Path, help="compare with the fingerprints recorded here")
    args = ap.parse_args()
    # the compared files are kept outside the repository, for a column-by-column look when an md5 differs
    keep = Path(tempfile.gettempdir()) / "outputs-check" / (args.record or args.check).stem
    with tempfile.TemporaryDirectory(prefix="outputs-check-") as tmp:
        now = fingerprints(Path(tmp))
        for name in KEPT:
            src, dst = Path(tmp) / name, keep / ("now" if args.check else "recorded") / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    if args.record:
        args.record.write_text(json.dumps(now, indent=2) + "\n")
        print(f"recorded {len(now)} fingerprints -> {args.record}")
        return 0
    then = json.loads(args.check.read_text())
    bad = 0
    for name in sorted(set(then) | set(now)):
        if isinstance(now.get(name), dict) and isinstance(then.get(name), dict):
            same, said = figures_equal(then[name], now[name])
        else:
            same, said = then.get(name) == now.get(name), f"{now.get(name)} (recorded {then.get(name)})"
        bad += not same
        print(f"{'same' if same else 'DIFFERS':8} {name}: {said}")
        csv_name = {"score spot_ethusdt csv": "ethusdt.csv", "score simulated itch csv": "sim.csv"}.get(name)
        if not same and csv_name and (keep / "recorded" / csv_name).is_file():
            diffs = max_differences(keep / "recorded" / csv_name, keep / "now" / csv_name)
            print("         largest |difference| per column: " + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()))
    print(f"{len(now) - bad} of {len(now)} outputs identical to {args.check}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
