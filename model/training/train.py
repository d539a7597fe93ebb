"""Training of the order-flow model (issue 5): pretrain on next-event NLL, fine-tune on NLL +
quantiles + anomaly classes; seeded, resumable, CPU or CUDA (bf16 autocast on CUDA).

    train("pretrain", "data/train.npz", "ckpt/pre", steps=2000)
    train("finetune", "data/train.npz", "ckpt/fine", init="ckpt/pre", steps=1000)

Objectives:
- pretrain: mean next-event NLL per real event (sum of the five field cross-entropies);
- finetune: 0.1 x NLL + pinball loss of the q10/q50/q90 heads on the anchored, standardized
  targets (network.OrderFlowModel.anchor; masked by `target_mask`; Koenker & Bassett 1978; depth's
  weighed back into its own units, network.UNIT_LOSS_TARGETS) +
  class-weighted cross-entropy of the anomaly head (weights ~ 1/frequency, so the rare
  manipulation kinds count).
AdamW, linear warm-up then cosine decay to 10% (Loshchilov & Hutter 2017), grad-norm clip 1.0.

Resume: the optimizer state is saved, not re-created: its tensors (and the torch RNG states)
flattened into `optimizer.safetensors`, its param groups, the step, the numpy batch sampler's
state and the settings in `train_state.json` (model/network/checkpoint.py). A resumed run continues
bit-for-bit where the saved one would have gone (on CPU; cuBLAS may differ in the last bits).

Anomaly calibration, stored in the final checkpoint: the 101 percentiles of the surprise (mean
NLL of the last k=16 events) over the training windows labeled normal (all of them unless
`calib_windows` says fewer); a serving model maps a surprise to 0..1 by this empirical CDF
(network.calibrated_score). The served score's surprise tail (model/serving/orderflow.py
SURPRISE_TAIL) lies between the 99th and the 100th percentile, so it hangs on the largest surprises
of the normal windows: from 2,048 of the demo's 31,491 normal windows (the rule until 2026-12-04) the
100th percentile came out 10.84 nats in one training run, and 18 windows of the real captures scored
exactly 1.0 (alerts at every threshold); from all of them it is 12.99 (docs/alerts.md).
`--stage calibration` refits it alone on a trained checkpoint.

From a checkpoint (`init`), the data must be encoded as it (model.inputs.check_encoding; `megatrading
dataset --like`), and the checkpoint's target location/scale are kept where it has fitted ones.

Quantile recalibration, after a finetune run ends: the spread and mid quantiles are mapped
a + b*q per bin of the window's level and band (the mid's: its spread's), fitted on every training
window in the targets' units (model/network/recalibration.py); the fit's training-set CRPS before and after
goes into the checkpoint's `recalibration` entry. Then the weight of the spread's served quantiles against
the EWMA's band (`classic_weight`), on the training windows that are not of books of price levels: the
entry's `classic`.

Direction head, after the recalibration: a multinomial logistic regression of the mid's direction
(down / stationary / up) at each horizon on the frozen network's window state, fitted on every
training window (model/network/direction.py); its training log loss beside the class prior's goes
into the `direction` entry.

L2 depth head, last: the depth quantiles of books of price levels, a linear quantile regression on the
anchor's depth stats and the depth memory, fitted on the training set's L2 windows
(model/network/l2_depth.py); their training CRPS from the network and from the head goes into the
`l2_depth` entry. A set without L2 windows keeps the model's head as it is. Then the L2 volume head, a
hurdle model of the traded volume on the newest row's trade statistics, on the same windows
(model/network/l2_volume.py): the `l2_volume` entry, likewise.

`fit_head` fits any post-hoc head alone on an existing checkpoint (`train --stage direction` /
`--stage l2-depth` / `--stage l2-volume` ...): nothing else of the checkpoint changes.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from model.evaluation.baselines import volume_records
from model.evaluation.metrics import crps_quantiles
from model.inputs import ABLATIONS, BATCH_KEYS, FIELDS, INPUT_FIELDS, NEWS_AGE, check_encoding
from model.machine import cpu_model
from model.network import checkpoint, direction, event_chain, l2_depth, l2_volume, recalibration
from model.network.orderflow import (
    ANOMALY_CLASSES,
    CLASSIC_TARGETS,
    DIRECTION_HORIZONS,
    L2_DEPTH_TARGETS,
    L2_VOLUME_HORIZONS,
    L2_VOLUME_TARGETS,
    NEWS_SIDED,
    QUANTILES,
    RECAL_BAND,
    TARGETS,
    UNIT_LOSS_TARGETS,
    ModelConfig,
    OrderFlowModel,
    next_event_nll,
    recal_floor_edge_of,
    recalibration_supports,
    surprise,
    to_batch,
)
from model.network.recalibration import MODES as RECALIBRATION_MODES
from model.network.tokens import text_encoder_name
from model.training.dataset import capture_names

log = logging.getLogger("megatrading.train")

STAGES = ("pretrain", "finetune")  # `train`'s; the post-hoc heads alone are fit_head's (HEADS)
NLL_WEIGHT_FINETUNE = 0.1
SURPRISE_K = 16
LOSS_COLUMNS = ("step", "lr", "loss", "nll", "pinball", "anomaly_ce", "elapsed_s")
# draws one batch of window indices from the run's numpy generator (saved and restored on resume)
Sampler = Callable[[np.random.Generator, int], np.ndarray]


# --------------------------------------------------------------------------- data


@dataclass
class TrainData:
    """A dataset file of the shared contract (model/training/dataset.py writes it): arrays + json meta."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    path: Path

    @classmethod
    def load(cls, path: str | Path) -> TrainData:
        p = Path(path)
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        side = p.with_suffix(".json")
        meta = json.loads(side.read_text()) if side.is_file() else {}
        missing = [k for k in BATCH_KEYS if k not in arrays]
        if missing:
            raise ValueError(f"{p}: not a training set of the contract, lacks {missing}")
        return cls(arrays, meta, p)

    @classmethod
    def concat(cls, parts: list[TrainData]) -> TrainData:
        """One set of several files encoded alike (the caller checks that): the arrays every part has,
        concatenated; the first part's meta with every part's sources (a post-hoc head fitted on a
        training set and captures encoded `--like` it)."""
        if len(parts) == 1:
            return parts[0]
        keys = set.intersection(*(set(p.arrays) for p in parts))
        arrays = {k: np.concatenate([p.arrays[k] for p in parts]) for k in parts[0].arrays if k in keys}
        sources = [s for p in parts for s in p.meta.get("sources", [])]
        return cls(arrays, {**parts[0].meta, "sources": sources}, parts[0].path)

    def __len__(self) -> int:
        return len(self.arrays["kind"])

    @property
    def has_targets(self) -> bool:
        return all(t in self.arrays for t in TARGETS) and "target_mask" in self.arrays

    @property
    def real(self) -> np.ndarray:
        """(B,) bool: the windows of a real capture (a negative seed: model.training.dataset)."""
        return self.arrays["seed"] < 0 if "seed" in self.arrays else np.zeros(len(self), bool)

    @property
    def has_labels(self) -> bool:
        return "label" in self.arrays

    def targets(self) -> tuple[np.ndarray, np.ndarray]:
        """(B, 8) targets and their (B, 8) validity (a target's horizon column of target_mask)."""
        y = np.stack([self.arrays[t] for t in TARGETS], axis=1).astype(np.float32)
        horizon = np.array([0 if t.endswith("_h10") else 1 for t in TARGETS])
        valid = self.arrays["target_mask"].astype(bool)[:, horizon] & np.isfinite(y)
        return np.where(valid, y, 0.0).astype(np.float32), valid

    def vocab(self) -> dict[str, int]:
        """Field vocabularies from the tokenizer json (model/network/tokens.py `Tokenizer.to_json()["vocab"]`),
        else from the ids present; checked against the data either way."""
        tok = self.meta.get("tokenizer") or {}
        vocab = {f: int(v) for f, v in tok.get("vocab", {}).items()}
        for f in FIELDS:
            top = int(self.arrays[f].max(initial=0)) + 1
            vocab.setdefault(f, top)
            if top > vocab[f]:
                raise ValueError(f"{self.path}: field {f} has id {top - 1} beyond its vocabulary {vocab[f]}")
        return {f: vocab[f] for f in FIELDS}

    def text_vocab(self) -> int:
        text = self.meta.get("text_tokenizer") or {}
        declared = int(text.get("vocab", self.meta.get("text_vocab", 4096)))
        if text_encoder_name(text) != "hashed":
            return declared  # embeddings, not ids: no vocabulary
        return max(declared, int(self.arrays["news"].max(initial=0)) + 1)

    def model_config(self, preset: str = "small") -> ModelConfig:
        """A ModelConfig with this data's shapes and vocabularies; `preset` tiny | base | small."""
        _, n = self.arrays["kind"].shape
        _, t, f = self.arrays["features"].shape
        _, m, words = self.arrays["news"].shape
        shapes = dict(n_events=n, n_rows=t, n_features=f, max_news=m, news_len=words)
        make = {"tiny": ModelConfig.tiny, "base": ModelConfig.base, "small": ModelConfig.small}[preset]
        text = text_encoder_name(self.meta.get("text_tokenizer"))
        return make(vocab=self.vocab(), text_vocab=self.text_vocab(), text_encoder=text, **shapes)

    def batch(self, idx: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        """The windows `idx` as tensors on `device`, with targets and labels where present."""
        out = to_batch({k: self.arrays[k][idx] for k in self._model_keys if k in self.arrays}, device)
        if self.has_targets:
            y, valid = self._targets
            out["targets"] = torch.from_numpy(y[idx]).to(device)
            out["target_valid"] = torch.from_numpy(valid[idx]).to(device)
        if self.has_labels:
            out["label"] = torch.from_numpy(self.arrays["label"][idx].astype(np.int64)).to(device)
        return out

    _model_keys = INPUT_FIELDS  # the headlines' age where the set has it (written since 2026-12-03)

    def __post_init__(self) -> None:
        self._targets = self.targets() if self.has_targets else None


def target_stats(y: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-target median and mean absolute deviation from it over valid entries (floored at 1e-3;
    0/1 where none). Robust on purpose: a few real spreads of thousands of ticks made the std 40x
    the typical change, so the standardized targets the head learns all sat near 0."""
    loc, scale = np.zeros(y.shape[1], np.float32), np.ones(y.shape[1], np.float32)
    for j in range(y.shape[1]):
        v = y[valid[:, j], j].astype(np.float64)
        if len(v):
            loc[j] = np.median(v)
            scale[j] = max(float(np.abs(v - loc[j]).mean()), 1e-3) if len(v) > 1 else 1.0
    return loc, scale


@torch.no_grad()
def _anchors(
    model: OrderFlowModel, data: TrainData, device: torch.device, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """(band median (B, 8), scale (B, 8)) of OrderFlowModel.anchor over every window."""
    medians, scales = [np.zeros((0, len(TARGETS)), np.float32)], [np.zeros((0, len(TARGETS)), np.float32)]
    for lo in range(0, len(data), chunk):
        band, scale, _ = model.anchor(data.batch(np.arange(lo, min(lo + chunk, len(data))), device))
        medians.append(band[..., 1].cpu().numpy())
        scales.append(scale.cpu().numpy())
    return np.concatenate(medians), np.concatenate(scales)


def anchored_targets(model: OrderFlowModel, data: TrainData, device: torch.device) -> np.ndarray:
    """(B, 8) every window's targets as the head sees them at the median: (y - band_q50) / scale of
    OrderFlowModel.anchor."""
    median, scale = _anchors(model, data, device)
    return (data._targets[0] - median) / scale


@dataclass(frozen=True)
class UnitWeighting:
    """How loss_parts weighs each (window, target) pinball: a UNIT_LOSS_TARGETS target (`unit`, (8,)
    bool) by its anchor scale over `reference` (8,), the rest by 1. Built once per run, on the
    training device, so that a step copies nothing from the host."""

    unit: torch.Tensor
    reference: torch.Tensor

    def __call__(self, scale: torch.Tensor) -> torch.Tensor:
        return torch.where(self.unit, scale / self.reference, 1.0)

    @classmethod
    def of(cls, reference: torch.Tensor) -> UnitWeighting:
        unit = torch.tensor([t in UNIT_LOSS_TARGETS for t in TARGETS], device=reference.device)
        return cls(unit, reference)


def band_scale_reference(model: OrderFlowModel, data: TrainData, device: torch.device) -> UnitWeighting:
    """The weighting whose reference is each target's mean anchor scale over the windows where it
    is valid (1 where none)."""
    _, scale = _anchors(model, data, device)
    valid = data._targets[1]
    ref = np.ones(len(TARGETS), np.float32)
    for j in range(len(TARGETS)):
        if valid[:, j].any():
            ref[j] = scale[valid[:, j], j].mean()
    return UnitWeighting.of(torch.from_numpy(ref).to(device))


def fit_normalization(model: OrderFlowModel, data: TrainData, device: torch.device, targets: bool = True) -> None:
    """The model's buffers from the training data: the feature rows' mean/std (so the anchor reads
    raw levels), the lots of each size token (the volume anchor), then, if `targets`, the
    location/scale of each anchored target (what the head predicts)."""
    mean, std = data.meta.get("feature_mean"), data.meta.get("feature_std")
    if mean is not None and std is not None and len(mean) == model.config.n_features:
        model.feature_loc.copy_(torch.tensor(mean, dtype=torch.float32))
        model.feature_scale.copy_(torch.tensor(std, dtype=torch.float32))
    medians = (data.meta.get("tokenizer") or {}).get("size_medians")
    if medians:
        lots = torch.zeros_like(model.size_lots)
        n = min(len(medians), len(lots) - 1)
        lots[1 : 1 + n] = torch.tensor(medians[:n], dtype=torch.float32)  # size id i is bucket i - 1
        model.size_lots.copy_(lots)
    if targets and data.has_targets:
        loc, scale = target_stats(anchored_targets(model, data, device), data._targets[1])
        model.target_loc.copy_(torch.from_numpy(loc))
        model.target_scale.copy_(torch.from_numpy(scale))


def targets_fitted(model: OrderFlowModel) -> bool:
    """Whether the target location/scale buffers hold fitted statistics, not their initial 0 and 1."""
    return bool((model.target_loc != 0).any() or (model.target_scale != 1).any())


def sampling_probabilities(data: TrainData, real_weight: float) -> np.ndarray | None:
    """Per-window draw probabilities giving each real-capture window (negative seed) `real_weight`
    times a simulated one's chance; None (uniform) at 1 or where the data has one kind only. Why:
    the real captures are a fifth of the demo's windows and the spread of a liquid real book
    behaves unlike the simulator's (one tick nearly always, rare blow-outs). A higher weight helped
    the real spread and hurt the real mid and volume forecasts (docs/design.md, "Model decisions");
    the demo trains at 1."""
    if real_weight <= 0:
        raise ValueError(f"real_weight {real_weight}: must be > 0")
    seed = data.arrays.get("seed")
    if real_weight == 1.0 or seed is None or (seed < 0).all() or (seed >= 0).all():
        return None
    w = np.where(seed < 0, real_weight, 1.0)
    return w / w.sum()


def probability_sampler(n: int, draw: np.ndarray | None) -> Sampler:
    """Windows drawn with replacement, uniformly or with the probabilities `draw`."""

    def sample(rng: np.random.Generator, batch: int) -> np.ndarray:
        return rng.integers(0, n, size=batch) if draw is None else rng.choice(n, batch, p=draw)

    return sample


def class_weights(labels: np.ndarray, n_classes: int = len(ANOMALY_CLASSES), cap: float = 50.0) -> np.ndarray:
    """Inverse-frequency weights normalized so that the average window weighs 1; classes that
    never occur get 0, and no class weighs more than `cap` times the mean."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return np.minimum(w, cap).astype(np.float32)


# --------------------------------------------------------------------------- objectives


def pinball(
    pred: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean pinball loss over valid (window, target) pairs, summed over the quantiles:
    rho_q(u) = max(q u, (q - 1) u), u = y - pred (Koenker & Bassett 1978). `pred` and `y`: (B, 8, 3),
    a target per quantile (each is standardized against its own band end); `weight` (B, 8): each
    pair's weight (1 if None)."""
    q = torch.tensor(QUANTILES, device=pred.device, dtype=pred.dtype)
    u = y - pred
    loss = torch.maximum(q * u, (q - 1) * u).sum(-1)
    v = valid.float()
    w = v if weight is None else v * weight
    return (loss * w).sum() / v.sum().clamp(min=1.0)


def loss_parts(
    model: OrderFlowModel,
    out: dict,
    batch: dict[str, torch.Tensor],
    stage: str,
    weights: torch.Tensor | None,
    unit_weighting: UnitWeighting | None = None,
) -> dict[str, torch.Tensor]:
    """The stage's objective and its components (float32 scalars). `weights`: the anomaly classes'
    (class_weights); `unit_weighting`: band_scale_reference of the training windows.

    The pinball loss of a UNIT_LOSS_TARGETS window's standardized target is weighed by its anchor
    scale over the reference: rho is positively homogeneous, so that is the loss in the target's
    units over a constant, what evaluation scores (model.network.orderflow.UNIT_LOSS_TARGETS says why)."""
    nll, valid = next_event_nll(out["next"], batch)
    parts = {"nll": nll.sum() / valid.sum().clamp(min=1)}
    if stage == "pretrain":
        parts["loss"] = parts["nll"]
        return parts
    total = NLL_WEIGHT_FINETUNE * parts["nll"]
    if "targets" in batch:
        # per quantile: its own anchor (the band), so y is (B, 8, 3)
        y = (batch["targets"][..., None] - out["anchor"]) / out["anchor_scale"][..., None]
        y = (y - model.target_loc[:, None]) / model.target_scale[:, None]
        weight = None if unit_weighting is None else unit_weighting(out["anchor_scale"])
        parts["pinball"] = pinball(out["quantiles_norm"], y, batch["target_valid"], weight)
        total = total + parts["pinball"]
    if "label" in batch:
        parts["anomaly_ce"] = F.cross_entropy(out["anomaly"], batch["label"], weight=weights)
        total = total + parts["anomaly_ce"]
    parts["loss"] = total
    return parts


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 10% of `base` at `total`."""
    if step < warmup:
        return base * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0))))


def make_optimizer(model: OrderFlowModel, lr: float, weight_decay: float = 0.01) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on norms, biases, embeddings' positions)."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "pos" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "pos" not in n)]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


# --------------------------------------------------------------------------- calibration, curves


@torch.no_grad()
def calibrate(
    model: OrderFlowModel, data: TrainData, device: torch.device, k: int = SURPRISE_K, max_windows: int | None = None
) -> dict[str, Any]:
    """The 101 percentiles of the surprise over the training windows labeled normal (all windows where
    the data has no labels; `max_windows`: at most that many, evenly spaced)."""
    idx = np.arange(len(data))
    if data.has_labels:
        idx = idx[data.arrays["label"] == 0]
    if len(idx) == 0:
        return {"k": k, "quantiles": None, "windows": 0}
    if max_windows is not None and max_windows < len(idx):
        idx = idx[np.linspace(0, len(idx) - 1, max_windows).astype(np.int64)]
    model.eval()
    values = []
    for chunk in np.array_split(idx, max(1, math.ceil(len(idx) / 256))):
        b = data.batch(chunk, device)
        with _autocast(device):
            out = model(b)
        values.append(surprise(*next_event_nll(out["next"], b), k).float().cpu().numpy())
    s = np.concatenate(values)
    return {"k": k, "quantiles": np.percentile(s, np.arange(101)).tolist(), "windows": len(s)}


@torch.no_grad()
def _recalibration_inputs(
    model: OrderFlowModel, data: TrainData, idx: np.ndarray, device: torch.device, chunk: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What the recalibration reads of the windows `idx`: the head's quantiles (N, 8, 3), the band each
    target's bins are read off (RECAL_BAND's: the mid's is its spread's), the newest headline's age
    (N,) (inf: none, or a model not told), whether each is a window of a book of price levels, and the
    EWMA's band (N, 8, 3) the served quantiles are combined with (`classic_band`)."""
    model.eval()
    head, bands, ages, level, classic = [], [], [], [], []
    for lo in range(0, len(idx), chunk):
        b = data.batch(idx[lo : lo + chunk], device)
        with _autocast(device):
            out = model(b)
        head.append(out["quantiles_head"].float().cpu().numpy())
        bands.append(out["anchor"].float().cpu().numpy())
        age = model.headline_age(b)
        ages.append(np.full(len(head[-1]), np.inf) if age is None else age.cpu().numpy())
        level.append(model.level_book_windows(b).cpu().numpy())
        classic.append(model.classic_band(b).float().cpu().numpy())
    band = np.concatenate(bands)[:, RECAL_BAND]
    return np.concatenate(head), band, np.concatenate(ages), np.concatenate(level), np.concatenate(classic)


def _recalibrated_crps(
    q: np.ndarray, y: np.ndarray, valid: np.ndarray, supports: list[Callable[[np.ndarray], np.ndarray] | None]
) -> dict[str, float]:
    """target -> CRPS (evaluate's, 6 places) of the quantiles `q` (N, 8, 3) on their support, over each
    target's known windows, for the recalibrated targets that have any: a recalibration fit's record."""
    out = {}
    for j, support in enumerate(supports):
        ok = valid[:, j]
        if support is not None and ok.any():
            out[TARGETS[j]] = round(crps_quantiles(y[ok, j], support(q[ok, j]), QUANTILES), 6)
    return out


@torch.no_grad()
def fit_recalibration(
    model: OrderFlowModel, data: TrainData, device: torch.device, chunk: int = 512, keep_edges: bool = False
) -> dict[str, Any]:
    """Fit the model's recalibration buffers (recal_edges, recal_coef) on every training window
    for RECALIBRATED_TARGETS (spread, mid); returns the training-set CRPS (evaluate's) per
    target before and after, for the record. `keep_edges`: keep the model's own bin edges (where
    fitted) and refit the maps only."""
    raw, band, age, level, classic = _recalibration_inputs(model, data, np.arange(len(data)), device, chunk)
    y, valid = data._targets
    supports = recalibration_supports()
    floors = [recal_floor_edge_of(t) for t in TARGETS]
    kept = model.recal_edges.cpu().numpy() if keep_edges else None
    edges, coef = recalibration.fit(raw, band, y, valid, QUANTILES, supports, floors, edges=kept)
    if not keep_edges and bool(model.l2_recal_fitted.any()):
        model.l2_recal_fitted.fill_(False)  # its bins were the edges' before
        log.info("the L2 books' level maps are switched off (fitted in the bins before this fit): train --stage "
                 "l2-recalibration refits them")  # fmt: skip
    news_coef, news_fitted = recalibration.fit_news(raw, age, y, valid, QUANTILES, supports, list(NEWS_SIDED))
    model.recal_edges.copy_(torch.from_numpy(edges))
    model.recal_coef.copy_(torch.from_numpy(coef))
    model.recal_news_coef.copy_(torch.from_numpy(news_coef))
    model.recal_news_fitted.copy_(torch.from_numpy(news_fitted))
    served = recalibration.apply(raw, band, edges, coef, (age, news_coef, news_fitted, list(NEWS_SIDED)))
    before = _recalibrated_crps(raw, y, valid, supports)
    report = {
        "windows": len(raw),
        "crps_before": before,
        "crps_after": _recalibrated_crps(served, y, valid, supports),
        "news_bins": {t: int(news_fitted[TARGETS.index(t)].sum()) for t in before},
    }
    log.info("recalibration on %d training windows: CRPS before %s, after %s", len(raw),
             report["crps_before"], report["crps_after"])  # fmt: skip
    return report | {"classic": _classic_weight(model, served, classic, level, y, valid)}


def _classic_weight(
    model: OrderFlowModel, served: np.ndarray, classic: np.ndarray, level: np.ndarray, y: np.ndarray, valid: np.ndarray
) -> dict[str, Any]:
    """Fit the model's classic_weight (recalibration.fit_classic_weight) on the windows that are not of a
    book of price levels, from their served quantiles (recalibrated, sorted) and the EWMA's band; the
    record: each target's weight, windows and CRPS before and after."""
    supports = recalibration_supports()
    targets = [TARGETS.index(t) for t in CLASSIC_TARGETS]
    q, e, yy, ok = served[~level], classic[~level], y[~level], valid[~level]
    weight, counts = recalibration.fit_classic_weight(q, e, yy, ok, QUANTILES, supports, targets)
    model.classic_weight.copy_(torch.from_numpy(weight.astype(np.float32)))
    combined = recalibration.combine_classic(q, e, weight)
    before, after = _recalibrated_crps(q, yy, ok, supports), _recalibrated_crps(combined, yy, ok, supports)
    report = {TARGETS[j]: {"weight": float(weight[j]), "windows": counts[j], "crps_before": before.get(TARGETS[j]),
                           "crps_after": after.get(TARGETS[j])} for j in targets}  # fmt: skip
    log.info("served quantiles combined with the EWMA's band: %s", report)
    return report


@torch.no_grad()
def fit_classic(model: OrderFlowModel, data: TrainData, device: torch.device, chunk: int = 512) -> dict[str, Any]:
    """The combination's weights alone (`train --stage classic-weight`), the recalibration as the model
    has it: what fit_recalibration fits at its end."""
    raw, band, age, level, classic = _recalibration_inputs(model, data, np.arange(len(data)), device, chunk)
    y, valid = data._targets
    news = (age, model.recal_news_coef.cpu().numpy(), model.recal_news_fitted.cpu().numpy(), list(NEWS_SIDED))
    served = recalibration.apply(raw, band, model.recal_edges.cpu().numpy(), model.recal_coef.cpu().numpy(), news)
    return {"windows": len(raw), **_classic_weight(model, served, classic, level, y, valid)}


@torch.no_grad()
def fit_l2_recalibration(
    model: OrderFlowModel, data: TrainData, device: torch.device, chunk: int = 512
) -> dict[str, Any]:
    """Fit the level maps of books of price levels (recalibration.fit_l2: l2_recal_coef, l2_recal_fitted)
    on the set's real L2 windows, in the bins of the model's own recalibration; returns their CRPS with
    the pooled maps and with these, per target and over those windows, for the record. Only when asked
    (`train --stage l2-recalibration` on the captures' files, as the L2 heads), never at finetune's end:
    the training set's captures are two Binance instruments and three small ones."""
    if not np.isfinite(model.recal_edges.cpu().numpy()).any():
        raise ValueError("fit the recalibration first (train --stage recalibration): the L2 maps use its bins")
    real = np.flatnonzero(data.real)
    raw, band, age, level, _ = _recalibration_inputs(model, data, real, device, chunk)
    k = real[level]
    if len(k) == 0:
        raise ValueError(f"{data.path}: no real window of a book of price levels to fit the L2 maps on")
    raw, band, age = raw[level], band[level], age[level]
    groups = capture_names(data.arrays, data.meta)[k]
    y, valid = data._targets[0][k], data._targets[1][k]
    supports = recalibration_supports()
    edges = model.recal_edges.cpu().numpy()
    coef, fitted = recalibration.fit_l2(raw, band, y, valid, QUANTILES, supports, edges)
    news = (age, model.recal_news_coef.cpu().numpy(), model.recal_news_fitted.cpu().numpy(), list(NEWS_SIDED))
    pooled = recalibration.apply(raw, band, edges, model.recal_coef.cpu().numpy(), news)
    served = recalibration.apply(raw, band, edges, model.recal_coef.cpu().numpy(), news,
                                 (np.ones(len(k), bool), coef, fitted))  # fmt: skip
    model.l2_recal_coef.copy_(torch.from_numpy(coef))
    model.l2_recal_fitted.copy_(torch.from_numpy(fitted))
    crps_pooled = _recalibrated_crps(pooled, y, valid, supports)
    report = {"windows": len(k), "captures": sorted(set(groups)),
              "bins": {t: int(fitted[TARGETS.index(t)].sum()) for t in crps_pooled},
              "crps_pooled": crps_pooled, "crps_l2": _recalibrated_crps(served, y, valid, supports)}  # fmt: skip
    log.info("L2 level maps on %d real L2 windows of %d captures: bins fitted %s, CRPS pooled maps %s, L2 maps %s",
             len(k), len(report["captures"]), report["bins"], report["crps_pooled"], report["crps_l2"])  # fmt: skip
    return report


@torch.no_grad()
def _direction_states(
    model: OrderFlowModel, data: TrainData, idx: np.ndarray, device: torch.device, chunk: int
) -> tuple[np.ndarray, np.ndarray]:
    """(states (n, D): what the direction heads read, `direction_input`; level (n,) bool: a window of a
    book of price levels) of the windows `idx`, the model in eval mode."""
    model.eval()
    states, level = [np.zeros((0, model.direction_head.in_features), np.float32)], [np.zeros(0, bool)]
    for lo in range(0, len(idx), chunk):
        b = data.batch(idx[lo : lo + chunk], device)
        with _autocast(device):
            out = model(b)
        states.append(out["direction_input"].float().cpu().numpy())
        level.append(model.level_book_windows(b).cpu().numpy())
    return np.concatenate(states), np.concatenate(level)


@torch.no_grad()
def fit_direction(model: OrderFlowModel, data: TrainData, device: torch.device, chunk: int = 512) -> dict[str, Any]:
    """Fit the model's direction head on every training window with a known mid move (the rest of the
    model frozen) and mark it fitted; returns the fit's report per horizon."""
    state, _ = _direction_states(model, data, np.arange(len(data)), device, chunk)
    y, valid = data._targets
    cols = [TARGETS.index(f"mid_h{h}") for h in DIRECTION_HORIZONS]
    weight, bias, report = direction.fit(state, y[:, cols], valid[:, cols], data.real)
    model.direction_head.weight.copy_(torch.from_numpy(weight))
    model.direction_head.bias.copy_(torch.from_numpy(bias))
    model.direction_fitted.fill_(True)
    report = {f"h{h}": report[str(i)] for i, h in enumerate(DIRECTION_HORIZONS)}
    log.info("direction head on %d training windows: log loss (prior -> fitted) %s", len(y),
             {h: (r["log_loss_prior"], r["log_loss"]) for h, r in report.items()})  # fmt: skip
    return report


@torch.no_grad()
def fit_l2_direction(model: OrderFlowModel, data: TrainData, device: torch.device, chunk: int = 512) -> dict[str, Any]:
    """Fit the direction head of books of price levels on the set's real L2 windows alone, each weighing
    the same, the penalty chosen per horizon leaving each capture out in turn (direction.fit_captures),
    and switch it on; returns the fit's report per horizon. The order books keep the direction head.

    Why on the captures alone, and only when asked (`train --stage l2-direction`, not at finetune's end):
    the simulator's direction does not carry over to a one-tick crypto book, but two training instruments
    are too few (model/network/direction.py). Refitted so on every capture but one
    (model/evaluation/direction_folds.py), it beat the served head on each instrument left out."""
    if not bool(model.direction_fitted):
        raise ValueError("fit the direction head first (train --stage direction): order books are served by it")
    real = np.flatnonzero(data.real)
    state, level = _direction_states(model, data, real, device, chunk)
    state, k = state[level], real[level]
    groups = capture_names(data.arrays, data.meta)[k]
    if len(set(groups)) < 2:
        raise ValueError(f"{data.path}: the L2 direction head needs real L2 windows of two captures at least")
    y, valid = data._targets
    cols = [TARGETS.index(f"mid_h{h}") for h in DIRECTION_HORIZONS]
    weight, bias, report = direction.fit(state, y[k][:, cols], valid[k][:, cols], np.ones(len(k), bool), groups)
    model.l2_direction_weight.copy_(torch.from_numpy(weight))
    model.l2_direction_bias.copy_(torch.from_numpy(bias))
    model.l2_direction_fitted.fill_(True)
    report = {"windows": len(k), "captures": sorted(set(groups))} | {
        f"h{h}": report[str(i)] for i, h in enumerate(DIRECTION_HORIZONS)
    }
    log.info("L2 direction head on %d real L2 windows of %d captures: penalty, log loss (prior -> fitted) %s",
             len(k), len(report["captures"]),
             {h: (report[h]["penalty"], report[h]["log_loss_prior"], report[h]["log_loss"])
              for h in (f"h{h}" for h in DIRECTION_HORIZONS)})  # fmt: skip
    return report


def _l2_head_windows(model: OrderFlowModel, data: TrainData, device: torch.device, chunk: int) -> np.ndarray:
    """The indices of the training windows the L2 heads serve (l2_depth_windows). The network is run over
    those alone afterwards: the simulator's books of orders are most of a training set and none of them
    (half the time on make checkpoint's eight captures; the same fit to the bit)."""
    chunks = [np.arange(lo, min(lo + chunk, len(data))) for lo in range(0, len(data), chunk)]
    return np.flatnonzero(np.concatenate([model.l2_depth_windows(data.batch(i, device)).cpu().numpy() for i in chunks]))


def _crps_report(name: str, y: np.ndarray, valid: np.ndarray, targets: tuple[str, ...], **served: np.ndarray) -> dict:
    """{"windows", "crps_<source>": {target: CRPS}} of each `served` (N, T, 3) on the windows where valid."""

    def crps(q: np.ndarray, h: int) -> float:
        ok = valid[:, h]
        return round(crps_quantiles(y[ok, h], q[ok, h], QUANTILES), 6)

    report = {"windows": len(y)}
    report |= {f"crps_{k}": {t: crps(q, h) for h, t in enumerate(targets)} for k, q in served.items()}
    log.info("%s on %d training windows: CRPS %s", name, len(y),
             ", ".join(f"{k} {report[f'crps_{k}']}" for k in served))  # fmt: skip
    return report


@torch.no_grad()
def fit_l2_depth(model: OrderFlowModel, data: TrainData, device: torch.device, chunk: int = 512) -> dict[str, Any]:
    """Fit the model's L2 depth head on the training set's L2 windows with a two-sided row (the rest
    of the model frozen) and switch it on; returns the windows' depth CRPS served by the network and
    by the head, per target (in-sample: a record, not an evaluation). Without L2 windows the model's
    head stays as it is; a model without the anchor (the book ablation) has no inputs for it."""
    if not model.config.anchors:
        log.info("L2 depth head: the model has no anchor (no book rows) to read its inputs off; not fitted")
        return {"windows": 0, "kept": bool(model.l2_depth_fitted)}
    model.eval()
    k = _l2_head_windows(model, data, device, chunk)
    if not len(k):
        log.info("L2 depth head: no L2 window in the training set; the model's head is kept")
        return {"windows": 0, "kept": bool(model.l2_depth_fitted)}
    inputs, medians, served = [], [], []
    j = model.l2_depth_index.cpu().numpy()
    for lo in range(0, len(k), chunk):
        b = data.batch(k[lo : lo + chunk], device)
        with _autocast(device):
            out = model(b)
            band, scale, stats = out["anchor"], out["anchor_scale"], out["anchor_stats"]
            network = model.network_quantiles(out["quantiles_head"], band)
        inputs.append(model.l2_depth_inputs(scale, stats).float().cpu().numpy())
        medians.append(band[:, j[0], 1].float().cpu().numpy())
        served.append(network[:, j].float().cpu().numpy())
    x, median, network = np.concatenate(inputs), np.concatenate(medians), np.concatenate(served)
    y, valid = data._targets[0][k][:, j], data._targets[1][k][:, j]
    weight, bias = l2_depth.fit(x, median, y, valid)
    model.l2_depth_weight.copy_(torch.from_numpy(weight))
    model.l2_depth_bias.copy_(torch.from_numpy(bias))
    model.l2_depth_fitted.fill_(True)
    head = l2_depth.predict(x, median, weight, bias)
    return _crps_report("L2 depth head", y, valid, L2_DEPTH_TARGETS, network=network, head=head)


@torch.no_grad()
def fit_l2_volume(model: OrderFlowModel, data: TrainData, device: torch.device, chunk: int = 512) -> dict[str, Any]:
    """Fit the model's L2 volume head (model/network/l2_volume.py) on the training set's windows that the
    L2 heads serve (the rest of the model frozen) and switch it on, with its weight against each book's
    record of realized volumes (`_l2_volume_record_weight`); returns their volume CRPS served by the
    network (as it was before the head), by the head and by the head with the record, per target
    (in-sample), and the weights. Without L2 windows,
    or in a model without book rows (the head's inputs), the model's head stays as it is."""
    if not model.config.use_rows:
        log.info("L2 volume head: the model reads no book rows, the head's inputs; not fitted")
        return {"windows": 0, "kept": bool(model.l2_volume_fitted)}
    model.eval()
    k = _l2_head_windows(model, data, device, chunk)
    if not len(k):
        log.info("L2 volume head: no L2 window in the training set; the model's head is kept")
        return {"windows": 0, "kept": bool(model.l2_volume_fitted)}
    j = model.l2_volume_index.cpu().numpy()
    inputs, served = [], []
    for lo in range(0, len(k), chunk):
        b = data.batch(k[lo : lo + chunk], device)
        with _autocast(device):
            out = model(b)
            network = model.network_quantiles(out["quantiles_head"], out["anchor"])  # the volume before the head
        inputs.append(model.l2_volume_inputs(b).float().cpu().numpy())
        served.append(network[:, j].float().cpu().numpy())
    x, network = np.concatenate(inputs), np.concatenate(served)
    y, valid = data._targets[0][k][:, j], data._targets[1][k][:, j]
    try:
        loc, scale, coef = l2_volume.fit(x, y, valid)
    except ValueError as e:
        log.info("%s; the model's head is kept", e)
        return {"windows": 0, "kept": bool(model.l2_volume_fitted)}
    model.l2_volume_loc.copy_(torch.from_numpy(loc))
    model.l2_volume_scale.copy_(torch.from_numpy(scale))
    model.l2_volume_coef.copy_(torch.from_numpy(coef))
    model.l2_volume_fitted.fill_(True)
    head = l2_volume.predict(x, loc, scale, coef, QUANTILES)
    weight, counts, record = _l2_volume_record_weight(data, k, x, y, valid)
    model.l2_volume_record_weight.copy_(torch.from_numpy(weight))
    report = _crps_report("L2 volume head", y, valid, L2_VOLUME_TARGETS, network=network, head=head,
                          served=l2_volume.with_record(head, record, weight))  # fmt: skip
    log.info("L2 volume head: its weight against the book's record %s (chosen on %s windows)",
             weight.round(2).tolist(), counts)  # fmt: skip
    return report | {"record_weight": weight.round(2).tolist(), "record_windows": counts}


def _l2_volume_record_weight(
    data: TrainData, k: np.ndarray, x: np.ndarray, y: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, list[int], np.ndarray]:
    """(weights (H,), the windows each was chosen on, the record's quantiles (N, H, 3)): the L2 volume
    head's weight per horizon against each book's record of realized volumes (a window's `volume_record`,
    orderbook/volume_record.py; baselines.volume_levels reads it off the targets), chosen on the head's
    quantiles out of fold (each capture's by a head fitted on the others: a head scored on its own fit
    looks better than it serves a new instrument). Ones (the head alone) without the datasets' `message`,
    or with one capture."""
    ones = np.ones(len(L2_VOLUME_TARGETS))
    nan = np.full((len(k), len(L2_VOLUME_TARGETS), len(QUANTILES)), np.nan)
    if "message" not in data.arrays or len(np.unique(data.arrays["seed"][k])) < 2:
        return ones, [0] * len(ones), nan
    record = volume_records(data.arrays, L2_VOLUME_HORIZONS)[k]
    oof = l2_volume.out_of_fold(x, y, valid, data.arrays["seed"][k], QUANTILES)
    weight, counts = l2_volume.fit_record_weight(oof, record, y, valid, QUANTILES)
    return weight, counts, record


CHAIN_WINDOWS = 24_000  # windows whose states the event chain is fitted on (at random beyond that): bounds its memory


@torch.no_grad()
def event_states(
    model: OrderFlowModel,
    data: TrainData,
    windows: np.ndarray,
    device: torch.device,
    rng: np.random.Generator,
    chunk: int = 512,
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """The network's states (S, d) at up to event_chain.POSITIONS real events of each of `windows` (drawn
    with `rng` where a window has more), the ids of the event after each (field -> (S,)), and the window
    each state is of (S,): what the event chain is fitted and checked on."""
    states, owner = [], []
    targets: dict[str, list[np.ndarray]] = {f: [] for f in FIELDS}
    for lo in range(0, len(windows), chunk):
        idx = windows[lo : lo + chunk]
        b = data.batch(idx, device)
        with _autocast(device):
            events = model.event_states(b).float()
        pairs = (b["mask"][:, :-1] & b["mask"][:, 1:]).cpu().numpy()
        for r, row in enumerate(pairs):
            at = np.flatnonzero(row)
            if len(at) > event_chain.POSITIONS:
                at = np.sort(rng.choice(at, event_chain.POSITIONS, replace=False))
            if not len(at):
                continue
            states.append(events[r, at].cpu().numpy())
            owner.append(np.full(len(at), idx[r]))
            for f in FIELDS:
                targets[f].append(b[f][r, at + 1].cpu().numpy())
    if not states:
        return (
            np.zeros((0, model.config.d_model), np.float32),
            {f: np.zeros(0, np.int64) for f in FIELDS},
            np.zeros(0, int),
        )
    return np.concatenate(states), {f: np.concatenate(v) for f, v in targets.items()}, np.concatenate(owner)


def fit_event_chain(model: OrderFlowModel, data: TrainData, device: torch.device, chunk: int = 512) -> dict[str, Any]:
    """Fit the scenario generator's event chain (model/network/event_chain.py) on the frozen network's states
    at up to event_chain.POSITIONS real events of each of up to CHAIN_WINDOWS training windows, each state's
    target the event after it; switched on only if it lowers the held-out windows' NLL. Returns the per-field
    NLL of the held-out states, the network's factorized heads' and the chain's."""
    model.eval()
    rng = np.random.default_rng(0)
    windows = np.arange(len(data))
    if len(windows) > CHAIN_WINDOWS:
        windows = np.sort(rng.choice(windows, CHAIN_WINDOWS, replace=False))
    states, targets, owner = event_states(model, data, windows, device, rng, chunk)
    if not len(states):
        log.info("event chain: no window with two events; the model's chain is kept")
        return {"windows": 0, "kept": bool(model.event_chain.fitted)}
    model.cpu()  # the states are in memory: the fit is small (4 MLPs over d_model + 64 inputs)

    def base(h: torch.Tensor) -> dict[str, torch.Tensor]:
        return {f: model.next_heads[f](h) for f in FIELDS}

    report = event_chain.fit(model.event_chain, states, base, targets, owner, log=log.info)
    model.to(device)
    log.info("event chain on %d states (%d held out): NLL per field, factorized %s, chain %s; %s", report["states"],
             report["held_out_states"], report["nll_factorized"], report["nll_chain"],
             "switched on" if report["fitted"] else "left off (no better)")  # fmt: skip
    return {"windows": len(windows), **report}


HeadFit = Callable[[OrderFlowModel, TrainData, torch.device], dict[str, Any]]
# the heads fitted after training on the frozen network, in order, and the checkpoint entry of each
HEADS: dict[str, HeadFit] = {
    "direction": fit_direction,
    "l2_depth": fit_l2_depth,
    "l2_volume": fit_l2_volume,
    "event_chain": fit_event_chain,
}
# every post-hoc part `fit_head` fits: HEADS, those fitted only when asked, and the recalibration that finetune
# fits before HEADS (it reads the network alone, so refitting it on a finished checkpoint is what finetune would fit)
POST_HOC_HEADS: dict[str, HeadFit] = HEADS | {"l2_direction": fit_l2_direction, "recalibration": fit_recalibration,
                                               "l2_recalibration": fit_l2_recalibration,
                                               "classic_weight": fit_classic,
                                               "calibration": calibrate}  # fmt: skip


def fit_head(
    head: str,
    init: str | Path,
    data_paths: str | Path | list[str | Path],
    out_dir: str | Path,
    device: str = "auto",
    loaded: TrainData | None = None,
) -> Path:
    """`init` with its post-hoc `head` (POST_HOC_HEADS) fitted on the files `data_paths` together (each
    encoded as `init`: its training set or `dataset --like` it), written to `out_dir`; every other weight
    and entry as `init` has it. `loaded`: windows in memory fitted beside the files (adapt's recent ones),
    named by their `path`. The head's entry records the files (`data`: one path, or a list of them):
    evaluate counts their seeds as seen (model.evaluation.outputs.head_seeds)."""
    if head not in POST_HOC_HEADS:
        raise ValueError(f"head {head!r}: use one of {tuple(POST_HOC_HEADS)}")
    paths = [data_paths] if isinstance(data_paths, str | Path) else list(data_paths)
    dev = pick_device(device)
    model, config, extra = checkpoint.load(init, dev)
    parts = [] if loaded is None else [loaded]
    for path in paths:
        parts.append(TrainData.load(path))
    for part in parts:
        if not part.has_targets:
            raise ValueError(f"{part.path}: no targets to fit the {head} head on")
        check_encoding(part.meta, str(part.path), extra, str(init))
    report = POST_HOC_HEADS[head](model, TrainData.concat(parts), dev)
    if not bool(model.l2_recal_fitted.any()):
        extra.pop("l2_recalibration", None)  # switched off by a refit of the recalibration's bins
    names = [str(part.path) for part in parts]
    return checkpoint.save(model, config, {**extra, head: {"data": names[0] if len(names) == 1 else names, **report}},
                           out_dir)  # fmt: skip


def write_curves(history: list[dict[str, float]], out_dir: Path) -> None:
    """losses.csv (one row per step) and curves.png (each loss and the learning rate by step)."""
    with open(out_dir / "losses.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOSS_COLUMNS, restval="")
        w.writeheader()
        w.writerows(history)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=(3, 1))
    steps = [h["step"] for h in history]
    for name in ("loss", "nll", "pinball", "anomaly_ce"):
        ys = [h.get(name, math.nan) for h in history]
        if any(isinstance(y, float) and math.isfinite(y) for y in ys):
            ax.plot(steps, ys, label=name, linewidth=0.8)
    ax.set_ylabel("training loss")
    ax.legend()
    ax.grid(alpha=0.3)
    ax_lr.plot(steps, [h["lr"] for h in history], color="gray")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out_dir / "curves.png", dpi=100)
    plt.close(fig)


def read_history(out_dir: Path, upto: int) -> list[dict[str, float]]:
    path = out_dir / "losses.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]
    for r in rows:
        r["step"] = int(r["step"])
    return [r for r in rows if r["step"] <= upto]


# --------------------------------------------------------------------------- the loop


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device is available")
    return torch.device(device)


def environment(device: torch.device) -> dict[str, Any]:
    """What the floats of a run hang on besides code, data and seed: one-thread CPU training is
    deterministic on one machine, but another torch build or CPU (another SIMD path: AVX-512 or AVX2)
    rounds otherwise and trains another network (README, "Reproducing it")."""
    import platform

    env = {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(), "cpu": cpu_model(),
           "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}  # fmt: skip
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _autocast(device: torch.device):
    """bf16 autocast on CUDA (docs/design.md: bf16 on GPU); full precision on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def _rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    rng = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def _restore_rng(rng: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(rng["torch"])
    if device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"], device)


@dataclass
class Run:
    """What a training run ends with."""

    out_dir: Path
    step: int
    history: list[dict[str, float]]
    calibration: dict[str, Any] | None
    n_parameters: int
    steps_per_s: float


def train(
    stage: str,
    data_path: str | Path,
    out_dir: str | Path,
    init: str | Path | None = None,
    steps: int = 2000,
    batch: int = 64,
    lr: float | None = None,
    device: str = "auto",
    seed: int = 0,
    resume: bool = False,
    preset: str = "small",
    checkpoint_every: int = 500,
    log_every: int = 50,
    warmup: int | None = None,
    calib_windows: int | None = None,
    stop_at: int | None = None,
    without: tuple[str, ...] = (),
    real_weight: float = 1.0,
    sampler: Sampler | None = None,
    data: TrainData | None = None,
    recalibration: str = "refit",
) -> Run:
    """Train and checkpoint into `out_dir` (see the module docstring). `init`: a checkpoint to
    start from (its config wins over `preset`); `resume`: continue `out_dir`'s own run up to
    `steps`; `stop_at`: end after that step as if interrupted (checkpoint written, no calibration);
    `without`: parts left out for an ablation, "rows" (the book series), "news" (the text) and/or "news_age"
    (each headline's age, which a fresh model reads where the data has it);
    `real_weight`: how much more often a window of a real capture is drawn than a simulated one;
    `sampler`: draws each batch instead (model/training/adapt.py mixes recent and replayed windows);
    `data`: the windows already loaded (a set assembled in memory), `data_path` then only names them;
    `recalibration` (finetune): "refit" its bins and maps on the training windows, "maps": refit the maps
    in `init`'s bins, "keep": `init`'s as they are (fit_recalibration; adapt.py says why it keeps them).
    """
    if recalibration not in RECALIBRATION_MODES:
        raise ValueError(f"recalibration {recalibration!r}: use one of {RECALIBRATION_MODES}")
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r}: use one of {STAGES}")
    dev = pick_device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = data if data is not None else TrainData.load(data_path)
    if len(data) == 0:
        raise ValueError(f"{data_path}: no windows")
    lr = lr if lr is not None else (1e-3 if stage == "pretrain" else 3e-4)
    warmup = warmup if warmup is not None else min(200, max(1, steps // 20))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    model, config, extra = _initial_model(stage, data, init, preset, resume, out, without)
    model.to(dev)
    opt = make_optimizer(model, lr)
    start, history = 0, []
    if resume:
        start, history = _resume(out, opt, rng, dev, stage)
    else:
        # A head trained in one unit of its targets continues in it: refitted on a fine-tuning set
        # of other data, the demo's spread and mid scales shrank 10-25x, which rescales every
        # quantile the head serves at step 0. From a pretrained checkpoint of the same data the
        # statistics are the same ones (the demo's pretrain and finetune buffers are bit-equal).
        fit_normalization(model, data, dev, targets=init is None or not targets_fitted(model))
    unit_weighting = band_scale_reference(model, data, dev) if stage == "finetune" and data.has_targets else None
    weights = None
    if data.has_labels:
        weights = torch.from_numpy(class_weights(data.arrays["label"].astype(np.int64))).to(dev)

    meta = {"stage": stage, "data": str(data_path), "init": str(init) if init else None, "seed": seed,
            "batch": batch, "lr": lr, "warmup": warmup, "steps": steps, "device": str(dev),
            "real_weight": real_weight, "environment": environment(dev)}  # fmt: skip
    sample = sampler or probability_sampler(len(data), sampling_probabilities(data, real_weight))

    recal: dict | None = None
    heads: dict[str, Any] = {}

    def save_all(step: int, calibration: dict | None) -> None:
        info = {**extra, "calibration": calibration, "recalibration": recal, **heads, "train": {**meta, "step": step}}
        checkpoint.save(model, config, info, out)
        state = {"step": step, "numpy_rng": rng.bit_generator.state, "meta": meta}
        checkpoint.save_train_state(out, opt, _rng_tensors(dev), state)
        write_curves(history, out)

    end = min(steps, stop_at) if stop_at is not None else steps
    log.info(
        "%s: %d windows, %s parameters on %s, steps %d..%d, batch %d",
        stage, len(data), f"{model.num_parameters():,}", dev, start, end, batch,
    )  # fmt: skip
    rate = _loop(model, opt, data, sample, rng, dev, stage, (weights, unit_weighting), history, save_all,
                 start=start, end=end, total=steps, batch=batch, lr=lr, warmup=warmup,
                 checkpoint_every=checkpoint_every, log_every=log_every)  # fmt: skip
    calibration = None
    if end >= steps:
        calibration = calibrate(model, data, dev, max_windows=calib_windows)
        if stage == "finetune" and data.has_targets:
            if recalibration == "keep":
                recal = {"kept": str(init)}
            else:
                recal = fit_recalibration(model, data, dev, keep_edges=recalibration == "maps")
            for name, fit in HEADS.items():
                heads[name] = {"data": str(data_path), **fit(model, data, dev)}
    save_all(end, calibration)
    return Run(out, end, history, calibration, model.num_parameters(), rate)


def _loop(
    model, opt, data, sample, rng, dev, stage, loss_weights, history, save_all, *, start, end, total, batch, lr,
    warmup, checkpoint_every, log_every,
) -> float:  # fmt: skip
    """The optimization steps start+1..end; returns steps per second. `loss_weights`: loss_parts'
    (weights, unit_weighting)."""
    from tqdm import tqdm

    model.train()
    t0 = time.perf_counter()
    elapsed0 = history[-1]["elapsed_s"] if history else 0.0
    pending: list[tuple[int, float, dict[str, torch.Tensor]]] = []
    bar = tqdm(total=total, initial=start, unit="step", desc=stage, disable=None)
    for step in range(start, end):
        idx = sample(rng, batch)
        b = data.batch(idx, dev)
        step_lr = lr_at(step, total, lr, warmup)
        for g in opt.param_groups:
            g["lr"] = step_lr
        with _autocast(dev):
            out = model(b)
        parts = loss_parts(model, out, b, stage, *loss_weights)
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        pending.append((step + 1, step_lr, {k: v.detach() for k, v in parts.items()}))
        done = step + 1
        if done % log_every == 0 or done == end or done % checkpoint_every == 0:
            _flush(pending, history, elapsed0 + time.perf_counter() - t0)
            rate = (done - start) / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{history[-1]['loss']:.4f}", steps_s=f"{rate:.2f}")
            log.info(
                "step %d/%d loss %.4f nll %.4f lr %.2e  %.2f steps/s %.0f windows/s",
                done, total, history[-1]["loss"], history[-1]["nll"], step_lr, rate, rate * batch,
            )  # fmt: skip
        if done % checkpoint_every == 0 and done < end:
            save_all(done, None)
        bar.update(1)
    bar.close()
    _flush(pending, history, elapsed0 + time.perf_counter() - t0)
    return (end - start) / max(time.perf_counter() - t0, 1e-9)


def _flush(pending: list, history: list[dict[str, float]], elapsed: float) -> None:
    """Move the pending per-step losses to the host in one go (one device sync per log line)."""
    for step, step_lr, parts in pending:
        row = {"step": step, "lr": step_lr, "elapsed_s": round(elapsed, 3)}
        row.update({k: float(v) for k, v in parts.items()})
        history.append(row)
    pending.clear()


def _initial_model(
    stage: str,
    data: TrainData,
    init: str | Path | None,
    preset: str,
    resume: bool,
    out: Path,
    without: tuple[str, ...] = (),
) -> tuple[OrderFlowModel, ModelConfig, dict[str, Any]]:
    """The model to train (fresh, from `init`, or `out`'s own checkpoint when resuming) and the
    checkpoint extras carried from the data: tokenizer, feature normalization, window shapes.
    `without` switches parts off (a checkpoint's own switches are kept otherwise). Data from `init` or
    `out` must be encoded as that checkpoint (model.inputs.EncodingMismatch otherwise: `megatrading
    dataset --like` it), so the checkpoint written carries the encoding it started from."""
    unknown = set(without) - set(ABLATIONS)
    if unknown:
        raise ValueError(f"without {sorted(unknown)}: the parts that can be left out are {ABLATIONS}")
    off = {f"use_{part}": False for part in without}
    extra = {
        "tokenizer": data.meta.get("tokenizer"),
        "text_tokenizer": data.meta.get("text_tokenizer"),
        "feature_mean": data.meta.get("feature_mean"),
        "feature_std": data.meta.get("feature_std"),
        "feature_names": data.meta.get("feature_names"),
        "window": data.meta.get("window"),
        "horizons": data.meta.get("horizons", [10, 100]),
        "targets": list(TARGETS),
        "quantiles": list(QUANTILES),
        "classes": list(ANOMALY_CLASSES),
    }
    source = out if resume else (Path(init) if init else None)
    if source is None:
        if stage == "finetune":
            log.warning("finetune without --init: training from scratch")
        # a set written since 2026-12-03 carries the headlines' ages, and a fresh model reads them
        config = dataclasses.replace(data.model_config(preset), **({"use_news_age": NEWS_AGE in data.arrays} | off))
        return OrderFlowModel(config), config, extra
    model, config, source_extra = checkpoint.load(source, "cpu")
    # the weights learned what these ids and normalized rows meant: data encoded otherwise would be
    # read as something else (and the checkpoint written would carry the data's encoding, not theirs)
    check_encoding(data.meta, str(data.path), source_extra, str(source))
    # the post-hoc parts of L2 books that read the network's outputs, which this run moves; only `fit_head`
    # refits them (adapt does, from the files they were fitted on)
    for fitted, part, stage in ((model.l2_recal_fitted, "books' level maps", "l2-recalibration"),
                                (model.l2_direction_fitted, "direction head", "l2-direction")):  # fmt: skip
        if bool(fitted.any()) and not resume:
            fitted.fill_(False)
            log.info("%s: its L2 %s switched off (fitted on the network before this run); train --stage %s "
                     "refits it", source, part, stage)  # fmt: skip
    model.config = config = dataclasses.replace(config, **off)
    want = data.model_config(preset)
    for name in ("n_events", "n_rows", "n_features", "max_news", "news_len", "text_encoder"):
        if getattr(config, name) != getattr(want, name):
            raise ValueError(f"{source}: {name} {getattr(config, name)} != the data's {getattr(want, name)}")
    for f in FIELDS:
        if want.vocab[f] > config.vocab[f] or want.text_vocab > config.text_vocab:
            raise ValueError(f"{source}: vocabulary of {f} is smaller than the data's ids")
    return model, config, extra


def _resume(out: Path, opt, rng: np.random.Generator, dev: torch.device, stage: str) -> tuple[int, list]:
    tensors, rng_t, state = checkpoint.load_train_state(out)
    if state["meta"]["stage"] != stage:
        raise ValueError(f"{out}: holds a {state['meta']['stage']} run, not {stage}")
    checkpoint.restore_optimizer(opt, tensors, state)
    _restore_rng(rng_t, dev)
    rng.bit_generator.state = state["numpy_rng"]
    step = int(state["step"])
    log.info("resuming %s at step %d", out, step)
    return step, read_history(out, step)
