"""A small scaling study on CPU: three model sizes x two data sizes, held-out next-event loss and CRPS
against parameters (the model card's scaling.md and scaling.png).

    python bench/scaling_study.py            # the defaults below; needs `make checkpoint`'s dataset files

Measured, for each of the 6 cells (ModelConfig preset tiny | base | small x the full | half training set):
- training as the demo's recipe (Makefile `checkpoint`), shortened: `train --stage pretrain` then
  `--stage finetune --init` it (model/training/train.py `train`, batch 32, seed 1, finetune lr 1e-3),
  with a fixed step budget (--pretrain-steps 300 --finetune-steps 300): every cell sees the same number
  of windows, 19,200, so the study is of size and data at a fixed, small compute budget, not of
  converged models. The train seconds are the wall time of both stages, the fits that end a finetune
  run (anomaly calibration, quantile recalibration and direction head, each a pass over every training
  window) included; two cells run side by side, one thread each (OMP_NUM_THREADS=1).
- on the held-out file (`make checkpoint`'s heldout.npz: simulated seeds 9-10, 21-40 and the real capture
  Binance spot ETHUSDT, none trained on), subsampled to --eval-windows (default 6000: every real window,
  the rest a seeded random draw of the simulated ones), with the project's evaluation code
  (model/evaluation/outputs.py `model_outputs`, model/evaluation/evaluate.py `window_crps` and
  `part_metrics`, on the simulated and the real windows apart):
  - next-event NLL per event (nats; the mean over the windows' real (event, next event) pairs of the
    sum of the five field cross-entropies), and the perplexity exp(NLL) on all evaluated windows;
  - CRPS (from the q10/q50/q90, model/evaluation/metrics.py) of spread, depth and mid at 10 and 100
    messages, each in its own unit, and the relative CRPS: per target the model's CRPS over the best
    classic baseline's (persistence, EWMA, HAR: model/evaluation/report.py GAIN_REFERENCES) on the same
    windows, averaged over the six targets (below 1: better than the baselines).

The half training set: the earlier half in time of every source's windows (model/training/adapt.py
`time_split`, the tail of each source left out), written to build/scaling/train-half.npz with the full
set's json (model/training/dataset.py `subset` and `save`). Not a random half of the windows: they are cut
every 32 events over 128, so a random half still holds ~94% of the events and would not halve the data.
Not half of the sources either: the real captures are five of very unequal size (5139 windows to 11), so
any half of them changes the real share and the venues seen, not only the amount. The time half keeps
every source and venue at its share and halves the distinct flow; what it changes beside the amount is
that each simulated hour's second half-hour is not seen.

Output: the tables to stdout and --out-md (model/checkpoints/demo/evaluation/scaling.md), the two panels
(NLL per event and relative CRPS against parameters, log x, one colour per data size, simulated solid and
real dashed) to --out-png (scaling.png beside it); checkpoints, the subset files and one log and result
json per cell under --work (build/scaling/). A cell whose result.json is there for the same settings is
not trained again (--fresh trains every cell).

Time on 2 CPU cores, defaults: 30 minutes wall (2026-12-02, an alerts evaluation beside it for 7 of them;
52 on 2026-11-30 with the cores shared more). The small preset is most of it, 29 minutes on the full set
and 20 on the half (its 600 steps, then the finetune fits: passes of its 2.8M-parameter network over
every training window); base 4 and 3 minutes, tiny 1.3 and 0.8, beside it. The defaults were 400 +
400 steps at first, cut to 300 + 300 once the first cells' speed under that load was seen.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]  # a plain script: the working tree, installed or not

PRESETS = ("tiny", "base", "small")
DATA_SIZES = ("full", "half")
CRPS_TARGETS = tuple(f"{x}_h{h}" for x in ("spread", "depth", "mid") for h in (10, 100))
PARTS = ("simulated", "real")
DEFAULT_DATA = "build/demo-data/train.npz"
DEFAULT_HELDOUT = "build/demo-data/heldout.npz"
EVALUATION = REPO / "model" / "checkpoints" / "demo" / "evaluation"
# longest first: two workers then finish close together (the small preset on the full set is most of it)
MIN_REFERENCE = 1e-6
ORDER = [(p, d) for p in reversed(PRESETS) for d in DATA_SIZES]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="training set (make checkpoint's dataset step)")
    p.add_argument("--heldout", default=DEFAULT_HELDOUT, help="held-out set (make checkpoint's dataset step)")
    p.add_argument("--pretrain-steps", type=int, default=300)
    p.add_argument("--finetune-steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=1, help="training seed (and the evaluation draw's)")
    p.add_argument("--finetune-lr", type=float, default=1e-3, help="as the demo's recipe (Makefile)")
    p.add_argument("--eval-windows", type=int, default=6000,
                   help="held-out windows: every real one, the rest a seeded draw of simulated ones")  # fmt: skip
    p.add_argument("--jobs", type=int, default=2, help="cells trained side by side, one thread each; 1: in process")
    p.add_argument("--work", default="build/scaling", help="checkpoints, subset files, logs")
    p.add_argument("--out-md", default=str(EVALUATION / "scaling.md"))
    p.add_argument("--out-png", default=str(EVALUATION / "scaling.png"))
    p.add_argument("--fresh", action="store_true", help="train every cell again, even with a result for it")
    p.add_argument("--report-only", action="store_true", help="train nothing: the tables of the cells done so far")
    p.add_argument("--cell", help=argparse.SUPPRESS)  # a worker: the spec json of one cell
    return p.parse_args(argv)


def _path(p: str | Path) -> Path:
    p = Path(p)
    return p if p.is_absolute() else REPO / p


# --------------------------------------------------------------------------- data


def require_data(data: Path, heldout: Path) -> None:
    """Exit with the command that makes the files when they are not here."""
    missing = [str(p) for p in (data, heldout) if not p.is_file()]
    if missing:
        from outputs_check import checkpoint_dataset_args

        cmd = shlex.join(["megatrading", "dataset", *checkpoint_dataset_args()])
        raise SystemExit(f"scaling_study: {', '.join(missing)} missing: run `make checkpoint`'s dataset step, "
                         f"`{cmd} --out {DEFAULT_DATA} --held-out-out {DEFAULT_HELDOUT}`")  # fmt: skip


def _fresh(out: Path, *inputs: Path) -> bool:
    return (
        out.is_file()
        and out.with_suffix(".json").is_file()
        and all(out.stat().st_mtime >= p.stat().st_mtime for p in inputs)
    )


def half_set(data: Path, out: Path) -> Path:
    """The earlier half in time of every source's windows of `data` (module docstring), as `out`."""
    from model.training.adapt import time_split
    from model.training.dataset import load, save, subset
    from model.training.train import TrainData

    if _fresh(out, data):
        return out
    ds = load(data)
    earlier, _ = time_split(TrainData(ds.arrays, ds.meta, data), 0.5)
    keep = np.zeros(len(ds), bool)
    keep[earlier] = True
    save(subset(ds, keep), out)
    return out


