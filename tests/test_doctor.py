"""`megatrading doctor` (streams/cli/doctor.py) on this machine: servers that answer are OK, a closed
port is a FAIL that says how to start the embedded servers, the exit code follows the FAILs."""

from __future__ import annotations

import pytest

from streams.cli import main
from streams.cli.doctor import FAIL, OK, check_python, java_major
from streams.infra import free_port


def doctor(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, str]]:
    """The exit code and each check's line by its name."""
    code = main(["doctor", *argv])
    lines = capsys.readouterr().out.splitlines()
    return code, {line.split()[1]: line for line in lines[:-1]}


def test_the_servers_of_the_infra_fixture_are_reported_reachable(infra, capsys):
    code, lines = doctor(capsys, "--bootstrap", infra.kafka.bootstrap, "--redis-url", infra.redis.url)
    assert lines["kafka"].startswith(OK) and infra.kafka.bootstrap in lines["kafka"]
    assert lines["redis"].startswith(OK) and infra.redis.url in lines["redis"]
    # the fixture's broker runs on this machine's Java and jars, so those checks cannot fail here
    assert lines["java"].startswith(OK) and lines["kafka-jars"].startswith(OK) and lines["redis-bin"].startswith(OK)
    assert code == (1 if any(line.startswith(FAIL) for line in lines.values()) else 0)


def test_a_closed_port_is_a_fail_with_a_hint(capsys):
    kafka, redis = free_port(), free_port()
    code, lines = doctor(capsys, "--bootstrap", f"127.0.0.1:{kafka}", "--redis-url", f"redis://127.0.0.1:{redis}/0")
    assert code == 1
    for name, port in (("kafka", kafka), ("redis", redis)):
        assert lines[name].startswith(FAIL), lines[name]
        assert f"127.0.0.1:{port}" in lines[name] and "megatrading infra up" in lines[name]


def test_a_port_taken_by_something_else_is_not_taken_for_kafka(infra, capsys):
    # Redis listens there: a connection is taken, but no broker answers a metadata request
    port = infra.redis.port
    code, lines = doctor(capsys, "--bootstrap", f"127.0.0.1:{port}", "--redis-url", infra.redis.url)
    assert code == 1 and lines["kafka"].startswith(FAIL)
    assert "takes connections but" in lines["kafka"], lines["kafka"]


def test_java_versions_old_and_new_are_read():
    assert java_major('openjdk version "17.0.15" 2025-04-15') == 17
    assert java_major('java version "1.8.0_392"') == 8
    assert java_major('openjdk version "21" 2023-09-19') == 21
    assert java_major("no java here") is None


def test_an_old_python_fails():
    assert check_python((3, 10, 4)).status == FAIL
    assert check_python((3, 11, 0)).status == OK
