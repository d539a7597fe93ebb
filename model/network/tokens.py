"""Order events as model tokens, and tokens back as order events (issue 5; docs/design.md, "The model").

One event is one token of five fields, each with its own small vocabulary and id 0 = PAD in every
field (after MarS's one-token-per-order vocabulary and the LOBS5 message tokens of Nagy et al. 2023):

| field | ids |
| --- | --- |
| kind | the `Kind` value itself (1..12); vocab max(Kind) + 1 |
| side | BID 1, ASK 2, NONE 3 |
| price | ticks from the prevailing mid, clipped to +-K: level + K + 1 (1..2K+1); 2K+2 (NONE): kinds without a price |
| size | equal-frequency buckets of the size in lots, fitted on data: 1..n_size |
| dt | equal-frequency buckets of log(1 + ns since the previous token), fitted on data: 1..n_dt |

What "lossless" means here, honestly: the kind, the side and the price level (within +-K ticks of the
mid) decode exactly, and `level_price` turns a level back into the exact book price given the
prevailing mid and tick, so a generated token can be applied to a real book. Size and inter-arrival
time are quantized: they decode to the median of the fitted data in their bucket, not to the original
value (a token's size and dt are known only to lie within their bucket's edges). A price beyond +-K
ticks decodes to +-K; a priced event that had no reference mid (or no price) sits at level 0.

`TextTokenizer` maps a headline to word ids (lowercase words hashed into a fixed vocabulary), the
built-in text encoder's input. No torch here: numpy in, numpy out, so the worker tokenizes live windows.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from orderbook.events import Event, Kind, Side
from orderbook.windows import Window

PAD = 0
TOKEN_FIELDS = ("kind", "side", "price", "size", "dt")
UNPRICED_KINDS = frozenset({Kind.SNAPSHOT_BEGIN, Kind.SNAPSHOT_END, Kind.CLEAR, Kind.STATUS})
_SIDE_ID = {int(Side.BID): 1, int(Side.ASK): 2, int(Side.NONE): 3}
_ID_SIDE = {v: Side(k) for k, v in _SIDE_ID.items()}
_KIND_VOCAB = max(int(k) for k in Kind) + 1
_UNPRICED = np.array(sorted(int(k) for k in UNPRICED_KINDS), dtype=np.int64)


class TokenEvent(NamedTuple):
    """A decoded token: `price` is the level in ticks from the mid (None: the kind has no price),
    `size` lots and `dt` ns are their bucket's median."""

    kind: Kind
    side: Side
    price: int | None
    size: int
    dt: int


def level_price(level: int, mid2: int, tick: int) -> int:
    """The book price at `level` ticks from the mid (twice the mid `mid2`, prices on the `tick` grid).

    Inverts orderbook.windows.WindowBuilder's rounding (|price - mid| / tick, half up): with the mid on
    the grid, level q is mid + q*tick; with the mid half-way between two prices (an odd spread in
    ticks), level +-1 is the best ask/bid and level q lies q - 1/2 ticks from the mid.
    """
    on_grid = mid2 % (2 * tick) == 0
    if level == 0:  # only a price at the mid itself has level 0; off the grid, the price below it
        return mid2 // 2 if on_grid else (mid2 // (2 * tick)) * tick
    sign = 1 if level > 0 else -1
    if on_grid:
        return mid2 // 2 + sign * abs(level) * tick
    return (mid2 + sign * (2 * abs(level) - 1) * tick) // 2  # q - 1/2 ticks away: on the grid again


