"""One settings path for every verb (streams/config.py): flags over MT_* over the config file over
defaults; one `--model` syntax; the default model; state under MT_HOME; an unreachable server said in
one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orderbook.windows import WindowConfig
from streams.cli import build_parser, main
from streams.config import SHIPPED_MODEL, Settings, config_path, default_model, model_line, model_spec
from streams.infra import free_port

REPO = Path(__file__).resolve().parents[1]
SHIPPED = SHIPPED_MODEL / "model.safetensors"


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_flags_over_environment_over_file_over_defaults(tmp_path):
    config = write_config(
        tmp_path / "mt.toml",
        'bootstrap = "file:1"\nredis_url = "redis://file:2/0"\napp_id = "from-file"\nsnapshot_every = 7\n',
    )
    env = {"MT_HOME": str(tmp_path), "MT_KAFKA_BOOTSTRAP": "env:1", "MT_REDIS_URL": "redis://env:2/0"}
    args = parse("worker", "--config", str(config), "--bootstrap", "flag:1")
    s = Settings.load(args, environ=env)
    assert s.bootstrap == "flag:1"  # flag over env over file
    assert s.redis_url == "redis://env:2/0"  # env over file
    assert (s.app_id, s.snapshot_every) == ("from-file", 7)  # file over defaults
    assert (s.dlq_topic, s.take_max, s.venues) == ("md.dlq", 20000, Settings().venues)  # defaults


def test_nothing_given_is_the_defaults(tmp_path):
    s = Settings.load(parse("worker"), environ={"MT_HOME": str(tmp_path)})
    assert (s.bootstrap, s.redis_url, s.app_id, s.device) == ("127.0.0.1:9092", "redis://127.0.0.1:6379/0",
                                                              "megatrading", "auto")  # fmt: skip
    assert s.model == default_model() and s.home == tmp_path


def test_every_verb_that_talks_to_kafka_or_redis_reads_the_same_settings(tmp_path):
    config = write_config(tmp_path / "config.toml", 'bootstrap = "file:9"\nredis_url = "redis://file:6/1"\n')
    env = {"MT_HOME": str(tmp_path)}  # the file is found in the home
    for argv in (["replay", "x.gz", "--venue", "kraken"], ["simulate", "--kafka"], ["worker"], ["demo"]):
        assert Settings.load(parse(*argv), environ=env).bootstrap == "file:9", argv
    assert Settings.load(parse("forecasts", "latest"), environ=env).redis_url == "redis://file:6/1"
    env["MT_REDIS_URL"] = "redis://env:6/2"
    assert Settings.load(parse("forecasts", "watch"), environ=env).redis_url == "redis://env:6/2"
    assert Settings.load(parse("forecasts", "watch", "--redis", "redis://f/3"), environ=env).redis_url == "redis://f/3"
    assert config_path(None, env) == config


def test_flags_apply_by_name_with_the_fields_types(tmp_path):
    args = parse("worker", "--venues", "itch,binance", "--app-id", "a", "--worker-id", "w", "--device", "cpu")
    s = Settings.load(args, environ={"MT_HOME": str(tmp_path), "MT_SNAPSHOT_SECONDS": "2.5", "MT_WEB_PORT": "none"})
    assert (s.venues, s.app_id, s.worker_id, s.device) == (("itch", "binance"), "a", "w", "cpu")
    assert (s.snapshot_seconds, s.web_port) == (2.5, None)


def test_a_config_file_takes_lists_and_the_window_table(tmp_path):
    config = write_config(tmp_path / "c.toml", 'venues = ["itch"]\nalert_threshold = 0.9\n[window]\nn_events = 64\n')
    s = Settings.load({"config": config}, environ={"MT_HOME": str(tmp_path)})
    assert s.venues == ("itch",) and s.alert_threshold == 0.9
    assert s.window == WindowConfig(n_events=64)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('bootstap = "x:1"\n', "'bootstap'"),
        ("[window]\nn_event = 3\n", "'n_event'"),
        ('home = "/tmp"\n', "MT_HOME"),
        ('snapshot_every = "many"\n', "snapshot_every"),
        ("venues = [1, 2]\n", "venues"),
        ('venues = ["itch", "nasdaq"]\n', "nasdaq"),
        ("bootstrap = \n", "c.toml"),
    ],
)
def test_a_bad_config_file_is_an_error_that_names_the_key(tmp_path, text, named):
    config = write_config(tmp_path / "c.toml", text)
    with pytest.raises(ValueError, match=named):
        Settings.load({"config": config}, environ={"MT_HOME": str(tmp_path)})


def test_an_unknown_key_stops_the_verb_in_one_line(tmp_path, capsys):
    config = write_config(tmp_path / "c.toml", 'redis = "redis://x"\n')
    assert main(["worker", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith("megatrading: config ") and "unknown key 'redis'" in err


def test_a_named_config_file_must_exist(tmp_path):
    with pytest.raises(ValueError, match="MT_CONFIG"):
        Settings.load({}, environ={"MT_HOME": str(tmp_path), "MT_CONFIG": str(tmp_path / "missing.toml")})
    with pytest.raises(ValueError, match="--config"):
        Settings.load({"config": tmp_path / "missing.toml"}, environ={"MT_HOME": str(tmp_path)})
    assert config_path(None, {"MT_HOME": str(tmp_path)}) is None  # no file in the home: none needed


def test_a_bad_environment_value_names_the_variable(tmp_path):
    with pytest.raises(ValueError, match="MT_SNAPSHOT_EVERY"):
        Settings.load({}, environ={"MT_HOME": str(tmp_path), "MT_SNAPSHOT_EVERY": "often"})


def test_the_overload_policy_from_flag_environment_or_file_every_by_default(tmp_path):
    env = {"MT_HOME": str(tmp_path)}
    assert Settings.load(parse("worker"), environ=env).overload == "every"
    assert Settings.load(parse("worker", "--overload", "latest"), environ=env).overload == "latest"
    assert Settings.load(parse("worker"), environ={**env, "MT_OVERLOAD": "latest"}).overload == "latest"
    config = write_config(tmp_path / "c.toml", 'overload = "latest"\n')
    assert Settings.load({"config": config}, environ=env).overload == "latest"
    with pytest.raises(ValueError, match="overload 'newest'"):
        Settings.load({}, environ={**env, "MT_OVERLOAD": "newest"})
    with pytest.raises(SystemExit):  # argparse: not one of the choices
        parse("worker", "--overload", "newest")


# ---- --model


def test_a_checkpoint_folder_is_the_same_model_as_generative_dir(tmp_path):
    assert model_spec(str(tmp_path)) == f"generative:{tmp_path}" == model_spec(f"generative:{tmp_path}")
    assert model_spec("baseline") == "baseline"
    s = Settings.load(parse("worker", "--model", str(tmp_path)), environ={"MT_HOME": str(tmp_path)})
    assert s.model == f"generative:{tmp_path}"
    with pytest.raises(ValueError, match="unknown model 'no-such-folder'"):
        model_spec("no-such-folder")
    with pytest.raises(ValueError, match="names no checkpoint"):
        model_spec("generative:")


def test_every_model_verb_takes_the_same_model_argument(tmp_path):
    env = {"MT_HOME": str(tmp_path)}
    for argv in (
        ["worker"],
        ["demo"],
        ["score", "x.itch", "--format", "itch", "--out", "o.csv"],
        ["scenarios", "--symbol", "A", "--from", "itch:x@1", "--out", "o"],
    ):
        args = parse(*argv, "--model", str(tmp_path))
        assert Settings.load(args, environ=env).model == f"generative:{tmp_path}", argv
        assert Settings.load(parse(*argv), environ={**env, "MT_MODEL": "baseline"}).model == "baseline", argv


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped checkpoint is not in this checkout")
def test_the_default_model_is_the_shipped_one_where_torch_is_installed():
    pytest.importorskip("torch")
    import torch

    assert default_model() == f"generative:{SHIPPED_MODEL}" == Settings().model
    line = model_line(default_model(), "cpu")
    assert line.startswith("model: generative:") and line.endswith(
        f"model/checkpoints/demo (torch {torch.__version__}, cpu)"
    )
    assert model_line("baseline") == "model: baseline (set by --model, MT_MODEL or the config file)"


def test_without_torch_the_default_is_the_baseline_and_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # what an install without torch finds
    assert default_model() == "baseline" == Settings().model
    assert model_line(default_model()) == "model: baseline (torch is not installed)"


# ---- state under MT_HOME, and the servers a verb needs


def test_faust_data_goes_under_mt_home_not_the_working_directory(infra, tmp_path):
    """A real worker process (`python -m streams.cli worker`) started in an empty folder."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    app_id = "settings-datadir"
    env = dict(os.environ, MT_HOME=str(home), MT_KAFKA_BOOTSTRAP=infra.kafka.bootstrap, MT_REDIS_URL=infra.redis.url,
               MT_APP_ID=app_id, MT_VENUES="itch", MT_MODEL="baseline", PYTHONPATH=str(REPO))  # fmt: skip
    env.pop("MT_CONFIG", None)
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while "up: venues itch" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        text = log.read_text()
        assert "up: venues itch" in text, text[-3000:]
        assert "model: baseline (" in text  # the one start-up line
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    assert (home / "faust" / app_id).is_dir()
    assert list(cwd.iterdir()) == []


