"""`megatrading dashboard`: the live web page over what the workers publish (streams/dashboard/)."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_dashboard(args: argparse.Namespace) -> int:
    from aiohttp import web

    from streams.config import Settings
    from streams.dashboard.server import make_app
    from streams.infra import reach_redis

    settings = Settings.load(args)
    reach_redis(settings.redis_url)
    bootstrap = None if args.no_lag else settings.bootstrap
    app = make_app(settings.redis_url, bootstrap, settings.app_id, settings.venues, settings.dlq_topic)
    lag = f"lag of group {settings.app_id} at {bootstrap}" if bootstrap else "lag not read"
    print(f"dashboard on http://{args.host}:{args.port}/ (Redis {settings.redis_url}; {lag})", flush=True)
    # no access log: the page polls every 2 s, and a line per request would bury what matters
    web.run_app(app, host=args.host, port=args.port, print=None, shutdown_timeout=2.0, access_log=None)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("dashboard", help="a live web page: forecasts, alerts and the workers' health, from Redis")
    d.add_argument("--port", type=int, default=8050)
    d.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    d.add_argument("--config", type=Path, help="settings file, TOML (env MT_CONFIG; default $MT_HOME/config.toml)")
    d.add_argument("--redis-url", "--redis", help="Redis URL (env MT_REDIS_URL, default redis://127.0.0.1:6379/0)")
    d.add_argument("--bootstrap", help="Kafka bootstrap servers, for consumer lag (env MT_KAFKA_BOOTSTRAP)")
    d.add_argument("--app-id", help="the workers' consumer group, for lag (env MT_APP_ID, default megatrading)")
    d.add_argument("--venues", help="raw topics to show lag of (env MT_VENUES, default all)")
    d.add_argument("--no-lag", action="store_true", help="do not read consumer lag from Kafka")
    d.set_defaults(run=cmd_dashboard)
