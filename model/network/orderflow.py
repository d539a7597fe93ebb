"""The generative order-flow network: a decoder-only transformer over event tokens with the
book-state series and the news headlines fused in as prefix tokens (docs/design.md, "The model").

Sequence layout, one window (B windows batched):

    [BOS] [row_1 .. row_T] [news_1 .. news_M] [event_1 .. event_N]
    `----------- prefix (P = 1+T+M) ---------' `----- events -----'

- an event token is the SUM of one embedding per field (kind, side, price, size, dt) plus a
  learned position, as in token-level LOB models (MarS's one token per order; LOBS5);
- a feature row (already normalized by the dataset) is projected linearly to d_model;
- a headline is its word embeddings averaged over real words, then a small MLP (a built-in
  text encoder trained with the model);
- attention: the prefix sees the (real) prefix only; event i sees the prefix and the real
  events j <= i (causal). BOS is always visible, so no query ever has an empty key set
  (left-padded windows and windows without news stay finite).

Heads, on the final (pre-norm) hidden states; the window heads read the newest event's state
beside the mean states of the real book rows and of the real headlines (a small model could not
route the rows through attention alone, nor the headlines, which 5% of windows hold: on the
news-driven windows of held-out seeds 9-10, depth CRPS at 100 messages with and without the
text was 0.209 vs 0.226 read through attention only, 0.196 vs 0.225 pooled into the heads;
see README for all held-out hours):
- next event, factorized per field: the hidden state of event i gives five independent
  distributions over event i+1's fields; the NLL of an event is the sum of the five
  cross-entropies. Mean NLL of the last k events is the model's surprise (anomaly score);
- quantiles (q10, q50, q90) of the 8 contract targets, monotone by construction (q50 -/+
  softplus gaps), predicted standardized and mapped to target units by stored loc/scale.
  Anchored (the default; `anchor`): spread and depth quantiles are corrections to a
  statistical band read off the window itself (persistence's median inside the rows' weighted
  10%/90% quantiles for the spread, inside the EWMA's band for depth), in units of the window's
  own dispersion: the instance normalization of time-series models (RevIN, Kim et al. 2022). A
  level that varies 10x across instruments and regimes is read off the rows instead of
  re-learned from normalized features, and the head learns the conditional change that
  persistence and the EWMA cannot; depth's loss is taken in its own units (UNIT_LOSS_TARGETS).
  Served spread and mid quantiles are then recalibrated
  in the target's own units (a + b*q per bin of level and band, the mid's in its spread's bins,
  fitted after training: model/network/recalibration.py) and projected onto each target's support (whole
  ticks >= 1 for the spread: `onto_support`);
- anomaly classes (normal + 6 kinds);
- mid direction (down / stationary / up) at 10 and 100 messages: a linear head on the same window
  state beside the newest book-state row and the rows' mean (`direction_input`), fitted after
  fine-tuning with the rest frozen (model/network/direction.py); until fitted (`direction_fitted`),
  the served p_up / p_down are read off the mid quantiles. Books of price levels (Binance, Coinbase,
  Kraken) may have a second such head fitted on the real captures alone (`l2_direction_fitted`).

Attention is torch.nn.functional.scaled_dot_product_attention (fused kernels on GPU).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.inputs import BATCH_KEYS, FIELDS, INPUT_FIELDS, NEWS_AGE
from model.network.direction import DIRECTIONS
from model.network.event_chain import EventChain
from model.network.l2_volume import CLIP as L2_VOLUME_CLIP
from model.network.l2_volume import PARTS as L2_VOLUME_PARTS
from model.network.recalibration import (
    LEVEL_BINS,
    N_BINS,
    N_NEWS_BINS,
    NEWS_AGE_EDGES,
    NEWS_SIDES,
    SIDE_TICKS,
    WIDE_RATIO,
)
from orderbook.events import Kind
from orderbook.features import FEATURE_NAMES, TRADE_KINDS

TARGETS: tuple[str, ...] = (
    "spread_h10",
    "spread_h100",
    "depth_h10",
    "depth_h100",
    "volume_h10",
    "volume_h100",
    "mid_h10",
    "mid_h100",
)
QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
DIRECTION_HORIZONS: tuple[int, ...] = (10, 100)  # the mid targets' horizons, in TARGETS' order
ANOMALY_CLASSES: tuple[str, ...] = (
    "normal",
    "spoofing",
    "layering",
    "quote_stuffing",
    "momentum_ignition",
    "flash_crash",
    "regime_shift",
)
# Kind values 1..12 + PAD; BID/ASK/NONE + PAD; +-64 ticks + NONE + PAD; 32 buckets + PAD (model/network/tokens.py)
DEFAULT_VOCAB: dict[str, int] = {"kind": 13, "side": 4, "price": 131, "size": 33, "dt": 33}


@dataclass
class ModelConfig:
    """Shapes and widths. N/T/F/M/L are the dataset's window shapes (n_events, n_rows,
    features, max_news, words per headline); `vocab` gives each event field's size (PAD = 0)."""

    vocab: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_VOCAB))
    n_events: int = 128
    n_rows: int = 32
    n_features: int = len(FEATURE_NAMES)
    max_news: int = 4
    news_len: int = 16  # words per headline, or the sentence embedding's width (text_encoder "minilm")
    text_vocab: int = 4096
    text_encoder: str = "hashed"  # model.network.tokens.TEXT_ENCODERS: TextEncoder or SentenceProjection
    d_model: int = 192
    n_layers: int = 4
    n_heads: int = 6
    ff_mult: int = 4
    dropout: float = 0.1
    # ablations (evaluation compares a model with each part removed) and the anchored head
    use_rows: bool = True
    use_news: bool = True
    anchored: bool = True
    # each headline's age (seconds from it to the window's newest event: model.inputs) added to its
    # embedding; off in a checkpoint written before the input existed (its config lacks the key)
    use_news_age: bool = False

    def __post_init__(self) -> None:
        missing = [f for f in FIELDS if f not in self.vocab]
        if missing:
            raise ValueError(f"ModelConfig.vocab lacks fields {missing}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        if self.anchored and self.n_features != len(FEATURE_NAMES):
            raise ValueError(f"anchored: the rows must be orderbook.features' {len(FEATURE_NAMES)} columns, "
                             f"not {self.n_features}")  # fmt: skip

    @classmethod
    def tiny(cls, **overrides) -> ModelConfig:
        """For tests: one layer, width 32."""
        return cls(**{"d_model": 32, "n_layers": 1, "n_heads": 2, "ff_mult": 2, "dropout": 0.0, **overrides})

    @classmethod
    def base(cls, **overrides) -> ModelConfig:
        """Two layers, width 64: the demo checkpoint's size, trained in minutes on a CPU."""
        return cls(**{"d_model": 64, "n_layers": 2, "n_heads": 4, "ff_mult": 4, "dropout": 0.0, **overrides})

    @classmethod
    def small(cls, **overrides) -> ModelConfig:
        """The default (~2.7M parameters at the contract's shapes)."""
        return cls(**overrides)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: (dict(v) if k == "vocab" else v) for k, v in data.items() if k in names})

    @property
    def prefix_len(self) -> int:
        return 1 + self.n_rows + self.max_news

    @property
    def anchors(self) -> bool:
        """Whether the quantile head is anchored: it reads the levels off the book rows, so a model
        without the rows (the book ablation) is not."""
        return self.anchored and self.use_rows


