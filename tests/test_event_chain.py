"""The event chain (model/network/event_chain.py): unfitted it is the factorized heads exactly; fitted on
fields that depend on one another it learns the dependence and draws coherent events where the
factorized draw mixes them; an older checkpoint loads it off. And the scenario paths of an L2 book make
the level updates of one instant one message, as the venue sends them."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model.network import checkpoint, event_chain  # noqa: E402
from model.network.event_chain import EventChain  # noqa: E402
from model.network.orderflow import ModelConfig, OrderFlowModel  # noqa: E402
from model.network.tokens import TOKEN_FIELDS as FIELDS  # noqa: E402
from model.serving.scenarios import PathState, apply_event  # noqa: E402
from orderbook.book import L2Book  # noqa: E402
from orderbook.events import Event, Kind, Side  # noqa: E402
from orderbook.features import FeatureState  # noqa: E402
from orderbook.windows import WindowBuilder, WindowConfig  # noqa: E402
from tests.checkpoints import as_format  # noqa: E402

VOCAB = {"kind": 13, "side": 4, "price": 11, "size": 6, "dt": 5}
D = 8


def _coupled(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Events whose kind sets the side, and the side the price: a trade (7) is on side 1 at price 2, a
    level update (6) on side 2 at price 8; size and dt at random."""
    kind = rng.choice([6, 7], n)
    side = np.where(kind == 7, 1, 2)
    return {"kind": kind, "side": side, "price": np.where(side == 1, 2, 8),
            "size": rng.integers(1, 6, n), "dt": rng.integers(1, 5, n)}  # fmt: skip


def _marginals(targets: dict[str, np.ndarray]):
    """The factorized heads of a network that knows each field's marginal and nothing more (the state h
    is noise): what the chain has to improve on."""
    logp = {}
    for f in FIELDS:
        counts = np.bincount(targets[f], minlength=VOCAB[f]) + 1e-3
        logp[f] = torch.tensor(np.log(counts / counts.sum()), dtype=torch.float32)

    def base(h: torch.Tensor) -> dict[str, torch.Tensor]:
        return {f: v.expand(*h.shape[:-1], -1) for f, v in logp.items()}

    return base


def test_an_unfitted_chain_is_the_factorized_heads_exactly():
    chain = EventChain(D, VOCAB)
    h = torch.randn(5, D)
    base = {f: torch.randn(5, VOCAB[f]) for f in FIELDS}
    targets = {f: torch.randint(1, VOCAB[f], (5,)) for f in FIELDS}
    out = chain.logits(h, base, targets)
    assert not bool(chain.fitted)
    assert all(torch.equal(out[f], base[f]) for f in FIELDS)


