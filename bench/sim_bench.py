"""Simulator speed: one trading day (09:30-16:00) of 10 symbols on one core, written as ITCH and as LOBSTER,
for both ways prices form (FlowParams.efficient_price, the default, and `--queue-price`), side by side.

    python bench/sim_bench.py            # the full day (the target: under 60 s to ITCH)
    python bench/sim_bench.py --quick    # 10 minutes of the day, a smoke run

Default activity: symbols log-spaced from 15k to 150k events per day (10x across symbols, mean about
60k): a realistic order of magnitude for the order-book messages of a mid-cap to a liquid NASDAQ stock
on one venue, and bounded so a day of 10 symbols stays well under a minute in pure Python.
Prints events, seconds and events/s for each stage; simulation is timed apart from encoding; the
efficient price's (the default) events/s in simulation as a ratio to `--queue-price`'s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.sim.anomalies import KINDS
from model.sim.engine import DAY_NS, QUEUE_PRICE, SEC, FlowParams, SimConfig
from model.sim.run import simulate
from model.sim.writers import write


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10 simulated minutes instead of the day")
    p.add_argument("--symbols", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    duration = 600 * SEC if args.quick else DAY_NS
    rates: dict[str, float] = {}
    for efficient in (False, True):
        cfg = SimConfig(
            n_symbols=args.symbols,
            duration_ns=duration,
            seed=args.seed,
            anomaly_rates=dict.fromkeys(KINDS, 0.2),
            news_rate=0.5,
            flow=FlowParams() if efficient else FlowParams(**QUEUE_PRICE),
        )
        mode = "efficient price" if efficient else "queue price"
        t0 = time.perf_counter()
        result = simulate(cfg)
        t_sim = time.perf_counter() - t0
        n = len(result.events)
        rates[mode] = n / t_sim
        print(f"simulate ({mode}): {args.symbols} symbols x {duration / SEC / 3600:.2f} h, {n} events in {t_sim:.2f} s")
        with tempfile.TemporaryDirectory() as tmp:
            for fmt in ("itch", "lobster"):
                t1 = time.perf_counter()
                files = write(fmt, result, Path(tmp) / fmt)
                t_write = time.perf_counter() - t1
                size = sum(os.path.getsize(f) for f in files)
                total = t_sim + t_write
                print(
                    f"{fmt:8} write {t_write:6.2f} s ({size / 1e6:.1f} MB); simulate + write {total:6.2f} s, "
                    f"{n / total:,.0f} events/s{'  (over 60 s!)' if total > 60 and not args.quick else ''}"
                )
    ratio = rates["efficient price"] / rates["queue price"]
    print(f"simulation events/s, efficient price / queue price: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
