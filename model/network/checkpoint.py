"""Checkpoints: weights in safetensors, everything else in JSON; nothing is ever pickled
(torch.load is never called), so loading a checkpoint cannot run code (docs/design.md, "Serving").

A checkpoint folder:
    model.safetensors   the model's state_dict (weights and the target loc/scale buffers)
    config.json         {"format": 2, "model": ModelConfig, ...extra}: extra holds the
                        tokenizer json, feature_mean/std, the anomaly calibration and the
                        training meta (stage, step, data, seed, ...)
    optimizer.safetensors, train_state.json   (training only, for --resume: see save_train_state)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from model.network.orderflow import L2_DEPTH_INPUTS, ModelConfig, OrderFlowModel

# 2: the anchored quantile head, feature_loc/scale buffers; 3: the heads read the headlines;
# 4: the recalibration buffers (recal_edges, recal_coef); a format 3 checkpoint loads with the
# identity map (what it served); 5: the direction head (direction_head.*, direction_fitted); a format
# 3 or 4 checkpoint loads with it unfitted, serving p_up / p_down off its mid quantiles as it did;
# 6: the L2 books' depth head (l2_depth_*), which an older checkpoint loads unfitted (the network's
# depth quantiles, as it served); 7: the L2 books' direction head (l2_direction_*), likewise, and the L2
# depth head reads one input more (the log of the depth scale, last): an older head gets a zero weight there;
# 8: the headline age's projection (news_age_proj.*, read where the config's use_news_age), which an
# older checkpoint loads zeroed and switched off (its config lacks the key); 9: the recalibration's maps of
# the windows right after a headline (recal_news_coef, recal_news_fitted), which an older checkpoint loads
# unfitted (its level maps, as it served); 10: the level maps of books of price levels (l2_recal_coef,
# l2_recal_fitted), which an older checkpoint loads unfitted (the pooled maps, as it served); 11: the served
# quantiles' weight against the EWMA's band (classic_weight), which an older checkpoint loads as 1 (its
# quantiles alone, as it served); 12: the L2 books' volume head (l2_volume_*), which an older checkpoint loads
# unfitted (the network's volume quantiles, as it served); 13: the scenario generator's event chain
# (event_chain.*), which an older checkpoint loads unfitted (the fields drawn apart, as it sampled); 14: the
# L2 volume head's weight against the book's record of realized volumes (l2_volume_record_weight), which an
# older checkpoint loads as 1 (the head alone, as it served)
FORMAT = 14
READABLE_FORMATS = (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)
_ADDED_IN_4 = ("recal_edges", "recal_coef")
_ADDED_IN_5 = ("direction_head.weight", "direction_head.bias", "direction_fitted")
_ADDED_IN_6 = ("l2_depth_weight", "l2_depth_bias", "l2_depth_fitted")
_ADDED_IN_7 = ("l2_direction_weight", "l2_direction_bias", "l2_direction_fitted")
_ADDED_IN_8 = ("news_age_proj.weight", "news_age_proj.bias")
_ADDED_IN_9 = ("recal_news_coef", "recal_news_fitted")
_ADDED_IN_10 = ("l2_recal_coef", "l2_recal_fitted")
_ADDED_IN_11 = ("classic_weight",)
_ADDED_IN_12 = ("l2_volume_loc", "l2_volume_scale", "l2_volume_coef", "l2_volume_fitted")
_ADDED_IN_13_PREFIX = "event_chain."
_ADDED_IN_14 = ("l2_volume_record_weight",)
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
OPTIMIZER = "optimizer.safetensors"
TRAIN_STATE = "train_state.json"


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _atomic_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)


def save(model: OrderFlowModel, config: ModelConfig, extra: dict[str, Any], directory: str | Path) -> Path:
    """Write `model.safetensors` and `config.json` into `directory` (created); returns it."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _atomic_tensors(d / WEIGHTS, model.state_dict(), {"format": str(FORMAT)})
    _atomic_json(d / CONFIG, {"format": FORMAT, "model": config.to_json(), **extra})
    return d


