"""`megatrading adapt`: fine-tune a checkpoint on recent flow, replaying earlier windows against forgetting,
into a new versioned checkpoint.

    megatrading adapt --init model/checkpoints/demo --recent binance:today.gz --out ckpt/v2
    megatrading adapt --init ckpt/v2 --recent build/recent.npz --replay build/earlier.npz --out ckpt/v3 \\
                      --steps 300 --replay-fraction 0.75

--recent (repeatable): a capture as recorded, VENUE:FILE (encoded with the checkpoint's own window,
tokenizers and normalization, as `dataset --like` does, into OUT/recent.npz), or a dataset .npz already
encoded like the checkpoint. The last --holdback share of each source's windows in time is not trained on:
the before/after CRPS is read there. --replay: earlier windows encoded like the checkpoint (default: the
checkpoint's own training file, where it is still at the path its config.json records).

The new checkpoint's config.json carries `version` (the parent's + 1; a checkpoint without one is version
1), `parent` (path, version, encoding fingerprint) and `adapt` (the data, the replay fraction, the steps,
the before/after figures).

--recent kafka:VENUE reads md.raw.<venue> back from Kafka (`--bootstrap`, as the worker's settings) between
--since and --until (ISO 8601, UTC unless it says; or a span back from now: 90m, 2h, 1d; --until defaults
to now), cut by the records' timestamps per partition (streams/raw_range.py), and encodes it like a
capture. The offsets read are recorded in the new checkpoint's `adapt` description, so the run can be
repeated while the topic keeps them. Headlines (md.news) are not joined: the windows carry no text.

    megatrading adapt --init model/checkpoints/demo --recent kafka:binance --since 2h --out ckpt/v2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.network.recalibration import MODES as RECALIBRATION_MODES
from orderbook.venues import FEEDS
from streams.cli.dataset import parse_capture
from streams.cli.dlq import parse_since
from streams.cli.forecasts import span_ns
from streams.topics import raw_topic

if TYPE_CHECKING:
    from model.training.dataset import Source


@dataclass(frozen=True)
class KafkaRecent:
    """--recent kafka:VENUE: the venue's raw topic over --since/--until."""

    venue: str


Recent = tuple[str, Path] | Path | KafkaRecent


def parse_recent(text: str) -> Recent:
    """A dataset .npz -> its path; kafka:VENUE -> KafkaRecent; else VENUE:FILE -> (venue, path)
    (streams.cli.dataset.parse_capture)."""
    if text.endswith(".npz"):
        return Path(text)
    kind, _, venue = text.partition(":")
    if kind == "kafka":
        if venue not in FEEDS:
            raise argparse.ArgumentTypeError(f"--recent {text!r}: kafka:VENUE, VENUE one of {', '.join(sorted(FEEDS))}")
        return KafkaRecent(venue)
    return parse_capture(text)


def wall_ms(text: str, flag: str, now_ms: int) -> int:
    """--since / --until: a span back from now (90m, 2h, 1d) or an ISO 8601 time, as epoch ms."""
    back = span_ns(text)
    return now_ms - back // 10**6 if back is not None else parse_since(text, flag)


def kafka_source(
    item: KafkaRecent, bootstrap: str, since_ms: int, until_ms: int, topic: str | None = None
) -> tuple[Source, dict[str, Any]]:
    """The venue's raw topic (`topic`: another one, in its format) over [since_ms, until_ms) as a dataset
    source, and what was read (topic, times, offsets per partition): the source's seed is drawn from that
    description, so the same range gives the same seed (as a capture file's seed comes from its bytes)."""
    from model.training.dataset import Source, digest_seed
    from streams.raw_range import Unframed, offset_ranges, read_range

    topic = topic or raw_topic(item.venue)
    ranges = offset_ranges(bootstrap, topic, since_ms, until_ms)
    if not any(r.records for r in ranges):
        raise ValueError(f"--recent kafka:{item.venue}: {topic} holds no records between {since_ms} and {until_ms} ms")
    described = {"topic": topic, "since_ms": since_ms, "until_ms": until_ms,
                 "offsets": {str(r.partition): [r.start, r.stop] for r in ranges if r.records}}  # fmt: skip
    seed = digest_seed(hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest())
    name = f"kafka:{topic}@{since_ms}..{until_ms}"
    records = Unframed(read_range(bootstrap, topic, ranges), item.venue)
    return Source(name=name, venue=item.venue, seed=seed, records=records), described


