"""What the probes over the demo's pool of real captures share (bench/direction_loo_probe.py,
bench/spread_l2_probe.py): their command line and which captures they score."""

from __future__ import annotations

import argparse

EVALUATED = ("spot_", "usdm_", "cm_")  # the Binance captures: file names begin with their market
DATASETS = ("train", "heldout", "unseen")  # make checkpoint's and make evaluate-unseen's


def pool_parser(doc: str | None) -> argparse.ArgumentParser:
    """--model (a checkpoint) and --data (datasets encoded as it: by default the demo's three)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="model/checkpoints/demo")
    parser.add_argument("--data", nargs="+", default=[f"build/demo-data/{n}.npz" for n in DATASETS])
    return parser
