"""`megatrading model use SPEC | use --clear | show`: the model of running workers, changed without a restart.

`use` checks the model here first (it loads; it was trained on the windows the workers cut, as the
settings of this machine say), then writes its spec to Redis (`mt:control`); every worker reads it
with its next heartbeat (1 s), loads it in a thread, tries it on a window it scored and swaps it in
between two model batches: each forecast names the model that scored it. A worker that cannot take it
goes on with its model and says why (`show`). The wanted model outlives restarts (a worker starts on
it) until `use --clear`, which sends every worker back to its own `--model`.

A checkpoint whose encoding (tokenizers, feature normalization) differs from the running one's is
allowed: each checkpoint encodes the raw windows with its own at predict time, so nothing is
misread; its forecasts are simply another model's. Refused are models trained on windows of another
shape (events, rows, headlines, price clip) or other feature columns: those the workers cannot give.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TextIO

from orderbook.clock import clock
from streams.config import MODEL_HELP, Settings, model_spec

NOT_SET = "none set: each worker serves its own --model"


def absolute(spec: str) -> str:
    """The spec with its checkpoint folder made absolute: the workers do not run in this folder."""
    spec = model_spec(spec)
    if spec.startswith("generative:"):
        folder = Path(spec.removeprefix("generative:")).expanduser().resolve()
        return f"generative:{folder}"
    return spec


def checked(spec: str, settings: Settings) -> tuple[str, str | None]:
    """What `spec` is and its encoding fingerprint (None: not a checkpoint), once it has loaded on the
    CPU and is known to score the workers' windows; raises ValueError (or the load's own error) naming
    why not."""
    from model.serving.load import load_forecaster, serving_mismatch

    forecaster = load_forecaster(spec, "cpu")
    why = serving_mismatch(forecaster, settings.window)
    if why is not None:
        raise ValueError(f"{spec} ({forecaster.model_id}) is not for these workers: {why}")
    encoding = getattr(forecaster, "encoding", None)
    return forecaster.model_id + (f", encoding {encoding}" if encoding else ""), encoding


def encoding_note(encoding: str | None, serving: str) -> str:
    """How the new checkpoint's encoding compares with that of `serving` (the spec the workers are
    asked to serve now, else their configured one), where both are checkpoints readable here."""
    if encoding is None or not serving.startswith("generative:"):
        return ""
    from model.inputs import encoding_fingerprint

    config = Path(serving.removeprefix("generative:")) / "config.json"
    if not config.is_file():
        return ""
    other = encoding_fingerprint(json.loads(config.read_text()))
    if other == encoding:
        return f"the same encoding as {serving}"
    return (f"its encoding differs from {serving}'s ({other}): allowed, each checkpoint encodes the windows with "
            "its own tokenizers and feature normalization")  # fmt: skip


def cmd_use(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from streams.infra import reach_redis
    from streams.sink import RedisSink

    out = out or sys.stdout

    settings = Settings.load(args)
    if args.clear == (args.spec is not None):
        raise ValueError("model use: give a SPEC or --clear")
    spec = None if args.clear else absolute(args.spec)
    what, encoding = checked(spec, settings) if spec is not None else ("", None)  # before anything is written
    reach_redis(settings.redis_url)
    sink = RedisSink.from_url(settings.redis_url)
    before = sink.wanted_model()
    sink.want_model(spec)
    if spec is None:
        out.write(f"wanted model cleared (was {before or 'none'}): each worker goes back to its own --model\n")
    else:
        out.write(f"wanted model: {spec} ({what}; was {before or 'none'})\n")
        note = encoding_note(encoding, before or settings.model)
        if note:
            out.write(f"  {note}\n")
        out.write("  the workers take it with their next heartbeat, and a worker started later starts on it, until "
                  "`megatrading model use --clear`; `megatrading model show` says which did\n")  # fmt: skip
    return 0


def cmd_show(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from streams.infra import reach_redis
    from streams.sink import META, RedisSink

    out = out or sys.stdout

    settings = Settings.load(args)
    reach_redis(settings.redis_url)
    sink = RedisSink.from_url(settings.redis_url)
    meta = {k.decode(): v.decode() for k, v in sink.redis.hgetall(META).items()}
    out.write(f"wanted: {sink.wanted_model() or NOT_SET}\n")
    workers = sorted(k.removeprefix("heartbeat:") for k in meta if k.startswith("heartbeat:"))
    out.write(f"{'worker':24} {'model':22} {'since':24} {'heartbeat':>12}  refused\n")
    now = time.time_ns()
    for w in workers:
        swapped = int(meta.get(f"swapped:{w}") or 0)
        since = "start" if swapped == 0 else clock(swapped) + "Z"
        age = f"{(now - int(meta[f'heartbeat:{w}'])) / 1e9:.1f} s ago"
        out.write(f"{w:24} {meta.get(f'model:{w}', '?'):22} {since:24} {age:>12}  "
                  f"{meta.get(f'swap_error:{w}', '')}\n")  # fmt: skip
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `model` verb to the `megatrading` parser."""
    p = subparsers.add_parser("model", help="the model of running workers: use SPEC (no restart), use --clear, show",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    actions = p.add_subparsers(dest="action", required=True)
    use = actions.add_parser("use", help="ask every worker to serve SPEC from now on (checked here first)")
    use.add_argument("spec", nargs="?", help=MODEL_HELP.split(" (")[0])
    use.add_argument("--clear", action="store_true", help="every worker back to its own --model")
    use.set_defaults(run=cmd_use)
    show = actions.add_parser("show", help="the wanted model and what each worker serves, since when")
    show.set_defaults(run=cmd_show)
    for a in (use, show):
        a.add_argument("--redis-url", help="Redis URL (env MT_REDIS_URL, default redis://127.0.0.1:6379/0)")
        a.add_argument("--config", type=Path, help="settings file, TOML (env MT_CONFIG; the workers' window config)")
