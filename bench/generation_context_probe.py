"""Why generated level-update messages ended early: what the network predicts for the next event of a
scenario path, read at the window's last slot (where the next-event loss never trained it: the event after
it is outside the window) and one slot before it (model/serving/scenarios.py, READ_BEFORE_LAST), against
what it predicts read as training reads it (docs/design.md, "Generation").

On one cut of a Binance capture, teacher-forced along the real continuation, per message:
- the first event of each message as the feed delivered it, its NLL per field read from the rows
  before the message (what a
  generated path has) and read with the message's own row already in the window (what training gave);
- inside each level-update message, the network's chance that the next event is a level update and
  that it comes at the same instant, read from the scenario path's window (the message so far as one
  message) at its last slot and one before, and as training reads it (the window cut after the whole
  message, its row complete), and what the generator draws there (256 draws of the event chain at each
  event);
- the messages of the real continuation against those of generated paths (the event chain's draw and
  the factorized one): the share of messages that are trades, and the level updates a message carries;
- how the mid moves, per 200 events of each flow: the level updates at the best bid or ask of the book
  they meet, those that empty it, the messages that empty two or more (a sweep), the messages that move
  the mid; and at the real level updates at the best (teacher-forced, as a path reads them), the chance
  of a removal (the size bucket of 0 lots) under the network's own size head and under the event chain
  given the update's kind, side and price, against how often they were one.
About a minute per capture on 2 cores.

    python bench/generation_context_probe.py [--model model/checkpoints/demo]
        [--capture usdm_btcusdt_20240808.gz --symbol BTCUSDT] [--records 20000] [--events 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.network.orderflow import FIELDS, to_batch
from model.serving import scenarios
from model.serving.orderflow import OrderFlowForecaster
from model.serving.scenarios import (
    FACTORIZED,
    JOINT,
    Cut,
    apply_event,
    copy_book,
    fresh_path,
    generate_scenarios,
    load_state,
    messages,
    next_logits,
    window_config,
)
from orderbook.events import Event, Kind, Side
from orderbook.windows import token_price

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance-hftbacktest"
MAX_MESSAGE = 100  # longer messages push their first event out of the window: not scored
DRAWS = 256  # the event chain's draws at each event read


def feed_messages(state) -> list[list[Event]]:
    """The real continuation split as the feed delivered it (StartState.real_marks)."""
    ends = [n for n, _ in state.real_marks]
    return [state.real_events[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]


def message_shape(flows: list[list[Event]]) -> tuple[float, float]:
    """(share of messages that are trades, mean level updates per level-update message) of the flows."""
    sizes = [len(m) if m[0].kind == Kind.LEVEL_SET else 0 for events in flows for m in messages(events)]
    updates = [s for s in sizes if s]
    return float(np.mean([s == 0 for s in sizes])), float(np.mean(updates)) if updates else float("nan")


@torch.inference_mode()
def first_event_nll(forecaster: OrderFlowForecaster, state) -> dict[str, dict[str, float]]:
    def logits_at(builder, back: int):
        a = forecaster.arrays([builder.window()])
        out = forecaster.model(to_batch(a, forecaster.device))
        pos = a["kind"].shape[1] - 1 - back
        ids = {f: int(a[f][0, pos + 1]) for f in FIELDS} if back else None
        return {f: out["next"][f][0, pos].float().log_softmax(-1) for f in FIELDS}, ids

    book, builder = copy_book(state.book), copy.deepcopy(state.builder)
    before: dict[str, list[float]] = {f: [] for f in FIELDS}
    own: dict[str, list[float]] = {f: [] for f in FIELDS}
    for m in feed_messages(state):
        lg_before, _ = logits_at(builder, 0)
        for e in m:
            book.apply(e)
        builder.push(book, m)
        if len(m) > MAX_MESSAGE:
            continue
        lg_own, ids = logits_at(builder, len(m))
        for f in FIELDS:
            before[f].append(-float(lg_before[f][ids[f]]))
            own[f].append(-float(lg_own[f][ids[f]]))
    return {"rows before the message": {f: float(np.mean(v)) for f, v in before.items()},
            "its own row in the window": {f: float(np.mean(v)) for f, v in own.items()}}  # fmt: skip


@torch.inference_mode()
def inside_complete_messages(forecaster: OrderFlowForecaster, state) -> tuple[int, float, float]:
    """As `inside_messages`, read as training reads them: each real level-update message pushed whole, the
    predictions at its events inside the window cut after it (every event sees the message's row complete)."""
    book, builder = copy_book(state.book), copy.deepcopy(state.builder)
    same = int(forecaster.tokenizer.dt_ids(np.array([0]))[0])
    level: list[float] = []
    instant: list[float] = []
    for m in feed_messages(state):
        for e in m:
            book.apply(e)
        builder.push(book, m)
        if not 2 <= len(m) <= MAX_MESSAGE or any(e.kind != Kind.LEVEL_SET for e in m):
            continue
        a = forecaster.arrays([builder.window()])
        out = forecaster.model(to_batch(a, forecaster.device))
        n = a["kind"].shape[1]
        inner = slice(n - len(m), n - 1)  # the positions that predict the message's second event to its last
        level += out["next"]["kind"][0, inner].float().softmax(-1)[:, int(Kind.LEVEL_SET)].tolist()
        instant += out["next"]["dt"][0, inner].float().softmax(-1)[:, same].tolist()
    return (
        len(level),
        float(np.mean(level)) if level else float("nan"),
        float(np.mean(instant)) if level else float("nan"),
    )


@torch.inference_mode()
def inside_messages(forecaster: OrderFlowForecaster, state, chain: bool = False) -> tuple[int, float, float]:
    """(level updates scored, mean chance of a level update next, mean chance of the same instant next);
    `chain`: the shares of DRAWS joint draws of the event chain instead."""
    path = fresh_path(state, 0, 0)
    same = int(forecaster.tokenizer.dt_ids(np.array([0]))[0])
    model_chain = forecaster.model.event_chain
    gen = torch.Generator().manual_seed(0)

    def draw(lg: torch.Tensor) -> torch.Tensor:
        flat = lg.reshape(-1, lg.shape[-1]).softmax(-1)
        return torch.multinomial(flat, 1, generator=gen).view(lg.shape[:-1])

    level, instant, last = [], [], None
    for e in state.real_events:
        if e.kind == Kind.LEVEL_SET and last is not None and last.kind == Kind.LEVEL_SET and e.ts == last.ts:
            logits, h = next_logits(forecaster, [path])
            if chain:
                base = {f: logits[f].float().expand(DRAWS, -1) for f in FIELDS}
                d = model_chain.sample(h.float().expand(DRAWS, -1), base, draw)
                level.append(float((d["kind"] == int(Kind.LEVEL_SET)).float().mean()))
                instant.append(float((d["dt"] == same).float().mean()))
            else:
                level.append(float(logits["kind"][0].float().softmax(-1)[int(Kind.LEVEL_SET)]))
                instant.append(float(logits["dt"][0].float().softmax(-1)[same]))
        apply_event(path, e)
        last = e
    return len(level), float(np.mean(level)), float(np.mean(instant))


def mid_shape(book, flows: list[list[Event]]) -> dict[str, float]:
    """Per 200 events, the mean over `flows` (each applied from a copy of `book`): level updates at the
    best of their side, removals there, sweeps (messages emptying two or more best levels), messages
    that moved the mid."""
    totals = {"at the best": 0, "removing it": 0, "sweeps": 0, "messages moving the mid": 0}
    n = 0
    for events in flows:
        b = copy_book(book)
        n += len(events)
        for m in messages(events):
            mid, emptied = b.mid2(), 0
            for e in m:
                best = b.best_bid() if e.side == Side.BID else b.best_ask()
                if e.kind == Kind.LEVEL_SET and best and e.price == best[0]:
                    totals["at the best"] += 1
                    totals["removing it"] += e.size == 0
                    emptied += e.size == 0
                with contextlib.suppress(Exception):  # a real continuation may need a resync the mirror lacks
                    b.apply(e)
            totals["sweeps"] += emptied >= 2
            totals["messages moving the mid"] += b.mid2() != mid
    return {k: 200 * v / max(n, 1) for k, v in totals.items()}


@torch.inference_mode()
def removal_at_the_best(forecaster: OrderFlowForecaster, state) -> tuple[int, float, float, float]:
    """(real level updates at the best read, the size head's mean chance of a removal there, the event
    chain's given the update's kind, side and price, the share that were removals), teacher-forced along
    the real continuation as a path reads it."""
    path = fresh_path(state, 0, 0)
    tokens = forecaster.tokenizer
    removal = int(tokens.size_ids(np.array([0]))[0])
    chain = forecaster.model.event_chain
    head, joint, real = [], [], []
    for e in state.real_events:
        best = path.book.best_bid() if e.side == Side.BID else path.book.best_ask()
        if e.kind == Kind.LEVEL_SET and best and e.price == best[0]:
            logits, h = next_logits(forecaster, [path])
            ref2 = path.message_ref2 if scenarios._joins_message(path, e.kind, e.ts - path.ts) else None
            price = token_price(e.price, ref2 or scenarios._reference2(path.book), state.tick, tokens.price_clip)
            ids = tokens.encode(*(np.array([x]) for x in (e.kind, e.side, price, e.size, 0, True)))
            given = {f: torch.as_tensor(ids[f][:1]) for f in FIELDS}
            corrected = chain.logits(h, logits, given)["size"] if bool(chain.fitted) else logits["size"]
            head.append(float(logits["size"][0].float().softmax(-1)[removal]))
            joint.append(float(corrected[0].softmax(-1)[removal]))
            real.append(e.size == 0)
        apply_event(path, e)
    return len(real), float(np.mean(head)), float(np.mean(joint)), float(np.mean(real))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="model/checkpoints/demo")
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--capture", default="usdm_btcusdt_20240808.gz")
    ap.add_argument("--symbol", default="BTCUSDT")
    ap.add_argument("--records", type=int, default=20_000, help="the cut: after this many records")
    ap.add_argument("--events", type=int, default=2_000, help="real continuation scored, in events")
    ap.add_argument("--paths", type=int, default=16)
    ap.add_argument("--horizon", type=int, default=200)
    args = ap.parse_args()
    forecaster = OrderFlowForecaster(args.model, device="cpu")
    state = load_state("binance", args.data / args.capture, args.symbol, Cut(records=args.records),
                       window_config(forecaster.extra), args.events)  # fmt: skip
    print(f"{args.capture} {args.symbol}, cut after {args.records} records, {len(state.real_events)} real events")
    print("\nfirst event of each message, NLL per field (nats):")
    print("| read from | " + " | ".join(FIELDS) + " | sum |")
    print("| --- | " + " | ".join("---" for _ in FIELDS) + " | --- |")
    for name, per in first_event_nll(forecaster, state).items():
        print(f"| {name} | " + " | ".join(f"{per[f]:.3f}" for f in FIELDS) + f" | {sum(per.values()):.3f} |")
    print("\ninside real level-update messages, the network's chance that the next event is a level update, "
          "and at the same instant:")  # fmt: skip
    print("| the message in the window | updates read | a level update next | the same instant next |")
    print("| --- | --- | --- | --- |")
    read_at = scenarios.READ_BEFORE_LAST
    try:
        scenarios.READ_BEFORE_LAST = 0
        n, level, instant = inside_messages(forecaster, state)
    finally:
        scenarios.READ_BEFORE_LAST = read_at
    print(f"| so far, as one message, read at the last slot | {n} | {level:.3f} | {instant:.3f} |")
    n, level, instant = inside_messages(forecaster, state)
    print(f"| so far, as one message, read one slot before it (a path's) | {n} | {level:.3f} | {instant:.3f} |")
    n, level, instant = inside_complete_messages(forecaster, state)
    print(f"| whole, the window cut after it (training's) | {n} | {level:.3f} | {instant:.3f} |")
    if bool(forecaster.model.event_chain.fitted):
        n, level, instant = inside_messages(forecaster, state, chain=True)
        print(f"| so far, one slot before the last, the event chain's draws | {n} | {level:.3f} | {instant:.3f} |")
    print("\n| flow | messages that are trades | level updates per level-update message |")
    print("| --- | --- | --- |")
    trades, per = message_shape([state.real_events])
    print(f"| real continuation | {trades:.3f} | {per:.1f} |")
    shapes = {"real continuation": mid_shape(state.book, [state.real_events])}
    for sampling in (FACTORIZED, JOINT):
        res = generate_scenarios(forecaster, state, args.horizon, args.paths, seed=1, sampling=sampling)
        trades, per = message_shape([p.events for p in res.paths])
        print(f"| generated, {res.sampling} | {trades:.3f} | {per:.1f} |")
        shapes[f"generated, {res.sampling}"] = mid_shape(state.book, [p.events for p in res.paths])
    print("\nhow the mid moves, per 200 events:")
    print("| flow | " + " | ".join(shapes["real continuation"]) + " |")
    print("| --- | " + " | ".join("---" for _ in shapes["real continuation"]) + " |")
    for name, row in shapes.items():
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in row.values()) + " |")
    n, head, joint, real = removal_at_the_best(forecaster, state)
    print(
        f"\nthe real level updates at the best ({n}), teacher-forced: chance of a removal, the size head "
        f"{head:.3f}, the event chain {joint:.3f}; removals {real:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
