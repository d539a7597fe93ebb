"""`megatrading`: the command line (verbs as in docs/design.md)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from orderbook.errors import FeedError
from orderbook.rebuild import NATIVE as NATIVE_REBUILDS
from orderbook.rebuild import RebuildStats, Row, rebuild
from orderbook.venues import FEEDS, feed_class
from streams import logformat
from streams.batcher import OVERLOAD_POLICIES
from streams.config import MODEL_HELP
from streams.logformat import FORMATS

log = logging.getLogger("megatrading")

# the verbs that read streams.config.Settings: flags over MT_* over the config file over defaults
SETTINGS_VERBS = ("worker", "replay", "simulate", "forecasts", "demo", "score", "evaluate", "scenarios")


def csv_lines(rows: Iterable[Row], with_seq: bool) -> Iterator[str]:
    for row in rows:
        cols = [row.ts, row.seq, *row.levels] if with_seq else row.levels
        yield ",".join(map(str, cols)) + "\n"


def cmd_book(args: argparse.Namespace) -> int:
    cls = feed_class(args.format)
    feed = cls.for_capture(args.input, args.symbol, check_crossed=not args.allow_crossed)
    stats = RebuildStats()
    shown = 0

    def on_error(err: FeedError) -> None:
        nonlocal shown
        if shown < args.show_errors:
            log.warning("%s: %s", err.reason, err)
            shown += 1

    from orderbook import native

    if args.format in NATIVE_REBUILDS and native.enabled():  # a day's millions of messages: the native path
        rebuild_native = NATIVE_REBUILDS[args.format]
        blocks = rebuild_native(args.input, args.levels, args.symbol, stats, on_error, check_crossed=feed.check_crossed)
        lines = (block.csv(args.with_seq) for block in blocks)
    else:
        rows = rebuild(feed, cls.read_capture(args.input), args.levels, args.symbol, stats, on_error)
        lines = csv_lines(rows, args.with_seq)
    if args.out:
        with open(args.out, "w", newline="") as f:
            f.writelines(lines)
    else:
        sys.stdout.writelines(lines)
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


def cmd_infra(args: argparse.Namespace) -> int:
    from streams.config import mt_home
    from streams.infra import Infra

    infra = Infra(args.state or mt_home() / "infra", args.kafka_port, args.controller_port, args.redis_port)
    if args.action == "up":
        infra.up()
        print(f"kafka {infra.kafka.bootstrap}  redis {infra.redis.url}  (state {infra.state})")
    elif args.action == "down":
        stopped = infra.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    else:
        ok = True
        for name, st in infra.status().items():
            ok &= bool(st["healthy"])
            foreign = "  (answers, but not a server started from this state folder)" if st["pid"] is None else ""
            print(f"{name:6} {'healthy' if st['healthy'] else 'DOWN':8} pid={st['pid']} {st['address']}"
                  f"{foreign if st['healthy'] else ''}")  # fmt: skip
        return 0 if ok else 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.cli.demo import run_offline, run_streaming
    from streams.config import Settings, model_line

    if args.offline:
        return run_offline(args.seed, args.messages, out=args.out)
    settings = Settings.load(args)
    log.info(model_line(settings.model, settings.device))
    return run_streaming(args.seed, args.minutes, args.symbols, model=settings.model, config=args.config,
                         dashboard_port=args.dashboard_port or None, linger=args.linger)  # fmt: skip


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.app import run_worker
    from streams.config import Settings, model_line

    settings = Settings.load(args)
    log.info(model_line(settings.model, settings.device))
    run_worker(settings, loglevel="debug" if args.verbose else "info")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from streams.config import Settings
    from streams.infra import reach_kafka
    from streams.publish import publish_capture
    from streams.topics import raw_topic

    symbol = feed_class(args.venue).capture_key(args.input, args.symbol)
    bootstrap = Settings.load(args).bootstrap
    reach_kafka(bootstrap)
    sent = publish_capture(args.input, args.venue, bootstrap, speed=None if args.max else args.speed, symbol=symbol,
                           limit=args.limit, frame_messages=args.frame_messages, frame_ms=args.frame_ms)  # fmt: skip
    print(f"produced {sent} to {raw_topic(args.venue)}")
    return 0


def cmd_forecasts(args: argparse.Namespace) -> int:
    from streams.cli.forecasts import run
    from streams.config import Settings
    from streams.infra import reach_redis

    redis_url = Settings.load(args).redis_url
    reach_redis(redis_url)
    return run(args, redis_url)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="megatrading", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--log-format", choices=FORMATS, help="log lines as text (default) or one JSON object a line, "
                   "for a log collector (env MT_LOG_FORMAT)")  # fmt: skip
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

    d = sub.add_parser("demo", help="the main job end to end on the embedded default")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--minutes", type=float, default=20.0, help="simulated minutes of market (streaming demo)")
    d.add_argument("--symbols", type=int, default=3, help="simulated symbols (streaming demo)")
    d.add_argument("--offline", action="store_true", help="the book round trip only, no servers")
    d.add_argument("--messages", type=int, default=50_000, help="offline: ITCH messages generated")
    d.add_argument("--out", type=Path, help="offline: folder for the generated files (default: a temporary one)")
    d.add_argument("--model", help=f"the worker's model: {MODEL_HELP}")
    d.add_argument("--dashboard-port", type=int, default=8050, help="streaming demo: `megatrading dashboard` on "
                   "this loopback port while the demo runs (default 8050; 0: none)")  # fmt: skip
    d.add_argument("--linger", type=float, default=0.0, help="streaming demo: seconds the servers, worker and "
                   "dashboard stay up once the feed is processed, to look around (default 0)")  # fmt: skip
    d.set_defaults(run=cmd_demo)

    w = sub.add_parser("worker", help="the streaming worker: raw feeds in, forecasts to Redis and md.forecasts")
    w.add_argument("--bootstrap", help="Kafka bootstrap servers (env MT_KAFKA_BOOTSTRAP, default 127.0.0.1:9092)")
    w.add_argument("--redis-url", help="Redis URL (env MT_REDIS_URL, default redis://127.0.0.1:6379/0)")
    w.add_argument("--venues", help="comma-separated venues to consume (env MT_VENUES, default all)")
    w.add_argument("--app-id", help="Faust app id = consumer group (env MT_APP_ID, default megatrading)")
    w.add_argument("--model", help=f"{MODEL_HELP} (env MT_MODEL)")
    w.add_argument("--device", help="auto|cpu|cuda (env MT_DEVICE)")
    w.add_argument("--worker-id", help="name in heartbeats (env MT_WORKER_ID, default host-pid)")
    w.add_argument("--overload", choices=OVERLOAD_POLICIES,
                   help="when the model falls behind: score every window (the lag grows) or only the newest "
                        "per book, skipping the others (env MT_OVERLOAD, default every)")  # fmt: skip
    w.set_defaults(run=cmd_worker)

    r = sub.add_parser("replay", help="publish a recorded file to md.raw.<venue>, keyed by symbol")
    r.add_argument("input", type=Path)
    r.add_argument("--venue", required=True, choices=sorted(FEEDS))
    r.add_argument("--bootstrap", help="Kafka bootstrap servers (env MT_KAFKA_BOOTSTRAP, default 127.0.0.1:9092)")
    pace = r.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="N times the recorded pace (default 1)")
    pace.add_argument("--max", action="store_true", help="as fast as the broker takes it")
    r.add_argument("--symbol", help="the key of every record (LOBSTER: default from the file name)")
    r.add_argument("--limit", type=int, help="publish at most N messages")
    from streams.cli.simulate import add_frame_flags

    add_frame_flags(r)
    r.set_defaults(run=cmd_replay)

    f = sub.add_parser("forecasts", help="read forecasts from Redis: latest, history, watch (a live table)")
    from streams.cli.forecasts import add_arguments as add_forecasts_arguments

    add_forecasts_arguments(f)
    f.set_defaults(run=cmd_forecasts)

    from streams.cli.simulate import register as register_simulate

    register_simulate(sub)

    from streams.cli.dataset import register as register_dataset

    register_dataset(sub)

    from streams.cli.train import register as register_train

    register_train(sub)

    from streams.cli.adapt import register as register_adapt

    register_adapt(sub)

    from streams.cli.scenarios import register as register_scenarios

    register_scenarios(sub)

    from streams.cli.evaluate import register as register_eval

    register_eval(sub)

    from streams.cli.config_cmd import register as register_config

    register_config(sub)

    from streams.cli.model import register as register_model

    register_model(sub)

    from streams.cli.doctor import register as register_doctor

    register_doctor(sub)

    from streams.cli.dashboard import register as register_dashboard

    register_dashboard(sub)

    from streams.cli.dlq import register as register_dlq

    register_dlq(sub)

    from streams.cli.reset import register as register_reset

    register_reset(sub)

    i = sub.add_parser("infra", help="a real single-node Kafka (KRaft) and Redis on loopback")
    i.add_argument("action", choices=["up", "down", "status"])
    i.add_argument("--state", type=Path, help="state folder (default: $MT_HOME/infra)")
    # no defaults here: a port not given is the one `up` recorded in the state folder, else 9092/9093/6379
    i.add_argument("--kafka-port", type=int, help="default: the port `up` recorded in the state folder, else 9092")
    i.add_argument("--controller-port", type=int, help="default: as recorded, else 9093")
    i.add_argument("--redis-port", type=int, help="default: as recorded, else 6379")
    i.set_defaults(run=cmd_infra)

    for verb in sub.choices.values():  # also after the verb (`megatrading worker --log-format json`)
        verb.add_argument("--log-format", choices=FORMATS, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    for verb in SETTINGS_VERBS:
        sub.choices[verb].add_argument(
            "--config", type=Path, help="settings file, TOML (env MT_CONFIG; default $MT_HOME/config.toml if there)"
        )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        log_format = logformat.choose(args.log_format)
    except ValueError as err:
        parser.error(str(err))
    logformat.setup(log_format, logging.DEBUG if args.verbose else logging.INFO)
    from streams.logfilter import quiet_libraries

    quiet_libraries(args.verbose)
    try:
        return args.run(args)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("megatrading: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, RuntimeError, TimeoutError, FeedError) as err:  # a CaptureError is both
        # routine failures (a server down, a bad file, a wrong format) in one line that says what to do;
        # -v keeps the traceback for a bug report
        if args.verbose:
            log.exception("%s failed", args.command)
        print(f"megatrading: {one_line(err)}", file=sys.stderr)
        return 2


def one_line(err: BaseException) -> str:
    """The error's message, else its type (an OSError with no text says little else)."""
    return str(err).strip() or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
