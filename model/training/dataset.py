"""Training and evaluation datasets of the generative order-flow model (issue 5): windows, tokens, targets, labels.

A source is a stream of raw venue records: a simulated day written in a venue's format
(model.sim.writers.messages) or a real capture (orderbook.venues.feed_class(v).read_capture). Each is
replayed (`replay_source`) through the streaming worker's own path from records to windows
(orderbook.stream_replay: feed, books, features, window builders, rejects; native where the native path is
on), so training windows are the windows the worker scores. Along the replay every symbol keeps a
per-message series of spread, top-5 depth, traded volume and mid (the native window builders keep it in
Rust), from which each window's targets are read H messages later.

The file (`save`/`load`): `<name>.npz` (numpy.savez_compressed, no object arrays, loads with
allow_pickle=False) and `<name>.json` (metadata). Arrays, B windows (the shared contract of issue 5):

- `kind side price size dt` int64 (B, N): token ids of model.network.tokens.Tokenizer (0 = PAD); `mask` bool (B, N).
- `features` float32 (B, T, F): the window's FeatureState rows, normalized by the json's
  `feature_mean`/`feature_std` (over the real rows of the sources not held out, as the tokenizer's
  bins); padded rows are 0; `row_mask` bool (B, T).
- `news` int64 (B, M, L): model.network.tokens.TextTokenizer ids of the window's headlines, or with
  `text_encoder="minilm"` float16 (B, M, 384) sentence embeddings (model/network/sentence.py); `news_mask` bool (B, M);
  `news_age` float32 (B, M): seconds from each headline to the window's newest event (model.inputs; 0 where
  padded). A set written before 2026-12-03 lacks it: a model that reads it refuses such a set.
- `{spread,depth,volume,mid}_h{H}` float32 (B,): the realized value H messages (of the window's symbol)
  after the window's last message: spread in ticks at message i+H; depth = log1p(top-5 bid + ask lots)
  at i+H; volume = log1p(lots traded in messages i+1..i+H, non-printable executions excluded); mid =
  (mid at i+H - mid at i) in ticks. `target_mask` bool (B, len(horizons)): False where the stream ends
  before i+H, or where the book is one-sided at i or i+H (spread and mid undefined); the values are 0 there,
  but the volume's wherever the stream reaches i+H (a window builder's record of its book's volumes takes
  it: orderbook/volume_record.py).
- `label` int64 (B,): 0 normal, else 1 + ANOMALY_KINDS.index(kind) of the labeled interval the window's
  time span [start_ts, ts] overlaps most (the simulator's labels do not overlap on one symbol).
- `news_kind` int64 (B,): NEWS_KINDS of the newest simulated headline inside the window, 0 if none (real
  data: always 0).
- `message` int64 (B,): the index of the window's last message among its symbol's messages in its source
  (0-based; the messages the horizons count): a window's move at H is known at a later window of the
  same symbol and source once `message` has grown by H. A set written before 2026-12-04 lacks it.
- `symbol` str (B,), `event_ts` int64 (B,) (the last event's time on the stream's clock), `seed` int64
  (B,): the simulator seed, or -(1 + index) of a real file in the json's `sources`, or a capture file's
  own seed (`capture_seed`, -1000 and below) (held-out splits go by seed: `split_by_seed`).

The json's encoding (model.inputs.ENCODING_KEYS: the tokenizers, the feature normalization, the window) is
fitted on the sources, or taken as it is from a checkpoint (`CheckpointEncoding`, `build(like=...)`,
`megatrading dataset --like CKPT`) so that the checkpoint can be evaluated and fine-tuned on new data;
then the json's `encoding` records its fingerprint and the checkpoint it came from (docs/own-data.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from model.inputs import ENCODING_KEYS, FeatureNorm, encoding_fingerprint, model_inputs
from model.network.sentence import DIM
from model.network.tokens import TextEncoding, Tokenizer, text_encoder, text_encoder_name, text_encoder_of
from model.sim.anomalies import KINDS as ANOMALY_KINDS
from model.sim.engine import SimConfig
from model.sim.run import simulate
from model.sim.writers import clock_offset, messages, venue_symbol
from orderbook.features import FeatureState
from orderbook.news import Headline
from orderbook.stream_replay import BookStates, replay_stream
from orderbook.venue_windows import WindowStats
from orderbook.venues import RawRecord, capture_records, feed_class
from orderbook.windows import Window, WindowConfig

NEWS_KINDS = {"negative": 1, "positive": 2, "halt": 3, "neutral": 4}
TARGETS = ("spread", "depth", "volume", "mid")
# The real captures of ../shared/data (SOURCES.md) that carry an order book, with their venue.
REAL_FILES = (
    ("binance-hftbacktest/spot_btcusdt_20240808.gz", "binance"),
    ("binance-hftbacktest/spot_ethusdt_20240808.gz", "binance"),
    ("binance-hftbacktest/usdm_btcusdt_20240808.gz", "binance"),
    ("cryptofeed-captures/BINANCE.ws.1.0.gz", "binance"),
    ("cryptofeed-captures/COINBASE.ws.28.0.gz", "coinbase"),
    ("cryptofeed-captures/KRAKEN.ws.50.0.gz", "kraken"),
)
# A capture file's seed lies at or below this: clear of the simulator's seeds and of REAL_FILES' -1, -2, ...
CAPTURE_SEED_TOP = -1000


@dataclass(frozen=True)
class DatasetConfig:
    window: WindowConfig = field(default_factory=lambda: WindowConfig(n_events=128, n_rows=32, max_news=4))
    horizons: tuple[int, ...] = (10, 100)
    n_size: int = 32
    n_dt: int = 32
    text_vocab: int = 4096
    max_words: int = 16
    text_encoder: str = "hashed"  # model.network.tokens.TEXT_ENCODERS


@dataclass
class Source:
    """One stream to replay. `records`: as on `md.raw.<venue>`, with the stream's clock where known;
    `ticks`: the tick per symbol where known (else the worker's rule); `news`: (ts, symbol, headline,
    kind); `labels`: (symbol, start_ns, end_ns, kind); times on the stream's clock."""

    name: str
    venue: str
    seed: int
    records: Iterable[RawRecord]
    ticks: dict[str, int] | None = None
    news: list[tuple[int, str, str, str]] = field(default_factory=list)
    labels: list[tuple[str, int, int, str]] = field(default_factory=list)


