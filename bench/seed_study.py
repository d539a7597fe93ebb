"""Training noise of `make checkpoint`'s recipe: the same data, the same steps, other seeds (issue 13).

One run cannot tell a 1-point text effect or a 10-point real-data gain from what the seed moves, and the
ablations' bootstrap intervals resample windows, not training runs. This trains make checkpoint's full
model and its no-headline ablation once per seed (pretrain, then finetune, one thread each, all side by
side), fits the full model's heads of L2 books as make checkpoint does, evaluates them all on the held-out
set (`megatrading evaluate --direction`) and each full model on the three Binance instruments outside the
dataset (`evaluate --direction-loo --l2-depth-loo`: their rows of L2 books are the heads and level maps
refitted without the instrument, since the served ones saw it), then prints the figures the issue's goals
are judged by, per seed, with their mean, standard deviation and range, beside the committed card.

    python bench/seed_study.py --seeds 1,2,3 --data build/demo-data --out build/seeds

`--data` holds make checkpoint's train.npz and heldout.npz (its `dataset` step); the unseen instruments are
encoded into OUT. A run whose checkpoint is in OUT is not trained again, so an interrupted study resumes.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import statistics
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.evaluation.direction import DEEPLOB, OFI, QI  # noqa: E402
from model.evaluation.direction_folds import LEFT_ONE_OUT  # noqa: E402
from model.evaluation.evaluate import PARTS, per_instrument, window_crps  # noqa: E402
from model.evaluation.l2_depth_folds import LEFT_ONE_OUT as L2_LEFT_ONE_OUT  # noqa: E402
from model.evaluation.outputs import model_outputs  # noqa: E402
from model.evaluation.report import GAIN_REFERENCES  # noqa: E402
from model.training.dataset import load  # noqa: E402

COMMITTED = ROOT / "model/checkpoints/demo"
UNSEEN = ("usdm_ethusdt", "cm_btcusd_perp", "cm_ethusd_perp")  # --unseen's default; make seed-study passes its own
REAL_HELD = "real"  # the held-out set's real part: spot ETHUSDT, new to every part of the model
ENS, ENS_NONEWS = "seeds averaged", "no-headline seeds averaged"

Metrics = dict[str, Any]
Figure = Callable[[Metrics, Metrics, str, str, str], float | None]  # heldout, unseen, full, nonews, unseen name


def megatrading(args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    with log.open("a") as f:
        f.write(f"$ megatrading {shlex.join(args)}\n")
        f.flush()
        done = subprocess.run(
            [str(Path(sys.executable).with_name("megatrading")), *args],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
    if done.returncode:
        raise SystemExit(f"seed study: `megatrading {shlex.join(args)}` failed ({done.returncode}); see {log}")


def trained(d: Path) -> bool:
    return (d / "model.safetensors").exists() and (d / "config.json").exists()


def train(name: str, flags: list[str], seed: int, a: argparse.Namespace) -> None:
    """make checkpoint's two stages for one run, on one thread (what make checkpoint gives each)."""
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    pre, fine, log = a.out / f"{name}-pre", a.out / f"{name}-fine", a.out / f"{name}.log"
    common = [*shlex.split(a.recipe), "--seed", str(seed), *flags, "--data", str(a.data / "train.npz")]
    if not trained(pre):
        megatrading(["train", "--stage", "pretrain", "--out", str(pre), *shlex.split(a.pretrain), *common], log, env)
    if not trained(fine):
        megatrading(
            ["train", "--stage", "finetune", "--init", str(pre), "--out", str(fine), *shlex.split(a.finetune), *common],
            log,
            env,
        )


def heads(name: str, heads_data: list[str], a: argparse.Namespace) -> None:
    """make checkpoint's post-hoc parts of L2 books on the finetuned network: direction, depth, level maps."""
    l2dir, l2depth, final = a.out / f"{name}-l2dir", a.out / f"{name}-l2depth", a.out / name
    log = a.out / f"{name}.log"
    if not trained(l2dir):
        megatrading(
            [
                "train",
                "--stage",
                "l2-direction",
                "--init",
                str(a.out / f"{name}-fine"),
                "--data",
                *heads_data,
                "--out",
                str(l2dir),
            ],
            log,
        )
    for stage, init, out in (("l2-depth", l2dir, l2depth), ("l2-recalibration", l2depth, final)):
        if not trained(out):
            megatrading(["train", "--stage", stage, "--init", str(init), "--data", *heads_data, "--out", str(out)], log)


