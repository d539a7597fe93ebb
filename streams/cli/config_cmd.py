"""`megatrading config show|docs`: the resolved settings and where each came from; the settings table
of docs/configuration.md, generated from `streams.config.Settings` so that it cannot drift from it."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import json
import re
import sys
import textwrap
import tokenize
import typing
from pathlib import Path
from typing import Any

from orderbook.windows import WindowConfig
from streams.config import ENV_NAMES, FIELD_TYPES, MODEL_HELP, Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
REGENERATE = "megatrading config docs --out docs/configuration.md"

# defaults made by a factory at run time (host, pid, installed packages, home folder): the docs say what
# they are, not what they came out as on the machine that generated them
FACTORY_DEFAULTS = {
    "worker_id": "`<host>-<pid>`",
    "model": "the shipped model (`generative:model/checkpoints/demo`) where torch is installed, else `baseline`",
    "window": "the `window.*` rows below",
    "home": "`~/.cache/megatrading`",
}

PRAGMAS = ("fmt:", "noqa", "type:", "pragma")  # comments for tools, not readers
_FIELD = re.compile(r"^    (\w+)\s*:")
_CLASS_COMMENT = re.compile(r"^    #")


def field_help(cls: type) -> dict[str, str]:
    """Each dataclass field's comment in the class source: its own trailing comment, else the comment
    block above it, which also covers the fields right below it that have no comment of their own
    (they get "see `<first>`": the block is written once for the group)."""
    source = textwrap.dedent(inspect.getsource(cls))  # the class line at column 0, its fields at 4
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        text = tok.string.lstrip("#").strip()
        if tok.type == tokenize.COMMENT and not text.startswith(PRAGMAS):
            comments[tok.start[0]] = text
    names = {f.name for f in dataclasses.fields(cls)}
    helps: dict[str, str] = {}
    block: list[str] = []
    group: str | None = None  # the field the current block was written for
    for number, line in enumerate(source.splitlines(), start=1):
        if _CLASS_COMMENT.match(line):
            block.append(comments.get(number, ""))
            continue
        match = _FIELD.match(line)
        if match is None or match[1] not in names:
            block, group = [], None
            continue
        name = match[1]
        own = comments.get(number)
        if block:
            helps[name] = " ".join(block) + (f"; {own}" if own else "")
            block, group = [], name
        elif own:
            helps[name], group = own, None
        elif group is not None:
            helps[name] = f"see `{group}`"
        else:
            helps[name] = ""
    return helps


def _type_name(kind: Any) -> str:
    if kind == tuple[str, ...]:
        return "list of names"
    if kind == int | None:
        return "int or none"
    if kind is WindowConfig:
        return "table"
    return getattr(kind, "__name__", str(kind))


def _plain(value: Any) -> Any:
    """A value as JSON and the table show it."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _shown(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def markdown() -> str:
    """docs/configuration.md: every setting with its variable, type, default and comment."""
    helps = field_help(Settings)
    out = [
        "# Configuration",
        "",
        f"<!-- generated from streams/config.py by `{REGENERATE}`: edit the code, not this file -->",
        "",
        "Every verb that talks to the servers or serves a model reads one `Settings`",
        "(`streams/config.py`): a command-line flag wins over the environment, the environment over the",
        "config file, the file over the defaults. The config file is TOML, from `--config FILE`, else",
        "`MT_CONFIG`, else `$MT_HOME/config.toml` where it exists; its keys are the setting names below",
        "(`window.*`: a `[window]` table). An empty variable counts as unset. `megatrading config show`",
        "prints the values in force and where each came from.",
        "",
        "| setting | environment | type | default | what |",
        "| --- | --- | --- | --- | --- |",
    ]
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    for name, kind in FIELD_TYPES.items():
        default = FACTORY_DEFAULTS.get(name) or f"`{_shown(defaults[name])}`"
        env = f"`{ENV_NAMES[name]}`" if name in ENV_NAMES else "-"
        what = helps.get(name, "")
        if name == "home":
            what = "the one folder for state: Kafka jars, `infra` servers, the config file, Faust's data"
        key = f"`{name}`" if name != "home" else "`home` (environment only)"
        out.append(f"| {key} | {env} | {_type_name(kind)} | {default} | {_cell(what)} |")
    window_types = typing.get_type_hints(WindowConfig)
    for f in dataclasses.fields(WindowConfig):
        what = "see `WindowConfig` in orderbook/windows.py"
        out.append(f"| `window.{f.name}` | - | {_type_name(window_types[f.name])} | `{f.default}` | {what} |")
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def show(settings: Settings, sources: dict[str, str], as_json: bool) -> str:
    if as_json:
        doc = {name: {"value": _plain(getattr(settings, name)), "source": sources[name]} for name in FIELD_TYPES}
        return json.dumps(doc, indent=2)
    rows = [(name, _shown(getattr(settings, name)), sources[name]) for name in FIELD_TYPES]
    wide = [max(len(r[i]) for r in [("setting", "value", "from"), *rows]) for i in range(2)]
    lines = [f"{'setting':{wide[0]}}  {'value':{wide[1]}}  from"]
    lines += [f"{n:{wide[0]}}  {v:{wide[1]}}  {s}" for n, v, s in rows]
    return "\n".join(lines)


def cmd_config(args: argparse.Namespace) -> int:
    if args.action == "docs":
        text = markdown()
        if args.out:
            args.out.write_text(text)
            print(f"wrote {args.out}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    settings, sources = Settings.resolve(args)
    print(show(settings, sources, args.json))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("config", help="show: every setting in force and where it came from; docs: its table")
    c.add_argument("action", choices=["show", "docs"])
    c.add_argument("--config", type=Path, help="settings file, TOML (env MT_CONFIG; default $MT_HOME/config.toml)")
    c.add_argument("--json", action="store_true", help="show: as JSON {setting: {value, source}}")
    c.add_argument("--out", type=Path, help=f"docs: write the table there (`{REGENERATE}`)")
    # the flags every settings verb shares, so that `show` can be asked what a verb given them would use
    c.add_argument("--bootstrap", help="Kafka bootstrap servers")
    c.add_argument("--redis-url", help="Redis URL")
    c.add_argument("--venues", help="comma-separated venues")
    c.add_argument("--app-id", help="Faust app id = consumer group")
    c.add_argument("--model", help=MODEL_HELP)
    c.add_argument("--device", help="auto|cpu|cuda")
    c.set_defaults(run=cmd_config)
