"""`megatrading forecasts latest|history|alerts|watch`: what is in Redis, as a table in the terminal.

The records keep the venue's integers (docs/design.md, the forecast record): prices in the venue's
price unit, event times in ns. The tables show them as a person reads them: prices in the venue's
currency (streams/dashboard/units.py, the conversion the web dashboard uses), spread in ticks as
published, depth in shares or base currency, times as a UTC date and clock (ITCH and LOBSTER count
ns since the venue's midnight: those show as the venue's clock). A second header line names each
column's unit (again above the rows of another venue's units). `--raw` prints the venue units as before, for scripts.

`history --since` takes an event time in ns, an ISO-8601 time (`2024-08-08T12:00:00Z`; a bare
`09:45` is on the book's own day), or a span back from the book's newest forecast (`90s`, `10m`,
`2h`, `1d`): the newest forecast and not the wall clock, so that a replayed capture's or a
simulated day's history reads the same as a live one's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from orderbook.clock import DAY_NS, clock, clock_unit

# The dashboard's conversion is imported, not moved: streams/dashboard/__init__.py imports nothing
# (no aiohttp), and units.py needs only orderbook.venues, so the CLI pays nothing for it.
from streams.dashboard.units import Units, units_for

if TYPE_CHECKING:  # redis and numpy load when a table is read, not when the parser is built
    from streams.client import ForecastClient


RAW_COLUMNS = (
    ("venue", "venue", 8), ("symbol", "symbol", 10), ("seq", "seq", 12), ("best_bid", "bid", 14),
    ("best_ask", "ask", 14), ("spread_q50_h10", "spread50", 9), ("depth_q50_h10", "depth50", 12),
    ("p_up_h10", "p_up", 5), ("anomaly_score", "anomaly", 7), ("model", "model", 20),
)  # fmt: skip


# --------------------------------------------------------------------------- human units


def _price_unit(u: Units) -> str:
    if u.price_decimals is None:
        return "venue units"  # Kraken: the pair's decimals are in no record (units.py)
    return "quote ccy" if u.currency == "quote currency" else u.currency


def _size_unit(u: Units) -> str:
    if u.size_decimals is None:
        return "lots"
    return "shares" if u.size_decimals == 0 else "base ccy"


def _number(x: float) -> str:
    if x != x:  # NaN: a model without that forecast
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.2f}" if abs(x) >= 1 else f"{x:.4g}"


def _price(row: Mapping[str, object], u: Units, field: str) -> str:
    units = int(row.get(field, 0))  # type: ignore[call-overload]
    return u.price(units) if units > 0 else "-"  # 0: that side of the book is empty


@dataclass(frozen=True)
class Column:
    title: str
    width: int
    cell: Callable[[Mapping[str, object], Units], str]
    unit: Callable[[Mapping[str, object], Units], str] = lambda row, u: ""
    text: bool = False  # a name, cut to the width; a number never is (a cut number reads as another)


def _float(field: str, fmt: str) -> Callable[[Mapping[str, object], Units], str]:
    return lambda row, u: format(float(row[field]), fmt) if field in row else "-"  # type: ignore[arg-type]


HUMAN_COLUMNS = (
    Column("venue", 8, lambda row, u: str(row.get("venue", "")), text=True),
    Column("symbol", 10, lambda row, u: str(row.get("symbol", "")), text=True),
    Column("time", 23, lambda row, u: clock(int(row.get("event_ts", 0))),  # type: ignore[call-overload]
           lambda row, u: clock_unit(int(row.get("event_ts", 0)))),  # type: ignore[call-overload]
    Column("seq", 10, lambda row, u: str(row.get("seq", ""))),
    Column("bid", 12, lambda row, u: _price(row, u, "best_bid"), lambda row, u: _price_unit(u)),
    Column("ask", 12, lambda row, u: _price(row, u, "best_ask"), lambda row, u: _price_unit(u)),
    # h = 10 book messages ahead, the median: in ticks as published, the venue's own unit of spread
    Column("spread50", 9, lambda row, u: _number(float(row.get("spread_q50_h10", "nan"))),  # type: ignore[arg-type]
           lambda row, u: "ticks"),
    Column("depth50", 10, lambda row, u: _number(u.size_float(float(row.get("depth_q50_h10", "nan")))),  # type: ignore[arg-type]
           lambda row, u: _size_unit(u)),
    Column("p_up", 5, _float("p_up_h10", ".2f")),
    Column("anomaly", 7, _float("anomaly_score", ".3f")),
    Column("model", 20, lambda row, u: str(row.get("model", "")), text=True),
)  # fmt: skip


def _units(row: Mapping[str, object]) -> Units:
    return units_for(str(row.get("venue", "")))


def _fit(text: str, width: int, cut: bool) -> str:
    return (text[:width] if cut else text).rjust(width)


def _unit_line(row: Mapping[str, object], u: Units) -> str:
    return " ".join(_fit(c.unit(row, u), c.width, cut=True) for c in HUMAN_COLUMNS).rstrip()


def table(rows: Iterable[Mapping[str, object]], out: TextIO, raw: bool = False) -> int:
    """The rows as a table (human units; `raw`: venue units as the records hold them, as before);
    how many rows. Each column's unit is on a line of its own under the titles, written again above
    a row whose units differ from the row before's (books of several venues in one table)."""
    rows = list(rows)
    if raw:
        out.write(" ".join(title.rjust(w) for _, title, w in RAW_COLUMNS) + "\n")
        for row in rows:
            out.write(" ".join(_raw_cell(row.get(k, ""), w) for k, _, w in RAW_COLUMNS) + "\n")
        return len(rows)
    out.write(" ".join(c.title.rjust(c.width) for c in HUMAN_COLUMNS) + "\n")
    units_above = None
    for row in rows:
        u = _units(row)
        if (line := _unit_line(row, u)) != units_above:
            out.write(line + "\n")
            units_above = line
        out.write(" ".join(_fit(c.cell(row, u), c.width, c.text) for c in HUMAN_COLUMNS) + "\n")
    return len(rows)


