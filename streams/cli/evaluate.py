"""`megatrading score` and `megatrading evaluate`: offline scoring of a stream, and held-out evaluation.

    megatrading score INPUT [INPUT ...] --format itch [--news news.jsonl] [--model baseline|generative:DIR|DIR]
                      [--symbol S] [--batch 256] [--device auto] --out scores.csv
    megatrading evaluate --data held_out.npz [--model generative:DIR|DIR ...] [--seeds 7,8] [--allow-seen]
                         [--device cpu] [--direction [--direction-train F] [--direction-steps N]]
                         [--l2-depth-loo POOL.npz ...] [--direction-loo POOL.npz ...] --out DIR
    megatrading evaluate --alerts [--model baseline|DIR ...] [--real DIR | --no-real] [--capture VENUE:FILE ...]
                         [--normal-seeds 51-55] [--anomaly-seeds 41-45] [--sim-duration 1h] [--sim-symbols 3]
                         [--anomaly-rate 2] [--intensities 1,0.5] [--news 1] [--thresholds T,...] [--max-rate 1]
                         --out DIR

`score` replays the recorded or simulated files through the worker's decode -> book -> features ->
windows path (model.serving.scoring) and writes one row per window: symbol,event_ts,seq,anomaly_score, then the
other forecast fields of docs/design.md, exactly what the worker would publish with that model.

`evaluate` computes on a dataset file (model/training/dataset.py; held-out seeds only: a model trained on a seed of
the data is refused unless --allow-seen) the anomaly AUROC / average precision per kind, liquidity CRPS
and pinball loss per target and horizon, quantile coverage and next-event perplexity, each beside the
z-score baseline, an isolation forest, the baseline forecaster, persistence, EWMA and HAR (model.evaluation.evaluate).
Give --model several times to compare models side by side (ablations: without text, without the book
series). Writes evaluation.md, metrics.json, roc.png and calibration.png into --out; with --direction also
direction.md and direction.csv: mid-price direction (down / stationary / up) macro F1, AUC and Brier with
bootstrap intervals, beside queue-imbalance and multi-level OFI logistic regressions and a small DeepLOB-style
CNN + LSTM (model.evaluation.direction). With --l2-depth-loo, a row for the first model with the depth of L2
books served by its L2 depth head, and their spread and mid by its L2 level maps, refitted on every other real
capture of the pool datasets (encoded as that model), never on the one evaluated: leave one instrument out
(model.evaluation.l2_depth_folds). With
--direction-loo (implies --direction), rows `... left one out` for the first model's direction head and the
three direction baselines, each fitted on the real windows of every other capture of the pool, its head's
penalty chosen inside the fold, and which is above all three per capture and horizon
(model.evaluation.direction_folds).

Any capture with any checkpoint: encode the capture as the checkpoint does, then evaluate
(`megatrading dataset --like CHECKPOINT_DIR --capture VENUE:FILE --out mine.npz`, then
`megatrading evaluate --data mine.npz --model CHECKPOINT_DIR`). A dataset encoded otherwise is refused with
both encodings' fingerprints named.

`evaluate --alerts` counts the alerts a desk would get (model.evaluation.alerts) per model and threshold:
alerts per symbol-hour on normal flow (the real captures of --real: every Binance instrument, Coinbase,
Kraken; and simulated hours without anomalies, --normal-seeds) and alert rate, precision and recall on
simulated hours with every kind of anomaly injected (--anomaly-seeds, once per --intensities), with the
windows' anomaly AUROC there; the threshold the rule chooses per model (the highest recall at full
intensity with at most --max-rate alerts per symbol-hour on each normal flow, with 95% confidence).
Models: `baseline` and checkpoints (default: the baseline and the model setting). Prints the table, writes
alerts.md, alerts.json and alerts.png into --out.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from model.serving.load import load_forecaster
from orderbook.venues import FEEDS
from streams.cli.dataset import parse_seeds
from streams.config import MODEL_HELP, Settings, model_line, model_spec

if TYPE_CHECKING:
    from model.evaluation.alerts import SimPlan

log = logging.getLogger("megatrading")


def cmd_score(args: argparse.Namespace) -> int:
    from model.serving.scoring import read_news, score_windows, stream_windows, write_csv
    from orderbook.venues import capture_records
    from streams.progress import follow_files

    for p in args.input:
        if not Path(p).is_file():
            raise ValueError(f"score: {p} is not a file")
    spec = Settings.load(args).model
    log.info(model_line(spec, args.device))
    forecaster = load_forecaster(spec, args.device)
    news = read_news(args.news) if args.news else []
    windows, stats = stream_windows(args.format, capture_records(args.format, args.input, args.symbol), news)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # windows are known only as the files are read: the bar's total is the inputs' bytes, advanced by
    # the bytes read (streams/progress.py), the windows scored beside it
    scored = 0

    def count(n: int) -> None:
        nonlocal scored
        scored += n

    with follow_files(args.input, "score", lambda: f"{scored:,} windows") as position, open(args.out, "w") as f:
        n = write_csv(score_windows(windows, forecaster, args.batch, progress=count), f)
        position.finished()
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(stats.rejected.items())) or "none"
    print(f"{n} windows from {stats.records} records (rejected: {rejected}), model {forecaster.model_id} "
          f"-> {args.out}", file=sys.stderr)  # fmt: skip
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    import os
    import shlex

    from tqdm import tqdm

    from model.evaluation import alerts

    settings = Settings.load({**vars(args), "model": None})
    specs = [model_spec(m) for m in args.model] or list(dict.fromkeys(["baseline", settings.model]))
    names = [s if s == "baseline" else Path(s.split(":", 1)[1]).name or s for s in specs]
    if len(set(names)) < len(names):
        names = [f"{n} ({i + 1})" for i, n in enumerate(names)]
    for spec in specs:
        log.info(model_line(spec, args.device))
    captures = []
    if not args.no_real:
        root = args.real or Path(os.environ.get("MT_SHARED_DATA", Path.cwd().parent / "shared" / "data"))
        if args.real is not None and not root.is_dir():
            raise ValueError(f"evaluate --alerts: --real {root} is not a folder")
        captures = alerts.real_captures(root) if root.is_dir() else []
    for c in args.capture:
        venue, _, path = c.partition(":")
        if venue not in FEEDS or not Path(path).is_file():
            raise ValueError(f"evaluate --alerts: --capture {c!r}: VENUE:FILE with a venue of {', '.join(FEEDS)}")
        captures.append((Path(path).name, venue, Path(path)))
    plan = sim_plan(args)
    grid = args.thresholds or alerts.DEFAULT_THRESHOLDS
    with tqdm(unit="window", desc="alerts", disable=None, file=sys.stderr) as bar:
        rep = alerts.run(dict(zip(names, specs, strict=True)), captures, plan, grid, args.max_rate,
                         settings.alert_threshold, args.device, args.batch, args.allow_seen,
                         progress=bar.update)  # fmt: skip
    command = "megatrading " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    alerts.write(rep, args.out, command)
    print("\n".join(alerts.table_lines(rep)))
    for m, t in rep.chosen.items():
        shown = alerts.fmt_threshold(t) if t is not None else "none of the grid"
        print(f"{m}: chosen threshold {shown} (at most {args.max_rate:g} alerts per symbol-hour on normal flow, "
              "95% upper bound)")  # fmt: skip
    print(f"-> {args.out}/alerts.md, alerts.json, alerts.png", file=sys.stderr)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from model.evaluation.evaluate import evaluate

    if args.alerts:
        return cmd_alerts(args)
    if args.data is None:
        raise ValueError("evaluate: give --data DATASET.npz (or --alerts)")

    if args.model:
        specs = [model_spec(m) for m in args.model]
    else:  # the model setting (MT_MODEL, the config file, the shipped model); the baseline is in anyway
        default = Settings.load({**vars(args), "model": None}).model
        specs = [] if default == "baseline" else [default]
    dirs = []
    for spec in specs:
        if not spec.startswith("generative:"):
            raise ValueError(
                f"evaluate: --model {spec!r}: give generative:CHECKPOINT_DIR (the baselines are always in)"
            )
        log.info(model_line(spec, args.device))
        dirs.append(spec.split(":", 1)[1])
    direction = args.direction or bool(args.direction_loo)
    with tqdm(unit="window", desc="evaluate", disable=None, file=sys.stderr) as bar:
        ev = evaluate(args.data, dirs, args.out, seeds=args.seeds, device=args.device, batch=args.batch,
                      allow_seen=args.allow_seen, progress=bar.update, direction=direction,
                      direction_train=args.direction_train, direction_steps=args.direction_steps,
                      l2_depth_pool=args.l2_depth_loo, direction_pool=args.direction_loo)  # fmt: skip
    print((args.out / "evaluation.md").read_text())
    if direction:
        print((args.out / "direction.md").read_text())
    print(f"{ev.n_windows} windows of seeds {ev.seeds} -> {args.out}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `score` and `evaluate` verbs to the `megatrading` parser."""
    s = subparsers.add_parser(
        "score",
        help="offline batch scoring of a recorded or simulated stream: the worker's forecasts as CSV",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("input", type=Path, nargs="+", help="capture file(s) of the venue, read as recorded")
    s.add_argument("--format", required=True, choices=sorted(FEEDS))
    s.add_argument("--news", type=Path, help="md.news JSONL (megatrading simulate's news.jsonl)")
    s.add_argument("--model", help=f"{MODEL_HELP} (env MT_MODEL)")
    s.add_argument("--symbol", help="LOBSTER: the book's symbol (default: from LOBSTER's file naming)")
    s.add_argument("--batch", type=int, default=256, help="windows per model call (default 256)")
    s.add_argument("--device", default="auto", help="auto|cpu|cuda (generative model)")
    s.add_argument("--out", type=Path, required=True, help="CSV file to write")
    s.set_defaults(run=cmd_score)

    e = subparsers.add_parser(
        "evaluate",
        help="held-out evaluation: anomaly AUROC/AP, liquidity CRPS/pinball, perplexity, beside the baselines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("--data", type=Path, help="a dataset .npz (model/training/dataset.py) with its .json")
    e.add_argument("--model", action="append", default=[],
                   help="generative:CHECKPOINT_DIR or CHECKPOINT_DIR, repeat to compare (default: the model setting, "
                        "MT_MODEL or the shipped model)")  # fmt: skip
    e.add_argument("--seeds", type=parse_seeds, help="evaluate only the windows of these seeds: 7-8 or 7,9")
    e.add_argument("--allow-seen", action="store_true", help="do not refuse seeds the model was trained on")
    e.add_argument("--device", default="cpu", help="cpu|cuda (default cpu)")
    e.add_argument("--batch", type=int, default=256)
    e.add_argument("--direction", action="store_true",
                   help="also mid-price direction (down/stationary/up at 10 and 100 messages) beside queue-imbalance "
                        "and multi-level OFI regressions and a DeepLOB-style net: direction.md, .csv")  # fmt: skip
    e.add_argument("--direction-train", type=Path,
                   help="dataset .npz the direction baselines are fitted on (default: the model's training file, "
                        "else cross-fitted over the evaluated seeds)")  # fmt: skip
    e.add_argument("--direction-steps", type=int,
                   help="DeepLOB-style direction baseline's training steps (default 400; 0 leaves it out)")  # fmt: skip
    e.add_argument("--l2-depth-loo", type=Path, nargs="+", default=[], metavar="POOL",
                   help="datasets (encoded as the first model) whose real captures its L2 depth head and L2 level "
                        "maps are refitted on, one capture left out at a time: a row '<model> L2 heads left one "
                        "out'")  # fmt: skip
    e.add_argument("--direction-loo", type=Path, nargs="+", default=[], metavar="POOL",
                   help="datasets (encoded as the first model) whose real captures its direction head and the "
                        "direction baselines are fitted on, one capture left out at a time: rows '... left one out' "
                        "(implies --direction)")  # fmt: skip
    e.add_argument("--out", type=Path, required=True, help="folder for evaluation.md, metrics.json and PNGs")
    add_alert_flags(e)
    e.set_defaults(run=cmd_evaluate)


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: numbers separated by commas, e.g. 0.9,0.99") from None


def sim_plan(args: argparse.Namespace) -> SimPlan:
    """The simulated hours of `evaluate --alerts` (model.evaluation.alerts.SimPlan), their prices formed
    as the flags say (`add_price_flags`): judge a model on the pricing it was trained on (the demo's:
    `--news-discovery 5`)."""
    from model.evaluation import alerts
    from model.sim.engine import SimConfig
    from streams.cli.simulate import price_config

    base = SimConfig(n_symbols=args.sim_symbols, duration_ns=args.sim_duration, news_rate=args.news,
                     **price_config(args))  # fmt: skip
    return alerts.SimPlan(args.normal_seeds, args.anomaly_seeds, base, args.anomaly_rate, args.intensities)


def add_alert_flags(e: argparse.ArgumentParser) -> None:
    """`evaluate --alerts` (model.evaluation.alerts)."""
    from streams.cli.simulate import add_price_flags, parse_duration

    a = e.add_argument_group("alerts (--alerts)")
    a.add_argument("--alerts", action="store_true",
                   help="alert rate per symbol-hour on normal real and simulated flow, precision and recall on "
                        "labelled simulated anomalies, per model and threshold: alerts.md, .json, .png")  # fmt: skip
    a.add_argument("--real", type=Path, help="the real captures (default ../shared/data or $MT_SHARED_DATA)")
    a.add_argument("--no-real", action="store_true", help="no real captures (only --capture files)")
    a.add_argument("--capture", action="append", default=[], metavar="VENUE:FILE", help="another normal capture")
    a.add_argument("--normal-seeds", type=parse_seeds, default=[51, 52, 53, 54, 55],
                   help="simulator seeds of the hours without anomalies (default 51-55)")  # fmt: skip
    a.add_argument("--anomaly-seeds", type=parse_seeds, default=[41, 42, 43, 44, 45],
                   help="simulator seeds of the hours with labelled anomalies (default 41-45)")  # fmt: skip
    a.add_argument("--sim-duration", type=parse_duration, default=parse_duration("1h"), help="per seed (default 1h)")
    a.add_argument("--sim-symbols", type=int, default=3, help="simulated symbols per seed (default 3)")
    a.add_argument("--anomaly-rate", type=float, default=2.0,
                   help="windows of each kind per symbol-hour (default 2, as the demo's data)")  # fmt: skip
    a.add_argument("--intensities", type=_floats, default=[1.0, 0.5],
                   help="injection intensities of the labelled hours (default 1,0.5)")  # fmt: skip
    a.add_argument("--news", type=float, default=1.0, help="headlines per symbol-hour (default 1, as simulate)")
    add_price_flags(a)
    a.add_argument("--thresholds", type=_floats,
                   help="the threshold grid (default 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999, "
                        "then 1-1e-5 ... 1-1e-12)")  # fmt: skip
    a.add_argument("--max-rate", type=float, default=1.0,
                   help="the rule: at most this many alerts per symbol-hour on normal flow, by the rate's one-sided "
                        "95%% upper bound (default 1)")  # fmt: skip
