"""Routine failures end in one line that names what failed and what to do, never a traceback; `infra`
refuses ports it does not own and finds the ports it recorded."""

from __future__ import annotations

import gzip
import os
import socket
from pathlib import Path

import pytest

from orderbook.errors import CaptureError
from orderbook.venues import feed_class
from streams import infra
from streams.cli import main
from streams.infra import free_port

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BINANCE = DATA / "binance-hftbacktest" / "spot_btcusdt_20240808.gz"
KRAKEN = DATA / "cryptofeed-captures" / "KRAKEN.ws.50.0.gz"
needs_data = pytest.mark.skipif(not BINANCE.exists() or not KRAKEN.exists(), reason="needs ../shared/data")


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The CLI's error: the one stderr line it prints, checked to be its only line and no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("megatrading: ")]
    assert len(lines) == 1, err
    return lines[0]


def truncated(src: Path, dst: Path, n: int) -> Path:
    dst.write_bytes(src.read_bytes()[:n])
    return dst


@needs_data
def test_a_truncated_gzip_names_the_file_and_the_byte_reached(tmp_path, capsys):
    path = truncated(BINANCE, tmp_path / "spot_btcusdt_cut.gz", 100_000)
    assert main(["book", str(path), "--format", "binance", "--out", str(tmp_path / "book.csv")]) == 2
    line = error_line(capsys)
    assert str(path) in line and "truncated" in line and "byte 100,000 of 100,000" in line
    assert "gzip -t" in line  # what to do


@needs_data
def test_each_text_reader_and_the_itch_reader_stop_on_a_cut_gzip_with_where(tmp_path):
    kraken = truncated(KRAKEN, tmp_path / "KRAKEN.ws.50.0.gz", 50_000)
    with pytest.raises(CaptureError, match="truncated") as err:
        list(feed_class("kraken").read_capture(kraken))
    assert err.value.line is not None and err.value.line > 1 and err.value.offset  # lines were read before
    frames = b"".join(len(m).to_bytes(2, "big") + m for m in (b"S" + os.urandom(11) for _ in range(5000)))
    itch = tmp_path / "day.itch.gz"
    whole = gzip.compress(frames)
    itch.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CaptureError, match=r"truncated.*messages"):
        list(feed_class("itch").read_capture(itch))


def test_a_line_of_another_format_names_its_number_and_what_it_looks_like(tmp_path, capsys):
    rows = tmp_path / "AAPL_message.csv"
    rows.write_text("34200.004241176,1,16113575,18,5853300,1\n")
    assert main(["book", str(rows), "--format", "binance"]) == 2
    line = error_line(capsys)
    assert "line 1 " in line and "LOBSTER" in line and "--format" in line


@needs_data
def test_a_capture_of_another_venue_is_named_before_any_message_is_read(capsys):
    assert main(["book", str(KRAKEN), "--format", "binance", "--out", os.devnull]) == 2
    assert "looks like a Kraken capture" in error_line(capsys)
    assert main(["book", str(BINANCE), "--format", "itch", "--out", os.devnull]) == 2
    assert "looks like a Binance capture" in error_line(capsys)


def test_a_bad_line_after_good_ones_is_named_by_its_number(tmp_path):
    capture = tmp_path / "spot_btcusdt.txt"
    good = '1723161253937085768 {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate"}}\n'
    capture.write_text(good * 3 + "garbage that is no capture line\n")
    with pytest.raises(CaptureError, match="line 4 ") as err:
        list(feed_class("binance").read_capture(capture))
    assert err.value.line == 4 and "damaged" in str(err.value)


@pytest.fixture
def short_wait(monkeypatch):
    monkeypatch.setattr(infra, "CONNECT_WAIT_S", 0.2)  # how long nobody answers does not matter here


def test_kafka_down_names_the_address_and_how_to_start_one(tmp_path, capsys, short_wait):
    dead = f"127.0.0.1:{free_port()}"
    capture = tmp_path / "AAPL_message.csv"
    capture.write_text("34200.004241176,1,16113575,18,5853300,1\n")
    assert main(["replay", str(capture), "--venue", "lobster", "--symbol", "AAPL", "--bootstrap", dead]) == 2
    line = error_line(capsys)
    assert f"cannot reach Kafka at {dead}" in line and "megatrading infra up" in line
    # the worker checks its servers before Faust starts (no aiokafka bootstrap traceback)
    assert main(["worker", "--bootstrap", dead, "--redis-url", f"redis://{dead}/0", "--model", "baseline"]) == 2
    line = error_line(capsys)
    assert f"cannot reach Kafka at {dead}" in line and "megatrading infra up" in line


def test_redis_down_is_one_line(capsys, short_wait):
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert main(["forecasts", "latest", "--redis-url", url]) == 2
    line = error_line(capsys)
    assert f"cannot reach Redis at {url}" in line and "MT_REDIS_URL" in line


def test_infra_up_refuses_a_port_something_else_answers_on(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["infra", "up", "--state", str(tmp_path / "st"), "--redis-port", str(port),
                "--kafka-port", str(free_port()), "--controller-port", str(free_port())]  # fmt: skip
        assert main(argv) == 2
    line = error_line(capsys)
    assert f"port {port} (redis) is taken by a process (pid {os.getpid()}," in line
    assert "--redis-port N" in line
    assert not list((tmp_path / "st").glob("*.pid"))  # nothing was started, nothing adopted


def test_infra_status_and_down_find_the_ports_up_recorded(tmp_path, capsys):
    state = str(tmp_path / "st")
    kafka, controller, redis = free_port(), free_port(), free_port()
    up = ["infra", "up", "--state", state, "--kafka-port", str(kafka), "--controller-port", str(controller),
          "--redis-port", str(redis)]  # fmt: skip
    try:
        assert main(up) == 0, capsys.readouterr().err
        capsys.readouterr()
        assert main(["infra", "status", "--state", state]) == 0
        out = capsys.readouterr().out
        assert out.count("healthy") == 2 and f"127.0.0.1:{kafka}" in out and f"127.0.0.1:{redis}" in out
    finally:
        assert main(["infra", "down", "--state", state]) == 0
    assert "stopped: kafka, redis" in capsys.readouterr().out
