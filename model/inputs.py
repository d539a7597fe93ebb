"""The model's input: windows -> the arrays the network reads. One path for the dataset builder
(model.training.dataset), the worker (model.serving.orderflow) and evaluation (model.evaluation), so
training and serving cannot drift apart.

Arrays for B windows (the dataset contract, docs/design.md "Model input"):
- `kind side price size dt` int64 (B, N): model.network.tokens.Tokenizer ids, PAD (0) where not `mask`;
  `mask` bool (B, N);
- `features` float32 (B, T, F): the windows' book-series rows normalized by a FeatureNorm (padded rows 0);
  `row_mask` bool (B, T);
- `news` int64 (B, M, L): model.network.tokens.TextTokenizer ids of the headlines; `news_mask` bool (B, M).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.network.tokens import TextTokenizer, Tokenizer
from orderbook.windows import Window, stack

INPUT_FIELDS = ("kind", "side", "price", "size", "dt", "mask", "features", "row_mask", "news", "news_mask")


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
        out = ((features - self.mean) / self.std).astype(np.float32)
        out[~row_mask] = 0.0
        return out

    def invert(self, features: np.ndarray, row_mask: np.ndarray) -> np.ndarray:
        """Normalized rows -> their own units (float64); NaN in padded rows."""
        raw = features.astype(np.float64) * self.std + self.mean
        return np.where(row_mask[..., None], raw, np.nan)


def model_inputs(
    windows: Sequence[Window], tokenizer: Tokenizer, text: TextTokenizer, norm: FeatureNorm | None
) -> dict[str, np.ndarray]:
    """The INPUT_FIELDS arrays of `windows`; `norm=None` leaves the features in their own units (the
    dataset builder normalizes once every source is in, with the norm it fits on them)."""
    b = stack(windows)
    out = tokenizer.encode(b["kind"], b["side"], b["price"], b["size"], b["dt"], b["mask"])
    features = b["features"].astype(np.float32)
    out["features"] = features if norm is None else norm.apply(features, b["row_mask"])
    out["row_mask"] = b["row_mask"]
    out["news"] = np.stack([text.encode_news(w.news_text, w.news_mask) for w in windows])
    out["news_mask"] = b["news_mask"]
    return out
