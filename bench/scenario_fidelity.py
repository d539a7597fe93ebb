"""How close the generated scenarios come to what the real books did next, over many cuts of each real
capture, the event chain's joint draw of an event's fields beside the factorized draw (each field on
its own) in one run, on the same cuts, seeds and checkpoint (model/serving/scenarios.py).

Per capture, `--cuts` start states spread evenly over its records, each with `--paths` paths of
`--horizon` events, against the real continuation of as many events. Per cut and draw:
- trade share: TRADE / EXECUTE events among the events (generated: the mean over paths);
- ticks away: the median distance of the trades from the touch of the book they met, in ticks (0 at or
  inside the best bid and ask; a real trade is often a few ticks away, the depth stream lagging the
  trades'; a generated trade far away applies anyway on a book of price levels, and feeds later draws;
  generated: the mean over paths);
- seconds: the event time the horizon spans (generated: the median over paths);
- mid moves: the events that moved the mid of the book they met, and the messages that moved it (a
  message sweeping a side moves it once per level it empties; generated: the means over paths);
- depth: log10 of the generated top-5 depth per side at the end (median over paths) over the real's;
- mid in band: whether the real mid move over the horizon lies in the paths' 10-90% band (over cuts,
  ideal 0.8);
- skipped: steps with no applicable draw among `--tries`.
The table is the mean over cuts (depth: of the absolute log ratio, then the signed mean beside it); the
real columns are the same for both draws (a checkpoint without a fitted chain has the factorized row
alone). First, where `--heldout` exists (make checkpoint's held-out
windows), the next event's NLL per field under the factorized heads and under the chain, on windows
never trained on. About 12 minutes on 2 cores.

    python bench/scenario_fidelity.py [--model model/checkpoints/demo] [--cuts 8] [--paths 16]
        [--horizon 200] [--temperature 1] [--heldout build/demo-data/heldout.npz] [--out build/scenario-fidelity]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.network import event_chain
from model.network.orderflow import FIELDS
from model.serving.orderflow import OrderFlowForecaster
from model.serving.scenarios import (
    FACTORIZED,
    JOINT,
    Cut,
    copy_book,
    generate_scenarios,
    load_state,
    messages,
    window_config,
)
from model.training.train import TrainData, event_states
from orderbook.book import Book
from orderbook.events import Event
from orderbook.features import TRADE_KINDS
from orderbook.venues import feed_class

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance-hftbacktest"
CAPTURES = {  # file: symbol
    "spot_btcusdt_20240808.gz": "BTCUSDT",
    "usdm_btcusdt_20240808.gz": "BTCUSDT",
    "spot_ethusdt_20240808.gz": "ETHUSDT",
    "usdm_ethusdt_20240808.gz": "ETHUSDT",
    "cm_btcusd_perp_20240808.gz": "BTCUSD_PERP",
    "cm_ethusd_perp_20240808.gz": "ETHUSD_PERP",
}
COLUMNS = (
    "trade_share",
    "ticks_away",
    "seconds",
    "mid_moves",
    "mid_messages",
    "depth_log_ratio",
    "mid_in_band",
    "skipped",
)


def flow_stats(book: Book, events: list[Event], tick: int) -> tuple[float, float, float, float, float]:
    """(trade share, median ticks from the touch of the trades (0 at or inside the best bid and ask of
    the book they met), seconds spanned, events that moved the mid, messages that moved it) of `events`
    applied from a copy of `book`. A message: level updates at one instant, or any other event alone (as
    scenarios.messages groups them); one that sweeps a side moves the mid at each level it empties, so the events
    that moved the mid count a sweep many times, the messages once."""
    b = copy_book(book)  # L2: trades leave it as it is
    trades, away, moves, message_moves = 0, [], 0, 0
    for m in messages(events):
        before = b.mid2()
        for e in m:
            if e.kind in TRADE_KINDS:
                trades += 1
                bid, ask = b.best_bid(), b.best_ask()
                if bid and ask:
                    away.append(max(bid[0] - e.price, e.price - ask[0], 0) / tick)
            else:
                mid = b.mid2()
                with contextlib.suppress(Exception):  # a real continuation may need a resync the mirror lacks
                    b.apply(e)
                moves += b.mid2() != mid
        message_moves += b.mid2() != before
    span = (events[-1].ts - events[0].ts) / 1e9 if len(events) > 1 else float("nan")
    touch = float(np.median(away)) if away else float("nan")
    return trades / max(len(events), 1), touch, span, float(moves), float(message_moves)


def one_cut(forecaster: OrderFlowForecaster, path: Path, symbol: str, records: int, args: argparse.Namespace) -> dict:
    state = load_state("binance", path, symbol, Cut(records=records), window_config(forecaster.extra), args.horizon)
    if len(state.real_events) < args.horizon:
        return {}
    real_trade, real_touch, real_s, real_moves, real_messages = flow_stats(
        state.book, state.real_events[: args.horizon], state.tick
    )
    real_end = state.real_marks[-1][1]
    start = state.start
    real_mid = (real_end.mid2 - start.mid2) / (2 * state.tick)
    real_depth = (real_end.bid_depth + real_end.ask_depth) / 2
    out = {"real": {"trade_share": real_trade, "ticks_away": real_touch, "seconds": real_s, "mid_moves": real_moves,
                    "mid_messages": real_messages}}  # fmt: skip
    for sampling in (FACTORIZED, JOINT):
        res = generate_scenarios(forecaster, state, args.horizon, args.paths, seed=args.seed, tries=args.tries,
                                 temperature=args.temperature, sampling=sampling)  # fmt: skip
        stats = np.array([flow_stats(state.book, p.events, state.tick) for p in res.paths], dtype=float)
        mid = res.series("mid")[:, -1]
        lo, hi = np.quantile(mid, [0.1, 0.9])
        depth = np.median(res.series("depth")[:, -1]) / 2
        out[res.sampling] = {
            "trade_share": _mean(stats[:, 0]),
            "ticks_away": _mean(stats[:, 1]),
            "seconds": float(np.nanmedian(stats[:, 2])),
            "mid_moves": _mean(stats[:, 3]),
            "mid_messages": _mean(stats[:, 4]),
            "depth_log_ratio": float(np.log10(max(depth, 1.0) / max(real_depth, 1.0))),
            "mid_in_band": float(lo <= real_mid <= hi),
            "skipped": float(res.skipped.sum() / (args.paths * args.horizon)),
        }
    return out


def heldout_nll(model: torch.nn.Module, path: Path) -> dict[str, dict[str, float]]:
    """Per-field NLL (nats per event) of the next event, the factorized heads' and the chain's, on up to
    event_chain.POSITIONS real events of every window of a dataset file (one the checkpoint was not
    trained on), the real and the simulated windows apart."""
    data = TrainData.load(path)
    cpu = torch.device("cpu")
    x, y, owner = event_states(model, data, np.arange(len(data)), cpu, np.random.default_rng(0))
    h, targets = torch.from_numpy(x), {f: torch.from_numpy(v) for f, v in y.items()}

    def base(states: torch.Tensor) -> dict[str, torch.Tensor]:
        return {f: model.next_heads[f](states) for f in FIELDS}

    out = {}
    for group, mine in (("real", data.real[owner]), ("simulated", ~data.real[owner])):
        if mine.any():
            factorized, joint = event_chain.compare_nll(model.event_chain, h, targets, base, np.flatnonzero(mine))
            out |= {f"{group} {FACTORIZED}": factorized | {"events": int(mine.sum())},
                    f"{group} {JOINT}": joint | {"events": int(mine.sum())}}  # fmt: skip
    return out


def _mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="model/checkpoints/demo")
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--cuts", type=int, default=8)
    ap.add_argument("--paths", type=int, default=16)
    ap.add_argument("--horizon", type=int, default=200)
    ap.add_argument("--tries", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=1.0, help="of the draws (megatrading scenarios')")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--heldout", type=Path, default=Path("build/demo-data/heldout.npz"),
                    help="a dataset file encoded as the model and not trained on: the chain's likelihood there "
                         "(skipped where it does not exist)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=Path("build/scenario-fidelity"))
    args = ap.parse_args()
    forecaster = OrderFlowForecaster(args.model, device="cpu")
    if not bool(forecaster.model.event_chain.fitted):
        print(f"{args.model}: no event chain fitted; the joint draw is the factorized one", file=sys.stderr)
    t0 = time.perf_counter()
    if args.heldout.is_file():
        nll = heldout_nll(forecaster.model, args.heldout)
        print(f"next-event NLL per field on {args.heldout} (nats per event; the kind is the network's in both)")
        print("| windows | heads | " + " | ".join(FIELDS) + " | sum | events |")
        print("| --- | --- | " + " | ".join("---" for _ in FIELDS) + " | --- | --- |")
        for name, per in nll.items():
            print(f"| {name.replace(' ', ' | ')} | " + " | ".join(f"{per[f]:.3f}" for f in FIELDS)
                  + f" | {sum(per[f] for f in FIELDS):.3f} | {per['events']:,} |")  # fmt: skip
        print()
    rows: dict[str, dict] = {}
    for name, symbol in CAPTURES.items():
        n = sum(1 for _ in feed_class("binance").read_capture(args.data / name))
        at = [n * (k + 1) // (args.cuts + 1) for k in range(args.cuts)]
        cuts = [one_cut(forecaster, args.data / name, symbol, records, args) for records in at]
        cuts = [c for c in cuts if c]
        rows[name] = {"cuts": len(cuts), "per_cut": cuts}
        print(f"{name}: {len(cuts)} cuts ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scenario_fidelity.json").write_text(json.dumps(rows, indent=1))
    print(f"model {args.model}; {args.paths} paths x {args.horizon} events per cut, temperature {args.temperature}; "
          "mean over cuts")  # fmt: skip
    print("| capture | cuts | draw | trade share | ticks from the touch | seconds | mid moves: events / messages "
          "| |log10 depth ratio| (signed) | mid in 10-90% band | skipped |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        for draw in ("real", FACTORIZED, JOINT):
            if not any(draw in cut for cut in r["per_cut"]):
                continue  # no cut of the capture, or no fitted chain
            v = {c: np.array([cut[draw].get(c, np.nan) for cut in r["per_cut"]], float) for c in COLUMNS}
            if draw == "real":
                print(f"| {name} | {r['cuts']} | real | {_mean(v['trade_share']):.3f} | "
                      f"{_mean(v['ticks_away']):.1f} | {_mean(v['seconds']):.3f} | "
                      f"{_mean(v['mid_moves']):.1f} / {_mean(v['mid_messages']):.1f} | | | |")  # fmt: skip
                continue
            depth = v["depth_log_ratio"]
            print(f"| | | {draw} | {_mean(v['trade_share']):.3f} | {_mean(v['ticks_away']):.1f} | "
                  f"{_mean(v['seconds']):.3f} | {_mean(v['mid_moves']):.1f} / {_mean(v['mid_messages']):.1f} | "
                  f"{_mean(np.abs(depth)):.2f} ({_mean(depth):+.2f}) | "
                  f"{_mean(v['mid_in_band']):.2f} | {_mean(v['skipped']):.3f} |")  # fmt: skip
    print(f"{time.perf_counter() - t0:.0f} s; per cut: {args.out / 'scenario_fidelity.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