def recent_dataset(
    items: list[Recent], init: Path, out: Path, kafka: list[tuple[Source, dict[str, Any]]] | None = None
) -> tuple[Path, dict[str, Any]]:
    """One dataset file of the recent windows: the single .npz given as it is, else the captures and the
    Kafka ranges (`kafka`: kafka_source's, one per KafkaRecent item) encoded like `init` and any .npz
    files given, together in OUT/recent.npz; and its description."""
    import numpy as np

    from model.inputs import check_encoding
    from model.training.dataset import CheckpointEncoding, Dataset, build, capture_source, load, save

    kafka = kafka or []
    if sum(isinstance(i, KafkaRecent) for i in items) != len(kafka):
        raise ValueError("recent_dataset: one kafka_source per --recent kafka:VENUE")
    if len(items) == 1 and isinstance(items[0], Path):
        return items[0], {"given": [str(items[0])]}
    captures = [i for i in items if isinstance(i, tuple)]
    files = [i for i in items if isinstance(i, Path)]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"--recent {f}: no such file")
    parts: list[Dataset] = []
    if captures or kafka:
        like = CheckpointEncoding.of_checkpoint(init)
        sources = [capture_source(venue, path) for venue, path in captures] + [src for src, _ in kafka]
        parts.append(build(sources, like=like))
    parts += [load(f) for f in files]
    # the stacked file carries the first part's json, which adapt() checks against the checkpoint: every
    # part must be encoded as the checkpoint itself, or a file encoded otherwise would pass unseen
    ckpt_meta = CheckpointEncoding.of_checkpoint(init).meta
    for f, p in zip(files, parts[len(parts) - len(files) :], strict=True):
        check_encoding(p.meta, str(f), ckpt_meta, str(init))
    keys = [k for k in parts[0].arrays if all(k in p.arrays for p in parts[1:])]
    arrays = {k: np.concatenate([p.arrays[k] for p in parts]) for k in keys}
    meta = dict(parts[0].meta)
    meta["sources"] = [s for p in parts for s in p.meta.get("sources", [])]
    meta["counts"] = {"windows": len(arrays["label"]), "labeled": int((arrays["label"] > 0).sum())}
    npz, _ = save(Dataset(arrays, meta), out / "recent.npz")
    given = [f"{i[0]}:{i[1]}" if isinstance(i, tuple) else str(i) for i in items if not isinstance(i, KafkaRecent)]
    return npz, {"given": given} | ({"kafka": [d for _, d in kafka]} if kafka else {})


def _figures(name: str, crps: dict[str, Any] | None) -> str:
    if crps is None:
        return f"  {name}: none"
    before, after = crps["before"], crps["after"]
    worst = max((t for t in after if before.get(t, 0) > 0), key=lambda t: after[t] / before[t], default=None)
    if worst is None:
        return f"  {name}: no target with a nonzero CRPS before"
    ratio = after[worst] / before[worst] - 1
    return (f"  {name}: CRPS {100 * crps['change']:+.1f}% averaged over the targets (worst {worst} "
            f"{crps['before'][worst]:.4f} -> {crps['after'][worst]:.4f}, {100 * ratio:+.1f}%)")  # fmt: skip


