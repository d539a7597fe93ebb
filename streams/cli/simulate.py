"""`megatrading simulate`: simulated L3 order flow with news and labeled manipulation, as venue files or live.

    megatrading simulate --symbols N --duration D --seed S [--anomalies SPEC] [--anomaly-rate R]
                         [--anomaly-intensity X|LO:HI] [--news RATE] [--news-jump X]
                         [--news-discovery S] [--taker-repricing | --queue-price]
                         --format itch|lobster|binance|coinbase
                         (--out DIR | --kafka [--bootstrap HOST:PORT] [--speed N | --max]) [--report]

- `--duration`: `90s`, `30m`, `1h`, `6.5h`, or `1d` (one trading day, 09:30-16:00); the stream starts
  at 09:30 on the simulated date.
- `--anomalies`: `none` (default), `all`, or a comma list `kind[=per_hour]` over spoofing, layering,
  quote_stuffing, momentum_ignition, flash_crash, regime_shift; a kind without `=rate` takes
  `--anomaly-rate` (windows per symbol per hour, default 0.5). `--anomaly-intensity` (default 1) scales
  the injected agents' sizes and rates: lower it to make detection harder; `LO:HI` draws each
  window's own uniformly from that range.
- `--news`: headlines per symbol per hour (default 1; 0 for none).
- Prices follow a latent efficient price that diffuses and steps on earnings headlines (`--news-jump`:
  the median step, a fraction of the price, default 0.01; `--news-discovery S`: half of it at the
  headline, the rest over about S seconds); liquidity is quoted around it
  (model/sim/engine.py, "Price formation"): market makers follow it by pulling the quotes it passes, and
  most crossing limit orders are post-only. `--taker-repricing`: the flow before 2026-12-05, where every
  crossing limit order took and three times the market orders traded (cancel-to-trade 1.3, against 7-58 in
  the captures). `--queue-price`: the simulator before the efficient price, where the price moves only when
  a touch queue empties (with the market orders it had). Both to reproduce figures made with them.

`--out DIR` writes the stream file(s) of the format, `news.jsonl` (`md.news` records), `labels.csv`
(`symbol,start_ns,end_ns,kind,params`) and `meta.json` (seed, parameters, symbols with ticks, regimes);
times in news and labels are on the written stream's clock. `--kafka` publishes the stream to
`md.raw.<format>` (key = symbol) and headlines to `md.news` at `--speed` times real time, or as fast
as possible with `--max` (streams.publish.publish_simulation), to the broker of `--bootstrap`, else
`MT_KAFKA_BOOTSTRAP`, else the config file's (streams/config.py), in frames of one symbol's messages
(orderbook/frames.py) of at most `--frame-messages` (default 64; 1: none) spanning at most `--frame-ms`
(default 1) of the stream's clock; headlines one per record. `--report` (with `--out`) computes
the stylized facts of the written stream and of the real captures in ../shared/data (model.sim.stylized),
prints the table and writes report.md and PNG plots into DIR. The same seed and arguments give the same bytes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
from pathlib import Path

from model.sim.anomalies import KINDS, Intensity, parse_anomalies, parse_intensity, write_labels
from model.sim.engine import (
    DAY_NS,
    QUEUE_PRICE,
    SEC,
    TAKER_REPRICING,
    FlowParams,
    SimConfig,
    SimResult,
    default_symbols,
)
from model.sim.news import write_news
from model.sim.run import simulate
from model.sim.writers import CRYPTO_PRICE, FORMATS, clock_offset, venue_symbol, write
from orderbook.frames import FRAME_MESSAGES, FRAME_SPAN_NS

_DURATION = re.compile(r"^([0-9]*\.?[0-9]+)([smhd]?)$")
_UNIT_NS = {"": SEC, "s": SEC, "m": 60 * SEC, "h": 3600 * SEC, "d": DAY_NS}


def parse_duration(text: str) -> int:
    """`90s`, `30m`, `6.5h`, `1d` (a trading day of 6.5 h) or plain seconds -> ns."""
    m = _DURATION.match(text.strip().lower())
    if not m:
        raise argparse.ArgumentTypeError(f"duration {text!r}: use e.g. 90s, 30m, 1h, 6.5h, 1d")
    ns = int(float(m[1]) * _UNIT_NS[m[2]])
    if ns <= 0 or ns > DAY_NS:
        raise argparse.ArgumentTypeError(f"duration {text!r} must be within one trading day (6.5h)")
    return ns


def _range(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition(":")
    try:
        return float(lo), float(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use LO:HI events per day, e.g. 15000:150000") from None


def intensity_arg(text: str) -> Intensity:
    try:
        return parse_intensity(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_frame_flags(p: argparse.ArgumentParser) -> None:
    """The frame bounds of a producer of md.raw.<venue> (orderbook/frames.py): `simulate --kafka`, `replay`."""
    p.add_argument(
        "--frame-messages", type=int, default=FRAME_MESSAGES, metavar="N",
        help=f"messages of one symbol per record at most (default {FRAME_MESSAGES}; 1: no frames)",
    )  # fmt: skip
    p.add_argument(
        "--frame-ms", type=float, default=FRAME_SPAN_NS / 1e6, metavar="X",
        help=f"venue time one frame may span at most, ms (default {FRAME_SPAN_NS / 1e6:g})",
    )  # fmt: skip


def add_price_flags(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """How simulated prices form (`simulate`, `dataset`, `evaluate --alerts`): the module doc's
    `--taker-repricing`, `--queue-price`, `--news-jump` and `--news-discovery`."""
    pricing = p.add_mutually_exclusive_group()
    pricing.add_argument(
        "--taker-repricing", action="store_true",
        help="the flow before 2026-12-05: crossing limit orders take the quotes the price passed, 3x the market "
             "orders (default: makers pull them; most crossing limit orders are post-only)",
    )  # fmt: skip
    pricing.add_argument(
        "--queue-price", action="store_true",
        help="prices move only when a touch queue empties (default: around a diffusing efficient price news steps)",
    )  # fmt: skip
    p.add_argument(
        "--news-jump", type=float, default=SimConfig.news_jump, metavar="X",
        help=f"an earnings headline's median step of the efficient price, a fraction (default {SimConfig.news_jump})",
    )  # fmt: skip
    p.add_argument(
        "--news-discovery", type=_seconds, default=FlowParams.news_discovery_s, metavar="S",
        help="the efficient price takes half of an earnings step at the headline and the rest over about S "
             "seconds after it (default 0: all at once)",
    )  # fmt: skip


def _seconds(text: str) -> float:
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):  # NaN fails the first
        raise argparse.ArgumentTypeError(f"a finite number of seconds, 0 or more, not {text}")
    return value


def price_config(args: argparse.Namespace) -> dict:
    """SimConfig's fields that add_price_flags sets."""
    flow = FlowParams(news_discovery_s=args.news_discovery)
    if args.queue_price or args.taker_repricing:
        flow = dataclasses.replace(flow, **(QUEUE_PRICE if args.queue_price else TAKER_REPRICING))
    return {"flow": flow, "news_jump": args.news_jump}


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `simulate` verb to the `megatrading` parser."""
    s = subparsers.add_parser(
        "simulate",
        help="simulated L3 order flow with news and labeled anomalies, written in a venue's format",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--symbols", type=int, default=3, help="number of symbols (default 3)")
    s.add_argument("--duration", type=parse_duration, default=parse_duration("1h"), help="90s, 30m, 1h, 6.5h, 1d")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--anomalies", default="none", help="none | all | kind[=per_hour],...  (" + ", ".join(KINDS) + ")")
    s.add_argument("--anomaly-rate", type=float, default=0.5, help="windows per symbol per hour (default 0.5)")
    s.add_argument("--anomaly-intensity", type=intensity_arg, default=1.0,
                   help="agent size/rate scale X, or LO:HI: each window draws its own (default 1)")  # fmt: skip
    s.add_argument("--news", type=float, default=1.0, help="headlines per symbol per hour (default 1, 0: none)")
    s.add_argument("--news-effect", type=float, default=300.0, help="seconds a headline moves the flow")
    s.add_argument("--halt", type=float, default=300.0, help="seconds a news halt lasts")
    add_price_flags(s)
    s.add_argument("--events-per-day", type=_range, default=None, metavar="LO:HI", help="activity range of symbols")
    s.add_argument("--format", choices=FORMATS, default="itch")
    s.add_argument("--out", type=Path, help="folder for the stream, news.jsonl, labels.csv, meta.json")
    s.add_argument("--kafka", action="store_true", help="publish to md.raw.<format> and md.news instead")
    s.add_argument("--bootstrap", help="Kafka bootstrap servers (env MT_KAFKA_BOOTSTRAP, default 127.0.0.1:9092)")
    pace = s.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="times real time when publishing (default 1)")
    pace.add_argument("--max", action="store_true", help="publish as fast as possible")
    add_frame_flags(s)
    s.add_argument("--report", action="store_true", help="stylized facts: simulated beside real (needs --out)")
    s.add_argument("--real", type=Path, help="the real captures (default ../shared/data or $MT_SHARED_DATA)")
    s.set_defaults(run=cmd_simulate)
    return s


def config_from_args(args: argparse.Namespace) -> SimConfig:
    specs = default_symbols(args.symbols, args.events_per_day) if args.events_per_day else None
    return SimConfig(
        n_symbols=args.symbols,
        duration_ns=args.duration,
        seed=args.seed,
        symbols=specs,
        anomaly_rates=parse_anomalies(args.anomalies, args.anomaly_rate),
        anomaly_intensity=args.anomaly_intensity,
        news_rate=args.news,
        news_effect_s=args.news_effect,
        halt_s=args.halt,
        **price_config(args),
    )


def run_simulation(cfg: SimConfig) -> SimResult:
    from streams.progress import progress_bar

    with progress_bar(len(cfg.specs()), "symbol", "simulate") as bar:
        return simulate(cfg, progress=lambda n: bar.update(1))


def write_meta(result: SimResult, fmt: str, files: list[Path], path: Path) -> None:
    cfg = result.config
    meta = {
        "seed": cfg.seed,
        "format": fmt,
        "clock_offset_ns": clock_offset(fmt),
        "start_ns": result.start_ns,
        "end_ns": result.end_ns,
        "files": [f.name for f in files],
        "symbols": [dataclasses.asdict(s) | {"venue_symbol": venue_symbol(fmt, s.name)} for s in result.symbols],
        "flow": dataclasses.asdict(cfg.flow),
        "anomaly_rates": cfg.anomaly_rates,
        "anomaly_intensity": cfg.anomaly_intensity,
        "news_rate": cfg.news_rate,
        "news_effect_s": cfg.news_effect_s,
        "news_jump": cfg.news_jump,
        "halt_s": cfg.halt_s,
        "counts": {"events": len(result.events), "news": len(result.news), "labels": len(result.labels)},
        "regimes": {s: [list(r) for r in rs] for s, rs in result.regimes.items()},
    }
    path.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def write_outputs(result: SimResult, fmt: str, out: Path) -> list[Path]:
    """The stream files, news.jsonl, labels.csv and meta.json; the stream files written."""
    files = write(fmt, result, out)
    off = clock_offset(fmt)
    write_news(result.news, out / "news.jsonl", off)
    write_labels(result.labels, out / "labels.csv", off)
    write_meta(result, fmt, files, out / "meta.json")
    return files


def make_report(fmt: str, files: list[Path], out: Path, real_root: Path, ticks: dict[str, int] | None = None) -> str:
    """The stylized facts of the written stream beside the real captures' (model.sim.stylized); report.md.
    `ticks`: each simulated symbol's own tick in the format's price units, so spreads are
    counted in the instrument's ticks (the format alone would say one cent for every ITCH name)."""
    from model.sim.stylized import real_series, report, series_from_capture

    sim: dict = {}
    for f in files:
        if "_orderbook_" not in f.name:
            sim.update(series_from_capture(fmt, f, source="simulated"))
    for key, series in sim.items():
        tick = (ticks or {}).get(series.symbol)
        if tick:
            sim[key] = dataclasses.replace(series, tick=tick)
    text = report(real_series(real_root), sim, out)
    (out / "report.md").write_text(text)
    return text


