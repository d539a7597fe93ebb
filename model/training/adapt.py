"""Continual learning (issue 13, `megatrading adapt`): fine-tune a checkpoint on recent flow, with a replay
buffer of earlier windows against forgetting, into a new versioned checkpoint.

    adapt("model/checkpoints/demo", "build/recent.npz", None, "ckpt/v2", steps=300)

- Recent windows: a dataset encoded as the checkpoint (`megatrading dataset --like CKPT`; anything else is
  refused, model.inputs.EncodingMismatch). Each source's last `holdback` share of windows in time is kept
  out of training: the before/after figures are read there.
- Replay buffer: windows drawn (seeded) from `replay`, by default the checkpoint's own training file where
  it is still at the path its config.json records (an adapted checkpoint's: the replay file it was adapted
  with), encoded as the checkpoint too. As many as make the replay's share of the mixed set the replay
  fraction (`buffer_size`; at most `replay_windows`), because the calibration (and a recalibration refitted
  at the end, where asked) read the whole mixed set: with fewer, they fit a mixture richer in recent flow
  than the one the batches trained on. A further disjoint draw (`eval_windows`) measures forgetting: the
  CRPS on earlier flow before and after.
- Batches: `MixedSampler` puts `replay_fraction` of each batch's windows from the buffer, the rest from the
  recent windows (uniformly within each). The training itself is train.train's finetune stage (its loss,
  optimizer, schedule, target units kept from the checkpoint, calibration and direction head refitted on
  the mixed windows at the end): only the batches differ, and the recalibration is the checkpoint's own
  (`recalibration="keep"`). Refitting it on the mixed windows was what made the earlier flow's forecasts
  worse, not the weights (an L2 pull toward the parent's weights changed nothing): bench/adapt_bench.py,
  forgetting on held-out regime A +2.81% with bins and maps refitted, +2.52% with the parent's bins and
  refitted maps ("maps"), +1.26% with the parent's recalibration kept, while the gap recovered on the new
  regime stayed 1.15-1.30 (one run each; docs/own-data.md).
- Lineage: the new config.json gets `version` (parent's + 1), `parent` (path, version, encoding
  fingerprint) and `adapt` (data, fraction, steps, before/after CRPS), written by
  model.network.checkpoint.stamp_lineage.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.inputs import check_encoding, encoding_fingerprint
from model.network import checkpoint
from model.training.train import TrainData, fit_head, train

log = logging.getLogger("megatrading.adapt")

REPLAY_WINDOWS = 16384
EVAL_WINDOWS = 512


# --------------------------------------------------------------------------- batches


@dataclass
class MixedSampler:
    """Batches of `replay_fraction` replayed windows (indices n_recent.. of the mixed set) and recent ones
    (0..n_recent - 1). A fraction times the batch that is not whole is met on average: the odd window is
    a replayed one with the fractional part's probability. `drawn` counts [recent, replay] windows."""

    n_recent: int
    n_replay: int
    replay_fraction: float
    drawn: np.ndarray = field(default_factory=lambda: np.zeros(2, np.int64))

    def __post_init__(self) -> None:
        if not 0.0 <= self.replay_fraction <= 1.0:
            raise ValueError(f"replay fraction {self.replay_fraction}: must be within 0..1")
        if self.n_replay == 0 and self.replay_fraction > 0:
            raise ValueError("a replay fraction above 0 needs replay windows")
        if self.n_recent == 0 and self.replay_fraction < 1:
            raise ValueError("no recent windows to adapt on")

    def __call__(self, rng: np.random.Generator, batch: int) -> np.ndarray:
        want = self.replay_fraction * batch
        k = int(want) + int(rng.random() < want - int(want))
        recent = rng.integers(0, self.n_recent, size=batch - k) if batch > k else np.zeros(0, np.int64)
        replay = self.n_recent + rng.integers(0, self.n_replay, size=k) if k else np.zeros(0, np.int64)
        self.drawn += (batch - k, k)
        return np.concatenate([recent, replay])


# --------------------------------------------------------------------------- windows


def subset(data: TrainData, idx: np.ndarray) -> TrainData:
    """The windows `idx` of `data`, sharing its metadata."""
    return TrainData({k: v[idx] for k, v in data.arrays.items()}, data.meta, data.path)


def time_split(data: TrainData, holdback: float) -> tuple[np.ndarray, np.ndarray]:
    """(earlier, tail) indices: per source (seed), its last `holdback` share of windows by event time.
    Per source because each stream keeps its own clock."""
    if not 0.0 <= holdback < 1.0:
        raise ValueError(f"holdback {holdback}: must be within 0..1 (1 excluded)")
    seed, ts = data.arrays["seed"], data.arrays["event_ts"]
    tail = np.zeros(len(data), bool)
    for s in np.unique(seed):
        mine = np.flatnonzero(seed == s)
        order = mine[np.argsort(ts[mine], kind="stable")]
        n_tail = math.floor(len(order) * holdback)
        if n_tail:
            tail[order[-n_tail:]] = True
    return np.flatnonzero(~tail), np.flatnonzero(tail)