# --------------------------------------------------------------------------- the figures


def gain(crps: Metrics, target: str, model: str, peers: tuple[str, ...] = GAIN_REFERENCES) -> float | None:
    """1 - model / best of the peers present, in percent (the card's `gain`)."""
    t = crps.get(target, {})
    best = min((t[p] for p in peers if t.get(p) is not None), default=None)
    return None if best is None or t.get(model) is None else 100 * (1 - t[model] / best)


def part_gain(part: str, target: str, peers: tuple[str, ...] = GAIN_REFERENCES) -> Figure:
    return lambda held, _u, full, _n, _un: gain(held["parts"][part]["crps"], target, full, peers)


def unseen_gain(capture: str, target: str, peers: tuple[str, ...] = GAIN_REFERENCES) -> Figure:
    """The gain on an instrument outside the dataset, from its row with the heads and level maps of L2 books
    refitted without it: the served ones saw it (make checkpoint's HEADS_DATA), the network did not."""

    def figure(_h: Metrics, unseen: Metrics, _f: str, _n: str, un: str) -> float | None:
        crps = unseen["parts"][f"real {capture}_20240808.gz"]["crps"]
        return gain(crps, target, f"{un} {L2_LEFT_ONE_OUT}", peers)

    return figure


def headline_gain(target: str) -> Figure:
    """What the headlines are worth on the news-driven windows: 1 - full / no-headline model, in percent."""

    def figure(held: Metrics, _u: Metrics, full: str, nonews: str, _un: str) -> float | None:
        c = held["parts"]["news-driven"]["crps"][target]
        return 100 * (1 - c[full] / c[nonews])

    return figure


def direction(source: str, horizon: int, metric: str, held_out: bool = True, method: str = "") -> Figure:
    """A direction row's metric for the model (or `method` + its name's suffix)."""

    def figure(held: Metrics, unseen: Metrics, full: str, _n: str, un: str) -> float | None:
        rows = held["direction"] if held_out else unseen["direction"]
        name = (full if held_out else un) + method
        hits = [r[metric] for r in rows if r["horizon"] == horizon and r["method"] == name and source in r["source"]]
        return hits[0] if hits else None

    return figure


def loo_margin(capture: str, horizon: int, metric: str) -> Figure:
    """The model left one out less the best baseline left one out (the card's `above all three`)."""

    def figure(_h: Metrics, unseen: Metrics, _f: str, _n: str, un: str) -> float | None:
        rows = [r for r in unseen["direction"] if r["horizon"] == horizon and capture in r["source"]]
        by = {r["method"]: r[metric] for r in rows}
        loo = [f"{m} {LEFT_ONE_OUT}" for m in (QI, OFI, DEEPLOB)]
        base = [by[m] for m in loo if by.get(m) is not None]
        model = by.get(f"{un} {LEFT_ONE_OUT}")
        return None if model is None or not base else model - max(base)

    return figure


def perplexity(part: str) -> Figure:
    return lambda held, _u, full, _n, _un: held["perplexity"][full][part]


def figures(unseen: tuple[str, ...] = UNSEEN) -> dict[str, Figure]:
    """The study's rows: label -> figure, the instruments outside the dataset being `unseen`."""
    return {
        "simulated spread h10, gain %": part_gain("simulated", "spread_h10"),
        "simulated spread h100, gain %": part_gain("simulated", "spread_h100"),
        "simulated mid h100 over no move, %": part_gain("simulated", "mid_h100", ("persistence",)),
        "perplexity, simulated": perplexity("simulated"),
        "perplexity, spot ETHUSDT": perplexity("real"),
        "headlines: mid h100, %": headline_gain("mid_h100"),
        "headlines: spread h100, %": headline_gain("spread_h100"),
        "headlines: depth h100, %": headline_gain("depth_h100"),
        "AUC after earnings h10": direction("after earnings", 10, "AUC"),
        "AUC after earnings h100": direction("after earnings", 100, "AUC"),
        "spot ETHUSDT spread h10, gain %": part_gain(REAL_HELD, "spread_h10"),
        "spot ETHUSDT spread h100, gain %": part_gain(REAL_HELD, "spread_h100"),
        "spot ETHUSDT depth h10, gain %": part_gain(REAL_HELD, "depth_h10"),
        "spot ETHUSDT depth h100, gain %": part_gain(REAL_HELD, "depth_h100"),
        "spot ETHUSDT mid h100 over no move, %": part_gain(REAL_HELD, "mid_h100", ("persistence",)),
        "spot ETHUSDT direction F1 h100": direction("spot_ethusdt", 100, "macro F1"),
        "spot ETHUSDT direction AUC h100": direction("spot_ethusdt", 100, "AUC"),
        **{
            f"{c} {t.replace('_', ' ')} left one out, gain %": unseen_gain(c, t)
            for t in ("spread_h10", "spread_h100", "depth_h10", "depth_h100")
            for c in unseen
        },
        **{f"{c} mid h100 left one out over no move, %": unseen_gain(c, "mid_h100", ("persistence",)) for c in unseen},
        **{
            f"{c} direction F1 h{h} left one out, over best baseline": loo_margin(c, h, "macro F1")
            for c in unseen
            for h in (10, 100)
        },
        **{
            f"{c} direction AUC h{h} left one out, over best baseline": loo_margin(c, h, "AUC")
            for c in unseen
            for h in (10, 100)
        },
    }


