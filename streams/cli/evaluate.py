"""`megatrading score` and `megatrading evaluate`: offline scoring of a stream, and held-out evaluation.

    megatrading score INPUT [INPUT ...] --format itch [--news news.jsonl] [--model baseline|generative:DIR|DIR]
                      [--symbol S] [--batch 256] [--device auto] --out scores.csv
    megatrading evaluate --data held_out.npz [--model generative:DIR|DIR ...] [--seeds 7,8] [--allow-seen]
                         [--device cpu] [--direction [--direction-train F] [--direction-steps N]]
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
CNN + LSTM (model.evaluation.direction).

Any capture with any checkpoint: encode the capture as the checkpoint does, then evaluate
(`megatrading dataset --like CHECKPOINT_DIR --capture VENUE:FILE --out mine.npz`, then
`megatrading evaluate --data mine.npz --model CHECKPOINT_DIR`). A dataset encoded otherwise is refused with
both encodings' fingerprints named.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from model.serving.load import load_forecaster
from orderbook.venues import FEEDS
from streams.cli.dataset import parse_seeds
from streams.config import MODEL_HELP, Settings, model_line, model_spec

log = logging.getLogger("megatrading")


def cmd_score(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from model.serving.scoring import read_news, score_windows, write_csv
    from orderbook.venue_windows import VenueWindows, process_records
    from orderbook.venues import capture_records

    for p in args.input:
        if not Path(p).is_file():
            raise ValueError(f"score: {p} is not a file")
    spec = Settings.load(args).model
    log.info(model_line(spec, args.device))
    forecaster = load_forecaster(spec, args.device)
    news = read_news(args.news) if args.news else []
    vw = VenueWindows(args.format)
    records = capture_records(args.format, args.input, args.symbol)
    windows = (w for done in process_records(vw, records, news) for w in done.windows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tqdm(unit="window", desc="score", disable=None, file=sys.stderr) as bar, open(args.out, "w") as f:
        n = write_csv(score_windows(windows, forecaster, args.batch, progress=bar.update), f)
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(vw.stats.rejected.items())) or "none"
    print(f"{n} windows from {vw.stats.records} records (rejected: {rejected}), model {forecaster.model_id} "
          f"-> {args.out}", file=sys.stderr)  # fmt: skip
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from model.evaluation.evaluate import evaluate

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
    with tqdm(unit="window", desc="evaluate", disable=None, file=sys.stderr) as bar:
        ev = evaluate(args.data, dirs, args.out, seeds=args.seeds, device=args.device, batch=args.batch,
                      allow_seen=args.allow_seen, progress=bar.update, direction=args.direction,
                      direction_train=args.direction_train, direction_steps=args.direction_steps)  # fmt: skip
    print((args.out / "evaluation.md").read_text())
    if args.direction:
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
    e.add_argument("--data", type=Path, required=True, help="a dataset .npz (model/training/dataset.py) with its .json")
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
    e.add_argument("--out", type=Path, required=True, help="folder for evaluation.md, metrics.json and PNGs")
    e.set_defaults(run=cmd_evaluate)
