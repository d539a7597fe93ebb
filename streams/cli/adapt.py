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
the before/after figures). Reading a Kafka time range (md.raw.<venue> by offsets for times) is not
implemented: give the flow as recorded capture files.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from streams.cli.dataset import parse_capture


def parse_recent(text: str) -> tuple[str, Path] | Path:
    """A dataset .npz -> its path; else VENUE:FILE -> (venue, path) (streams.cli.dataset.parse_capture)."""
    if text.endswith(".npz"):
        return Path(text)
    return parse_capture(text)


def recent_dataset(items: list[tuple[str, Path] | Path], init: Path, out: Path) -> tuple[Path, dict[str, Any]]:
    """One dataset file of the recent windows: the single .npz given as it is, else the captures encoded
    like `init` and any .npz files given, together in OUT/recent.npz; and its description."""
    import numpy as np

    from model.inputs import check_encoding
    from model.training.dataset import CheckpointEncoding, Dataset, build, capture_source, load, save

    if len(items) == 1 and isinstance(items[0], Path):
        return items[0], {"given": [str(items[0])]}
    captures = [i for i in items if isinstance(i, tuple)]
    files = [i for i in items if isinstance(i, Path)]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"--recent {f}: no such file")
    parts: list[Dataset] = []
    if captures:
        like = CheckpointEncoding.of_checkpoint(init)
        parts.append(build([capture_source(venue, path) for venue, path in captures], like=like))
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
    return npz, {"given": [f"{i[0]}:{i[1]}" if isinstance(i, tuple) else str(i) for i in items]}


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
    recent, described = recent_dataset(args.recent, args.init, args.out)
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
    )
    d = result.details
    print(f"adapted {args.init} -> {result.out_dir} (version {result.version}): {d['steps']} steps on "
          f"{d['recent']['windows']} recent windows, replay fraction {d['replay_fraction']} "
          f"(drew {d['drawn']['recent']} recent, {d['drawn']['replay']} replayed)")  # fmt: skip
    print(_figures(f"held-back recent tail ({d['recent']['held_back']} windows)", d["crps"]["recent_tail"]))
    if d["replay"]:
        print(_figures(f"replay data ({d['replay']['eval_windows']} windows: forgetting)", d["crps"]["replay"]))
    print(f"checkpoint: {result.out_dir}")
    return 0


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
        metavar="VENUE:FILE|NPZ",
        help="recent flow: a capture as recorded, or a dataset encoded like --init; repeatable",
    )
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
    a.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    a.set_defaults(run=cmd_adapt)
    return a