def cmd_simulate(args: argparse.Namespace) -> int:
    if not args.out and not args.kafka:
        raise ValueError("simulate needs --out DIR or --kafka")
    if args.report and not args.out:
        raise ValueError("--report needs --out DIR (the PNGs and report.md go there)")
    bootstrap = None
    if args.kafka:  # a missing broker is found before the simulation, not after it
        from streams.config import Settings
        from streams.infra import reach_kafka

        bootstrap = Settings.load(args).bootstrap
        reach_kafka(bootstrap)
    result = run_simulation(config_from_args(args))
    files: list[Path] = []
    if args.out:
        files = write_outputs(result, args.format, args.out)
        print(
            f"{len(result.events)} events, {len(result.news)} headlines, {len(result.labels)} labels "
            f"-> {args.out} ({', '.join(f.name for f in files[:4])}{', ...' if len(files) > 4 else ''})"
        )
    if bootstrap is not None:
        from streams.publish import publish_simulation

        counts = publish_simulation(result, args.format, bootstrap, None if args.max else args.speed,
                                    frame_messages=args.frame_messages, frame_ms=args.frame_ms)  # fmt: skip
        print("produced " + ", ".join(f"{sent} to {t}" for t, sent in sorted(counts.items())))
    if args.report:
        real_root = args.real or Path(os.environ.get("MT_SHARED_DATA", Path.cwd().parent / "shared" / "data"))
        units = CRYPTO_PRICE if args.format in ("binance", "coinbase") else 1
        ticks = {venue_symbol(args.format, s.name): s.tick * units for s in result.symbols}
        print(make_report(args.format, files, args.out, real_root, ticks))
    return 0