def _raw_cell(value: object, width: int) -> str:
    if isinstance(value, float):
        text = f"{value:.3f}" if abs(value) < 1e4 else f"{value:.3g}"
    else:
        text = str(value)
    return text[:width].rjust(width)


# --------------------------------------------------------------------------- --since


_SPAN = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_SPAN_NS = {"s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": DAY_NS}


@dataclass(frozen=True)
class Since:
    """`history --since`, resolved against a book's newest event time (module docstring): exactly one
    of an event time `ns`, a span `back_ns` before the newest, a `time_of_day_ns` on the book's day;
    a full ISO time also keeps its `time_of_day_ns` for a book on a day clock."""

    text: str
    ns: int | None = None
    back_ns: int | None = None
    time_of_day_ns: int | None = None

    def resolve(self, newest_ns: int) -> int:
        day_clock = 0 < newest_ns < DAY_NS
        if self.back_ns is not None:
            return newest_ns - self.back_ns
        if self.ns is not None and not (day_clock and self.time_of_day_ns is not None):
            return self.ns
        assert self.time_of_day_ns is not None
        if day_clock:
            return self.time_of_day_ns
        return newest_ns - newest_ns % DAY_NS + self.time_of_day_ns  # the newest forecast's UTC date


def _time_of_day(t: dt.time | dt.datetime) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 10**9 + t.microsecond * 1000


def span_ns(text: str) -> int | None:
    """A span (`90s`, `10m`, `2h`, `1d`) in ns; None for anything else."""
    m = _SPAN.match(text.strip().lower())
    return round(float(m[1]) * _SPAN_NS[m[2]]) if m else None


def parse_since(text: str) -> Since:
    """argparse's type for `--since`: ns, ISO-8601 (naive: UTC) or a span (`10m`)."""
    s = text.strip()
    if s.isdigit():
        return Since(s, ns=int(s))
    if (back := span_ns(s)) is not None:
        return Since(s, back_ns=back)
    try:
        if ":" in s and "-" not in s and "T" not in s.upper():
            return Since(s, time_of_day_ns=_time_of_day(dt.time.fromisoformat(s)))
        when = dt.datetime.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since {text!r}: give an event time in ns, an ISO-8601 time (2024-08-08T12:00:00Z, 09:45) "
            "or a span back from the newest forecast (90s, 10m, 2h, 1d)"
        ) from None
    aware = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    ns = int(aware.timestamp()) * 10**9 + aware.microsecond * 1000
    return Since(s, ns=ns, time_of_day_ns=_time_of_day(when))


# --------------------------------------------------------------------------- the verb


def _latest_rows(client: ForecastClient, venue: str | None, symbol: str | None) -> list[dict[str, object]]:
    keys = [(v, s) for v, s in client.symbols() if (venue is None or v == venue) and (symbol is None or s == symbol)]
    return [r for v, s in keys if (r := client.latest(v, s)) is not None]