def test_the_fit_learns_fields_that_depend_on_one_another_and_draws_them_together():
    rng = np.random.default_rng(0)
    targets = _coupled(20000, rng)
    base = _marginals(targets)
    h = rng.normal(size=(20000, D)).astype(np.float32)
    chain = EventChain(D, VOCAB)
    report = event_chain.fit(chain, h, base, targets, np.arange(20000) // 4)
    assert report["fitted"] and bool(chain.fitted)
    assert report["nll_factorized"]["side"] > 0.6 and report["nll_chain"]["side"] < 0.15  # ln 2 -> near 0
    assert report["nll_chain"]["price"] < 0.15
    assert report["nll_chain"]["kind"] == report["nll_factorized"]["kind"]  # the kind keeps the network's head
    gen = torch.Generator().manual_seed(1)

    def draw(lg: torch.Tensor) -> torch.Tensor:
        flat = lg.reshape(-1, lg.shape[-1]).softmax(-1)
        return torch.multinomial(flat, 1, generator=gen).view(lg.shape[:-1])

    hs = torch.from_numpy(h[:2000])
    with torch.no_grad():
        joint = chain.sample(hs, base(hs), draw)
    factorized = {f: draw(v) for f, v in base(hs).items()}

    def coherent(d: dict[str, torch.Tensor]) -> float:
        return float(
            ((d["side"] == torch.where(d["kind"] == 7, 1, 2)) & (d["price"] == torch.where(d["side"] == 1, 2, 8)))
            .float()
            .mean()
        )

    assert coherent(joint) > 0.9
    assert coherent(factorized) < 0.4  # 1/2 x 1/2 by chance


def test_a_chain_no_better_than_the_heads_is_left_off_and_zeroed():
    rng = np.random.default_rng(2)
    n = 400
    targets = {f: rng.integers(1, VOCAB[f], n) for f in FIELDS}  # every field on its own
    base = _marginals(targets)
    chain = EventChain(D, VOCAB)
    old = (event_chain.EPOCHS, event_chain.LR)
    event_chain.EPOCHS, event_chain.LR = 30, 3e-2  # fitted long and fast enough to overfit the noise
    try:
        report = event_chain.fit(chain, rng.normal(size=(n, D)).astype(np.float32), base, targets, np.arange(n))
    finally:
        event_chain.EPOCHS, event_chain.LR = old
    assert not report["fitted"] and not bool(chain.fitted)
    assert all(float(m[2].weight.detach().abs().sum()) == 0.0 for m in chain.mlp.values())


def test_a_format_12_checkpoint_loads_its_chain_unfitted(tmp_path):
    config = ModelConfig.tiny()
    model = OrderFlowModel(config)
    model.event_chain.fitted.fill_(True)
    d = as_format(checkpoint.save(model, config, {}, tmp_path / "ck"), 12, lambda k: k.startswith("event_chain."))
    loaded, _, _ = checkpoint.load(d)
    assert not bool(loaded.event_chain.fitted)
    assert all(float(m[2].weight.detach().abs().sum()) == 0.0 for m in loaded.event_chain.mlp.values())


def test_a_new_model_draws_every_other_weight_as_it_did_before_the_chain(monkeypatch):
    """The chain initializes under a forked generator and is skipped by the model's own initialization: a
    network trained from a seed starts where it started before the chain existed."""
    config = ModelConfig.tiny()
    torch.manual_seed(7)
    with_chain = OrderFlowModel(config)
    after_with = torch.get_rng_state()
    monkeypatch.setattr("model.network.orderflow.EventChain", lambda d, vocab: torch.nn.Module())
    torch.manual_seed(7)
    without = OrderFlowModel(config)
    assert torch.equal(after_with, torch.get_rng_state())
    theirs = without.state_dict()
    mine = {k: v for k, v in with_chain.state_dict().items() if not k.startswith("event_chain.")}
    assert mine.keys() == theirs.keys() and all(torch.equal(v, theirs[k]) for k, v in mine.items())


def _l2_path(builder: WindowBuilder, book: L2Book) -> PathState:
    return PathState(book=book, builder=builder, rng=np.random.default_rng(0), next_id=0, str_ids=False, ts=1_000,
                     seq=1)  # fmt: skip


def test_level_updates_of_one_instant_make_one_message_of_the_path():
    book = L2Book("binance", "X")
    for side, price, size in ((Side.BID, 100, 5), (Side.BID, 99, 7), (Side.ASK, 101, 4), (Side.ASK, 102, 9)):
        book.set_level(side, price, size)
    builder = WindowBuilder(
        WindowConfig(n_events=16, n_rows=8, every_events=None), FeatureState(tick=1), "binance", "X"
    )
    builder.push(book, [Event(Kind.LEVEL_SET, "binance", "X", 1_000, 1, Side.BID, 100, 5)])
    reference_book, reference = copy.deepcopy(book), copy.deepcopy(builder)
    path = _l2_path(builder, book)
    ts = 2_000
    message = [Event(Kind.LEVEL_SET, "binance", "X", ts, 2, Side.BID, 100, 6),
               Event(Kind.LEVEL_SET, "binance", "X", ts, 3, Side.ASK, 101, 3),
               Event(Kind.LEVEL_SET, "binance", "X", ts, 4, Side.BID, 98, 2)]  # fmt: skip
    for e in message:
        apply_event(path, e)
    for e in message:
        reference_book.apply(e)
    reference.push(reference_book, message)
    got, want = path.builder.window(), reference.window()
    assert got.row_mask.sum() == want.row_mask.sum() == 2  # the first message and this one
    for name in ("kind", "side", "price", "size", "dt", "mask", "features", "row_mask"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    trade = Event(Kind.TRADE, "binance", "X", ts, 5, Side.BID, 100, 1)  # a trade is a message of its own
    apply_event(path, trade)
    later = Event(Kind.LEVEL_SET, "binance", "X", ts + 5, 6, Side.ASK, 102, 1)  # a later instant: another
    apply_event(path, later)
    assert path.builder.window().row_mask.sum() == 4 and path.message == [later]


def test_a_refit_starts_from_the_initial_weights_whatever_the_chain_held():
    rng = np.random.default_rng(4)
    targets = _coupled(2000, rng)
    h = rng.normal(size=(2000, D)).astype(np.float32)
    fresh, used = EventChain(D, VOCAB), EventChain(D, VOCAB)
    event_chain.fit(used, h, _marginals(targets), targets, np.arange(2000) // 4)
    other = _coupled(2000, np.random.default_rng(5))
    event_chain.fit(used, h, _marginals(other), other, np.arange(2000) // 4)  # what it held before the refit
    event_chain.fit(fresh, h, _marginals(other), other, np.arange(2000) // 4)
    mine, theirs = used.state_dict(), fresh.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in mine.items())
