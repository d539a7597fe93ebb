"""`megatrading`: the command line (verbs as in DESIGN.md)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from orderbook.errors import FeedError
from orderbook.rebuild import RebuildStats, rebuild
from orderbook.venues import FEEDS, feed_class

log = logging.getLogger("megatrading")


def write_rows(rows, out: TextIO, with_seq: bool) -> None:
    for row in rows:
        cols = [row.ts, row.seq, *row.levels] if with_seq else row.levels
        out.write(",".join(map(str, cols)))
        out.write("\n")


def cmd_book(args: argparse.Namespace) -> int:
    cls = feed_class(args.format)
    feed = cls(check_crossed=not args.allow_crossed)
    stats = RebuildStats()
    shown = 0

    def on_error(err: FeedError) -> None:
        nonlocal shown
        if shown < args.show_errors:
            log.warning("%s: %s", err.reason, err)
            shown += 1

    rows = rebuild(feed, cls.read_capture(args.input), args.levels, args.symbol, stats, on_error)
    if args.out:
        with open(args.out, "w", newline="") as f:
            write_rows(rows, f, args.with_seq)
    else:
        write_rows(rows, sys.stdout, args.with_seq)
    symbol = args.symbol or (stats.symbols[0] if stats.symbols else "-")
    print(
        f"{stats.messages} messages, {stats.rows} rows for {symbol}" + (f" -> {args.out}" if args.out else ""),
        file=sys.stderr,
    )
    others = [s for s in stats.symbols if s != symbol]
    if others:
        print(
            f"the input also holds {len(others)} other symbols ({', '.join(others[:10])}"
            f"{', ...' if len(others) > 10 else ''}); pass --symbol for another",
            file=sys.stderr,
        )
    for reason, n in stats.errors.most_common():
        print(f"  {n} x {reason}", file=sys.stderr)
    return 1 if stats.errors and args.strict else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="megatrading", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("book", help="rebuild a book offline from a recorded file; LOBSTER orderbook rows")
    b.add_argument("input", type=Path)
    b.add_argument("--format", required=True, choices=sorted(FEEDS))
    b.add_argument("--levels", type=int, default=10)
    b.add_argument("--symbol", help="the book to write (default: the first symbol in the input)")
    b.add_argument("--out", type=Path, help="CSV file (default: stdout)")
    b.add_argument("--with-seq", action="store_true", help="prepend exchange timestamp (ns) and venue sequence")
    b.add_argument("--allow-crossed", action="store_true", help="do not report crossed books")
    b.add_argument("--strict", action="store_true", help="exit 1 if any message was rejected")
    b.add_argument("--show-errors", type=int, default=5, metavar="N", help="log the first N errors")
    b.set_defaults(run=cmd_book)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.run(args)
    except BrokenPipeError:
        return 0
    except (OSError, ValueError) as err:
        print(f"megatrading: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
