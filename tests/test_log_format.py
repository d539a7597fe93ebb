"""`--log-format json`: one JSON object a line with the fields a record carries; text stays as it was."""

from __future__ import annotations

import asyncio
import json
import logging
import logging.config
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams import logformat
from streams.logformat import JsonFormatter, faust_logging_config
from streams.retry import Backoff, Waits, until_done

REPO = Path(__file__).resolve().parents[1]


def record(msg: str, *args: object, extra: dict[str, object] | None = None, exc: bool = False) -> logging.LogRecord:
    logger = logging.getLogger("mt.test.logformat")
    exc_info = None
    if exc:
        try:
            raise KeyError("boom")
        except KeyError:
            exc_info = sys.exc_info()
    return logger.makeRecord(logger.name, logging.WARNING, __file__, 1, msg, args, exc_info, extra=extra)


def test_a_record_with_extras_is_one_json_line_with_its_fields():
    rec = record("%s: %d messages dead-lettered", "md.raw.binance[3]", 2,
                 extra={"venue": "binance", "partition": 3, "offset": 1234, "symbols": ["BTCUSDT"]})  # fmt: skip
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    out = json.loads(line)
    assert out["level"] == "WARNING" and out["logger"] == "mt.test.logformat"
    assert out["message"] == "md.raw.binance[3]: 2 messages dead-lettered"
    assert out["time"].endswith("Z") and out["time"][:4].isdigit() and "T" in out["time"]
    assert {k: out[k] for k in ("venue", "partition", "offset", "symbols")} == {
        "venue": "binance", "partition": 3, "offset": 1234, "symbols": ["BTCUSDT"]}  # fmt: skip
    # nothing of the LogRecord's own attributes leaks in as a field
    assert not {"args", "msg", "levelno", "pathname", "created"} & out.keys()


def test_a_traceback_stays_inside_its_line_and_odd_values_are_written_as_text():
    out = json.loads(JsonFormatter().format(record("failed", extra={"key": b"\xff", "path": object()}, exc=True)))
    assert "KeyError: 'boom'" in out["exc"] and out["exc"].startswith("Traceback")
    assert out["key"] == str(b"\xff")


def test_the_flag_wins_over_the_environment_and_a_bad_value_is_named(monkeypatch):
    monkeypatch.setenv("MT_LOG_FORMAT", "json")
    assert logformat.choose(None) == "json"
    assert logformat.choose("text") == "text"
    monkeypatch.setenv("MT_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match=r"MT_LOG_FORMAT=.xml.*text, json"):
        logformat.choose(None)


def test_the_cli_writes_json_lines_with_the_flag_before_or_after_the_verb_or_from_the_environment(tmp_path):
    capture = tmp_path / "X_message.csv"  # an add, then the delete of an order never added: one warning
    capture.write_text("34200.000000001,1,1,10,100,1\n34200.000000002,3,99,10,100,1\n")
    book = ["book", str(capture), "--format", "lobster", "--symbol", "X", "--show-errors", "1"]
    env = {**os.environ, "MT_LOG_FORMAT": ""}
    for argv, extra_env in ((["--log-format", "json", *book], {}), ([*book, "--log-format", "json"], {}),
                            (book, {"MT_LOG_FORMAT": "json"})):  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "streams.cli", *argv], capture_output=True, text=True,
                              env=env | extra_env, cwd=REPO, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        logged = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
        assert [(r["level"], r["logger"]) for r in logged] == [("WARNING", "megatrading")], done.stderr
        assert "unknown_order" in logged[0]["message"] and logged[0]["time"].endswith("Z")


def test_faust_gets_a_json_handler_only_under_json():
    try:
        logformat.setup("text", logging.INFO)
        assert faust_logging_config("info") is None  # Faust's own colored lines, as before
        logformat.setup("json", logging.INFO)
        config = faust_logging_config("info")
        assert config is not None and config["merge"] is True  # mode merges it into its own configuration
        handler = config["handlers"]["default"]  # "default": the root handler mode configures
        assert handler["formatter"] == "json" and handler["level"] == "INFO"
        # the formatter dictConfig builds from it (built alone: a dictConfig here would close pytest's handlers)
        built = logging.config.DictConfigurator(config).configure_formatter(config["formatters"]["json"])
        assert isinstance(built, JsonFormatter)
    finally:
        logformat.setup("text", logging.INFO)


def test_a_worker_wait_logs_its_step_venue_and_partition_as_fields(caplog):
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("redis went away")
        return "ok"

    waits = Waits()
    with caplog.at_level(logging.INFO, logger="streams.retry"):
        result = asyncio.run(until_done(flaky, "restore of md.raw.itch[3]", waits, backoff=Backoff(first=0.001)))
    assert result == "ok"
    waiting, back = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    assert waiting["level"] == "WARNING" and waiting["action"] == "waiting"
    assert (waiting["venue"], waiting["topic"], waiting["partition"]) == ("itch", "md.raw.itch", 3)
    assert waiting["step"] == "restore" and waiting["attempt"] == 1 and "redis went away" in waiting["error"]
    assert back["action"] == "resumed" and back["partition"] == 3


@pytest.mark.parametrize(
    "fmt",
    [
        logging.Formatter(logformat.TEXT_FORMAT),
        logging.Formatter("[%(asctime)s] [%(process)s] %(message)s"),
        JsonFormatter(),
    ],
    ids=["ours", "faust", "json"],
)
def test_a_log_lines_time_is_read_back_to_the_millisecond_in_every_format(fmt):
    rec = record("assigned %s", "md.raw.binance[0]")
    rec.created, rec.msecs = 1764664026.4567, 456.7
    assert logformat.line_time(fmt.format(rec)) == pytest.approx(1764664026.456, abs=1e-6)


def test_a_line_without_a_stamp_has_no_time():
    assert logformat.line_time("Traceback (most recent call last):") is None
    assert logformat.line_time("  2026-12-02 08:27:06,123 indented") is None