def eval_set(heldout: Path, out: Path, n: int, seed: int) -> Path:
    """At most `n` held-out windows (every real one kept, the rest a seeded draw of the simulated ones), as
    `out`, in their order in the file."""
    from model.training.dataset import load, save, subset

    tag = out.with_name(out.stem + ".draw")
    if _fresh(out, heldout) and tag.is_file() and tag.read_text() == f"{n} {seed}":
        return out
    ds = load(heldout)
    real = ds.arrays["seed"] < 0
    sim = np.flatnonzero(~real)
    keep = real.copy()
    take = max(0, min(len(sim), n - int(real.sum())))
    keep[np.random.default_rng(seed).choice(sim, take, replace=False)] = True
    save(subset(ds, keep), out)
    tag.write_text(f"{n} {seed}")
    return out


# --------------------------------------------------------------------------- one cell


def run_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one (preset, data) cell, pretrain then finetune, evaluate it on the held-out draw, and write
    its result.json into its folder."""
    import torch

    from model.training.train import TrainData, train

    logging.getLogger("megatrading").setLevel(logging.WARNING)
    if os.environ.get("OMP_NUM_THREADS") == "1":
        torch.set_num_threads(1)
    started = time.time()
    cell = Path(spec["dir"])
    data = TrainData.load(spec["data"])
    common = dict(batch=spec["batch"], device="cpu", seed=spec["seed"], data=data)
    t0 = time.perf_counter()
    pre = train("pretrain", spec["data"], cell / "pre", steps=spec["pretrain_steps"], preset=spec["preset"],
                checkpoint_every=max(1, spec["pretrain_steps"]), **common)  # fmt: skip
    t1 = time.perf_counter()
    train("finetune", spec["data"], cell / "fine", init=cell / "pre", steps=spec["finetune_steps"],
          lr=spec["finetune_lr"], checkpoint_every=max(1, spec["finetune_steps"]), **common)  # fmt: skip
    t2 = time.perf_counter()
    result = {"spec": spec, "windows": len(data), "parameters": pre.n_parameters,
              "pretrain_s": t1 - t0, "finetune_s": t2 - t1, "train_s": t2 - t0}  # fmt: skip
    result |= evaluate_checkpoint(cell / "fine", Path(spec["heldout"]))
    result |= {"eval_s": time.perf_counter() - t2, "started": started, "finished": time.time()}
    (cell / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def evaluate_checkpoint(ckpt: Path, heldout: Path) -> dict[str, Any]:
    """NLL per event (all windows and each part) and CRPS per target and part, of the model and of the
    classic baselines on the same windows."""
    from model.evaluation.baselines import baseline_forecasts
    from model.evaluation.evaluate import PARTS as SELECT
    from model.evaluation.evaluate import part_metrics, window_crps
    from model.evaluation.outputs import model_outputs
    from model.training.dataset import load

    ds = load(heldout)
    out = model_outputs(ckpt, ds.arrays, ds.meta, "model", data_name=str(heldout))
    seen = set(out.train_seeds or ()) & {int(s) for s in np.unique(ds.arrays["seed"])}
    if seen:
        raise ValueError(f"{ckpt} was trained on seeds {sorted(seen)} of {heldout}: not held out")
    crps = window_crps(ds.arrays, {"model": out.quantiles} | baseline_forecasts(ds.arrays, ds.meta))
    nll, parts = {"all": math.log(out.perplexity())}, {}
    for part in PARTS:
        keep = SELECT[part](ds.arrays)
        if keep.any():
            nll[part] = math.log(out.perplexity(keep))
            parts[part] = part_metrics(ds.arrays, crps, keep)
    return {"eval_windows": len(ds), "nll": nll, "parts": parts}


# --------------------------------------------------------------------------- the study


def cell_specs(args: argparse.Namespace, files: dict[str, Path], heldout: Path, work: Path) -> list[dict[str, Any]]:
    return [
        {
            "preset": preset,
            "data_size": size,
            "data": str(files[size]),
            "heldout": str(heldout),
            "dir": str(work / f"{preset}-{size}"),
            "pretrain_steps": args.pretrain_steps,
            "finetune_steps": args.finetune_steps,
            "batch": args.batch,
            "seed": args.seed,
            "finetune_lr": args.finetune_lr,
        }
        for preset, size in ORDER
    ]


def _done(spec: dict[str, Any]) -> dict[str, Any] | None:
    path = Path(spec["dir"]) / "result.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    return result if result.get("spec") == spec else None


def run_cells(specs: list[dict[str, Any]], jobs: int, fresh: bool, report_only: bool = False) -> list[dict[str, Any]]:
    """Every cell's result, in `specs`' order: reused, trained in process (`jobs` 1), or by `jobs` worker
    processes of this script on one thread each (`report_only`: the reused ones alone). One line per
    finished cell to stderr."""
    results: dict[int, dict[str, Any]] = {}
    todo = []
    for i, spec in enumerate(specs):
        done = None if fresh else _done(spec)
        if done is not None:
            results[i] = done | {"reused": True}
            _line(len(results), len(specs), done, "reused")
        else:
            todo.append(i)
    if report_only:
        return [results[i] for i in sorted(results)]
    if jobs <= 1:
        for i in todo:
            results[i] = run_cell(specs[i])
            _line(len(results), len(specs), results[i])
        return [results[i] for i in range(len(specs))]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    running: dict[int, tuple[subprocess.Popen, Any]] = {}
    while todo or running:
        while todo and len(running) < jobs:
            i = todo.pop(0)
            cell = Path(specs[i]["dir"])
            cell.mkdir(parents=True, exist_ok=True)
            (cell / "spec.json").write_text(json.dumps(specs[i]))
            log = open(cell.with_suffix(".log"), "w")  # noqa: SIM115 (closed when the worker ends)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--cell", str(cell / "spec.json")]
            running[i] = (subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO), log)
        time.sleep(1.0)
        for i, (proc, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[i]
            if proc.returncode != 0:
                for other, _ in running.values():
                    other.terminate()
                tail = Path(log.name).read_text().splitlines()[-15:]
                raise SystemExit("\n".join([*tail, f"scaling_study: cell {specs[i]['dir']} failed, log {log.name}"]))
            results[i] = json.loads((Path(specs[i]["dir"]) / "result.json").read_text())
            _line(len(results), len(specs), results[i])
    return [results[i] for i in range(len(specs))]


def _line(k: int, n: int, r: dict[str, Any], note: str = "") -> None:
    s = r["spec"]
    rel = relative_crps(r)
    print(f"[{k}/{n}] {s['preset']:>5} x {s['data_size']:<4} {r['parameters']:>9,} parameters  "
          f"{r['windows']:>6} windows  train {r['train_s']:6.0f} s  NLL {r['nll']['all']:.3f}  "
          f"rel. CRPS sim {_f(rel.get('simulated'))} real {_f(rel.get('real'))}  {note}",
          file=sys.stderr, flush=True)  # fmt: skip


# --------------------------------------------------------------------------- figures


def reference(r: dict[str, Any], part: str, target: str) -> float:
    """The best classic baseline's CRPS of `target` on the part's windows (report.GAIN_REFERENCES)."""
    from model.evaluation.report import GAIN_REFERENCES

    crps = r["parts"][part]["crps"].get(target, {})
    values = [crps[m] for m in GAIN_REFERENCES if _finite(crps.get(m))]
    return min(values) if values else math.nan


def relative_crps(r: dict[str, Any]) -> dict[str, float]:
    """Per part: the mean over CRPS_TARGETS of the model's CRPS / the best classic baseline's; a target
    the baseline forecasts exactly there (CRPS under MIN_REFERENCE: a spread that never moves) left out."""
    out = {}
    for part in r["parts"]:
        crps = r["parts"][part]["crps"]
        ratios = [crps[t]["model"] / reference(r, part, t) for t in CRPS_TARGETS
                  if _finite(crps.get(t, {}).get("model")) and reference(r, part, t) > MIN_REFERENCE]  # fmt: skip
        out[part] = float(np.mean(ratios)) if ratios else math.nan
    return out


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def _f(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if _finite(x) else "—"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def markdown(results: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """scaling.md: the summary table (one row per cell), then CRPS per target on each part."""
    rows = []
    for r in sorted(results, key=lambda r: (DATA_SIZES.index(r["spec"]["data_size"]), r["parameters"])):
        s, rel = r["spec"], relative_crps(r)
        rows.append([s["preset"], f"{r['parameters']:,}", s["data_size"], f"{r['windows']:,}",
                     f"{s['pretrain_steps']} + {s['finetune_steps']}", f"{r['train_s']:.0f}",
                     _f(r["nll"].get("simulated")), _f(r["nll"].get("real")), _f(math.exp(r["nll"]["all"]), 2),
                     _f(rel.get("simulated")), _f(rel.get("real"))])  # fmt: skip
    first = results[0]
    span = f"{info['span_s'] / 60:.0f}"
    earlier = ", by an earlier run of the same settings" if info["reused"] else ""
    lines = [
        "# Scaling study: model size x training data (CPU)",
        "",
        f"Written by `{info['command']}`: the {len(results)} cells trained and evaluated in {span} minutes wall "
        f"on 2 CPU cores ({info['jobs']} side by side, one thread each; first start to last end{earlier}). "
        "Each cell: pretrain then finetune "
        "from it, batch "
        f"{first['spec']['batch']}, seed {first['spec']['seed']}, the same step budget for every size: a study "
        "at fixed small compute, not of converged models (the demo checkpoint trains 1500 + 3000 steps).",
        f"Training: `{info['data']}` (full) and its earlier half in time of every source (half). Evaluated on "
        f"{first['eval_windows']:,} windows of `{info['heldout']}` (every real window, a seeded draw of the "
        "simulated ones; none trained on). NLL: next-event negative log-likelihood per event, nats (sum of the "
        "five field cross-entropies); perplexity: exp(NLL) on all evaluated windows. Relative CRPS: per target "
        "(spread, depth, mid at 10 and 100 messages) the model's CRPS over the best of persistence, EWMA and "
        "HAR on the same windows, averaged over the six (below 1: better than the classic baselines). "
        "Train s: wall seconds of both stages, the end-of-finetune fits over every training window included.",
        "",
        *_table(
            [
                "preset",
                "parameters",
                "data",
                "windows",
                "steps",
                "train s",
                "NLL sim",
                "NLL real",
                "perplexity",
                "rel. CRPS sim",
                "rel. CRPS real",
            ],
            rows,
        ),
        "",
        "![scaling](scaling.png)",
    ]
    for part in PARTS:
        if not any(part in r["parts"] for r in results):
            continue
        n = first["parts"][part]["windows"] if part in first["parts"] else 0
        rows = [
            [
                r["spec"]["preset"],
                r["spec"]["data_size"],
                *(_f(r["parts"][part]["crps"].get(t, {}).get("model"), 4) for t in CRPS_TARGETS),
            ]
            for r in sorted(results, key=lambda r: (DATA_SIZES.index(r["spec"]["data_size"]), r["parameters"]))
            if part in r["parts"]
        ]
        rows.append(["best classic baseline", "—", *(_f(reference(first, part, t), 4) for t in CRPS_TARGETS)])
        lines += ["", f"## CRPS per target, {part} held-out windows ({n:,})", "",
                  *_table(["preset", "data", *CRPS_TARGETS], rows)]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Two panels against parameters (log x): NLL per event and relative CRPS; a colour per data size,
    the simulated windows solid, the real ones dashed."""
    from model.evaluation.report import _pyplot

    plt = _pyplot()
    fig, (ax_nll, ax_crps) = plt.subplots(1, 2, figsize=(11, 4.2))
    for size, color in zip(DATA_SIZES, ("C0", "C1"), strict=True):
        mine = sorted((r for r in results if r["spec"]["data_size"] == size), key=lambda r: r["parameters"])
        if not mine:
            continue
        x = [r["parameters"] for r in mine]
        label = f"{size} ({mine[0]['windows']:,} windows)"
        for part, style in zip(PARTS, ("-", "--"), strict=True):
            nll = [r["nll"].get(part, math.nan) for r in mine]
            rel = [relative_crps(r).get(part, math.nan) for r in mine]
            if any(map(_finite, nll)):
                ax_nll.plot(x, nll, style, color=color, marker="o", label=f"{label}, {part}")
            if any(map(_finite, rel)):
                ax_crps.plot(x, rel, style, color=color, marker="o", label=f"{label}, {part}")
        for r in mine if size == DATA_SIZES[0] else ():
            ax_nll.annotate(r["spec"]["preset"], (r["parameters"], r["nll"].get("simulated", math.nan)),
                            textcoords="offset points", xytext=(4, 4), fontsize=7)  # fmt: skip
    ax_nll.set_title("held-out next-event NLL")
    ax_nll.set_ylabel("NLL per event (nats)")
    ax_crps.set_title("held-out CRPS relative to the best classic baseline")
    ax_crps.set_ylabel("mean CRPS ratio, 6 targets")
    ax_crps.axhline(1.0, color="gray", linewidth=0.5, linestyle=":")
    for ax in (ax_nll, ax_crps):
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cell:
        run_cell(json.loads(Path(args.cell).read_text()))
        return 0
    t0 = time.perf_counter()
    data, heldout, work = _path(args.data), _path(args.heldout), _path(args.work)
    require_data(data, heldout)
    work.mkdir(parents=True, exist_ok=True)
    files = {"full": data, "half": half_set(data, work / "train-half.npz")}
    held = eval_set(heldout, work / "heldout-eval.npz", args.eval_windows, args.seed)
    specs = cell_specs(args, files, held, work)
    results = run_cells(specs, args.jobs, args.fresh, args.report_only)
    if not results:
        raise SystemExit(f"scaling_study: no cell done yet under {work}")
    shown = [a if " " not in a else shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])]
    info = {"command": " ".join(["python bench/scaling_study.py", *shown]), "wall_s": time.perf_counter() - t0,
            "jobs": args.jobs, "data": args.data, "heldout": args.heldout}  # fmt: skip
    info["span_s"] = max(r["finished"] for r in results) - min(r["started"] for r in results)
    info["reused"] = sum(r.get("reused", False) for r in results)
    text = markdown(results, info)
    out_md, out_png = _path(args.out_md), _path(args.out_png)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(text)
    plot(results, out_png)
    print(text)
    print(f"wrote {out_md} and {out_png} in {info['wall_s'] / 60:.1f} minutes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
