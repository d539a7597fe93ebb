"""The model's input: windows -> the arrays the network reads. One path for the dataset builder
(model.training.dataset), the worker (model.serving.orderflow) and evaluation (model.evaluation), so
training and serving cannot drift apart.

Arrays for B windows (the dataset contract, docs/design.md "Model input"):
- `kind side price size dt` int64 (B, N): model.network.tokens.Tokenizer ids, PAD (0) where not `mask`;
  `mask` bool (B, N);
- `features` float32 (B, T, F): the windows' book-series rows normalized by a FeatureNorm (padded rows 0);
  `row_mask` bool (B, T);
- `news` int64 (B, M, L): model.network.tokens.TextTokenizer ids of the headlines (float16 (B, M, 384)
  sentence embeddings for a checkpoint with the sentence encoder: model/network/sentence.py); `news_mask` bool (B, M);
  `news_age` float32 (B, M): each headline's age, seconds from it to the window's newest event (0 where
  padded; 0 for a headline stamped after that event). A model reads it where its config says so
  (ModelConfig.use_news_age); bench/news_bound.py found the age worth more than the headline's kind.

The encoding: what turns windows into these arrays and what the ids and columns then mean, carried by a
dataset's json and a checkpoint's config.json under the same keys (ENCODING_KEYS). Its fingerprint
(`encoding_fingerprint`) tells whether a dataset's arrays mean to a checkpoint what they say:
`check_encoding` refuses a pair whose encodings differ (docs/own-data.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.network.tokens import TextEncoding, Tokenizer
from orderbook.events import NS_PER_S
from orderbook.windows import Window, stack

# Here, not in the network, so that the dataset builder and the CLI name the arrays without importing torch
FIELDS: tuple[str, ...] = ("kind", "side", "price", "size", "dt")  # an event's token fields
BATCH_KEYS: tuple[str, ...] = (*FIELDS, "mask", "features", "row_mask", "news", "news_mask")
# read where a batch has it: a dataset written before 2026-12-03 lacks it, and a model that reads it
# (ModelConfig.use_news_age) refuses a batch without it (OrderFlowModel.embed)
NEWS_AGE = "news_age"
INPUT_FIELDS: tuple[str, ...] = (*BATCH_KEYS, NEWS_AGE)
# what `train --without` can leave out: rows (the book series), news (the headlines), the headlines' ages
ABLATIONS: tuple[str, ...] = ("rows", "news", NEWS_AGE)
# The keys of a dataset json / checkpoint config.json that make up the encoding. The window's shape and
# emission rule are in it beside the tokenizers and the normalization: windows cut otherwise (another
# price clip, another stride) give token ids and rows the checkpoint never saw, with the same shapes.
ENCODING_KEYS = ("tokenizer", "text_tokenizer", "feature_names", "feature_mean", "feature_std", "window")


@dataclass(frozen=True)
class FeatureNorm:
    """Per-column location and scale of the book-series rows, fitted on the training data's real rows
    and carried in the dataset's json and the checkpoint (`feature_mean`, `feature_std`).

    The parameters' dtype is the arithmetic's: the dataset fits and applies float64 parameters; a
    checkpoint's norm is float32, the precision of the network's own feature_loc/feature_scale buffers,
    and that is what serving and evaluation apply. The two round differently in the last bit of a
    normalized row (tests/test_inputs.py bounds it), and the model's recalibration bins and support
    rounding are discontinuous, so a checkpoint's outputs depend on which one it is served with: served
    with float64 parameters, the demo checkpoint's spread q90 moves by up to 3 ticks on some windows.
    Keep a checkpoint's norm float32 unless it is retrained on float32-normalized data."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, row_mask: np.ndarray, fit: np.ndarray | None = None) -> FeatureNorm:
        """Mean and std per column over the real rows of the windows `fit` (bool (B,), default all);
        a column with std < 1e-6 gets 1 (a constant feature stays 0 after normalization)."""
        fit_rows = row_mask if fit is None else row_mask & fit[:, None]
        rows = features[fit_rows].astype(np.float64)
        f = features.shape[-1]
        mean = rows.mean(axis=0) if len(rows) else np.zeros(f)
        std = rows.std(axis=0) if len(rows) else np.ones(f)
        return cls(mean, np.where(std < 1e-6, 1.0, std))

    @classmethod
    def from_meta(cls, meta: dict[str, Any], dtype: type[np.floating] = np.float64) -> FeatureNorm:
        """From a dataset json (float64) or a checkpoint's extra (`dtype=np.float32`: see the class)."""
        return cls(np.asarray(meta["feature_mean"], dtype), np.asarray(meta["feature_std"], dtype))

    def to_meta(self) -> dict[str, list[float]]:
        return {"feature_mean": self.mean.tolist(), "feature_std": self.std.tolist()}

    def apply(self, features: np.ndarray, row_mask: np.ndarray) -> np.ndarray:
        """Rows in their own units -> normalized float32; padded rows 0."""
        out = np.subtract(features, self.mean)  # in the wider of the two dtypes, as (f - mean) / std would be
        out /= self.std
        out = out.astype(np.float32, copy=False)
        out[~row_mask] = 0.0
        return out

    def invert(self, features: np.ndarray, row_mask: np.ndarray) -> np.ndarray:
        """Normalized rows -> their own units (float64); NaN in padded rows."""
        raw = features.astype(np.float64) * self.std + self.mean
        return np.where(row_mask[..., None], raw, np.nan)