def load(directory: str | Path, device: torch.device | str = "cpu") -> tuple[OrderFlowModel, ModelConfig, dict]:
    """(model in eval mode on `device`, its ModelConfig, the extra dict saved beside it)."""
    d = Path(directory)
    if not (d / WEIGHTS).is_file() or not (d / CONFIG).is_file():
        raise FileNotFoundError(f"{d}: not a checkpoint (needs {WEIGHTS} and {CONFIG})")
    meta = json.loads((d / CONFIG).read_text())
    fmt = meta.get("format")
    if fmt not in READABLE_FORMATS:
        raise ValueError(f"{d / CONFIG}: checkpoint format {fmt!r}, this code reads {READABLE_FORMATS}")
    config = ModelConfig.from_json(meta.pop("model"))
    meta.pop("format")
    model = OrderFlowModel(config)
    tensors = load_file(str(d / WEIGHTS), device="cpu")
    added = tuple(k for since, keys in ((4, _ADDED_IN_4), (5, _ADDED_IN_5), (6, _ADDED_IN_6), (7, _ADDED_IN_7),
                                        (8, _ADDED_IN_8), (9, _ADDED_IN_9), (10, _ADDED_IN_10), (11, _ADDED_IN_11),
                                        (12, _ADDED_IN_12), (14, _ADDED_IN_14))
                  if fmt < since for k in keys)  # fmt: skip
    tensors |= {k: v for k, v in model.state_dict().items()
                if k in added or (fmt < 13 and k.startswith(_ADDED_IN_13_PREFIX))}  # fmt: skip
    depth = tensors.get("l2_depth_weight")
    if depth is not None and depth.shape[1] == L2_DEPTH_INPUTS - 1:  # fitted before the log-scale input
        tensors["l2_depth_weight"] = torch.cat([depth, depth.new_zeros(depth.shape[0], 1, depth.shape[2])], 1)
    model.load_state_dict(tensors)
    return model.to(device).eval(), config, meta


VERSION_KEY = "version"  # config.json's int lineage number; the worker labels forecasts orderflow-gpt:v<version>


def version_of(extra: dict[str, Any]) -> int:
    """A checkpoint's version: its config.json's `version`, 1 where it has none (trained, not adapted)."""
    return int(extra.get(VERSION_KEY) or 1)


def read_extra(directory: str | Path) -> dict[str, Any]:
    """A checkpoint's config.json less the model and format (what `load` returns third), without weights."""
    meta = json.loads((Path(directory) / CONFIG).read_text())
    return {k: v for k, v in meta.items() if k not in ("model", "format")}


def stamp_lineage(directory: str | Path, parent: str | Path, fingerprint: str, details: dict[str, Any]) -> int:
    """Mark the checkpoint in `directory` as the child of `parent`: version = the parent's + 1, `parent`
    naming its path, version and encoding fingerprint, plus `details` under `adapt`. The only writer of
    the version, so every checkpoint derived from another counts the same way. Returns the version."""
    d = Path(directory)
    doc = json.loads((d / CONFIG).read_text())
    parent_version = version_of(read_extra(parent))
    doc[VERSION_KEY] = parent_version + 1
    doc["parent"] = {"path": str(parent), "version": parent_version, "fingerprint": fingerprint}
    doc["adapt"] = details
    _atomic_json(d / CONFIG, doc)
    return doc[VERSION_KEY]


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten an optimizer's state_dict: per-parameter tensors as `state.{i}.{name}` for
    safetensors, the param_groups (plain numbers) for JSON."""
    sd = optimizer.state_dict()
    tensors = {}
    for i, st in sd["state"].items():
        for name, v in st.items():
            tensors[f"state.{i}.{name}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return tensors, {"param_groups": sd["param_groups"]}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: dict) -> None:
    """Inverse of `optimizer_tensors`."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        _, i, name = key.split(".", 2)
        state.setdefault(int(i), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": groups["param_groups"]})


def save_train_state(
    directory: str | Path, optimizer: torch.optim.Optimizer, rng: dict[str, torch.Tensor], state: dict
) -> None:
    """Optimizer tensors and torch RNG states in `optimizer.safetensors`; param groups, the step,
    the numpy generator's state and the loss history in `train_state.json`."""
    d = Path(directory)
    tensors, groups = optimizer_tensors(optimizer)
    tensors.update({f"rng.{k}": v for k, v in rng.items()})
    _atomic_tensors(d / OPTIMIZER, tensors)
    _atomic_json(d / TRAIN_STATE, {**state, **groups})


def load_train_state(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """(optimizer tensors, rng tensors, train_state json) as written by `save_train_state`."""
    d = Path(directory)
    if not (d / OPTIMIZER).is_file() or not (d / TRAIN_STATE).is_file():
        raise FileNotFoundError(f"{d}: no training state to resume from ({OPTIMIZER}, {TRAIN_STATE})")
    tensors = load_file(str(d / OPTIMIZER), device="cpu")
    rng = {k[4:]: v for k, v in tensors.items() if k.startswith("rng.")}
    opt = {k: v for k, v in tensors.items() if not k.startswith("rng.")}
    return opt, rng, json.loads((d / TRAIN_STATE).read_text())
