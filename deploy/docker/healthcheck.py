"""Container healthchecks for the Mega-Trading image (see docker-compose.yml).

    python /opt/megatrading/healthcheck.py worker   # this worker's heartbeat in Redis is fresh
    python /opt/megatrading/healthcheck.py redis    # Redis answers PING (the dashboard's source)

Exit status 0 means healthy, 1 unhealthy, as Docker's HEALTHCHECK expects.

A worker proves it is alive the way docs/design.md's Redis layout says: `RedisSink.heartbeat`
(streams/sink.py) writes field `heartbeat:<worker id>` of hash `mt:meta` with a
`time.time_ns()` value. A container checks its *own* worker, not any worker: with
`--scale worker=3` one live worker must not make a hung one look healthy. Its id is
`MT_WORKER_ID` where set, else the container's hostname (Docker sets it to the short
container id), matched as a substring so that ids like `<hostname>-<pid>` count too.

Only the standard library and redis-py, both in the image: this file is not part of the
installed package, so it imports nothing from it.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Mapping

import redis

META = "mt:meta"
PREFIX = "heartbeat:"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def fresh_heartbeat(meta: Mapping[bytes | str, bytes | str], worker: str, now_ns: int, max_age_s: float) -> bool:
    """True when a heartbeat of `worker` (substring of the id) in `meta` is at most `max_age_s` old."""
    for field, value in meta.items():
        name = _text(field)
        if not name.startswith(PREFIX) or worker not in name[len(PREFIX) :]:
            continue
        try:
            ts = int(_text(value))
        except ValueError:
            continue  # a malformed heartbeat proves nothing
        if 0 <= now_ns - ts <= max_age_s * 1e9:
            return True
    return False


def worker_id() -> str:
    return os.environ.get("MT_WORKER_ID") or socket.gethostname()


def check_worker(client: redis.Redis, worker: str, max_age_s: float) -> bool:
    return fresh_heartbeat(client.hgetall(META), worker, time.time_ns(), max_age_s)


def main(argv: list[str]) -> int:
    mode = argv[1] if len(argv) > 1 else "worker"
    url = os.environ.get("MT_REDIS_URL", "redis://redis:6379/0")
    client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
    try:
        if mode == "redis":
            return 0 if client.ping() else 1
        if mode == "worker":
            max_age = float(os.environ.get("MT_HEALTH_MAX_AGE_S", "30"))
            if check_worker(client, worker_id(), max_age):
                return 0
            print(f"no heartbeat of worker {worker_id()!r} in {META} within {max_age:g} s", file=sys.stderr)
            return 1
    except (redis.RedisError, OSError) as err:
        print(f"redis at {url}: {err}", file=sys.stderr)
        return 1
    print(f"unknown check {mode!r}: use worker or redis", file=sys.stderr)
    return 1  # Docker reserves exit status 2 in healthchecks


if __name__ == "__main__":
    sys.exit(main(sys.argv))