def test_the_faust_datadir_is_the_homes(tmp_path):
    s = Settings.load({}, environ={"MT_HOME": str(tmp_path), "MT_APP_ID": "grp"})
    assert s.faust_datadir == tmp_path / "faust" / "grp"


def test_verbs_read_the_servers_from_the_environment(infra, monkeypatch, capsys):
    monkeypatch.setenv("MT_KAFKA_BOOTSTRAP", infra.kafka.bootstrap)
    monkeypatch.setenv("MT_REDIS_URL", infra.redis.url)
    assert main(["simulate", "--kafka", "--max", "--symbols", "1", "--duration", "20s", "--seed", "2"]) == 0
    assert "to md.raw.itch" in capsys.readouterr().out
    assert main(["forecasts", "alerts"]) == 0


@pytest.mark.parametrize(
    ("argv", "variable", "line"),
    [
        (
            ["replay", "x.gz", "--venue", "kraken"],
            "MT_KAFKA_BOOTSTRAP",
            "cannot reach Kafka at {} (set by MT_KAFKA_BOOTSTRAP",
        ),
        (["simulate", "--kafka"], "MT_KAFKA_BOOTSTRAP", "cannot reach Kafka at {} (set by MT_KAFKA_BOOTSTRAP"),
        (["forecasts", "latest"], "MT_REDIS_URL", "cannot reach Redis at {} (set by MT_REDIS_URL"),
    ],
    ids=["replay", "simulate", "forecasts"],
)
def test_an_unreachable_server_is_one_line_not_a_traceback(monkeypatch, capsys, argv, variable, line):
    port = free_port()  # nothing listens there
    address = f"127.0.0.1:{port}" if variable == "MT_KAFKA_BOOTSTRAP" else f"redis://127.0.0.1:{port}/0"
    monkeypatch.setenv(variable, address)
    t0 = time.monotonic()
    assert main(argv) == 2
    err = capsys.readouterr().err
    flag = "--bootstrap" if "Kafka" in line else "--redis-url"
    last = err.splitlines()[-1]
    assert "Traceback" not in err and last.startswith(f"megatrading: {line.format(address)} / {flag}")
    assert "megatrading infra up" in last  # and what to do about it
    assert time.monotonic() - t0 < 15  # a short wait, not kafka-python's 30 s
