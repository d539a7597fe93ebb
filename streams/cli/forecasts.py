"""`megatrading forecasts latest|history|alerts|watch`: what is in Redis, as a table in the terminal."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Mapping
from typing import TextIO

from streams.client import ForecastClient

COLUMNS = (
    ("venue", "venue", 8), ("symbol", "symbol", 10), ("seq", "seq", 12), ("best_bid", "bid", 14),
    ("best_ask", "ask", 14), ("spread_q50_h10", "spread50", 9), ("depth_q50_h10", "depth50", 12),
    ("p_up_h10", "p_up", 5), ("anomaly_score", "anomaly", 7), ("model", "model", 20),
)  # fmt: skip


def _cell(value: object, width: int) -> str:
    if isinstance(value, float):
        text = f"{value:.3f}" if abs(value) < 1e4 else f"{value:.3g}"
    else:
        text = str(value)
    return text[:width].rjust(width)


def table(rows: Iterable[Mapping[str, object]], out: TextIO) -> int:
    out.write(" ".join(title.rjust(w) for _, title, w in COLUMNS) + "\n")
    n = 0
    for row in rows:
        out.write(" ".join(_cell(row.get(k, ""), w) for k, _, w in COLUMNS) + "\n")
        n += 1
    return n


def _latest_rows(client: ForecastClient, venue: str | None, symbol: str | None) -> list[dict[str, object]]:
    keys = [(v, s) for v, s in client.symbols() if (venue is None or v == venue) and (symbol is None or s == symbol)]
    return [r for v, s in keys if (r := client.latest(v, s)) is not None]


def run(args: argparse.Namespace, redis_url: str, out: TextIO = sys.stdout) -> int:
    client = ForecastClient(redis_url)
    if args.action == "latest":
        n = table(_latest_rows(client, args.venue, args.symbol), out)
        return 0 if n else 1
    if args.action == "history":
        if not (args.venue and args.symbol):
            raise ValueError("history needs --venue and --symbol")
        rows = client.history(args.venue, args.symbol, since_ns=args.since)
        table(rows[-args.count :], out)
        return 0
    if args.action == "alerts":
        for alert in client.alerts(args.count):
            out.write(f"{alert['venue']}:{alert['symbol']} seq={alert['seq']} score={alert['anomaly_score']:.4f} "
                      f"{alert.get('reason', '')}\n")  # fmt: skip
        return 0
    # watch: a live table, redrawn in place on a terminal
    i = 0
    while args.iterations is None or i < args.iterations:
        if out.isatty():
            out.write("\x1b[H\x1b[2J")
        out.write(f"mt:latest:* at {time.strftime('%H:%M:%S')}\n")
        table(_latest_rows(client, args.venue, args.symbol), out)
        out.flush()
        i += 1
        if args.iterations is None or i < args.iterations:
            time.sleep(args.interval)
    return 0
