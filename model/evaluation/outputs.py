"""A checkpoint run over dataset windows: what the evaluation scores (the served anomaly score and its
two parts, the quantiles, the next-event NLL) and what the model card says of the checkpoint (its size,
preset, inputs, training run and training data)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.inputs import ENCODING_KEYS, FeatureNorm, check_encoding
from model.serving.forecaster import HORIZONS

# the widths that tell the ModelConfig presets apart (model.network.orderflow.ModelConfig.tiny/base/small)
PRESET_FIELDS = ("d_model", "n_layers", "n_heads", "ff_mult")
# the encoding less the feature normalization, which model_outputs undoes and redoes with the checkpoint's
TOKEN_ENCODING = tuple(k for k in ENCODING_KEYS if k not in ("feature_mean", "feature_std"))


def target_ok(arrays: dict[str, np.ndarray], target: str) -> np.ndarray:
    """(B,) bool: the windows whose `target` (e.g. "depth_h10") is known."""
    h = int(target.rsplit("_h", 1)[1])
    return arrays["target_mask"][:, HORIZONS.index(h)] & np.isfinite(arrays[target])


@dataclass
class ModelOutputs:
    name: str
    directory: str
    anomaly: np.ndarray  # (B,) the served score: max(calibrated surprise, 1 - p(normal))
    surprise: np.ndarray  # (B,) calibrated surprise alone (0..1)
    supervised: np.ndarray  # (B,) 1 - p(normal) of the anomaly head
    quantiles: dict[str, np.ndarray]  # target -> (B, 3)
    anchor: dict[str, np.ndarray]  # target -> (B, 3): the band the head corrects (network.anchor); {} if none
    unrecalibrated: dict[str, np.ndarray]  # target -> (B, 3): the head before recalibration; {} if none fitted
    nll: np.ndarray  # (B,) summed next-event NLL of the window's real (event, next event) pairs
    n_events: np.ndarray  # (B,) how many pairs
    train_seeds: list[int] | None = None
    card: dict[str, Any] = field(default_factory=dict)  # model_card: the checkpoint described
    head_seeds: list[int] | None = field(default_factory=list)  # outputs.head_seeds: seen by a post-hoc head
    # mid target -> (B, 3) the direction head's (down, stationary, up) probabilities; {} where not fitted
    direction: dict[str, np.ndarray] = field(default_factory=dict)
    # what the L2 depth and volume heads and the L2 level maps read (model/evaluation/l2_depth_folds.py refits
    # them): "inputs" (B, F), the depth band's "median" (B,), "served" (B,) bool, the windows the L2 heads
    # serve, "volume_inputs" (B, F'), each book's record of realized volumes "volume_record" (B, H, 3; NaN
    # where unknown), the head's quantiles "head" (B, 8, 3) and the recalibration's "band"
    # (B, 8, 3), and the model's "recal_edges" and "recal_coef"; {} for a model without anchor
    l2_depth: dict[str, np.ndarray] = field(default_factory=dict)
    # (B, D) what the direction head reads (OrderFlowModel's `direction_input`), kept only when asked for
    direction_state: np.ndarray | None = None

    def perplexity(self, keep: np.ndarray | None = None) -> float:
        """exp(mean NLL per event) over the windows `keep` (bool (B,); default all); NaN if none."""
        keep = np.ones(len(self.nll), bool) if keep is None else keep
        n = int(self.n_events[keep].sum())
        return math.exp(float(self.nll[keep].sum()) / n) if n else math.nan


def training_seeds(extra: dict[str, Any]) -> list[int] | None:
    """The seeds of the windows a checkpoint was trained on (its training file's `seed` array), or
    None when that file is not here to read."""
    data = (extra.get("train") or {}).get("data")
    if not data or not Path(data).is_file():
        return None
    with np.load(data, allow_pickle=False) as z:
        return sorted(int(s) for s in np.unique(z["seed"])) if "seed" in z.files else None


def entry_files(extra: dict[str, Any], name: str) -> list[str]:
    """The files the checkpoint's entry `name` records as fitted on (`data`: one path or a list); [] where
    it records none."""
    entry = extra.get(name)
    data = entry.get("data") if isinstance(entry, dict) else None
    return [data] if isinstance(data, str) else list(data or [])


def head_files(extra: dict[str, Any]) -> dict[str, list[str]]:
    """{post-hoc head: the files it was fitted on} for the heads fitted on more than the training file
    (`train --stage l2-direction --data train.npz unseen.npz`): what else of a checkpoint saw data."""
    train = entry_files(extra, "train")
    out = {}
    for name in extra:
        files = entry_files(extra, name) if name != "train" else []
        if files and files != train:
            out[name] = files
    return out


def head_seeds(extra: dict[str, Any]) -> list[int] | None:
    """The seeds of the windows of head_files (beside training_seeds': those the network was trained on),
    or None when one of those files is not here to read."""
    seeds: set[int] = set()
    for file in {f for files in head_files(extra).values() for f in files}:
        if not Path(file).is_file():
            return None
        with np.load(file, allow_pickle=False) as z:
            seeds |= {int(s) for s in np.unique(z["seed"])} if "seed" in z.files else set()
    return sorted(seeds)


def training_sources(extra: dict[str, Any], seeds: Sequence[int] | None) -> list[dict[str, Any]] | None:
    """The sources of a checkpoint's training file (name, seed, windows: its json's `sources`) whose
    seeds it holds (`seeds`: training_seeds; a file split by seed keeps the json of the whole build, the
    held-out sources too), or None when that file is not here to read."""
    data = (extra.get("train") or {}).get("data")
    meta = Path(data).with_suffix(".json") if data else None
    if seeds is None or meta is None or not meta.is_file():
        return None
    sources = json.loads(meta.read_text()).get("sources")
    if sources is None:
        return None
    return [{k: s.get(k) for k in ("name", "seed", "windows")} for s in sources if s.get("seed") in set(seeds)]


def preset_of(config: Any) -> str:
    """The ModelConfig preset (tiny, base, small) whose widths `config` has, or "custom"."""
    from model.network.orderflow import ModelConfig

    presets = {"tiny": ModelConfig.tiny(), "base": ModelConfig.base(), "small": ModelConfig.small()}
    for name, preset in presets.items():
        if all(getattr(config, f) == getattr(preset, f) for f in PRESET_FIELDS):
            return name
    return "custom"


def model_card(model: Any, config: Any, extra: dict[str, Any], seeds: Sequence[int] | None) -> dict[str, Any]:
    """What the evaluation report says of a checkpoint, read from it: parameters, preset, widths and
    inputs (an ablation leaves out the book rows or the headlines), the training run's settings, and the
    sources of its training file (`seeds`: the seeds that file holds) where that file is here."""
    train = extra.get("train") or {}
    chain = model.event_chain
    inputs = ["events", *(["book rows"] if config.use_rows else []), *(["headlines"] if config.use_news else [])]
    return {
        # the network's, as training, the scaling study and the GPU bench count them; the scenario generator's
        # event chain apart, once fitted (the worker's forecasts read none of it)
        "parameters": model.num_parameters(),
        "event_chain_parameters": sum(p.numel() for p in chain.parameters()) if bool(chain.fitted) else None,
        "preset": preset_of(config),
        "architecture": {f: getattr(config, f) for f in (*PRESET_FIELDS, "n_events", "n_rows", "n_features")},
        "inputs": inputs,
        "training": {k: train.get(k) for k in ("stage", "step", "steps", "init", "batch", "lr", "seed", "data")},
        "training_sources": training_sources(extra, seeds),
        "calibration_windows": (extra.get("calibration") or {}).get("windows"),
        "recalibration_windows": (extra.get("recalibration") or {}).get("windows"),
        "head_files": head_files(extra),
    }


def model_outputs(
    directory: str | Path,
    arrays: dict[str, np.ndarray],
    meta: dict[str, Any],
    name: str,
    device: str = "cpu",
    batch: int = 256,
    progress: Callable[[int], None] | None = None,
    data_name: str = "the dataset",
    direction_state: bool = False,
) -> ModelOutputs:
    """Run a checkpoint over the dataset windows: the served anomaly score (as model.serving.orderflow
    combines it), the quantiles in target units, and the summed next-event NLL for the perplexity.
    The rows are re-normalized with the checkpoint's own (float32) feature mean/std. The windows must be
    cut and tokenized as the checkpoint's (its training set, or `megatrading dataset --like` it),
    otherwise the ids mean other things: model.inputs.EncodingMismatch, naming `data_name`. `direction_state`:
    also keep what the direction head reads (bench/direction_loo_probe.py refits it)."""
    import torch

    from model.evaluation.baselines import volume_records
    from model.network.orderflow import (
        ANCHORED_TARGETS,
        DIRECTION_HORIZONS,
        L2_DEPTH_INPUTS,
        L2_VOLUME_HORIZONS,
        L2_VOLUME_INPUTS,
        calibrated_score,
        next_event_nll,
        to_batch,
    )
    from model.network.orderflow import TARGETS as NET_TARGETS
    from model.network.orderflow import surprise as surprise_of
    from model.serving.orderflow import OrderFlowForecaster, combined_anomaly_score

    served = OrderFlowForecaster(directory, device=device)
    # the rows are re-normalized below, so only what cannot be repaired must match (evaluate() checks all)
    check_encoding(meta, data_name, served.extra, str(directory), keys=TOKEN_ENCODING)
    rows = arrays["row_mask"]
    feats = served.norm.apply(FeatureNorm.from_meta(meta).invert(arrays["features"], rows), rows)
    n = len(arrays["label"])
    score, surp, sup, nll_w, n_w = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n, np.int64)
    q, band, head = (np.zeros((n, len(NET_TARGETS), 3)) for _ in range(3))
    direction = np.zeros((n, len(DIRECTION_HORIZONS), 3))
    anchors = served.config.anchors
    depth_at = int(served.model.l2_depth_index[0])
    l2_inputs, l2_median, l2_served = np.zeros((n, L2_DEPTH_INPUTS)), np.zeros(n), np.zeros(n, bool)
    volume_inputs = np.zeros((n, L2_VOLUME_INPUTS))
    # what the recalibration reads (its band: RECAL_BAND's), for the L2 maps refitted left one out
    recal_head, recal_band = np.zeros((n, len(NET_TARGETS), 3)), np.zeros((n, len(NET_TARGETS), 3))
    states: list[np.ndarray] | None = [] if direction_state else None
    with torch.inference_mode():
        for lo in range(0, n, batch):
            sl = slice(lo, min(lo + batch, n))
            part = {k: arrays[k][sl] for k in served.model.batch_keys if k != "features" and k in arrays}
            b = to_batch(part | {"features": feats[sl]}, served.device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=served.bf16):
                out = served.model(b)
            nll, valid = next_event_nll(out["next"], b)
            s = surprise_of(nll, valid, served.k).float().cpu().numpy()
            nll_w[sl] = nll.float().sum(-1).cpu().numpy()  # padded pairs are 0 already
            n_w[sl] = valid.sum(-1).cpu().numpy()
            probs = out["anomaly"].float().softmax(-1).cpu().numpy()
            cal = calibrated_score(s, served.calibration) if served.calibration is not None else np.zeros_like(s)
            surp[sl], sup[sl] = cal, 1.0 - probs[:, 0]
            score[sl] = combined_anomaly_score(cal, probs[:, 0])
            q[sl] = out["quantiles"].float().cpu().numpy()  # ordered by the model
            band[sl] = served.model.onto_support(out["anchor"].float()).cpu().numpy()  # as a zero head would serve it
            head[sl] = served.model.onto_support(out["quantiles_head"].float()).cpu().numpy()
            direction[sl] = out["direction"].float().softmax(-1).cpu().numpy()
            if states is not None:
                states.append(out["direction_input"].float().cpu().numpy())
            if anchors:
                l2_inputs[sl] = served.model.l2_depth_inputs(out["anchor_scale"], out["anchor_stats"]).float().cpu()
                l2_median[sl] = out["anchor"][:, depth_at, 1].float().cpu().numpy()
                l2_served[sl] = served.model.l2_depth_windows(b).cpu().numpy()
                volume_inputs[sl] = served.model.l2_volume_inputs(b).cpu().numpy()
                recal_head[sl] = out["quantiles_head"].float().cpu().numpy()
                recal_band[sl] = out["anchor"][:, served.model.recal_band].float().cpu().numpy()
            if progress:
                progress(sl.stop - sl.start)
    # each book's record of its realized volumes, which the server combines the L2 volume head's with (a
    # window's volume_record, orderbook/volume_record.py; volume_levels reads it off the dataset's targets)
    volume_record = np.full((n, len(L2_VOLUME_HORIZONS), 3), np.nan)
    if anchors and "message" in arrays and "symbol" in arrays:
        volume_record = volume_records(arrays, L2_VOLUME_HORIZONS)
    if served.record_combined:
        q = served.with_volume_record(q, l2_served, volume_record)
    quantiles = {t: q[:, j] for j, t in enumerate(NET_TARGETS)}
    targets = ANCHORED_TARGETS if served.config.anchors else ()
    anchor = {t: band[:, j] for j, t in enumerate(NET_TARGETS) if t in targets}
    coef = served.model.recal_coef.cpu()
    fitted = [j for j in range(len(NET_TARGETS)) if (coef[j, ..., 0] != 0).any() or (coef[j, ..., 1] != 1).any()]
    unrecalibrated = {NET_TARGETS[j]: head[:, j] for j in fitted}
    seeds = training_seeds(served.extra)
    heads = {f"mid_h{h}": direction[:, i] for i, h in enumerate(DIRECTION_HORIZONS)} if served.direction_fitted else {}
    recal = {"recal_edges": served.model.recal_edges.cpu().numpy(), "recal_coef": coef.numpy()}
    l2 = {"inputs": l2_inputs, "median": l2_median, "served": l2_served, "head": recal_head, "band": recal_band,
          "volume_inputs": volume_inputs, "volume_record": volume_record, **recal} if anchors else {}  # fmt: skip
    card = model_card(served.model, served.config, served.extra, seeds)
    state = np.concatenate(states) if states else None
    return ModelOutputs(name, str(directory), score, surp, sup, quantiles, anchor, unrecalibrated, nll_w, n_w,
                        seeds, card, head_seeds(served.extra), heads, l2, state)  # fmt: skip
