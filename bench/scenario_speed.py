"""Where a scenario's time goes, and what the hand-written builder copies save, side by side in one run.

A path copies its window builder at every level update of a message (model/serving/scenarios.py,
`apply_event`: the builder as it was before the message, the whole message pushed again). Per capture,
at one cut (`--records`), the same draw (seed, paths, horizon, sampling) is run twice: with the copies
WindowBuilder and FeatureState's parts define (`__deepcopy__`), and with the copy module's generic copy
of the same objects (those methods taken away for the run: the cost before them). The two runs must
draw the same events (checked). Printed per capture: wall seconds of each and their ratio, one builder
copy in microseconds each way, and the split of the first run (under cProfile, so as fractions):
the network's forward, the draws, and `apply_event` with its copies and pushes. About 3 minutes on
2 cores.

    python bench/scenario_speed.py [--model model/checkpoints/demo] [--records 20000] [--paths 16]
        [--horizon 200] [--sampling joint] [--captures usdm_btcusdt_20240808.gz:BTCUSDT,...]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import pstats
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.serving.orderflow import OrderFlowForecaster
from model.serving.scenarios import (
    JOINT,
    SAMPLINGS,
    Cut,
    ScenarioResult,
    StartState,
    generate_scenarios,
    load_state,
    window_config,
)
from orderbook import features, windows

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance-hftbacktest"
CAPTURES = (
    "spot_btcusdt_20240808.gz:BTCUSDT,usdm_btcusdt_20240808.gz:BTCUSDT,spot_ethusdt_20240808.gz:ETHUSDT,"
    "usdm_ethusdt_20240808.gz:ETHUSDT,cm_btcusd_perp_20240808.gz:BTCUSD_PERP,cm_ethusd_perp_20240808.gz:ETHUSD_PERP"
)
OWN_COPIES = (
    windows.WindowBuilder,
    features.FeatureState,
    features.MultiLevelOFI,
    features.TradeClassifier,
    features.LevelFlow,
    features._RateWindow,
    features._SumWindow,
)
SPLIT = {  # column: (file, function) whose cumulative time it is
    "network": ("orderflow.py", "forward"),
    "draws": ("scenarios.py", "_draw"),
    "apply_event": ("scenarios.py", "apply_event"),
    "copies": ("windows.py", "__deepcopy__"),
    "pushes": ("windows.py", "push"),
}


@contextlib.contextmanager
def generic_copies() -> Iterator[None]:
    """The copy module's own deep copy for the builder and every part of its feature state."""
    taken = {cls: cls.__dict__["__deepcopy__"] for cls in OWN_COPIES}
    try:
        for cls in taken:
            delattr(cls, "__deepcopy__")
        yield
    finally:
        for cls, method in taken.items():
            cls.__deepcopy__ = method  # type: ignore[attr-defined]


def drawn(res: ScenarioResult) -> list[list[tuple[int, int, int, int, int]]]:
    return [[(int(e.kind), int(e.side), e.price, e.size, e.ts) for e in p.events] for p in res.paths]


def copy_us(builder: windows.WindowBuilder, n: int = 200) -> float:
    t = time.perf_counter()
    for _ in range(n):
        copy.deepcopy(builder)
    return 1e6 * (time.perf_counter() - t) / n


def split(run: object) -> dict[str, float]:
    prof = cProfile.Profile()
    prof.runcall(run)  # type: ignore[arg-type]
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = max((v[3] for (f, _, name), v in stats.items() if name == "generate_scenarios"), default=0.0)
    out = {  # the largest cumulative time of the name: the outermost forward (the network's blocks are forwards too)
        column: max((v[3] for (f, _, name), v in stats.items() if f.endswith(file) and name == function), default=0.0)
        for column, (file, function) in SPLIT.items()
    }
    return {k: v / total if total else 0.0 for k, v in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="model/checkpoints/demo")
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--captures", default=CAPTURES, help="file:symbol, comma separated")
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--paths", type=int, default=16)
    ap.add_argument("--horizon", type=int, default=200)
    ap.add_argument("--sampling", default=JOINT, choices=SAMPLINGS)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    forecaster = OrderFlowForecaster(args.model, device="cpu")
    print(f"model {args.model}; {args.paths} paths x {args.horizon} events, {args.sampling} draw, cut @#{args.records}")
    print("| capture | seconds: own copies | seconds: generic copies | ratio | one builder copy, us: own / generic "
          "| network | draws | apply_event | of it copies | of it pushes |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for item in args.captures.split(","):
        name, symbol = item.split(":")
        state = load_state("binance", args.data / name, symbol, Cut(records=args.records),
                           window_config(forecaster.extra), args.horizon)  # fmt: skip

        def run(state: StartState = state) -> ScenarioResult:
            return generate_scenarios(forecaster, state, args.horizon, args.paths, seed=args.seed,
                                      sampling=args.sampling)  # fmt: skip

        t = time.perf_counter()
        own = run()
        own_s = time.perf_counter() - t
        own_us = copy_us(state.builder)
        with generic_copies():
            t = time.perf_counter()
            generic = run()
            generic_s = time.perf_counter() - t
            generic_us = copy_us(state.builder)
        if drawn(own) != drawn(generic):
            print(f"{name}: the two copies drew different events", file=sys.stderr)
            return 1
        part = split(run)
        print(f"| {name} | {own_s:.2f} | {generic_s:.2f} | {generic_s / own_s:.2f} | {own_us:.0f} / {generic_us:.0f} "
              f"| {part['network']:.0%} | {part['draws']:.0%} | {part['apply_event']:.0%} | {part['copies']:.0%} "
              f"| {part['pushes']:.0%} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