def _fit_edges(values: np.ndarray, n_buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-frequency bucket edges of `values` and each bucket's median: bucket b (0-based) holds
    edges[b-1] <= x < edges[b].

    Greedy over the sorted distinct values, each bucket closing once it holds its share of what is
    left (remaining count / remaining buckets): with continuous data these are the quantiles; with
    heavy ties (sizes in round lots) a tie cannot be split, so a frequent value gets a bucket of its
    own and the buckets left over subdivide the rest instead of being lost.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    if x.size == 0:
        raise ValueError("cannot fit buckets on no data")
    uniq, counts = np.unique(x, return_counts=True)
    cum = np.cumsum(counts)
    edges: list[float] = []
    done, lo = 0, 0  # values counted so far; index into uniq of the open bucket's first value
    for left in range(n_buckets, 1, -1):
        want = done + (x.size - done) / left
        hi = int(np.searchsorted(cum, want, side="left"))  # the bucket ends with uniq[hi]
        if hi + 1 >= len(uniq):
            break
        hi = max(hi, lo)
        edges.append(float(uniq[hi + 1]))
        done, lo = int(cum[hi]), hi + 1
    edge_arr = np.asarray(edges)
    return edge_arr, _bucket_medians(x, x, edge_arr)


def _bucket_medians(values: np.ndarray, keys: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The median of `values` in each bucket of `keys` (sorted, `values` in the same order) by `edges`."""
    which = np.searchsorted(edges, keys, side="right")
    bounds = np.searchsorted(which, np.arange(len(edges) + 2))  # keys are sorted, so buckets are slices
    return np.array([np.median(values[bounds[b] : bounds[b + 1]]) for b in range(len(edges) + 1)])


@dataclass
class Tokenizer:
    """Events <-> token ids; `fit` the size and dt buckets on data first (see the module docstring)."""

    price_clip: int = 64
    n_size: int = 32
    n_dt: int = 32
    size_edges: np.ndarray = field(default_factory=lambda: np.zeros(0))  # in lots
    size_medians: np.ndarray = field(default_factory=lambda: np.ones(1))
    dt_edges: np.ndarray = field(default_factory=lambda: np.zeros(0))  # in log1p(ns)
    dt_medians: np.ndarray = field(default_factory=lambda: np.zeros(1))  # in ns

    # ---- fitting

    @classmethod
    def fit(cls, items: Iterable[Window | Event], price_clip: int = 64, n_size: int = 32, n_dt: int = 32) -> Tokenizer:
        """Fit on windows (their real tokens; overlapping windows count a token once per window) or
        on events in stream order (dt between successive events of the same symbol)."""
        sizes: list[np.ndarray] = []
        dts: list[np.ndarray] = []
        last_ts: dict[str, int] = {}
        ev_size: list[int] = []
        ev_dt: list[int] = []
        for it in items:
            if isinstance(it, Window):
                sizes.append(it.size[it.mask])
                dts.append(it.dt[it.mask])
            else:
                prev = last_ts.get(it.symbol)
                ev_size.append(it.size)
                ev_dt.append(max(0, it.ts - prev) if prev is not None else 0)
                last_ts[it.symbol] = it.ts
        sizes.append(np.asarray(ev_size, dtype=np.int64))
        dts.append(np.asarray(ev_dt, dtype=np.int64))
        return cls.fit_arrays(np.concatenate(sizes), np.concatenate(dts), price_clip, n_size, n_dt)

    @classmethod
    def fit_arrays(
        cls, sizes: np.ndarray, dts: np.ndarray, price_clip: int = 64, n_size: int = 32, n_dt: int = 32
    ) -> Tokenizer:
        """Fit on one array of token sizes (lots) and one of inter-arrival times (ns)."""
        size_edges, size_medians = _fit_edges(np.asarray(sizes), n_size)
        # Buckets are cut on the integer nanoseconds (log1p is monotone, so the edges are the same
        # values): tokens must not hang on a log's last bit, which differs between CPUs (dt_ids).
        dt_ns = np.sort(np.maximum(np.asarray(dts, dtype=np.float64), 0))
        dt_edge_ns, _ = _fit_edges(dt_ns, n_dt)
        dt_edges = np.log1p(dt_edge_ns)
        dt_log_medians = _bucket_medians(np.log1p(dt_ns), dt_ns, dt_edge_ns)
        return cls(
            price_clip=price_clip,
            n_size=n_size,
            n_dt=n_dt,
            size_edges=size_edges,
            size_medians=np.round(size_medians),
            dt_edges=dt_edges,
            dt_medians=np.round(np.expm1(dt_log_medians)),
        )

    # ---- vocabularies

    @property
    def price_none(self) -> int:
        return 2 * self.price_clip + 2

    @property
    def vocab(self) -> dict[str, int]:
        """Vocabulary size of each field, PAD included (unused bucket ids stay in: sizes are fixed)."""
        return {
            "kind": _KIND_VOCAB,
            "side": len(_SIDE_ID) + 1,
            "price": 2 * self.price_clip + 3,
            "size": self.n_size + 1,
            "dt": self.n_dt + 1,
        }

    # ---- encoding

    def size_ids(self, size: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.size_edges, np.asarray(size, dtype=np.float64), side="right").astype(np.int64) + 1

    def dt_ids(self, dt: np.ndarray) -> np.ndarray:
        # Against the edges' own nanoseconds, not log1p(dt) against the stored logs: np.log1p's last
        # bit differs between CPUs (SIMD paths), so a checkpoint fitted on one machine would put a dt
        # equal to an edge in the bucket below on another. The stored logs are log1p of whole
        # nanoseconds, and expm1 is far inside half a nanosecond of them: rounding recovers them exactly.
        edge_ns = np.round(np.expm1(self.dt_edges))
        ns = np.maximum(np.asarray(dt, dtype=np.float64), 0)
        return np.searchsorted(edge_ns, ns, side="right").astype(np.int64) + 1

    def encode(
        self, kind: np.ndarray, side: np.ndarray, price: np.ndarray, size: np.ndarray, dt: np.ndarray, mask: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Raw token fields (as orderbook.windows.Window holds them) -> id arrays; PAD where not `mask`."""
        kind = np.asarray(kind, dtype=np.int64)
        k = self.price_clip
        side_ids = np.select([side == Side.BID, side == Side.ASK], [1, 2], 3).astype(np.int64)
        price_ids = np.clip(np.asarray(price, dtype=np.int64), -k, k) + k + 1
        price_ids = np.where(np.isin(kind, _UNPRICED), self.price_none, price_ids)
        out = {
            "kind": kind,
            "side": side_ids,
            "price": price_ids,
            "size": self.size_ids(size),
            "dt": self.dt_ids(dt),
        }
        mask = np.asarray(mask, dtype=bool)
        out = {name: np.where(mask, ids, PAD).astype(np.int64, copy=False) for name, ids in out.items()}
        out["mask"] = mask.copy()
        return out

    def encode_window(self, window: Window) -> dict[str, np.ndarray]:
        """One window's tokens: int64 (N,) ids for kind, side, price, size, dt, and the bool `mask`."""
        w = window
        return self.encode(w.kind, w.side, w.price, w.size, w.dt, w.mask)

    # ---- decoding

    def decode(
        self,
        kind: Sequence[int] | np.ndarray,
        side: Sequence[int] | np.ndarray,
        price: Sequence[int] | np.ndarray,
        size: Sequence[int] | np.ndarray,
        dt: Sequence[int] | np.ndarray,
    ) -> list[TokenEvent]:
        """Id arrays of one sequence -> events (PAD slots, kind id 0, are skipped)."""
        out = []
        k = self.price_clip
        for ki, si, pi, zi, di in zip(kind, side, price, size, dt, strict=True):
            if int(ki) == PAD:
                continue
            pi = int(pi)
            level = None if pi == self.price_none or pi == PAD else pi - k - 1
            out.append(TokenEvent(Kind(int(ki)), _ID_SIDE.get(int(si), Side.NONE), level,
                                  self._median(self.size_medians, zi), self._median(self.dt_medians, di)))  # fmt: skip
        return out

    @staticmethod
    def _median(medians: np.ndarray, token_id: int) -> int:
        b = min(max(int(token_id) - 1, 0), len(medians) - 1)
        return int(medians[b])

    # ---- persistence

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what the dataset's and a checkpoint's json carry)."""
        return {
            "type": "event-tokenizer/1",
            "price_clip": self.price_clip,
            "n_size": self.n_size,
            "n_dt": self.n_dt,
            "size_edges": self.size_edges.tolist(),
            "size_medians": self.size_medians.tolist(),
            "dt_edges": self.dt_edges.tolist(),
            "dt_medians": self.dt_medians.tolist(),
            "vocab": self.vocab,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any] | str) -> Tokenizer:
        """From `to_json()`'s dict, or that dict as a JSON string."""
        d = json.loads(doc) if isinstance(doc, str) else doc
        return cls(
            price_clip=int(d["price_clip"]),
            n_size=int(d["n_size"]),
            n_dt=int(d["n_dt"]),
            size_edges=np.asarray(d["size_edges"], dtype=np.float64),
            size_medians=np.asarray(d["size_medians"], dtype=np.float64),
            dt_edges=np.asarray(d["dt_edges"], dtype=np.float64),
            dt_medians=np.asarray(d["dt_medians"], dtype=np.float64),
        )


# --------------------------------------------------------------------------- text

_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class TextTokenizer:
    """Headline -> word ids: lowercase words (letters and digits) hashed by CRC-32 into ids
    2..vocab-1; 0 = PAD, 1 = UNK (a headline with no word at all, so a real headline is never all
    PAD). At most `max_words` words, the first ones. The hash is fixed, so ids never depend on the
    data or the Python process (unlike `hash()`)."""

    vocab: int = 4096
    max_words: int = 16

    def word_id(self, word: str) -> int:
        return 2 + zlib.crc32(word.encode()) % (self.vocab - 2)

    def encode(self, text: str) -> np.ndarray:
        ids = np.zeros(self.max_words, dtype=np.int64)
        words = _WORD.findall(text.lower())[: self.max_words]
        if not words:
            ids[0] = 1 if text.strip() else 0
            return ids
        ids[: len(words)] = [self.word_id(w) for w in words]
        return ids

    def encode_news(self, texts: Sequence[str], mask: np.ndarray) -> np.ndarray:
        """A window's headlines (M,) -> (M, L) ids; rows where not `mask` are PAD."""
        out = np.zeros((len(texts), self.max_words), dtype=np.int64)
        if not mask.any():  # most windows: no headline
            return out
        for i, (t, m) in enumerate(zip(texts, mask, strict=True)):
            if m:
                out[i] = self.encode(str(t))
        return out

    def to_json(self) -> dict[str, Any]:
        return {"type": "hashed-words/crc32", "vocab": self.vocab, "max_words": self.max_words}

    @classmethod
    def from_json(cls, doc: dict[str, Any] | str) -> TextTokenizer:
        d = json.loads(doc) if isinstance(doc, str) else doc
        return cls(vocab=int(d["vocab"]), max_words=int(d["max_words"]))


class TextEncoding(Protocol):
    """What model.inputs.model_inputs reads headlines with: TextTokenizer or sentence.SentenceTexts."""

    def encode_news(self, texts: Sequence[str], mask: np.ndarray) -> np.ndarray: ...

    def to_json(self) -> dict[str, Any]: ...


TEXT_ENCODERS = ("hashed", "minilm")  # `dataset --text-encoder`: TextTokenizer, or sentence.SentenceTexts


def text_encoder(name: str, vocab: int = 4096, max_words: int = 16) -> TextEncoding:
    """A new text encoding by its TEXT_ENCODERS name (minilm: the optional pretrained one, imported on use)."""
    if name == "hashed":
        return TextTokenizer(vocab, max_words)
    if name == "minilm":
        from model.network.sentence import SentenceTexts

        return SentenceTexts()
    raise ValueError(f"text encoder {name!r}: use one of {TEXT_ENCODERS}")


def text_encoder_of(doc: dict[str, Any] | str) -> TextEncoding:
    """A checkpoint's or a dataset's `text_tokenizer` entry back as its encoder: a TextTokenizer, or a
    sentence.SentenceTexts for a `sentence/...` type."""
    d = json.loads(doc) if isinstance(doc, str) else doc
    if text_encoder_name(d) == "minilm":
        from model.network.sentence import SentenceTexts

        return SentenceTexts.from_json(d)
    return TextTokenizer.from_json(d)


def text_encoder_name(doc: dict[str, Any] | None) -> str:
    """ "minilm" for a sentence encoder's `text_tokenizer` entry, else "hashed" (also where there is none)."""
    return "minilm" if doc and str(doc.get("type", "")).startswith("sentence/") else "hashed"