FIGURES = figures()


def ensemble(metrics: Metrics, dirs: list[Path], data: Path, name: str) -> Metrics:
    """A copy of evaluate's `metrics` of `data` whose parts' CRPS also hold `name`: the runs' quantiles
    averaged (quantile averaging, Vincentization: what serving the seeds together would give), per part
    on the windows evaluate averaged over."""
    ds = load(data)
    runs = [model_outputs(d, ds.arrays, ds.meta, d.name, data_name=str(data)).quantiles for d in dirs]
    mean = {t: np.mean([q[t] for q in runs], axis=0) for t in runs[0]}
    crps = window_crps(ds.arrays, {name: mean})[name]
    parts = {p: keep(ds.arrays) for p, keep in PARTS.items()} | per_instrument(ds.arrays, ds.meta)
    out = copy.deepcopy(metrics)
    for part, keep in parts.items():
        if part in out["parts"]:
            for t, c in crps.items():
                out["parts"][part]["crps"][t][name] = float(np.nanmean(c[keep]))
    return out


def table(
    columns: dict[str, tuple[Metrics, Metrics, str, str, str]],
    committed: tuple | None,
    extra: dict[str, tuple[Metrics, Metrics, str, str, str]] | None = None,
    rows: dict[str, Figure] | None = None,
) -> str:
    """Markdown: a row per figure (`rows`, default FIGURES), a column per seed, then mean, sd and range, the
    `extra` columns and the committed card's."""
    extra = extra or {}
    head = [*columns, "mean", "sd", "range", *extra] + (["committed"] if committed else [])
    lines = ["| figure | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for label, figure in (rows or FIGURES).items():
        vals = [_safe(figure, *args) for args in columns.values()]
        got = [v for v in vals if v is not None]
        digits = 1 if "%" in label or "perplexity" in label else 3  # percents and perplexities; AUC, F1
        cells = [_fmt(v, digits) for v in vals]
        cells += [
            _fmt(statistics.fmean(got), digits) if got else "—",
            _fmt(statistics.stdev(got), digits + 1) if len(got) > 1 else "—",
            f"{_fmt(min(got), digits)} to {_fmt(max(got), digits)}" if got else "—",
        ]
        cells += [_fmt(_safe(figure, *args), digits) for args in extra.values()]
        if committed:
            cells.append(_fmt(_safe(figure, *committed), digits))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _safe(figure: Figure, *args: Any) -> float | None:
    try:
        return figure(*args)
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def _fmt(v: float | None, digits: int) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="1,2,3", help="training seeds, comma-separated (make checkpoint's is 1)")
    p.add_argument("--data", type=Path, default=Path("build/demo-data"), help="make checkpoint's dataset folder")
    p.add_argument("--out", type=Path, default=Path("build/seeds"))
    p.add_argument("--shared", type=Path, default=Path("../shared"))
    p.add_argument("--recipe", default="--preset base --batch 32", help="train flags of both stages")
    p.add_argument("--pretrain", default="--steps 1500", help="pretrain's own flags")
    p.add_argument("--finetune", default="--steps 3000 --lr 1e-3", help="finetune's own flags")
    p.add_argument("--unseen", default=",".join(UNSEEN), help="the Binance captures outside the dataset (file stems)")
    a = p.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    a.out.mkdir(parents=True, exist_ok=True)
    runs = [(f"{v}-s{s}", flags, s) for s in seeds for v, flags in (("full", []), ("nonews", ["--without=news"]))]
    with ThreadPoolExecutor(len(runs)) as pool, tqdm(total=len(runs), desc="train", unit="run") as bar:
        for f in [pool.submit(train, name, flags, seed, a) for name, flags, seed in runs]:
            f.result()
            bar.update()
    unseen_npz = a.out / "unseen.npz"
    stems = tuple(a.unseen.replace(",", " ").split())
    captures = [f"binance:{a.shared}/data/binance-hftbacktest/{c}_20240808.gz" for c in stems]
    if not unseen_npz.exists():  # the encoding is the dataset's, not the run's: one file serves every seed
        megatrading(
            [
                "dataset",
                "--like",
                str(a.out / f"full-s{seeds[0]}-fine"),
                *[x for c in captures for x in ("--capture", c)],
                "--out",
                str(unseen_npz),
            ],
            a.out / "data.log",
        )
    heads_data = [str(a.data / "train.npz"), str(unseen_npz)]
    for s in tqdm(seeds, desc="heads", unit="seed"):
        heads(f"full-s{s}", heads_data, a)
    held_dir = a.out / "evaluation"
    if not (held_dir / "metrics.json").exists():
        models = [
            x
            for s in seeds
            for v in ("full", "nonews")
            for x in (
                "--model",
                f"generative:{a.out}/{v}-s{s}-fine" if v == "nonews" else f"generative:{a.out}/{v}-s{s}",
            )
        ]
        megatrading(
            ["evaluate", "--data", str(a.data / "heldout.npz"), *models, "--direction", "--out", str(held_dir)],
            a.out / "evaluate.log",
        )
    pool_npz = [str(a.data / "train.npz"), str(unseen_npz), str(a.data / "heldout.npz")]
    for s in tqdm(seeds, desc="evaluate unseen", unit="seed"):
        out = a.out / f"evaluation-unseen-s{s}"
        if not (out / "metrics.json").exists():
            megatrading(
                [
                    "evaluate",
                    "--data",
                    str(unseen_npz),
                    "--model",
                    f"generative:{a.out}/full-s{s}",
                    "--direction",
                    "--direction-train",
                    str(a.data / "train.npz"),
                    "--direction-loo",
                    *pool_npz,
                    "--l2-depth-loo",
                    *pool_npz,
                    "--allow-seen",
                    "--out",
                    str(out),
                ],
                a.out / "evaluate.log",
            )
    held = json.loads((held_dir / "metrics.json").read_text())
    unseen = {s: json.loads((a.out / f"evaluation-unseen-s{s}/metrics.json").read_text()) for s in seeds}
    columns = {f"seed {s}": (held, unseen[s], f"full-s{s}", f"nonews-s{s}-fine", "model") for s in seeds}
    full, nonews = [a.out / f"full-s{s}" for s in seeds], [a.out / f"nonews-s{s}-fine" for s in seeds]
    print("the seeds' quantiles averaged ...", file=sys.stderr)
    ens_held = ensemble(ensemble(held, full, a.data / "heldout.npz", ENS), nonews, a.data / "heldout.npz", ENS_NONEWS)
    ens_unseen = ensemble(unseen[seeds[0]], full, unseen_npz, ENS)
    extra = {"seeds averaged": (ens_held, ens_unseen, ENS, ENS_NONEWS, ENS)}
    committed = None
    if (COMMITTED / "evaluation-unseen/metrics.json").exists():
        card = [json.loads((COMMITTED / d / "metrics.json").read_text()) for d in ("evaluation", "evaluation-unseen")]
        committed = (*card, "demo", "demo-nonews", "model")
    md = table(columns, committed, extra, figures(stems))
    header = (
        f"# Training noise: make checkpoint's recipe at seeds {a.seeds}\n\n"
        f"Data: `{a.data}`; each seed's full model and no-headline ablation (`--without=news`) trained alike; "
        f"sd over seeds (n-1). `gain %`: 1 - model / best of persistence, EWMA, HAR (the mid: / no move). "
        f"`headlines`: 1 - full / no-headline model on the held-out news-driven windows. Left-one-out "
        f"direction: the model's head refitted without the capture, less the best baseline so refitted. "
        f"`seeds averaged`: the seeds' quantiles averaged, window by window (CRPS figures only).\n\n"
    )
    (a.out / "seed_study.md").write_text(header + md + "\n")
    print(header + md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