def default_replay(extra: dict[str, Any]) -> Path | None:
    """Where a checkpoint's earlier data is: the replay file it was adapted with, else its training file;
    None where neither is here."""
    for path in ((extra.get("adapt") or {}).get("replay") or {}).get("path"), (extra.get("train") or {}).get("data"):
        if path and Path(path).is_file():
            return Path(path)
    return None


def buffer_size(n_recent: int, replay_fraction: float, available: int, cap: int = REPLAY_WINDOWS) -> int:
    """Replay windows that make up `replay_fraction` of the mixed set beside `n_recent` recent ones (the
    batches' share), as far as `available` and `cap` allow."""
    if replay_fraction <= 0:
        return 0
    want = available if replay_fraction >= 1 else round(n_recent * replay_fraction / (1 - replay_fraction))
    return max(1, min(want, available, cap))


def replay_draw(replay: TrainData, n_buffer: int, n_eval: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(buffer, evaluation) indices of `replay`, disjoint and seeded; the evaluation draw is what the
    buffer leaves, at most `n_eval` windows, and empty where the buffer takes everything."""
    perm = np.random.default_rng(seed).permutation(len(replay))
    buffer = np.sort(perm[:n_buffer])
    return buffer, np.sort(perm[n_buffer : n_buffer + n_eval])


# --------------------------------------------------------------------------- the L2 heads


# the L2 heads that read the book's rows alone, no network output: finetune fits them on its own windows,
# and a parent's stays valid for its child where its files are not here
BOOK_HEADS = ("l2_depth", "l2_volume")


def carry_l2_heads(
    init_ckpt: str | Path, extra: dict[str, Any], recent: TrainData, out_dir: str | Path, device: str
) -> dict[str, str]:
    """The parent's post-hoc L2 heads, refitted in `out_dir` on the files they were fitted on and the
    `recent` windows together: its L2 direction head and L2 level maps (only `fit_head` fits them), and
    its L2 depth and volume heads where fitted on more files than its training file (make checkpoint's:
    eight real captures; model/network/l2_depth.py and direction.py say why more captures serve a new
    instrument better). The fine-tuning refitted the depth and volume heads on the mixed windows alone
    and switched the direction head and the level maps off: a model adapted to one instrument would have
    served every L2 book heads fitted on a few captures, or none. Where a file is not here, the depth and
    volume heads are the parent's as they were (they read book rows alone, which the fine-tuning does
    not change) and the other two stay off (they read the network's outputs). Returns {head: what was
    done}, for the lineage."""
    from model.evaluation.outputs import entry_files, head_files

    more = head_files(extra)
    done: dict[str, str] = {}
    for head in (*BOOK_HEADS, "l2_direction", "l2_recalibration"):
        files = entry_files(extra, head)
        if not files or (head in BOOK_HEADS and head not in more):
            continue  # the fine-tuning's own fit, on the mixed windows, stands
        missing = [f for f in files if not Path(f).is_file()]
        if not missing:
            fit_head(head, out_dir, files, out_dir, device, loaded=recent)
            done[head] = f"refitted on {len(files)} files and the recent windows"
        elif head in BOOK_HEADS:
            keep_parent_head(init_ckpt, out_dir, head)
            done[head] = f"the parent's (not here: {', '.join(missing)})"
        else:
            stage = head.replace("_", "-")
            done[head] = f"off (not here: {', '.join(missing)}; refit with train --stage {stage})"
        log.info("%s: %s head %s", out_dir, head, done[head])
    return done


def keep_parent_head(init_ckpt: str | Path, out_dir: str | Path, head: str) -> None:
    """`out_dir`'s `head` (one of BOOK_HEADS: its buffers are named `<head>_*`) and its entry set back to
    `init_ckpt`'s."""
    parent, _, parent_extra = checkpoint.load(init_ckpt, "cpu")
    model, config, extra = checkpoint.load(out_dir, "cpu")
    saved = parent.state_dict()
    for name, buffer in model.named_buffers():
        if name.startswith(f"{head}_") and name in saved:
            buffer.copy_(saved[name])
    checkpoint.save(model, config, {**extra, head: parent_extra[head]}, out_dir)


# --------------------------------------------------------------------------- figures


def crps_by_target(ckpt: str | Path, data: TrainData) -> dict[str, float]:
    """The checkpoint's mean CRPS per target on `data` (as `megatrading evaluate` computes it; targets
    without a valid window left out)."""
    from model.evaluation.evaluate import window_crps
    from model.evaluation.outputs import model_outputs

    out = model_outputs(ckpt, data.arrays, data.meta, "m", data_name=str(data.path))
    per = window_crps(data.arrays, {"m": out.quantiles})["m"]
    return {t: float(np.nanmean(c)) for t, c in per.items() if np.isfinite(c).any()}


def relative_change(before: dict[str, float], after: dict[str, float]) -> float:
    """after / before - 1 averaged over the targets: each target weighs the same, whatever its units
    (a spread's CRPS in ticks is hundreds of times a depth's in log lots)."""
    ratios = [after[t] / before[t] for t in before if t in after and before[t] > 0]
    return float(np.mean(ratios)) - 1.0 if ratios else math.nan


