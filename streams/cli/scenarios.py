"""`megatrading scenarios`: future order-flow paths sampled by the generative model from a book state
of a recorded or simulated file, applied through the real order-book code (model/serving/scenarios.py).

    megatrading scenarios [--model ckpt/fine] --symbol AAA --from itch:sim/01022026.NASDAQ_ITCH50@34500000000000 \\
        --horizon 200 --paths 64 --out scen/ [--seed 1]

--from FORMAT:FILE@EVENT_NS replays FILE through the FORMAT venue feed up to that event time (the last
message at or before it); FORMAT:FILE@#N stops after the first N records. Writes fan_mid.png,
fan_spread.png, fan_depth.png (median and 10-90% band across paths, the real continuation overlaid),
paths.csv (each path's final state) and scenarios.md (stylized facts, generated beside real).
--model takes what every verb takes (baseline excepted: a checkpoint folder, generative:DIR or, by
default, the shipped model). torch is needed (pip install .[model]).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from streams.config import MODEL_HELP
from streams.progress import follow_files, progress_bar

log = logging.getLogger("megatrading")


def cmd_scenarios(args: argparse.Namespace) -> int:
    from model.serving.orderflow import OrderFlowForecaster
    from model.serving.scenarios import generate_scenarios, load_state, parse_state, window_config, write_outputs
    from streams.config import Settings, checkpoint_of, model_line

    if args.horizon <= 0 or args.paths <= 0:
        raise ValueError("--horizon and --paths must be positive")
    venue, path, cut = parse_state(args.start)
    spec = Settings.load(args).model
    checkpoint = checkpoint_of(spec)
    if checkpoint is None:
        raise ValueError(f"scenarios samples from the generative model, not the baseline ({model_line(spec)}): "
                         "give --model generative:CHECKPOINT_DIR or a checkpoint folder")  # fmt: skip
    log.info(model_line(spec, args.device))
    forecaster = OrderFlowForecaster(checkpoint, device=args.device)
    t0 = time.perf_counter()
    # the replay to the start state: the file's bytes read (where the cut lies in it is not known
    # before it is reached); then the sampling: one step of every path at a time
    with follow_files([path], "replay to the start"):
        state = load_state(venue, path, args.symbol, cut, window_config(forecaster.extra), args.horizon)
    t1 = time.perf_counter()
    with progress_bar(args.horizon, unit="step", desc=f"sample {args.paths} paths") as bar:
        result = generate_scenarios(forecaster, state, args.horizon, args.paths, seed=args.seed,
                                    temperature=args.temperature, tries=args.tries, sampling=args.sampling,
                                    on_step=lambda step, paths: bar.update(1))  # fmt: skip
    t2 = time.perf_counter()
    files = write_outputs(state, result, args.out, f"{forecaster.name}:{forecaster.version} ({checkpoint})")
    print(
        f"scenarios {venue}:{args.symbol}: start after {state.records} records (replay {t1 - t0:.1f} s); "
        f"{args.paths} paths x {args.horizon} steps on {result.device} in {t2 - t1:.1f} s, "
        f"{int(result.skipped.sum())} steps skipped; real continuation {len(state.real_events)} events",
        file=sys.stderr,
    )
    for f in files.values():
        print(f)
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `scenarios` verb to the `megatrading` parser."""
    s = subparsers.add_parser(
        "scenarios",
        help="sample future order-flow paths from a book state; fan charts and stylized facts beside real",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--model", help=f"{MODEL_HELP}; the generative model only (env MT_MODEL)")
    s.add_argument("--symbol", required=True, help="the book to start from, as the venue names it")
    s.add_argument("--from", dest="start", required=True, metavar="FORMAT:FILE@NS|#N", help="the start state")
    s.add_argument("--horizon", type=int, default=200, help="events per path (default 200)")
    s.add_argument("--paths", type=int, default=64, help="paths sampled together (default 64)")
    s.add_argument("--out", type=Path, required=True, help="folder for the PNGs, CSV and markdown")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--temperature", type=float, default=1.0, help="softmax temperature of the draws (default 1)")
    s.add_argument("--tries", type=int, default=8, help="draws per step before a step is skipped (default 8)")
    # scenarios.SAMPLINGS, written out: importing it here would load torch for every megatrading command
    s.add_argument("--sampling", choices=("joint", "factorized"), default="joint",
                   help="an event's fields drawn one given another by the checkpoint's event chain (default; "
                        "factorized where it has none), or each on its own")  # fmt: skip
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    s.set_defaults(run=cmd_scenarios)
    return s