# the book-row columns the anchor reads, and which anchor each target takes (None: not anchored)
_ANCHOR_COLUMNS = ("valid", "spread_ticks", "log_depth_bid_5", "log_depth_ask_5")
# the book's slow memory of the depth target (EWMAs over thousands of messages, which the rows cannot
# hold): the depth stats read them at the newest two-sided row
_MEMORY_COLUMNS = tuple(n for n in FEATURE_NAMES if n.startswith("log_depth_5_ewma_"))
ANCHOR_HALFLIFE = 8.0  # rows, as the baseline forecaster's EWMA
# added to a window's own dispersion: half a tick / ~5% of the depth, so that a window that
# has not moved still gets a band, and one jump does not become a huge standardized residual
ANCHOR_FLOOR = {"spread": 0.5, "depth": 0.05}
_LEVELS = ("spread", "depth")
ANCHORED_TARGETS = tuple(t for t in TARGETS if t.rsplit("_h", 1)[0] in _LEVELS)
LEVEL_STATS = 7  # per level: six, then log1p(lots traded per message) (spread) or a 0 (depth)
ANCHOR_STATS = LEVEL_STATS * len(_LEVELS) + len(_MEMORY_COLUMNS)  # then the depth memory
# The targets' support, onto which served quantiles are projected: a spread is a whole number of
# ticks and at least one (targets exist on two-sided books only); depth and traded volume are
# log1p(lots) >= 0; the mid move is unbounded. Raising a quantile below the floor to it never raises
# its pinball loss against an outcome on the support; a quantile of a whole-tick variable is a whole
# tick, and the head, trained on a continuous loss, lands near one.
TARGET_FLOOR = {"spread": 1.0, "depth": 0.0, "volume": 0.0, "mid": -float("inf")}
WHOLE_TICK_TARGETS = ("spread",)
# The targets whose head is trained on the pinball loss in their own units (model/training/train.py
# loss_parts weighs each window's standardized residual by its anchor scale): depth, in log1p(lots).
# Unweighted, a window whose depth sat still (scale near ANCHOR_FLOOR) weighed 20x a moving one: the
# head fitted the still windows and lost to the EWMA band at 100 messages on every unseen instrument.
# Not the spread: in ticks, a blown-out simulated book's residual is thousands of ticks, and the
# weighted head lost 45% at 100 messages on COIN-M ETHUSD_PERP. docs/design.md, "Model decisions".
UNIT_LOSS_TARGETS = tuple(t for t in ANCHORED_TARGETS if t.startswith("depth_"))
# The depth targets of L2 books are served from a linear quantile head fitted after training on the
# training set's L2 windows (model/network/l2_depth.py says why), on L2_DEPTH_INPUTS inputs: the depth
# level's six anchor stats and the depth memory, in log1p(lots) from the band's median, then the log of
# the depth scale as it is (the last input: a checkpoint fitted before it loads with a zero weight there).
L2_DEPTH_TARGETS = tuple(t for t in TARGETS if t.startswith("depth_"))
L2_DEPTH_INPUTS = 6 + len(_MEMORY_COLUMNS) + 1
# The volume targets of L2 books are served from a hurdle head fitted after training on the training set's
# L2 windows (model/network/l2_volume.py says why), on L2_VOLUME_INPUTS inputs of the newest row
# (OrderFlowModel.l2_volume_inputs).
L2_VOLUME_TARGETS = tuple(t for t in TARGETS if t.startswith("volume_"))
L2_VOLUME_HORIZONS = tuple(int(t.rsplit("_h", 1)[1]) for t in L2_VOLUME_TARGETS)  # messages
_VOLUME_COLUMNS = ("signed_volume_log", "log_trade_rate", "log_message_rate")
L2_VOLUME_INPUTS = 6 + len(L2_VOLUME_TARGETS)
# The quantiles the recalibration maps (model/network/recalibration.py), and the band each target's bin is
# read off: its own, but the mid move's is its horizon's spread band. The mid has no band, and how
# far it moves is bound to the spread: a one-tick book's mid mostly stays within 10 messages, where
# a wide book's wanders. Not UNIT_LOSS_TARGETS: trained in their units already, and their bins are
# depth levels in lots, an instrument's own; maps fitted on the training instruments' levels raised
# the unseen instruments' depth CRPS at 100 messages by 2-6%.
RECALIBRATED_TARGETS = tuple(t for t in (*ANCHORED_TARGETS, "mid_h10", "mid_h100") if t not in UNIT_LOSS_TARGETS)
RECAL_BAND = tuple(TARGETS.index(t.replace("mid_", "spread_")) for t in TARGETS)
# the targets whose news bins of the recalibration are split by the side of the head's median: the mid's
NEWS_SIDED = tuple(t.startswith("mid_") for t in TARGETS)
# The targets whose served quantiles may be combined with the EWMA's band (OrderFlowModel.classic_band,
# classic_weight): the spread. On the demo's held-out simulated windows the recalibrated quantiles alone
# gained 5.9% / 9.3% over the best classic baseline at 10 / 100 messages, combined (w 0.65) 7.7% / 11.0%:
# the recalibration reads the head's quantiles, and the EWMA's band, ends from the window's own deviations,
# adds what they miss. docs/design.md, "Model decisions".
CLASSIC_TARGETS = tuple(t for t in TARGETS if t.startswith("spread_"))


def _deviation_ends(x: torch.Tensor, ok: torch.Tensor, mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) (B,): the 10% / 90% quantiles of the two-sided rows' deviations from their mean `mean`
    (B, 1), lo <= 0 <= hi, 0 without such a row: model/serving/baseline.py level_forecasts' band ends."""
    deviations = torch.where(ok, x - mean, torch.nan)
    lo = torch.nanquantile(deviations, 0.1, dim=1).nan_to_num(0.0).clamp(max=0.0)
    hi = torch.nanquantile(deviations, 0.9, dim=1).nan_to_num(0.0).clamp(min=0.0)
    return lo, hi


def floor_edge_of(target: str) -> float:
    """The level below which a target sits at its floor (recalibration's first bin): half a tick
    above it for whole ticks, 1e-3 above it otherwise (an empty book's log1p depth); the band's
    levels come from float32 features, so not the floor itself."""
    name = target.rsplit("_h", 1)[0]
    return TARGET_FLOOR[name] + (0.5 if name in WHOLE_TICK_TARGETS else 1e-3)