@dataclass
class _Series:
    """One symbol's book after each of its messages (what the targets are read from), one entry per message."""

    tick: int
    spread: np.ndarray  # float64, ticks, nan if one-sided
    depth: np.ndarray  # float64, top-5 bid + ask lots
    volume: np.ndarray  # int64, lots traded in the message
    mid2: np.ndarray  # float64, twice the mid, nan if one-sided

    cum_volume: np.ndarray  # the volume's prefix sums from 0, exact (Python ints where int64 could overflow)

    @classmethod
    def of(cls, parts: list[BookStates]) -> _Series:
        spread, depth, volume, mid2 = (np.concatenate([getattr(p, k) for p in parts]) for k in _SERIES)
        fits = not len(volume) or (int(volume.min()) >= 0 and int(volume.max()) * len(volume) < 2**63)
        cum = np.concatenate([[0], np.cumsum(volume if fits else volume.astype(object))])
        return cls(parts[0].tick, spread, depth, volume, mid2, cum)

    def traded_between(self, i: int, j: int) -> int:
        """Lots traded in messages i+1..j."""
        return int(self.cum_volume[j + 1] - self.cum_volume[i + 1])


_SERIES = ("spread", "depth", "traded", "mid2")  # BookStates' columns, in _Series' order


@dataclass
class SourceReplay:
    """A source replayed: its windows, the per-symbol message index each was emitted at, the series."""

    source: Source
    windows: list[Window] = field(default_factory=list)
    msg_index: list[int] = field(default_factory=list)
    series: dict[str, _Series] = field(default_factory=dict)
    rejected: int = 0


@dataclass
class Dataset:
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]

    def __len__(self) -> int:
        return len(self.arrays["label"])


# --------------------------------------------------------------------------- sources


