"""`megatrading config show|docs` (streams/cli/config_cmd.py): each resolved setting with where it came
from, and docs/configuration.md generated from streams/config.py."""

from __future__ import annotations

import dataclasses
import json

import pytest

from streams.cli import main
from streams.cli.config_cmd import DOCS, REGENERATE, field_help, markdown
from streams.config import ENV_NAMES, FIELD_TYPES, Settings


def show_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["config", "show", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_show_names_the_source_of_each_value(tmp_path, monkeypatch, capsys):
    config = tmp_path / "mt.toml"
    config.write_text(
        'bootstrap = "file:1"\nredis_url = "redis://file:2/0"\nsnapshot_every = 7\n[window]\nn_rows = 16\n'
    )
    for var in [*ENV_NAMES.values(), "MT_CONFIG"]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MT_HOME", str(tmp_path))
    monkeypatch.setenv("MT_REDIS_URL", "redis://env:3/0")
    monkeypatch.setenv("MT_SNAPSHOT_EVERY", "")  # empty: unset, the file's value stands
    got = show_json(capsys, "--config", str(config), "--app-id", "flagged")
    assert got["app_id"] == {"value": "flagged", "source": "flag --app-id"}
    assert got["redis_url"] == {"value": "redis://env:3/0", "source": "env MT_REDIS_URL"}
    assert got["bootstrap"] == {"value": "file:1", "source": f"config {config}"}
    assert got["snapshot_every"] == {"value": 7, "source": f"config {config}"}
    assert got["window"]["value"]["n_rows"] == 16 and got["window"]["source"] == f"config {config}"
    assert got["home"] == {"value": str(tmp_path), "source": "env MT_HOME"}
    assert got["take_max"] == {"value": Settings().take_max, "source": "default"}
    assert set(got) == set(FIELD_TYPES)


def test_show_as_a_table_has_one_row_per_setting(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MT_HOME", str(tmp_path))
    monkeypatch.setenv("MT_DLQ_TOPIC", "shadow.dlq")
    monkeypatch.delenv("MT_CONFIG", raising=False)
    assert main(["config", "show"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert set(rows) == set(FIELD_TYPES)
    assert rows["dlq_topic"][1:] == ["shadow.dlq", "env", "MT_DLQ_TOPIC"]


def test_show_of_a_bad_config_file_is_one_line(tmp_path, capsys):
    config = tmp_path / "mt.toml"
    config.write_text("snapshot_evry = 7\n")
    assert main(["config", "show", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "snapshot_evry" in err and str(config) in err and "\n" not in err


def test_every_field_has_a_comment_in_the_code():
    helps = field_help(Settings)
    missing = [f.name for f in dataclasses.fields(Settings) if f.name != "home" and not helps.get(f.name)]
    assert not missing, f"add a comment to these Settings fields in streams/config.py: {missing}"


def test_a_comment_block_covers_the_fields_below_it_until_one_has_its_own():
    helps = field_help(Settings)
    assert "snapshotted every N" in helps["snapshot_every"]
    assert helps["snapshot_seconds"] == "see `snapshot_every`"
    assert helps["max_record_bytes"].startswith("a larger raw record")  # not the overload block's


def test_docs_configuration_is_generated_from_the_code():
    assert DOCS.read_text() == markdown(), (
        f"docs/configuration.md is out of date with streams/config.py: run `{REGENERATE}`"
    )


def test_docs_list_every_setting_with_its_variable():
    text = markdown()
    for name in FIELD_TYPES:
        env = ENV_NAMES.get(name)
        row = next((line for line in text.splitlines() if line.startswith(f"| `{name}`")), None)
        assert row is not None, name
        assert env is None or f"`{env}`" in row