def recal_floor_edge_of(target: str) -> float:
    """The floor edge of the recalibration's level bins of `target`: that of the target whose band
    its bins are read off (RECAL_BAND)."""
    return floor_edge_of(TARGETS[RECAL_BAND[TARGETS.index(target)]])


def support_of(target: str) -> Callable[[np.ndarray], np.ndarray]:
    """The numpy twin of `OrderFlowModel.onto_support` for one target (e.g. "spread_h10")."""
    name = target.rsplit("_h", 1)[0]
    floor, whole = TARGET_FLOOR[name], name in WHOLE_TICK_TARGETS
    return lambda q: np.maximum(np.round(q) if whole else q, floor)


def recalibration_supports() -> list[Callable[[np.ndarray], np.ndarray] | None]:
    """Per target (TARGETS' order) its support where the recalibration maps it (RECALIBRATED_TARGETS),
    else None: what model/network/recalibration.py's fits take."""
    return [support_of(t) if t in RECALIBRATED_TARGETS else None for t in TARGETS]


class Block(nn.Module):
    """Pre-norm transformer block (GPT-2 layout): x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, d: int, n_heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, ff_mult * d), nn.GELU(), nn.Linear(ff_mult * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, s, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        # no attention-probability dropout (residual dropout only): it keeps SDPA on its fused kernels
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, s, d)))
        return x + self.drop(self.mlp(self.ln2(x)))


class TextEncoder(nn.Module):
    """Headline -> one vector: mean of the word embeddings of its real words, then an MLP
    (a bag-of-words encoder, trained with the model; id 0 is PAD)."""

    def __init__(self, text_vocab: int, d: int) -> None:
        super().__init__()
        self.words = nn.Embedding(text_vocab, d, padding_idx=0)
        self.mlp = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))

    def forward(self, news: torch.Tensor) -> torch.Tensor:
        real = (news > 0).unsqueeze(-1).to(self.words.weight.dtype)  # (B, M, L, 1)
        mean = (self.words(news) * real).sum(-2) / real.sum(-2).clamp(min=1.0)
        return self.mlp(mean)


class SentenceProjection(nn.Module):
    """A headline's frozen sentence embedding (model/network/sentence.py) -> one vector: an MLP trained
    with the model, the encoder itself never."""

    def __init__(self, dim: int, d: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, d), nn.GELU(), nn.Linear(d, d))

    def forward(self, news: torch.Tensor) -> torch.Tensor:
        return self.mlp(news.to(self.mlp[0].weight.dtype))


class OrderFlowModel(nn.Module):
    """Prefix-fused decoder-only transformer; see the module docstring for the layout."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = c = config
        d = c.d_model
        self.field_emb = nn.ModuleDict({f: nn.Embedding(c.vocab[f], d, padding_idx=0) for f in FIELDS})
        self.event_pos = nn.Parameter(torch.zeros(c.n_events, d))
        self.row_proj = nn.Linear(c.n_features, d)
        self.row_pos = nn.Parameter(torch.zeros(c.n_rows, d))
        self.text = SentenceProjection(c.news_len, d) if c.text_encoder == "minilm" else TextEncoder(c.text_vocab, d)
        self.news_pos = nn.Parameter(torch.zeros(c.max_news, d))
        self.bos = nn.Parameter(torch.zeros(d))
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList([Block(d, c.n_heads, c.ff_mult, c.dropout) for _ in range(c.n_layers)])
        self.ln_f = nn.LayerNorm(d)
        self.next_heads = nn.ModuleDict({f: nn.Linear(d, c.vocab[f]) for f in FIELDS})
        # the scenario generator's joint draw of an event's fields, off until fitted (model/network/event_chain.py)
        self.event_chain = EventChain(d, c.vocab)  # seeded by itself: the other weights draw what they drew before it
        # the window heads read the newest event's state beside the mean states of the book rows
        # and of the headlines
        self.quantile_head = nn.Linear(3 * d + ANCHOR_STATS, len(TARGETS) * len(QUANTILES))
        self.anomaly_head = nn.Linear(3 * d, len(ANOMALY_CLASSES))
        # targets (less their anchor) are predicted standardized; these (set from the training
        # data) map back to units; the feature ones undo the dataset's row normalization
        self.register_buffer("target_loc", torch.zeros(len(TARGETS)))
        self.register_buffer("target_scale", torch.ones(len(TARGETS)))
        # the recalibration a + b*q per target, bin and quantile (identity until fitted)
        self.register_buffer("recal_edges", torch.full((len(TARGETS), LEVEL_BINS - 1), float("inf")))
        identity = torch.zeros(len(TARGETS), N_BINS, len(QUANTILES), 2)
        identity[..., 1] = 1.0
        self.register_buffer("recal_coef", identity)
        # the maps of the windows right after a headline (recalibration.fit_news), where fitted
        news_identity = torch.zeros(len(TARGETS), N_NEWS_BINS, len(QUANTILES), 2)
        news_identity[..., 1] = 1.0
        self.register_buffer("recal_news_coef", news_identity)
        self.register_buffer("recal_news_fitted", torch.zeros(len(TARGETS), N_NEWS_BINS, dtype=torch.bool))
        # the level maps of books of price levels (recalibration.fit_l2), in the bins where fitted
        self.register_buffer("l2_recal_coef", identity.clone())
        self.register_buffer("l2_recal_fitted", torch.zeros(len(TARGETS), N_BINS, dtype=torch.bool))
        # the served quantiles' weight against the EWMA's band where both are known, per target (1: the
        # served quantiles alone; fitted for the spread: recalibration.fit_classic_weight)
        self.register_buffer("classic_weight", torch.ones(len(TARGETS)))
        self.register_buffer("classic_targets", torch.tensor([t in CLASSIC_TARGETS for t in TARGETS]), persistent=False)
        self.register_buffer("news_age_edges", torch.tensor(NEWS_AGE_EDGES), persistent=False)
        self.register_buffer("news_sided", torch.tensor(NEWS_SIDED), persistent=False)
        self.register_buffer("target_index", torch.arange(len(TARGETS)), persistent=False)
        self.register_buffer("recal_band", torch.tensor(RECAL_BAND), persistent=False)
        self.register_buffer("feature_loc", torch.zeros(c.n_features))
        self.register_buffer("feature_scale", torch.ones(c.n_features))
        # lots of each size token (its bucket's median; PAD 0): the volume anchor reads the traded lots
        self.register_buffer("size_lots", torch.zeros(c.vocab["size"]))
        self.register_buffer("trade_kinds", torch.tensor(sorted(TRADE_KINDS)), persistent=False)
        # a device tensor, not a Python list: indexing with a list copies it to the GPU on every call,
        # which a CUDA graph cannot capture
        anchor_columns = torch.tensor([FEATURE_NAMES.index(n) for n in (*_ANCHOR_COLUMNS, *_MEMORY_COLUMNS)])
        self.register_buffer("anchor_columns", anchor_columns, persistent=False)
        names = [t.rsplit("_h", 1)[0] for t in TARGETS]
        self.register_buffer("target_floor", torch.tensor([TARGET_FLOOR[n] for n in names]), persistent=False)
        self.register_buffer("whole_ticks", torch.tensor([n in WHOLE_TICK_TARGETS for n in names]), persistent=False)
        # the L2 books' depth head (l2_depth_quantiles), off until fitted
        n_depth = len(L2_DEPTH_TARGETS)
        self.register_buffer("l2_depth_weight", torch.zeros(n_depth, L2_DEPTH_INPUTS, len(QUANTILES)))
        self.register_buffer("l2_depth_bias", torch.zeros(n_depth, len(QUANTILES)))
        self.register_buffer("l2_depth_fitted", torch.zeros((), dtype=torch.bool))
        depth_index = torch.tensor([TARGETS.index(t) for t in L2_DEPTH_TARGETS])
        self.register_buffer("l2_depth_index", depth_index, persistent=False)
        # the L2 books' volume head (l2_volume_quantiles): its inputs' standardization and maps, off until fitted
        n_volume = len(L2_VOLUME_TARGETS)
        self.register_buffer("l2_volume_loc", torch.zeros(L2_VOLUME_INPUTS))
        self.register_buffer("l2_volume_scale", torch.ones(L2_VOLUME_INPUTS))
        self.register_buffer("l2_volume_coef", torch.zeros(n_volume, len(L2_VOLUME_PARTS), L2_VOLUME_INPUTS + 1))
        self.register_buffer("l2_volume_fitted", torch.zeros((), dtype=torch.bool))
        # per volume target, the head's weight against the book's record of realized volumes (a window's
        # volume_record, orderbook/volume_record.py), which the server combines them with (l2_volume.with_record);
        # 1: the head alone
        self.register_buffer("l2_volume_record_weight", torch.ones(n_volume))
        volume_index = torch.tensor([TARGETS.index(t) for t in L2_VOLUME_TARGETS])
        self.register_buffer("l2_volume_index", volume_index, persistent=False)
        volume_columns = torch.tensor([FEATURE_NAMES.index(n) for n in _VOLUME_COLUMNS])
        self.register_buffer("l2_volume_columns", volume_columns, persistent=False)
        horizons = torch.tensor(L2_VOLUME_HORIZONS, dtype=torch.float32)
        self.register_buffer("l2_volume_horizons", horizons, persistent=False)
        self.register_buffer("quantile_levels", torch.tensor(QUANTILES), persistent=False)
        self._init_weights()
        # created after the initialisation, zeroed: it draws nothing from the seeded generator, so the
        # other weights of a seed are what they were before the head existed; fitted after training
        self.direction_head = nn.Linear(3 * d + 2 * c.n_features, len(DIRECTION_HORIZONS) * len(DIRECTIONS))
        nn.init.zeros_(self.direction_head.weight)
        nn.init.zeros_(self.direction_head.bias)
        self.register_buffer("direction_fitted", torch.zeros((), dtype=torch.bool))
        # the L2 books' direction head (direction_logits): a second map of the same state, fitted on the
        # real captures alone (model/network/direction.py, fit_captures), off until fitted
        n_state = self.direction_head.in_features
        self.register_buffer("l2_direction_weight", torch.zeros(len(DIRECTION_HORIZONS) * len(DIRECTIONS), n_state))
        self.register_buffer("l2_direction_bias", torch.zeros(len(DIRECTION_HORIZONS) * len(DIRECTIONS)))
        self.register_buffer("l2_direction_fitted", torch.zeros((), dtype=torch.bool))
        # log1p(age) -> an offset of the headline's embedding, read where config.use_news_age; zeroed and made
        # after the initialisation, as the direction head: a seed's other weights are what they were without
        # it, and at step 0 the model serves what it would without the input (bench/news_bound.py: the age
        # is worth more than the headline's kind)
        self.news_age_proj = nn.Linear(1, d)
        nn.init.zeros_(self.news_age_proj.weight)
        nn.init.zeros_(self.news_age_proj.bias)

    @property
    def batch_keys(self) -> tuple[str, ...]:
        """The arrays `forward` reads."""
        return INPUT_FIELDS if self.config.use_news_age else BATCH_KEYS

    def _init_weights(self) -> None:
        chain = set(self.event_chain.modules())  # initialized by itself, zeroed corrections and all
        for m in self.modules():
            if m in chain:
                continue
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
                if m.padding_idx is not None:
                    m.weight.data[m.padding_idx].zero_()
        for p in (self.event_pos, self.row_pos, self.news_pos, self.bos):
            nn.init.normal_(p, std=0.02)

    def num_parameters(self) -> int:
        """The network's parameters; the event chain's, fitted after it for the scenario generator alone
        and read by nothing the worker serves, are not counted (the presets' sizes, the scaling study's)."""
        chain = {id(p) for p in self.event_chain.parameters()}
        return sum(p.numel() for p in self.parameters() if id(p) not in chain)

    def attention_mask(self, mask: torch.Tensor, row_mask: torch.Tensor, news_mask: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) bool, True = may attend: prefix -> real prefix; event i -> real prefix and
        real events j <= i. Padded queries keep BOS, so every row has a visible key."""
        b, n = mask.shape
        p = self.config.prefix_len
        bos = torch.ones(b, 1, dtype=torch.bool, device=mask.device)
        keys = torch.cat([bos, row_mask, news_mask, mask], dim=1)  # (B, S) real keys
        s = p + n
        idx = torch.arange(s, device=mask.device)
        # a key is reachable if it is in the prefix, or an event not after the query event
        reach = (idx[None, :] < p) | ((idx[None, :] <= idx[:, None]) & (idx[:, None] >= p))
        return (reach[None] & keys[:, None, :]).unsqueeze(1)

    def anchor(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(band (B, 8, 3), scale (B, 8), stats (B, ANCHOR_STATS)) float32: the head predicts, per
        quantile k, (target - band_k) / scale, standardized by target_loc/target_scale; so a model
        whose head outputs 0 serves the band itself, and training learns the correction. `stats`
        go into the quantile head beside the hidden states (see below).

        Spread and depth: the median of the band is the last two-sided row's value (persistence), its
        10%/90% ends model/serving/baseline.py's EWMA band (the EWMA, half-life ANCHOR_HALFLIFE rows, -/+ the
        window's own 10%/90% deviations from its mean), widened to take the median in, floored at 0
        (depth in lots, then log1p); the scale is the rows' EWMA-weighted mean absolute deviation
        from the median (depth: in log1p) + ANCHOR_FLOOR. Why: the spread does not move in most
        windows, which this band states sharply and a band in one global unit could not; persistence
        has the best median of the three baselines and the EWMA the best ends.
        The spread's ends are instead the EWMA-weighted 10%/90% quantiles of the rows' spreads: a
        spread is whole ticks and blows out for a message or two (a level taken, refilled), which
        drags the EWMA (and so the upper end) up for many rows after, but not a weighted quantile.
        Volume, mid, windows without a two-sided row (spread, depth), every target of a model that is
        not anchored: band 0, scale 1 (stats 0). Volume was anchored on the baseline's rate forecast
        (log1p(h x lots traded per message)) at first, but the rate read off token size buckets is
        too coarse: an unanchored head did better; the rate stays an input (stats). The measurements
        behind each choice: docs/design.md, "Model decisions".

        stats, per level, in units of its scale: the EWMA, the last-5 mean and the window mean less
        the median, the band's two widths, and log(scale); then log1p(lots traded per message of the
        window: EXECUTE/TRADE tokens at their size bucket's median lots over the rows): what
        persistence, HAR and the EWMA know, handed to the head as numbers, so that blending them is
        one linear map and not a computation the attention layers must learn from normalized rows;
        last, the depth memory columns (log1p depth EWMAs over 128 to 2,048 messages) at the newest
        two-sided row less the depth median, in units of its scale: where the depth drifts back to over
        100 messages, which the window's 32 rows cannot tell."""
        b, t, _ = batch["features"].shape
        dev = batch["features"].device
        band = torch.zeros(b, len(TARGETS), len(QUANTILES), device=dev)
        scale = torch.ones(b, len(TARGETS), device=dev)
        stats = torch.zeros(b, len(_LEVELS), LEVEL_STATS, device=dev)
        memory_stats = torch.zeros(b, len(_MEMORY_COLUMNS), device=dev)
        if not self.config.anchors:
            return band, scale, torch.cat([stats.flatten(1), memory_stats], 1)
        raw, ok, w = self.anchor_rows(batch)
        found = ok.any(1)
        last = (ok * torch.arange(1, t + 1, device=dev)).argmax(1)  # the newest two-sided row
        recent = ok & (torch.cumsum(ok.flip(1), 1).flip(1) <= 5)  # the newest five two-sided rows
        n = ok.sum(1, keepdim=True).clamp(min=1)
        series = {"spread": raw[..., 1], "depth": (torch.expm1(raw[..., 2]) + torch.expm1(raw[..., 3])).clamp(min=0.0)}
        level_band = {}
        for i, name in enumerate(_LEVELS):
            x = torch.where(ok, series[name], 0.0)  # one-sided rows weigh 0
            space = torch.log1p if name == "depth" else (lambda v: v)  # depth targets are log1p(lots)
            ewma = (w * x).sum(1)
            mean = x.sum(1, keepdim=True) / n
            if name == "spread":
                ends = weighted_quantile(x, w, 0.1), weighted_quantile(x, w, 0.9)
            else:
                lo, hi = _deviation_ends(x, ok, mean)
                ends = ewma + lo, ewma + hi
            now = x.gather(1, last[:, None])[:, 0]
            q = torch.stack([torch.minimum(ends[0], now), now, torch.maximum(ends[1], now)], 1)
            q = space(q.clamp(min=0.0))
            sc = (w * (space(x) - q[:, 1:2]).abs() * ok).sum(1) + ANCHOR_FLOOR[name]
            levels = [ewma, (x * recent).sum(1) / recent.sum(1).clamp(min=1), mean[:, 0]]
            st = [(space(v) - q[:, 1]) / sc for v in levels] + [(q[:, 0] - q[:, 1]) / sc, (q[:, 2] - q[:, 1]) / sc]
            stats[:, i, :6] = torch.where(found[:, None], torch.stack([*st, sc.log()], 1).clamp(-10.0, 10.0), 0.0)
            level_band[name] = (torch.where(found[:, None], q, 0.0), torch.where(found, sc, 1.0))
            if name == "depth":
                memory = raw[torch.arange(b, device=dev), last, len(_ANCHOR_COLUMNS) :]
                memory_stats = ((memory - q[:, 1:2]) / sc[:, None]).clamp(-10.0, 10.0)
                memory_stats = torch.where(found[:, None], memory_stats, 0.0)
        # the baseline's volume rate, lots traded per message (EXECUTE/TRADE tokens): an input only
        traded = batch["mask"] & torch.isin(batch["kind"], self.trade_kinds)
        per_message = (self.size_lots[batch["size"]] * traded).sum(1) / batch["row_mask"].sum(1).clamp(min=1)
        stats[:, 0, 6] = torch.log1p(per_message)
        for j, target in enumerate(TARGETS):
            name = target.rsplit("_h", 1)[0]
            if name in level_band:
                band[:, j], scale[:, j] = level_band[name]
        return band, scale, torch.cat([stats.flatten(1), memory_stats], 1)

    def embed(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Token embeddings (B, S, d) of the prefix then the events."""
        events = sum(self.field_emb[f](batch[f]) for f in FIELDS) + self.event_pos
        rows = self.row_proj(batch["features"]) + self.row_pos
        news = self.text(batch["news"]) + self.news_pos
        if self.config.use_news_age:
            if NEWS_AGE not in batch:
                raise ValueError("this model reads each headline's age (news_age), which the data lacks: a "
                                 "dataset written before 2026-12-03; build it again (megatrading dataset)")  # fmt: skip
            age = torch.log1p(batch[NEWS_AGE].to(news.dtype).clamp(min=0.0)).unsqueeze(-1)
            news = news + self.news_age_proj(age)
        bos = self.bos.expand(events.shape[0], 1, -1)
        return self.drop(torch.cat([bos.to(rows.dtype), rows, news.to(rows.dtype), events.to(rows.dtype)], dim=1))

    def _encode(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The blocks' output, normed (B, prefix + N, d), and the row and news masks attention used (an
        ablated part's all False)."""
        x = self.embed(batch)
        row_mask, news_mask = batch["row_mask"], batch["news_mask"]
        if not self.config.use_rows:
            row_mask = torch.zeros_like(row_mask)
        if not self.config.use_news:
            news_mask = torch.zeros_like(news_mask)
        attn = self.attention_mask(batch["mask"], row_mask, news_mask)
        for block in self.blocks:
            x = block(x, attn)
        return self.ln_f(x), row_mask, news_mask

    def event_states(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """`forward`'s `events` (B, N, d) alone, without the window's heads (with them, a scenario step's
        read takes 1.3-1.4x as long: bench/scenario_speed.py): what the event chain is fitted on and
        generation reads."""
        return self._encode(batch)[0][:, self.config.prefix_len :]

    def next_event(self, batch: Mapping[str, torch.Tensor], at: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """`forward`'s `next` logits (field -> (B, V)) and `events` state (B, d) at event slot `at` alone
        (a scenario step reads one slot: model/serving/scenarios.py)."""
        state = self.event_states(batch)[:, at]
        return {f: self.next_heads[f](state) for f in FIELDS}, state

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`batch`: the contract's arrays as tensors (see `to_batch`). Returns `next` (field ->
        (B, N, V) logits for the event after each position) and `events` (B, N, d), the states they are read
        off (the event chain's input), `quantiles_norm` (B, 8, 3)
        standardized (see `anchor`), `anchor` (B, 8, 3), `anchor_scale` (B, 8) and `anchor_stats`, `quantiles`
        (B, 8, 3) served (recalibrated, the spread's combined with the EWMA's band, on the support; L2
        books' depth from the L2 depth head),
        `quantiles_head` (B, 8, 3) in target units
        before the recalibration, `anomaly` (B, 7) logits. An ablated part (config use_rows /
        use_news) is masked out of attention."""
        h, row_mask, news_mask = self._encode(batch)
        c = self.config
        events = h[:, c.prefix_len :]
        rows = _masked_mean(h[:, 1 : 1 + c.n_rows], row_mask)
        news = _masked_mean(h[:, 1 + c.n_rows : c.prefix_len], news_mask)  # 0 without headlines
        last = torch.cat([events[:, -1], rows, news], dim=-1)  # left-padded windows: the newest event is last
        state = torch.cat([last, _newest_and_mean_rows(batch["features"], row_mask).to(last.dtype)], dim=-1)
        direction = self.direction_logits(batch, state).view(-1, len(DIRECTION_HORIZONS), len(DIRECTIONS))
        band, scale, stats = self.anchor(batch)
        q = self.quantile_head(torch.cat([last, stats.to(last.dtype)], dim=-1))
        q = q.float().view(-1, len(TARGETS), len(QUANTILES))
        mid = q[..., 1]
        q_norm = torch.stack([mid - F.softplus(q[..., 0]), mid, mid + F.softplus(q[..., 2])], dim=-1)
        standard = q_norm * self.target_scale[:, None] + self.target_loc[:, None]
        head = band + scale[..., None] * standard
        return {
            "next": {f: self.next_heads[f](events) for f in FIELDS},
            "events": events,
            "quantiles_norm": q_norm,
            "anchor": band,
            "anchor_scale": scale,
            "anchor_stats": stats,
            "quantiles_head": head,
            "quantiles": self.l2_volume_quantiles(
                batch,
                self.l2_depth_quantiles(
                    batch,
                    self.network_quantiles(
                        head, band, self.headline_age(batch), self.level_book_windows(batch), self.classic_band(batch)
                    ),
                    band,
                    scale,
                    stats,
                ),
            ),
            "anomaly": self.anomaly_head(last).float(),
            "direction_input": state,
            "direction": direction,
        }

    def network_quantiles(
        self,
        head: torch.Tensor,
        band: torch.Tensor,
        age: torch.Tensor | None = None,
        level_book: torch.Tensor | None = None,
        classic: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The network's served quantiles (B, 8, 3): its head's (`quantiles_head`) recalibrated (`age`:
        `headline_age`'s; `level_book`: `level_book_windows`'), sorted, combined with the EWMA's band
        (`classic`: `classic_band`'s) and on the support; `quantiles` is these with the L2 depth head's in
        place where it applies."""
        q = self.recalibrate(head, band, age, level_book).sort(-1).values
        if classic is not None:
            q = self.combine_classic(q, classic, level_book)
        return self.onto_support(q)

    def classic_band(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(B, 8, 3) the EWMA's q10/q50/q90 band of CLASSIC_TARGETS (model/serving/baseline.py
        level_forecasts' `ewma`, as evaluate recomputes it: the EWMA of the two-sided rows' spreads,
        half-life ANCHOR_HALFLIFE rows, -/+ their 10%/90% deviations from their mean, floored at 0); NaN
        for the other targets, a window without a two-sided row and a model without the rows."""
        b = batch["features"].shape[0]
        out = torch.full((b, len(TARGETS), len(QUANTILES)), float("nan"), device=batch["features"].device)
        if not self.config.anchors:
            return out
        raw, ok, w = self.anchor_rows(batch)
        x = torch.where(ok, raw[..., 1], 0.0)  # spread_ticks; one-sided rows weigh 0
        ewma = (w * x).sum(1)
        lo, hi = _deviation_ends(x, ok, x.sum(1, keepdim=True) / ok.sum(1, keepdim=True).clamp(min=1))
        band = torch.stack([ewma + lo, ewma, ewma + hi], 1).clamp(min=0.0)
        band = torch.where(ok.any(1, keepdim=True), band, torch.nan)
        return torch.where(self.classic_targets[None, :, None], band[:, None], out)

    def combine_classic(
        self, quantiles: torch.Tensor, classic: torch.Tensor, level_book: torch.Tensor | None
    ) -> torch.Tensor:
        """w q + (1 - w) e, quantile by quantile, of the sorted served quantiles q (B, 8, 3) and the
        EWMA's band e (`classic_band`), w per target (`classic_weight`), where e is known and the window
        is not of a book of price levels (their spread has maps of its own, and on a one-tick book the
        EWMA's band is far worse): recalibration.combine_classic's twin. Both are sorted, so the
        combination is too."""
        use = torch.isfinite(classic).all(-1)
        if level_book is not None:
            use = use & ~level_book[:, None]
        w = self.classic_weight[None, :, None]
        return torch.where(use[..., None], w * quantiles + (1.0 - w) * classic.nan_to_num(0.0), quantiles)

    def headline_age(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        """(B,) seconds from each window's newest headline to its newest event (inf without one), which
        picks the recalibration's news bins; None for a model that does not read the headlines' ages
        (an ablation without headlines must not be told when they came)."""
        if not (self.config.use_news and self.config.use_news_age):
            return None
        age = batch[NEWS_AGE].float().masked_fill(~batch["news_mask"], float("inf"))
        return age.min(-1).values

    def l2_depth_inputs(self, scale: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        """(B, L2_DEPTH_INPUTS): `anchor`'s depth stats and depth memory times the depth scale, so in
        log1p(lots) from the band's median, then the log-scale stat as it is. Why the last: times the
        scale, the log-scale stat is scale x log(scale), which a linear head cannot read the window's
        depth dispersion off; as it is, fitted on eight captures, depth at 10 messages gained 0.6-2.1
        points over the best baseline on the three Binance instruments outside the dataset (left one
        out) and lost 0.9 on spot ETHUSDT (at 100 messages within 0.2): docs/design.md, "Model
        decisions"."""
        x = torch.cat([stats[:, LEVEL_STATS : LEVEL_STATS + 6], stats[:, LEVEL_STATS * len(_LEVELS) :]], 1)
        log_scale = stats[:, LEVEL_STATS + 5 : LEVEL_STATS + 6]
        return torch.cat([x * scale[:, self.l2_depth_index[:1]], log_scale], 1)

    def l2_depth_quantiles(
        self,
        batch: Mapping[str, torch.Tensor],
        quantiles: torch.Tensor,
        band: torch.Tensor,
        scale: torch.Tensor,
        stats: torch.Tensor,
    ) -> torch.Tensor:
        """`quantiles` (B, 8, 3) served, with the depth targets of L2 windows (a LEVEL_SET token: a
        book of price levels, not of orders) that have a two-sided row replaced by the fitted L2
        depth head's: the band's median + l2_depth_inputs @ W + b, sorted, floored at 0. Unchanged
        until the head is fitted (model/network/l2_depth.py)."""
        j = self.l2_depth_index
        x = self.l2_depth_inputs(scale, stats)
        q = band[:, j, 1:2] + torch.einsum("bf,tfq->btq", x, self.l2_depth_weight) + self.l2_depth_bias
        q = q.sort(-1).values.clamp(min=0.0)
        use = self.l2_depth_fitted & self.l2_depth_windows(batch)
        return quantiles.index_copy(1, j, torch.where(use[:, None, None], q, quantiles[:, j]))

    def l2_volume_inputs(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(B, L2_VOLUME_INPUTS) float32, of the window's newest row (zeros without one): |signed volume|
        over the last second (log1p(lots)) and its mean over the rows, the trade and message rates (log1p
        per second), the log share of messages that trade (log of trades over messages per second), then
        that share (at most 1) and, per volume target, log1p(horizon x share): what a book of this
        instrument trades, in its own lots, and how often. No learned weight: the same for every network
        of a feature normalization (model/evaluation/l2_depth_folds.py refits the head on them)."""
        rows = batch["row_mask"]
        t = rows.shape[1]
        newest = (rows * torch.arange(1, t + 1, device=rows.device)).argmax(1)
        cols = self.l2_volume_columns
        raw = batch["features"][..., cols].float() * self.feature_scale[cols] + self.feature_loc[cols]
        raw = torch.where(rows[..., None], raw, 0.0)
        last = raw[torch.arange(rows.shape[0], device=rows.device), newest]
        signed, trade_rate, message_rate = last.unbind(1)
        mean_abs = raw[..., 0].abs().sum(1) / rows.sum(1).clamp(min=1)
        share = torch.log(torch.expm1(trade_rate).clamp(min=0.0) + 1e-3) - torch.log(
            torch.expm1(message_rate).clamp(min=0.0) + 1e-3
        )
        p = share.exp().clamp(max=1.0)
        x = torch.stack([signed.abs(), mean_abs, trade_rate, message_rate, share, p], 1)
        x = torch.cat([x, torch.log1p(p[:, None] * self.l2_volume_horizons)], 1)
        return torch.where(rows.any(1, keepdim=True), x, 0.0)

    def l2_volume_quantiles(self, batch: Mapping[str, torch.Tensor], quantiles: torch.Tensor) -> torch.Tensor:
        """`quantiles` (B, 8, 3) served, with the volume targets of the windows the L2 depth head serves
        (l2_depth_windows) replaced by the fitted L2 volume head's (model/network/l2_volume.py, whose
        `predict` is this in numpy): 0 at the levels under the chance that nothing trades, the traded
        volume's Normal quantile above. Unchanged until the head is fitted."""
        x = self.l2_volume_inputs(batch)
        z = ((x - self.l2_volume_loc) / self.l2_volume_scale).clamp(-L2_VOLUME_CLIP, L2_VOLUME_CLIP)
        z = torch.cat([z, torch.ones_like(z[:, :1])], 1)
        # in float32 under a GPU's bf16 autocast too: the mean itself is ~20 log lots, which bf16 rounds to 0.125
        with torch.autocast(z.device.type, enabled=False):
            p0, mean, log_sd = torch.einsum("bf,hpf->bph", z, self.l2_volume_coef).unbind(1)  # each (B, H)
        p0 = torch.sigmoid(p0)
        levels = self.quantile_levels
        level = ((levels - p0[..., None]) / (1.0 - p0[..., None]).clamp(min=1e-12)).clamp(1e-6, 1 - 1e-6)
        q = (mean[..., None] + log_sd.exp()[..., None] * torch.special.ndtri(level)).clamp(min=0.0)
        q = torch.where(levels <= p0[..., None], 0.0, q)
        j = self.l2_volume_index
        use = self.l2_volume_fitted & self.l2_depth_windows(batch)
        return quantiles.index_copy(1, j, torch.where(use[:, None, None], q, quantiles[:, j]))

    def direction_logits(self, batch: Mapping[str, torch.Tensor], state: torch.Tensor) -> torch.Tensor:
        """(B, H*3) float32 direction logits of `state` (`direction_input`): the L2 direction head's for
        the windows of a book of price levels once it is fitted, the direction head's otherwise."""
        logits = self.direction_head(state).float()
        l2 = F.linear(state.float(), self.l2_direction_weight, self.l2_direction_bias)
        use = self.l2_direction_fitted & self.level_book_windows(batch)
        return torch.where(use[:, None], l2, logits)

    def level_book_windows(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(B,) bool: the windows of a book of price levels (a LEVEL_SET token), not of orders."""
        return (batch["mask"] & (batch["kind"] == int(Kind.LEVEL_SET))).any(1)

    def l2_depth_windows(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(B,) bool: the windows the L2 depth head serves, of a book of price levels with a two-sided
        row."""
        return self.level_book_windows(batch) & self.two_sided_rows(batch).any(1)

    def anchor_rows(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What `anchor` and `classic_band` read of the rows: the _ANCHOR_COLUMNS and the depth memory
        un-normalized (B, T, C), the two-sided rows (B, T) and their EWMA weights (B, T), half-life
        ANCHOR_HALFLIFE rows, summing to 1 over a window's two-sided rows (0 elsewhere)."""
        t = batch["features"].shape[1]
        cols = self.anchor_columns
        raw = batch["features"][..., cols].float() * self.feature_scale[cols] + self.feature_loc[cols]
        ok = self.two_sided_rows(batch)
        w = ok.float() * 0.5 ** (torch.arange(t - 1, -1, -1, device=raw.device) / ANCHOR_HALFLIFE)
        return raw, ok, w / w.sum(1, keepdim=True).clamp(min=1e-12)

    def two_sided_rows(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(B, T) bool: the window's real rows whose book had both sides."""
        i = self.anchor_columns[:1]  # "valid": a slice stays on the device, a 0-dim index is read back
        valid = batch["features"][..., i].float() * self.feature_scale[i] + self.feature_loc[i]
        return batch["row_mask"] & (valid[..., 0] > 0.5)

    def recalibrate(
        self,
        quantiles: torch.Tensor,
        band: torch.Tensor,
        age: torch.Tensor | None = None,
        level_book: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, 8, 3) quantiles in target units -> a + b*q with (a, b) of each target's bin and
        quantile, the bin read off the band (B, 8, 3) of RECAL_BAND's target as
        recalibration.bin_of does; fitted by model/network/recalibration.py. Gathers of fixed shape, so
        CUDA-graph capture holds. The maps of q10, q50 and q90 are fitted apart and may cross:
        forward sorts them (rearrangement, Chernozhukov et al. 2010; it never raises the summed
        pinball loss, whatever the outcome). `level_book` (B,) bool: a window of a book of price levels
        takes the L2 map of its bin where one is fitted (recalibration.fit_l2). `age` (B,): a window
        whose newest headline is younger than the last NEWS_AGE_EDGES takes its news bin's map where one
        is fitted (recalibration.news_bin_of), over either."""
        band = band[:, self.recal_band]
        level = band[..., 1]
        wide = band[..., 2] - level > WIDE_RATIO * level.abs()
        bins = 2 * (level[..., None] >= self.recal_edges).sum(-1) + wide.long()  # (B, 8)
        coef = self.recal_coef[self.target_index, bins]  # (B, 8, 3, 2)
        if level_book is not None:
            use = level_book[:, None] & self.l2_recal_fitted[self.target_index, bins]
            coef = torch.where(use[..., None, None], self.l2_recal_coef[self.target_index, bins], coef)
        if age is not None:
            median = quantiles[..., 1]
            side = 1 + (median > SIDE_TICKS).long() - (median < -SIDE_TICKS).long()
            side = torch.where(self.news_sided, side, torch.ones_like(side))
            age_bin = (age[:, None] >= self.news_age_edges).sum(-1)  # (B,) 0 .. len(edges)
            news = (age_bin[:, None] * NEWS_SIDES + side).clamp(max=N_NEWS_BINS - 1)  # (B, 8)
            use = (age_bin < len(NEWS_AGE_EDGES))[:, None] & self.recal_news_fitted[self.target_index, news]
            coef = torch.where(use[..., None, None], self.recal_news_coef[self.target_index, news], coef)
        return coef[..., 0] + coef[..., 1] * quantiles

    def onto_support(self, quantiles: torch.Tensor) -> torch.Tensor:
        """(B, 8, 3) quantiles in target units projected onto the targets' support (TARGET_FLOOR,
        WHOLE_TICK_TARGETS); both maps are monotone, so the quantiles stay ordered."""
        q = torch.where(self.whole_ticks[:, None], quantiles.round(), quantiles)
        return torch.maximum(q, self.target_floor[:, None])

    @torch.no_grad()
    def score(self, batch: Mapping[str, torch.Tensor], k: int = 16) -> dict[str, torch.Tensor]:
        """Serving outputs (float32): `nll` (B,) surprise = mean NLL of the last k events,
        `nll_events` (B, N-1), `quantiles` (B, 8, 3), `probs` (B, 7) anomaly class probabilities."""
        out = self(batch)
        nll, valid = next_event_nll(out["next"], batch)
        return {
            "nll": surprise(nll, valid, k),
            "nll_events": nll,
            "quantiles": out["quantiles"].float(),
            "probs": out["anomaly"].float().softmax(-1),
            "direction": out["direction"].softmax(-1),
        }


def _newest_and_mean_rows(features: torch.Tensor, row_mask: torch.Tensor) -> torch.Tensor:
    """(B, 2F): the newest real row of each window and the mean of its real rows (normalized
    features as the network reads them; 0 for a window without rows)."""
    t = features.shape[1]
    newest = (row_mask * torch.arange(1, t + 1, device=features.device)).argmax(1)
    row = features.gather(1, newest[:, None, None].expand(-1, 1, features.shape[2]))[:, 0]
    row = torch.where(row_mask.any(1, keepdim=True), row, 0.0)
    return torch.cat([row, _masked_mean(features, row_mask)], dim=-1)


def weighted_quantile(x: torch.Tensor, w: torch.Tensor, q: float) -> torch.Tensor:
    """(B,) the q-quantile of each row of x (B, T) under weights w (B, T) >= 0 (0: left out): the
    smallest value whose cumulative weight reaches q of the row's total; 0 for rows without weight."""
    xs, order = torch.sort(torch.where(w > 0, x, torch.inf), dim=1)
    c = w.gather(1, order).cumsum(1)
    i = (c < q * c[:, -1:]).sum(1, keepdim=True).clamp(max=x.shape[1] - 1)
    return torch.where(c[:, -1] > 0, xs.gather(1, i)[:, 0], 0.0)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, L, d) states averaged over the True positions of `mask` (B, L); 0 where there are none."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def next_event_nll(logits: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]):
    """Per-event NLL (nats) of events 1..N-1 given everything before: (B, N-1), and the mask of
    real pairs (B, N-1). NLL = sum over fields of the cross-entropy, the factorized likelihood."""
    valid = batch["mask"][:, :-1] & batch["mask"][:, 1:]
    nll = 0.0
    for f in FIELDS:
        lg = logits[f][:, :-1].float()
        nll = nll + F.cross_entropy(lg.reshape(-1, lg.shape[-1]), batch[f][:, 1:].reshape(-1), reduction="none")
    nll = nll.view(valid.shape) * valid
    return nll, valid


def surprise(nll: torch.Tensor, valid: torch.Tensor, k: int = 16) -> torch.Tensor:
    """Mean NLL over the window's last k predicted events (real ones only); 0 where none."""
    n, v = nll[:, -k:], valid[:, -k:].float()
    return (n * v).sum(-1) / v.sum(-1).clamp(min=1.0)


def calibrated_score(nll: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Surprise -> 0..1 by the empirical CDF of surprise on normal training windows
    (`quantiles`: its 101 percentiles, stored in the checkpoint's calibration)."""
    q = np.asarray(quantiles, dtype=np.float64)
    return np.interp(np.asarray(nll, dtype=np.float64), q, np.linspace(0.0, 1.0, len(q)))


def to_batch(arrays: Mapping[str, np.ndarray], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Contract arrays (numpy, leading axis = batch) -> tensors on `device` (ids int64, masks
    bool, features, headline ages and sentence embeddings float32). Extra keys (targets, labels) are
    ignored; `news_age` is taken where present."""
    out = {}
    for key in INPUT_FIELDS if NEWS_AGE in arrays else BATCH_KEYS:
        a = np.asarray(arrays[key])
        if key.endswith("mask"):
            t = torch.from_numpy(a.astype(bool, copy=False))
        elif key == "features" or a.dtype.kind == "f":  # `news` holds embeddings under the sentence encoder
            t = torch.from_numpy(a.astype(np.float32, copy=False))
        else:
            t = torch.from_numpy(a.astype(np.int64, copy=False))
        out[key] = t.to(device, non_blocking=True)
    return out
