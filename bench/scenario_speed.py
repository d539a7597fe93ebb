"""Where a scenario's time goes, and what its two shortcuts save, side by side in one run.

A path copies its window builder at every level update of a message (model/serving/scenarios.py,
`apply_event`: the builder as it was before the message, the whole message pushed again), and a step
reads the network at one slot of each path's window (`next_event`: the blocks and the next-event
heads at that slot, none of the window's heads). Per capture, at one cut (`--records`), the same draw
(seed, paths, horizon, sampling) is run as served (the copies WindowBuilder and FeatureState's parts
define, `__deepcopy__`) and with the copy module's generic copy of the same objects (those methods taken
away for the run), `--repeats` times each, interleaved, the fastest kept (the machine is shared); the
two must draw the same events (checked). Then one step's network read for the paths' first windows,
`next_event` against the whole forward read at that slot (medians of 30 interleaved calls). Printed per
capture: the wall seconds of both draws and their ratio, one builder copy in microseconds both ways, the
step's milliseconds both ways, and the split of a served draw (under cProfile, so as fractions): the
network, the draws, and `apply_event` with its copies and pushes. About 4 minutes on 2 cores.

    python bench/scenario_speed.py [--model model/checkpoints/demo] [--records 20000] [--paths 16]
        [--horizon 200] [--repeats 2] [--sampling joint] [--captures usdm_btcusdt_20240808.gz:BTCUSDT,...]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from model.network.orderflow import to_batch
from model.serving.orderflow import OrderFlowForecaster
from model.serving.scenarios import (
    JOINT,
    READ_BEFORE_LAST,
    SAMPLINGS,
    Cut,
    ScenarioResult,
    StartState,
    fresh_path,
    generate_scenarios,
    load_state,
    read_earlier,
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
    "network": ("orderflow.py", "next_event"),
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


def step_ms(forecaster: OrderFlowForecaster, state: StartState, paths: int, calls: int = 30) -> tuple[float, float]:
    """Milliseconds of one step's network read for `paths` fresh paths of `state`: `next_event` at the
    slot scenarios read, and the whole forward (medians of `calls`, the two interleaved)."""
    fresh = [fresh_path(state, 0, i) for i in range(paths)]
    batch = to_batch(read_earlier(forecaster.arrays([p.builder.window() for p in fresh])), forecaster.device)
    model, at = forecaster.model, -1 - READ_BEFORE_LAST
    one, whole = [], []
    with torch.inference_mode():
        model(batch)  # warm
        for _ in range(calls):
            t = time.perf_counter()
            model.next_event(batch, at)
            one.append(time.perf_counter() - t)
            t = time.perf_counter()
            model(batch)
            whole.append(time.perf_counter() - t)
    return 1e3 * statistics.median(one), 1e3 * statistics.median(whole)


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
    out = {  # the largest cumulative time of the name
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
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    forecaster = OrderFlowForecaster(args.model, device="cpu")
    print(f"model {args.model}; {args.paths} paths x {args.horizon} events, {args.sampling} draw, cut @#{args.records}")
    print("| capture | seconds: served | generic copies | one builder copy, us: own / generic "
          "| one step's network, ms: next_event / whole forward | network | draws | apply_event | of it copies "
          "| of it pushes |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for item in args.captures.split(","):
        name, symbol = item.split(":")
        state = load_state("binance", args.data / name, symbol, Cut(records=args.records),
                           window_config(forecaster.extra), args.horizon)  # fmt: skip

        def run(state: StartState = state) -> ScenarioResult:
            return generate_scenarios(forecaster, state, args.horizon, args.paths, seed=args.seed,
                                      sampling=args.sampling)  # fmt: skip

        def timed(state: StartState = state) -> tuple[ScenarioResult, float]:
            t = time.perf_counter()
            return run(state), time.perf_counter() - t

        generate_scenarios(forecaster, state, 10, args.paths, seed=args.seed, sampling=args.sampling)  # warm
        served_runs, generic_runs = [], []
        for _ in range(args.repeats):
            served_runs.append(timed())
            with generic_copies():
                generic_runs.append(timed())
        (served, served_s), (generic, generic_s) = (min(r, key=lambda x: x[1]) for r in (served_runs, generic_runs))
        if drawn(served) != drawn(generic):
            print(f"{name}: the two copies drew different events", file=sys.stderr)
            return 1
        own_us = copy_us(state.builder)
        with generic_copies():
            generic_us = copy_us(state.builder)
        one_ms, whole_ms = step_ms(forecaster, state, args.paths)
        part = split(run)
        print(f"| {name} | {served_s:.2f} | {generic_s:.2f} ({generic_s / served_s:.2f}x) | {own_us:.0f} / "
              f"{generic_us:.0f} | {one_ms:.1f} / {whole_ms:.1f} | {part['network']:.0%} | {part['draws']:.0%} "
              f"| {part['apply_event']:.0%} | {part['copies']:.0%} | {part['pushes']:.0%} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