def _change(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    return {"before": before, "after": after, "change": relative_change(before, after)}


# --------------------------------------------------------------------------- the run


@dataclass
class Adaptation:
    """What `adapt` did: the new checkpoint, its version, the windows used and the figures."""

    out_dir: Path
    version: int
    details: dict[str, Any]
    history: list[dict[str, float]]


def adapt(
    init_ckpt: str | Path,
    recent: str | Path | TrainData,
    replay: str | Path | TrainData | None,
    out_dir: str | Path,
    steps: int = 300,
    replay_fraction: float = 0.75,
    lr: float = 3e-4,
    seed: int = 0,
    batch: int = 32,
    holdback: float = 0.2,
    replay_windows: int = REPLAY_WINDOWS,
    eval_windows: int = EVAL_WINDOWS,
    device: str = "cpu",
    log_every: int = 50,
    recent_description: dict[str, Any] | None = None,
    recalibration: str = "keep",
) -> Adaptation:
    """Fine-tune `init_ckpt` on `recent` mixed with a replay buffer into `out_dir` (module docstring).
    `replay=None`: the checkpoint's own earlier data (`default_replay`); with `replay_fraction` 0 no replay
    is read. `recent_description`: what the recent windows were made from, for the record.
    `recalibration`: train.train's ("keep": the parent's; "maps", "refit": refitted on the mixed windows)."""
    extra = checkpoint.read_extra(init_ckpt)
    recent = recent if isinstance(recent, TrainData) else TrainData.load(recent)
    check_encoding(recent.meta, str(recent.path), extra, str(init_ckpt))
    fit_idx, tail_idx = time_split(recent, holdback)
    parts, replay_eval, replay_info = [subset(recent, fit_idx)], None, None
    if replay_fraction > 0:
        if replay is None:
            replay = default_replay(extra)
            if replay is None:
                raise ValueError(f"{init_ckpt}: its training data is not here to replay; give a replay dataset "
                                 "(encoded like the checkpoint) or a replay fraction of 0")  # fmt: skip
        replay = replay if isinstance(replay, TrainData) else TrainData.load(replay)
        check_encoding(replay.meta, str(replay.path), extra, str(init_ckpt))
        n_buffer = buffer_size(len(fit_idx), replay_fraction, len(replay), replay_windows)
        buffer_idx, eval_idx = replay_draw(replay, n_buffer, eval_windows, seed)
        parts.append(subset(replay, buffer_idx))
        # with nothing left over, forgetting is read on the buffer itself (windows trained on: optimistic)
        replay_eval = subset(replay, eval_idx if len(eval_idx) else buffer_idx[:eval_windows])
        replay_info = {"path": str(replay.path), "windows": len(buffer_idx), "eval_windows": len(replay_eval),
                       "eval_disjoint": bool(len(eval_idx))}  # fmt: skip
    mixed = TrainData.concat(parts)
    sampler = MixedSampler(len(fit_idx), len(mixed) - len(fit_idx), replay_fraction)
    tail = subset(recent, tail_idx) if len(tail_idx) else None
    before = {"recent_tail": crps_by_target(init_ckpt, tail) if tail else None,
              "replay": crps_by_target(init_ckpt, replay_eval) if replay_eval else None}  # fmt: skip
    log.info("adapting %s on %d recent windows (%d held back) + %d replayed, fraction %.2f, %d steps",
             init_ckpt, len(fit_idx), len(tail_idx), sampler.n_replay, replay_fraction, steps)  # fmt: skip
    run = train("finetune", recent.path, out_dir, init=init_ckpt, steps=steps, batch=batch, lr=lr,
                device=device, seed=seed, checkpoint_every=max(steps, 1), log_every=log_every,
                sampler=sampler, data=mixed, recalibration=recalibration)  # fmt: skip
    heads = carry_l2_heads(init_ckpt, extra, subset(recent, fit_idx), out_dir, device)
    after = {"recent_tail": crps_by_target(out_dir, tail) if tail else None,
             "replay": crps_by_target(out_dir, replay_eval) if replay_eval else None}  # fmt: skip
    details = {
        "recent": {
            "path": str(recent.path),
            "windows": len(fit_idx),
            "held_back": len(tail_idx),
            "holdback": holdback,
            "seeds": sorted(int(s) for s in np.unique(recent.arrays["seed"])),
            **(recent_description or {}),
        },
        "replay": replay_info,
        "replay_fraction": replay_fraction,
        "drawn": {"recent": int(sampler.drawn[0]), "replay": int(sampler.drawn[1])},
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "seed": seed,
        "recalibration": recalibration,
        "l2_heads": heads,
        "crps": {k: _change(before[k], after[k]) if before[k] else None for k in before},
    }
    version = checkpoint.stamp_lineage(out_dir, init_ckpt, encoding_fingerprint(extra), details)
    return Adaptation(Path(out_dir), version, details, run.history)
