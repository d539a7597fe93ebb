"""Log lines for people (`text`) or for collectors (`json`): `megatrading --log-format text|json`, or MT_LOG_FORMAT.

`json` writes one JSON object per line: `time` (ISO 8601, UTC, milliseconds), `level`, `logger`,
`message` (formatted), then every field the record carries beyond the standard ones (what a call
site passed as `extra=`: venue, topic, partition, offset, ...) and, where the record has them,
`exc` and `stack` as one string each (a traceback stays inside its line, so a collector never
splits one event into many).

The worker runs under Faust, which replaces the root logger's handlers when it starts
(`mode.utils.logging.setup_logging`): `faust_logging_config` hands Faust a configuration whose
handler uses the same formatter, so Faust's own lines and ours come out in the chosen format.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
ENV = "MT_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# the attributes every LogRecord has (and those a Formatter adds): anything else came from `extra=`
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

_chosen = "text"

# a text line's asctime: ours at the line's start, Faust's in brackets ("[2026-12-02 08:27:06,123] ...")
_TEXT_TIME = re.compile(r"\[?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]? ")
_JSON_TIME = re.compile(r'\{"time": "([^"]+)"')


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        out: dict[str, Any] = {
            "time": when.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # a value json cannot write (bytes, a Path, an exception) is written as its str: a log line is never lost
        return json.dumps(out, default=str, ensure_ascii=False)


def choose(flag: str | None) -> str:
    """The format: the flag, else MT_LOG_FORMAT, else text. ValueError names the bad value and the choices."""
    value = (flag or os.environ.get(ENV) or "text").strip().lower()
    if value not in FORMATS:
        where = "--log-format" if flag else ENV
        raise ValueError(f"{where}={value!r}: the log format is one of {', '.join(FORMATS)}")
    return value


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def setup(fmt: str, level: int) -> None:
    """The root logger writes to stderr in `fmt` at `level`, as `logging.basicConfig` would: where the root
    logger has handlers someone else set (an embedding program, pytest), they are left alone and nothing is
    added. A handler of an earlier call is replaced (a second call does not double every line)."""
    global _chosen
    _chosen = fmt
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_mt_logformat", False)]:
        root.removeHandler(h)
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt))
    handler._mt_logformat = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


def line_time(line: str) -> float | None:
    """When a log line of either format was written (s since the epoch), or None for a line without a
    stamp (a traceback's, a print's). A text stamp is the local clock's, as `logging` writes asctime;
    a json one is UTC. Benchmarks and fault tests time phases by the worker's own lines with it."""
    if m := _TEXT_TIME.match(line):
        return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    if m := _JSON_TIME.match(line):
        return datetime.fromisoformat(m.group(1)).timestamp()
    return None


def chosen() -> str:
    """The format `setup` was last given ("text" before any call)."""
    return _chosen


def faust_logging_config(level: str | int) -> dict[str, Any] | None:
    """For faust's Worker(logging_config=...): under json, its root handler writes our JSON lines to
    stdout (where Faust writes its own logs) instead of its colored text; under text, None (Faust's own).
    `merge` keeps the rest of Faust's configuration (its formatters, the root logger's level)."""
    if _chosen != "json":
        return None
    level_name = logging.getLevelName(level) if isinstance(level, int) else level.upper()
    return {
        "merge": True,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "default": {
                "level": level_name,
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            },
        },
    }