def _history(client: ForecastClient, args: argparse.Namespace, out: TextIO) -> int:
    if not (args.venue and args.symbol):
        raise ValueError("history needs --venue and --symbol")
    rows = client.history(args.venue, args.symbol)
    since = args.since if isinstance(args.since, Since) or args.since is None else parse_since(str(args.since))
    cutoff = None
    if since is not None and rows:
        cutoff = since.resolve(max(int(r["event_ts"]) for r in rows))  # type: ignore[call-overload]
        rows = [r for r in rows if int(r["event_ts"]) >= cutoff]  # type: ignore[call-overload]
    shown = rows[-args.count :] if args.count > 0 else rows
    if not args.raw:
        where = f" since {clock(cutoff)} ({clock_unit(cutoff)})" if cutoff is not None else ""
        out.write(f"showing {len(shown)} of {len(rows)} forecasts of {args.venue}:{args.symbol}{where}, "
                  "oldest first\n")  # fmt: skip
    table(shown, out, raw=args.raw)
    return 0


def _alerts(client: ForecastClient, args: argparse.Namespace, out: TextIO) -> int:
    alerts = client.alerts(args.count)
    if args.raw:
        for alert in alerts:
            out.write(f"{alert['venue']}:{alert['symbol']} seq={alert['seq']} score={alert['anomaly_score']:.4f} "
                      f"{alert.get('reason', '')}\n")  # fmt: skip
        return 0
    total = client.alert_count()
    if not alerts:
        out.write("no alerts in mt:alerts\n")
        return 0
    out.write(f"showing {len(alerts)} of {total} alerts in mt:alerts (the newest; --count for more), oldest first\n")
    units = "/".join(dict.fromkeys(clock_unit(int(a.get("event_ts", 0))) for a in alerts))  # type: ignore[call-overload]
    out.write(f"{'time (' + units + ')':>23}  {'venue:symbol':20} {'score':>6}  reason\n")
    for a in alerts:
        when = clock(int(a.get("event_ts", 0)))  # type: ignore[call-overload]
        book = f"{a['venue']}:{a['symbol']}"
        out.write(f"{when:>23}  {book:20} {float(a['anomaly_score']):6.4f}  {a.get('reason', '')}\n")  # type: ignore[arg-type]
    return 0


def run(args: argparse.Namespace, redis_url: str, out: TextIO | None = None) -> int:
    from streams.client import ForecastClient

    out = out or sys.stdout  # looked up at the call: a test's capture, a redirected stdout
    client = ForecastClient(redis_url)
    raw = bool(getattr(args, "raw", False))
    args.raw = raw
    if args.action == "latest":
        n = table(_latest_rows(client, args.venue, args.symbol), out, raw=raw)
        return 0 if n else 1
    if args.action == "history":
        return _history(client, args, out)
    if args.action == "alerts":
        return _alerts(client, args, out)
    # watch: a live table, redrawn in place on a terminal
    i = 0
    while args.iterations is None or i < args.iterations:
        if out.isatty():
            out.write("\x1b[H\x1b[2J")
        now = time.strftime("%H:%M:%S") if raw else time.strftime("%H:%M:%S UTC", time.gmtime())
        out.write(f"mt:latest:* at {now}\n")
        table(_latest_rows(client, args.venue, args.symbol), out, raw=raw)
        out.flush()
        i += 1
        if args.iterations is None or i < args.iterations:
            time.sleep(args.interval)
    return 0


def add_arguments(f: argparse.ArgumentParser) -> None:
    """The `forecasts` verb's flags (its parser is made in streams/cli/__init__.py)."""
    f.add_argument("action", choices=["latest", "history", "watch", "alerts"])
    f.add_argument("--redis-url", "--redis", help="Redis URL (env MT_REDIS_URL, default redis://127.0.0.1:6379/0)")
    f.add_argument("--venue")
    f.add_argument("--symbol")
    f.add_argument("--since", type=parse_since, metavar="WHEN",
                   help="history: from this event time: ns, ISO-8601 (2024-08-08T12:00:00Z; 09:45 on the book's "
                        "day; no zone: UTC), or a span back from the newest forecast (90s, 10m, 2h, 1d)")  # fmt: skip
    f.add_argument("--count", type=int, default=20, help="history and alerts: the newest N (default 20)")
    f.add_argument("--interval", type=float, default=1.0, help="watch: refresh seconds")
    f.add_argument("--iterations", type=int, help="watch: stop after N refreshes")
    f.add_argument("--raw", action="store_true",
                   help="venue units as the records hold them (integer prices, ns), the table as before")  # fmt: skip