# what model_inputs reads of a window's arrays (the headlines' text it reads off the windows themselves)
_STACKED = ("kind", "side", "price", "size", "dt", "mask", "features", "row_mask", "news_ts", "news_mask")


def model_inputs(
    windows: Sequence[Window], tokenizer: Tokenizer, text: TextEncoding, norm: FeatureNorm | None
) -> dict[str, np.ndarray]:
    """The INPUT_FIELDS arrays of `windows`; `norm=None` leaves the features in their own units (the
    dataset builder normalizes once every source is in, with the norm it fits on them)."""
    b = stack(windows, _STACKED)
    out = tokenizer.encode(b["kind"], b["side"], b["price"], b["size"], b["dt"], b["mask"])
    features = b["features"].astype(np.float32, copy=False)  # stacked: a copy already
    out["features"] = features if norm is None else norm.apply(features, b["row_mask"])
    out["row_mask"] = b["row_mask"]
    out["news"] = _news(windows, b["news_mask"], text)
    out["news_mask"] = b["news_mask"]
    out["news_age"] = news_age(np.array([w.ts for w in windows], np.int64), b["news_ts"], b["news_mask"])
    return out


def _news(windows: Sequence[Window], news_mask: np.ndarray, text: TextEncoding) -> np.ndarray:
    """The headlines' encodings (B, M, ...): a window without any is all zeros (PAD), as `encode_news` gives
    it, so only the few windows with a headline are encoded one by one."""
    first = text.encode_news(windows[0].news_text, news_mask[0])
    out = np.zeros((len(windows), *first.shape), first.dtype)
    out[0] = first
    for i in np.flatnonzero(news_mask[1:].any(1)) + 1:
        out[i] = text.encode_news(windows[i].news_text, news_mask[i])
    return out


def news_age(ts: np.ndarray, news_ts: np.ndarray, news_mask: np.ndarray) -> np.ndarray:
    """Seconds from each headline (`news_ts` (B, M), ns) to its window's newest event (`ts` (B,), ns),
    float32, 0 where `news_mask` is False or the headline is stamped after the event."""
    age = np.maximum(ts[:, None] - news_ts, 0) / NS_PER_S
    return np.where(news_mask, age, 0.0).astype(np.float32)


class EncodingMismatch(ValueError):
    """A dataset's encoding is not the checkpoint's: its token ids and normalized rows would mean other
    things to that model."""


def encoding_of(meta: Mapping[str, Any], keys: Sequence[str] = ENCODING_KEYS) -> dict[str, Any]:
    """The ENCODING_KEYS (or `keys`) of a dataset json or a checkpoint's config (None where absent)."""
    return {k: meta.get(k) for k in keys}


def encoding_fingerprint(meta: Mapping[str, Any], keys: Sequence[str] = ENCODING_KEYS) -> str:
    """16 hex digits of the SHA-256 of the encoding as canonical JSON. Computed from the fields
    themselves, never read from a stored value: a dataset or checkpoint written before fingerprints
    existed has one, and an edited json cannot claim another encoding than it holds. Floats are
    written by repr, which round-trips, so a float64 norm read back from JSON hashes as written."""
    doc = json.dumps(encoding_of(meta, keys), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def check_encoding(
    data_meta: Mapping[str, Any],
    data_name: str,
    ckpt_meta: Mapping[str, Any],
    ckpt_name: str,
    keys: Sequence[str] = ENCODING_KEYS,
) -> None:
    """Raise EncodingMismatch, naming both sides, their fingerprints, the parts that differ and the
    command that re-encodes the data, unless the dataset was encoded as the checkpoint encodes (in
    `keys`: a caller that re-normalizes the rows itself may leave the normalization out)."""
    data_fp, ckpt_fp = encoding_fingerprint(data_meta, keys), encoding_fingerprint(ckpt_meta, keys)
    if data_fp == ckpt_fp:
        return
    differ = [k for k in keys if data_meta.get(k) != ckpt_meta.get(k)]
    raise EncodingMismatch(
        f"dataset {data_name} (encoding {data_fp}) was not encoded with checkpoint {ckpt_name}'s tokenizer and "
        f"feature normalization (encoding {ckpt_fp}; they differ in {', '.join(differ)}): rebuild the dataset "
        f"from its captures with `megatrading dataset --like {ckpt_name} ...`"
    )