def sim_source(cfg: SimConfig, fmt: str = "itch") -> Source:
    """Simulate `cfg` and present it as the `md.raw.<fmt>` records the worker would read."""
    result = simulate(cfg)
    off = clock_offset(fmt)
    records = [RawRecord(m.symbol.encode() if m.symbol else None, m.raw, m.ts) for m in messages(fmt, result)]
    return Source(
        name=f"sim:{fmt}:seed={cfg.seed}",
        venue=fmt,
        seed=cfg.seed,
        records=records,
        # no per-symbol ticks: the worker cannot know a simulated instrument's tick, so training
        # windows follow the worker's rule (a cent for ITCH/LOBSTER, inferred elsewhere) and match its windows
        ticks=None,
        news=[(n.ts + off, venue_symbol(fmt, n.symbol), n.headline, n.kind) for n in result.news],
        labels=[(venue_symbol(fmt, b.symbol), b.start_ns + off, b.end_ns + off, b.kind) for b in result.labels],
    )


def capture_seed(path: Path) -> int:
    """A capture file's seed, from the SHA-256 of its bytes: the same file has the same seed in every
    dataset built from it, so `evaluate` recognizes a file a checkpoint was trained on (it compares
    seeds), and two files almost never share one (2^28 values), however the datasets were built."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest_seed(digest.hexdigest())


def digest_seed(hexdigest: str) -> int:
    """A real source's seed from a hex digest of what identifies it (capture_seed: the file's bytes)."""
    return CAPTURE_SEED_TOP - int(hexdigest[:7], 16)


def capture_source(venue: str, path: Path, symbol: str | None = None) -> Source:
    """Any capture file a venue's feed reads (`Feed.read_capture`; LOBSTER: `symbol`, else the file
    name's ticker), as a source with its own seed (`capture_seed`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"capture {path}: no such file")
    return Source(
        name=f"capture:{venue}:{path}",
        venue=venue,
        seed=capture_seed(path),
        records=capture_records(venue, [path], symbol),
    )


def source_file(name: str) -> str:
    """The file name of a real source's name ("capture:binance:../x/cm_btcusd_perp_20240808.gz",
    "real:binance-hftbacktest/spot_ethusdt_20240808.gz"): how reports and folds tell captures apart."""
    return Path(name.rsplit(":", 1)[-1]).name


