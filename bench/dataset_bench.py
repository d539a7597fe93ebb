"""The training data's replay (`megatrading dataset`) on the native path beside the reference path: the same
sources built twice in one run, each timed, the arrays compared.

`model.training.dataset.replay_source` replays every source through `orderbook.stream_replay`: where the
native path is on, the native feeds, books and window builders (NativeVenueWindows, the book after every
message kept in Rust for the targets); with `MT_NATIVE=0` the Python feeds, books and builders. Sources:
simulated ITCH hours of the demo's recipe (headlines, anomalies at intensities 0.4-1) and the real captures
of --real.

    .venv/bin/python bench/dataset_bench.py [--sim-seeds 1-2] [--sim-duration 30m] [--real ../shared/data] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.training.dataset import Dataset, Source, build, iter_sim_sources, real_sources  # noqa: E402
from orderbook import native  # noqa: E402
from streams.cli import dataset as dataset_cli  # noqa: E402
from streams.cli.dataset import parse_seeds  # noqa: E402
from streams.cli.simulate import parse_duration  # noqa: E402

# The simulation flags of the Makefile's DEMO_SOURCES (tests/test_windows_bench_smoke.py holds them to it),
# read by `megatrading dataset`'s own parser: its seeds, duration and captures are this script's flags
DEMO_SIM_FLAGS = ("--sim-symbols", "3", "--anomaly-rate", "2", "--anomaly-intensity", "0.4:1", "--news", "12",
                  "--news-discovery", "5")  # fmt: skip


def sources_of(seeds: list[int], duration_ns: int, real: Path | None) -> Callable[[], list[Source]]:
    """The demo's recipe (the Makefile's DEMO_SOURCES) at `seeds` and `duration_ns`, and the captures."""
    parser = argparse.ArgumentParser()
    dataset_cli.register(parser.add_subparsers())
    flags = parser.parse_args(["dataset", *DEMO_SIM_FLAGS, "--sim-duration", f"{duration_ns // 10**9}s", "--out", "-"])
    base = dataset_cli.sim_base(flags)
    return lambda: [*iter_sim_sources(seeds, base), *(real_sources(real) if real is not None else [])]


def timed(sources: Callable[[], list[Source]], native_on: bool) -> tuple[Dataset, float]:
    """`build` of freshly made sources (their simulation outside the timed part)."""
    os.environ[native.ENV] = "1" if native_on else "0"
    made = sources()
    t0 = time.perf_counter()
    ds = build(made)
    return ds, time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sim-seeds", default="1-2", type=parse_seeds, help="simulated hours' seeds (default 1-2)")
    p.add_argument("--sim-duration", default="30m", type=parse_duration, help="per seed (default 30m)")
    p.add_argument("--real", type=Path, default=REPO.parent / "shared" / "data", help="captures (../shared/data)")
    p.add_argument("--quick", action="store_true", help="one 5-minute seed, no captures (a smoke run)")
    args = p.parse_args()
    if not native.available():
        print(f"no native path: {native.describe()}", file=sys.stderr)
        return 2
    if args.quick:
        args.sim_seeds, args.sim_duration, args.real = [1], parse_duration("5m"), None
    real = args.real if args.real is not None and args.real.is_dir() else None
    sources = sources_of(args.sim_seeds, args.sim_duration, real)
    native_, t_native = timed(sources, True)
    reference, t_reference = timed(sources, False)
    same = (
        native_.meta == reference.meta
        and native_.arrays.keys() == reference.arrays.keys()
        and all(
            np.array_equal(native_.arrays[k], v, equal_nan=v.dtype.kind == "f") for k, v in reference.arrays.items()
        )
    )
    n = len(reference)
    print(f"sources: seeds {args.sim_seeds} x {args.sim_duration / 60e9:g} min of 3 simulated symbols"
          f"{', the real captures of ' + str(real) if real else ''}; {n:,} windows")  # fmt: skip
    print("| replay | build s | windows/s |")
    print("|---|---|---|")
    for name, secs in (("native (stream_replay)", t_native), ("reference (MT_NATIVE=0)", t_reference)):
        print(f"| {name} | {secs:.1f} | {n / secs:,.0f} |")
    print(f"speed-up {t_reference / t_native:.2f}x; arrays identical: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
