"""The simulated news stream: templated headlines at Poisson times, each with a known effect on the flow.

In this world text carries real information, so a model that reads headlines can be tested:

| kind | headline (template) | effect on the symbol's flow for `effect_s` after it |
| --- | --- | --- |
| negative | "XYZ misses Q3 earnings estimates, cuts guidance" | sell market orders up, bids pulled, spread wider |
| positive | "XYZ beats Q3 earnings estimates, raises guidance" | the mirror image |
| halt | "Trading halted in XYZ pending news" | a halt HALT_DELAY after it; trading resumes `halt_s` later |
| neutral | "XYZ to present at investor conference" | nothing |

Records follow docs/design.md's `md.news`: `{"ts": ns, "symbols": [...], "headline": str, "source": "sim"}`;
`ts` is on the stream's own clock (ns since midnight for ITCH/LOBSTER).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from model.sim.engine import SEC, Effect, Interval, SymbolSpec, pick

HALT_DELAY_NS = SEC // 2  # the exchange halts half a second after the headline
JUMP_SIGMA = 0.5  # the spread of news_windows' price steps, log scale
KINDS = (("negative", 0.25), ("positive", 0.25), ("halt", 0.1), ("neutral", 0.4))
TEMPLATES: dict[str, tuple[str, ...]] = {
    "negative": (
        "{s} misses Q3 earnings estimates, cuts guidance",
        "{s} reports quarterly loss, withdraws full-year outlook",
        "{s} shares slide after revenue falls short of forecasts",
    ),
    "positive": (
        "{s} beats Q3 earnings estimates, raises guidance",
        "{s} reports record quarterly revenue, lifts outlook",
        "{s} shares jump after profit tops forecasts",
    ),
    "halt": ("Trading halted in {s} pending news", "{s} halted: news pending"),
    "neutral": (
        "{s} to present at investor conference",
        "{s} announces date of annual shareholder meeting",
        "{s} names new head of investor relations",
    ),
}
EFFECTS: dict[str, Effect] = {
    "negative": Effect(mkt=2.5, bias=-0.4, can_bid=3.0, gap=2, size=1.5, excite=1.2, pull_bid=0.5, pull_ask=0.2),
    "positive": Effect(mkt=2.5, bias=0.4, can_ask=3.0, gap=2, size=1.5, excite=1.2, pull_bid=0.2, pull_ask=0.5),
}


@dataclass(frozen=True)
class NewsItem:
    ts: int
    symbol: str
    kind: str
    headline: str

    def record(self, clock_offset: int = 0) -> dict:
        """The `md.news` record; `clock_offset` moves `ts` onto the written stream's clock."""
        return {"ts": self.ts + clock_offset, "symbols": [self.symbol], "headline": self.headline, "source": "sim"}


def schedule_news(seed: int, specs: list[SymbolSpec], start: int, end: int, rate_per_hour: float) -> list[NewsItem]:
    """Headlines at Poisson times per symbol (own random stream), time ordered."""
    if rate_per_hour <= 0:
        return []
    rng = random.Random(f"news:{seed}")
    items = []
    for spec in specs:
        t = start
        while True:
            t += int(-math.log(1.0 - rng.random()) * 3600 / rate_per_hour * SEC) + 1
            if t >= end:
                break
            kind = pick(rng.random(), KINDS)
            template = TEMPLATES[kind][int(rng.random() * len(TEMPLATES[kind]))]
            items.append(NewsItem(t, spec.name, kind, template.format(s=spec.name)))
    items.sort(key=lambda n: (n.ts, n.symbol))
    return items


def news_windows(
    news: Iterable[NewsItem], symbol: str, effect_s: float, halt_s: float, jump: float = 0.0
) -> list[Interval]:
    """The flow effects of one symbol's headlines (neutral ones have none). With `jump`, an earnings
    headline also steps the efficient price (FlowParams.efficient_price) by about that fraction of it, up
    or down with the news: `jump` times a log-normal draw of median 1 (sigma 0.5), one per headline."""
    out = []
    for n in news:
        if n.symbol != symbol:
            continue
        if n.kind == "halt":
            start = n.ts + HALT_DELAY_NS
            out.append(Interval(start, start + int(halt_s * SEC), Effect(halted=True), "news:halt"))
        elif n.kind in EFFECTS:
            step = 0.0
            if jump:
                draw = random.Random(f"jump:{n.symbol}:{n.ts}").gauss(0.0, JUMP_SIGMA)
                step = (1 if n.kind == "positive" else -1) * jump * math.exp(draw)
            out.append(Interval(n.ts, n.ts + int(effect_s * SEC), EFFECTS[n.kind], f"news:{n.kind}", step))
    return out


def write_news(news: Iterable[NewsItem], path: Path, clock_offset: int = 0) -> int:
    """news.jsonl: one `md.news` record per line; the number written."""
    n = 0
    with open(path, "w") as f:
        for item in news:
            f.write(json.dumps(item.record(clock_offset), sort_keys=True) + "\n")
            n += 1
    return n