def capture_names(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> np.ndarray:
    """(B,) each window's capture: its real source's file name without `.gz`; "" for a simulated one."""
    names = {int(s["seed"]): source_file(str(s["name"])).removesuffix(".gz")
             for s in meta.get("sources", []) if "seed" in s}  # fmt: skip
    seeds = arrays["seed"]
    return np.array([names.get(int(s), str(s)) if s < 0 else "" for s in seeds], dtype=object)


def real_sources(root: Path, first_seed: int = -1) -> list[Source]:
    """The real captures in `root` (REAL_FILES that exist), seeds -1, -2, ... in REAL_FILES order."""
    out = []
    for i, (rel, venue) in enumerate(REAL_FILES):
        path = root / rel
        if not path.is_file():
            continue
        records = (RawRecord(None, rec.raw) for rec in feed_class(venue).read_capture(path))
        out.append(Source(name=f"real:{rel}", venue=venue, seed=first_seed - i, records=records))
    return out


# --------------------------------------------------------------------------- replay


def replay_source(source: Source, cfg: DatasetConfig | None = None) -> SourceReplay:
    """Feed every record through the worker's path (orderbook.stream_replay: the native path where the venue
    has one), keeping each symbol's book after every message for the targets.

    Headlines join a symbol's builder when the stream's clock reaches them (the records' clock ts where
    they have one); rejected records are counted and skipped, as the worker dead-letters them.
    """
    cfg = cfg or DatasetConfig()
    out = SourceReplay(source)
    stats = WindowStats()
    headlines = [Headline(ts, [symbol], headline) for ts, symbol, headline, _ in source.news]
    parts: dict[str, list[BookStates]] = {}
    seen: dict[str, int] = {}  # messages per symbol so far
    for part in replay_stream(source.venue, source.records, headlines, config=cfg.window, ticks=source.ticks,
                              states=True, stats=stats):  # fmt: skip
        # a symbol's windows are its messages that completed one, in order
        ends = {}
        for name, states in part.states.items():
            parts.setdefault(name, []).append(states)
            ends[name] = iter((seen.get(name, 0) + np.flatnonzero(states.emitted)).tolist())
            seen[name] = seen.get(name, 0) + len(states.emitted)
        for w in part.windows:
            out.windows.append(w)
            out.msg_index.append(next(ends[w.symbol]))
    out.series = {name: _Series.of(p) for name, p in parts.items()}
    out.rejected = sum(stats.rejected.values())
    return out


# --------------------------------------------------------------------------- targets and labels


def targets(series: _Series, i: int, horizon: int) -> tuple[dict[str, float], bool]:
    """The four targets of a window emitted at message `i`, `horizon` messages on; (values, valid)."""
    j = i + horizon
    zero = dict.fromkeys(TARGETS, 0.0)
    if j >= len(series.spread):
        return zero, False
    volume = float(np.log1p(series.traded_between(i, j)))
    spread, m_i, m_j = series.spread[j], series.mid2[i], series.mid2[j]
    if np.isnan(spread) or np.isnan(m_i) or np.isnan(m_j):
        # the volume is known all the same: a worker's record of the book's volumes takes it (volume_levels)
        return zero | {"volume": volume}, False
    return {
        "spread": float(spread),
        "depth": float(np.log1p(series.depth[j])),
        "volume": volume,
        "mid": (m_j - m_i) / (2 * series.tick),
    }, True


def window_label(w: Window, labels: list[tuple[str, int, int, str]]) -> int:
    """0, or 1 + ANOMALY_KINDS index of the labeled interval overlapping [start_ts, ts] the most."""
    best, best_overlap = 0, -1
    for sym, start, end, kind in labels:
        if sym != w.symbol or start > w.ts or end < w.start_ts:
            continue
        overlap = min(end, w.ts) - max(start, w.start_ts)
        if overlap > best_overlap:
            best, best_overlap = 1 + ANOMALY_KINDS.index(kind), overlap
    return best


def window_news_kind(w: Window, news: list[tuple[int, str, str, str]]) -> int:
    """NEWS_KINDS of the newest headline of the window's symbol within [start_ts, ts], 0 if none."""
    inside = [(t, kind) for t, sym, _, kind in news if sym == w.symbol and w.start_ts <= t <= w.ts]
    return NEWS_KINDS.get(max(inside)[1], 0) if inside else 0


# --------------------------------------------------------------------------- arrays


def _encode(rep: SourceReplay, tok: Tokenizer, text: TextEncoding, cfg: DatasetConfig) -> dict[str, np.ndarray]:
    """A replay's windows as the contract's arrays (features not yet normalized)."""
    out = model_inputs(rep.windows, tok, text, norm=None)
    n, hs = len(rep.windows), cfg.horizons
    values = {f"{t}_h{h}": np.zeros(n, np.float32) for h in hs for t in TARGETS}
    tmask = np.zeros((n, len(hs)), bool)
    for k, (w, i) in enumerate(zip(rep.windows, rep.msg_index, strict=True)):
        for c, h in enumerate(hs):
            vals, ok = targets(rep.series[w.symbol], i, h)
            tmask[k, c] = ok
            for t in TARGETS:
                values[f"{t}_h{h}"][k] = vals[t]
    out |= values
    out["target_mask"] = tmask
    src = rep.source
    out["label"] = np.array([window_label(w, src.labels) for w in rep.windows], np.int64)
    out["news_kind"] = np.array([window_news_kind(w, src.news) for w in rep.windows], np.int64)
    out["symbol"] = np.array([w.symbol for w in rep.windows], dtype=str)
    out["event_ts"] = np.array([w.ts for w in rep.windows], np.int64)
    out["message"] = np.array(rep.msg_index, np.int64)
    out["seed"] = np.full(n, src.seed, np.int64)
    return out


def _empty(cfg: DatasetConfig, n_features: int) -> dict[str, np.ndarray]:
    w = cfg.window
    n, t, m, ln = w.n_events, w.n_rows, w.max_news, cfg.max_words
    out = {f: np.zeros((0, n), np.int64) for f in ("kind", "side", "price", "size", "dt")}
    out |= {"mask": np.zeros((0, n), bool), "features": np.zeros((0, t, n_features), np.float32)}
    news = np.zeros((0, m, DIM), np.float16) if cfg.text_encoder == "minilm" else np.zeros((0, m, ln), np.int64)
    out |= {"row_mask": np.zeros((0, t), bool), "news": news}
    out |= {"news_mask": np.zeros((0, m), bool), "target_mask": np.zeros((0, len(cfg.horizons)), bool)}
    out["news_age"] = np.zeros((0, m), np.float32)
    out |= {f"{x}_h{h}": np.zeros(0, np.float32) for h in cfg.horizons for x in TARGETS}
    out |= {k: np.zeros(0, np.int64) for k in ("label", "news_kind", "event_ts", "message", "seed")}
    out["symbol"] = np.zeros(0, dtype=str)
    return out


def fit_tokenizer(replays: list[SourceReplay], cfg: DatasetConfig) -> Tokenizer:
    """Fit the size and dt buckets on every stride-th window (N / every_events): about each token once."""
    stride = max(1, cfg.window.n_events // (cfg.window.every_events or cfg.window.n_events))
    windows = [w for r in replays for w in r.windows[::stride]]
    if not windows:
        raise ValueError("no windows to fit the tokenizer on: the sources are too short")
    return Tokenizer.fit(windows, cfg.window.price_clip, cfg.n_size, cfg.n_dt)


@dataclass(frozen=True)
class CheckpointEncoding:
    """A checkpoint's encoding (model.inputs.ENCODING_KEYS of its config.json), to encode new data as
    the checkpoint's training data was: the window configuration, the horizons, both tokenizers and the
    feature normalization, fitting nothing. `meta` holds the checkpoint's own json values, written
    into the dataset's json as they are, so the fingerprints match by construction."""

    source: str
    config: DatasetConfig
    tokenizer: Tokenizer
    text: TextEncoding
    norm: FeatureNorm
    meta: dict[str, Any]

    @classmethod
    def of_checkpoint(cls, directory: str | Path) -> CheckpointEncoding:
        """Read from `directory`/config.json alone (no weights, no torch)."""
        path = Path(directory) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{directory}: not a checkpoint folder (no config.json)")
        doc = json.loads(path.read_text())
        missing = [k for k in ENCODING_KEYS if not doc.get(k)]
        if missing:
            raise ValueError(f"{path}: the checkpoint carries no {', '.join(missing)}: no encoding to reproduce")
        names = list(FeatureState().names)
        if doc["feature_names"] != names:
            # the rows this code computes are not the columns the checkpoint's normalization describes
            raise ValueError(f"{path}: feature columns {doc['feature_names']} are not this code's {names}")
        text = text_encoder_of(doc["text_tokenizer"])
        cfg = DatasetConfig(
            window=WindowConfig(**doc["window"]),
            horizons=tuple(doc.get("horizons") or DatasetConfig().horizons),
            n_size=int(doc["tokenizer"]["n_size"]),
            n_dt=int(doc["tokenizer"]["n_dt"]),
            text_vocab=getattr(text, "vocab", DatasetConfig.text_vocab),
            max_words=getattr(text, "max_words", DatasetConfig.max_words),
            text_encoder=text_encoder_name(doc["text_tokenizer"]),
        )
        meta = {k: doc[k] for k in ENCODING_KEYS}
        tokenizer = Tokenizer.from_json(doc["tokenizer"])
        return cls(str(directory), cfg, tokenizer, text, FeatureNorm.from_meta(doc), meta)


def build(
    sources: Iterable[Source],
    cfg: DatasetConfig | None = None,
    tokenizer: Tokenizer | None = None,
    progress: Callable[[SourceReplay], None] | None = None,
    held_out: Iterable[int] = (),
    like: CheckpointEncoding | None = None,
) -> Dataset:
    """Replay every source, fit the tokenizer (unless given) and the feature normalization and stack
    everything into one Dataset. Sources whose seed is in `held_out` are encoded but not fitted on:
    nothing of the evaluation data leaks into the bins or the normalization a model trains with.
    `like`: encode as that checkpoint does (its window, horizons, tokenizers and normalization), fitting
    nothing; `cfg` and `tokenizer` must not be given then."""
    if like is not None:
        if cfg is not None or tokenizer is not None:
            raise ValueError("build: give either like= (a checkpoint's encoding) or cfg/tokenizer, not both")
        cfg, tokenizer = like.config, like.tokenizer
    cfg = cfg or DatasetConfig()
    held = set(held_out)
    replays = []
    for s in sources:
        replays.append(replay_source(s, cfg))
        if progress:
            progress(replays[-1])
    fitted = [r for r in replays if r.source.seed not in held]
    if like is None and held and not any(r.windows for r in fitted):
        raise ValueError(f"every source is held out ({sorted(held)}): nothing to fit the tokenizer on")
    tok = tokenizer or fit_tokenizer(fitted, cfg)
    text = like.text if like is not None else text_encoder(cfg.text_encoder, cfg.text_vocab, cfg.max_words)
    parts = [_encode(r, tok, text, cfg) for r in replays if r.windows]
    n_features = len(FeatureState().names)
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else _empty(cfg, n_features)
    if like is not None:
        # the checkpoint's json values in float64, as the dataset that trained it applied them
        norm = like.norm
    else:
        fit = ~np.isin(arrays["seed"], np.fromiter(held, np.int64, len(held)))
        norm = FeatureNorm.fit(arrays["features"], arrays["row_mask"], fit)
    arrays["features"] = norm.apply(arrays["features"], arrays["row_mask"])
    meta = {
        "format": "mt-dataset/1",
        "tokenizer": tok.to_json(),
        "text_tokenizer": text.to_json(),
        "feature_names": list(FeatureState().names),
        **norm.to_meta(),
        "window": {
            "n_events": cfg.window.n_events,
            "n_rows": cfg.window.n_rows,
            "max_news": cfg.window.max_news,
            "price_clip": cfg.window.price_clip,
            "every_events": cfg.window.every_events,
        },
        "horizons": list(cfg.horizons),
        "targets": [f"{t}_h{h}" for h in cfg.horizons for t in TARGETS],
        "anomaly_kinds": list(ANOMALY_KINDS),
        "news_kinds": NEWS_KINDS,
        "sources": [
            {
                "name": r.source.name,
                "venue": r.source.venue,
                "seed": r.source.seed,
                "windows": len(r.windows),
                "rejected": r.rejected,
                "labels": len(r.source.labels),
                "news": len(r.source.news),
            }
            for r in replays
        ],
        "sim_seeds": sorted({r.source.seed for r in replays if r.source.name.startswith("sim:")}),
        "fitted_without": sorted(held),
        "counts": {"windows": len(arrays["label"]), "labeled": int((arrays["label"] > 0).sum())},
    }
    if like is not None:
        # only here: a fitted dataset's json stays as it was (bench/outputs_check.py hashes it), and its
        # fingerprint is computed from the fields wherever it is needed
        meta |= like.meta
        meta["encoding"] = {"fingerprint": encoding_fingerprint(meta), "like": like.source}
    return Dataset(arrays, meta)


# --------------------------------------------------------------------------- files and splits


def save(ds: Dataset, path: Path) -> tuple[Path, Path]:
    """`path` (.npz, compressed) and its sibling .json; both paths."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **ds.arrays)
    meta_path = path.with_suffix(".json")
    meta_path.write_text(json.dumps(ds.meta, indent=1) + "\n")
    return path, meta_path


def load(path: Path) -> Dataset:
    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return Dataset(arrays, json.loads(path.with_suffix(".json").read_text()))


def subset(ds: Dataset, keep: np.ndarray) -> Dataset:
    """The windows where `keep` (bool (B,)) holds; the metadata (tokenizer, normalization) is shared."""
    meta = dict(ds.meta) | {
        "counts": {"windows": int(keep.sum()), "labeled": int((ds.arrays["label"][keep] > 0).sum())}
    }
    return Dataset({k: v[keep] for k, v in ds.arrays.items()}, meta)


def split_by_seed(ds: Dataset, held_out: Iterable[int]) -> tuple[Dataset, Dataset]:
    """(train, held-out): the held-out part is every window whose seed is in `held_out` (a real file's
    seed is negative: see the json's `sources`)."""
    held = np.isin(ds.arrays["seed"], np.fromiter(held_out, np.int64))
    return subset(ds, ~held), subset(ds, held)


def iter_sim_sources(seeds: Iterable[int], base: SimConfig, fmt: str = "itch") -> Iterator[Source]:
    """One source per seed, the other settings of `base` kept (simulated lazily, one at a time)."""
    for seed in seeds:
        yield sim_source(replace(base, seed=seed), fmt)