def cmd_adapt(args: argparse.Namespace) -> int:
    from model.training.adapt import adapt

    args.out.mkdir(parents=True, exist_ok=True)
    kafka = _kafka_sources(args)
    recent, described = recent_dataset(args.recent, args.init, args.out, kafka)
    result = adapt(
        args.init,
        recent,
        args.replay,
        args.out,
        steps=args.steps,
        replay_fraction=args.replay_fraction,
        lr=args.lr,
        seed=args.seed,
        batch=args.batch,
        holdback=args.holdback,
        replay_windows=args.replay_windows,
        device=args.device,
        recent_description=described,
        recalibration=args.recalibration,
    )
    d = result.details
    print(f"adapted {args.init} -> {result.out_dir} (version {result.version}): {d['steps']} steps on "
          f"{d['recent']['windows']} recent windows, replay fraction {d['replay_fraction']} "
          f"(drew {d['drawn']['recent']} recent, {d['drawn']['replay']} replayed)")  # fmt: skip
    for head, what in d["l2_heads"].items():
        print(f"{head} head: {what}")
    print(_figures(f"held-back recent tail ({d['recent']['held_back']} windows)", d["crps"]["recent_tail"]))
    if d["replay"]:
        print(_figures(f"replay data ({d['replay']['eval_windows']} windows: forgetting)", d["crps"]["replay"]))
    print(f"checkpoint: {result.out_dir}")
    return 0


def _kafka_sources(args: argparse.Namespace) -> list[tuple[Source, dict[str, Any]]]:
    wanted = [i for i in args.recent if isinstance(i, KafkaRecent)]
    if not wanted:
        if args.since or args.until:
            raise ValueError("--since / --until apply to --recent kafka:VENUE only")
        return []
    if not args.since:
        raise ValueError("--recent kafka:VENUE needs --since (an ISO 8601 time, or a span back from now: 2h)")
    from streams.config import Settings
    from streams.infra import reach_kafka

    now = int(time.time() * 1000)
    since, until = wall_ms(args.since, "--since", now), wall_ms(args.until, "--until", now) if args.until else now
    settings = Settings.load(args)
    reach_kafka(settings.bootstrap)
    return [kafka_source(item, settings.bootstrap, since, until) for item in wanted]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `adapt` verb to the `megatrading` parser."""
    a = subparsers.add_parser(
        "adapt",
        help="fine-tune a checkpoint on recent flow with a replay buffer into a new versioned checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("--init", type=Path, required=True, help="the checkpoint folder to adapt")
    a.add_argument(
        "--recent",
        type=parse_recent,
        action="append",
        required=True,
        metavar="VENUE:FILE|NPZ|kafka:VENUE",
        help="recent flow: a capture as recorded, a dataset encoded like --init, or the venue's raw topic over "
        "--since/--until; repeatable",
    )
    a.add_argument("--since", help="kafka: from this ISO 8601 time (UTC unless it says) or span back from now (2h)")
    a.add_argument("--until", help="kafka: up to this time, excluded (default now)")
    a.add_argument("--bootstrap", help="Kafka bootstrap servers (env MT_KAFKA_BOOTSTRAP, default 127.0.0.1:9092)")
    a.add_argument("--config", type=Path, help="settings file, TOML (env MT_CONFIG; default $MT_HOME/config.toml)")
    a.add_argument("--replay", type=Path, help="earlier windows encoded like --init (default: its training file)")
    a.add_argument("--out", type=Path, required=True, help="the new checkpoint folder")
    a.add_argument("--steps", type=int, default=300, help="optimizer steps (default 300)")
    a.add_argument(
        "--replay-fraction", type=float, default=0.75, help="share of each batch from the replay (default 0.75)"
    )
    a.add_argument(
        "--replay-windows",
        type=int,
        default=16384,
        help="most windows in the replay buffer (default 16384; it takes what makes the replay fraction of the set)",
    )
    a.add_argument(
        "--holdback", type=float, default=0.2, help="last share of each recent source kept out to judge (default 0.2)"
    )
    a.add_argument("--batch", type=int, default=32, help="windows per step (default 32)")
    a.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (default 3e-4)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument(
        "--recalibration",
        choices=RECALIBRATION_MODES,
        default="keep",
        help="the parent's quantile recalibration: keep it (default; refitting it on the mixed windows is what "
        "degraded the earlier flow), refit its maps in its bins, or refit bins and maps",
    )
    a.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    a.set_defaults(run=cmd_adapt)
    return a
