"""The next event's fields drawn jointly: p(kind) p(side | kind) p(price | kind, side) p(size | kind, side,
price) p(dt | kind, side, price, size), for the scenario generator (model/serving/scenarios.py).

The network's next-event heads (OrderFlowModel.next_heads) give each field's distribution given the
window, one independent of another: their product is the factorized likelihood the network is trained
on and the surprise is read from. Sampled field by field, a kind drawn as a trade takes the price of a
level update deep in the book, which on a book of price levels applies anyway and feeds the next draws.
Over 8 cuts of each Binance capture (bench/scenario_fidelity.py, 16 paths x 200 events), the factorized
draw put the trades of the four instruments the network never saw a median 27-56 ticks from the touch
of the book they met, where the real ones were 0-21 ticks away; drawn through the chain, 0.2-4.3 (on
USD-M ETHUSDT, whose real trades were 21 ticks away, the farther of the two). On the held-out windows of
make checkpoint the chain's NLL of the next event is 5.15 nats against 5.39 on the real ones and 6.41
against 7.18 on the simulated ones (docs/design.md, "Generation"). Weak: its size correction, which the
held-out windows of the training instruments approve, raises the size NLL on spot ETHUSDT (2.60 -> 2.69);
its paths move the mid in as many messages as the real flow, within a factor of two, on five of six
Binance books (the factorized draw's 2.5-12x), but never sweep a side level after level as real messages
do.

The chain adds to each field's logits (after the first) a correction read off the network's state at
the event and the fields drawn before it: logits_f = next_heads[f](h) + mlp_f([h, emb(previous)]), the
last layer of each mlp zeroed at the start, so an unfitted chain is the factorized model exactly. It is
fitted after training on the frozen network (`fit`, train.py's `fit_event_chain`), teacher-forced on the
training windows' events, and used only where `fitted` (older checkpoints load it off and sample as
before). The kind keeps the network's own head, so the chain's likelihood and the factorized one share
the kind's term.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from model.network.tokens import TOKEN_FIELDS as FIELDS

EMBED = 16  # each earlier field's id embedding
HIDDEN = 256
EPOCHS = 8
BATCH = 4096
LR = 3e-3
POSITIONS = 16  # events per window the fit reads (drawn at random among its real ones)
SEED = 0  # of the initial weights
VALIDATION = 0.1  # share of the windows the fit holds out to check that the chain beats the factorized heads


class EventChain(nn.Module):
    """The corrections of each field after the first (see the module docstring), and `fitted`."""

    def __init__(self, d: int, vocab: Mapping[str, int]) -> None:
        super().__init__()
        self.d, self.vocab = d, dict(vocab)
        with torch.random.fork_rng(devices=[]):  # its own seed: the caller's generator draws what it drew before
            torch.manual_seed(SEED)
            self.emb = nn.ModuleDict({f: nn.Embedding(vocab[f], EMBED) for f in FIELDS[:-1]})
            self.mlp = nn.ModuleDict()
            for j, f in enumerate(FIELDS[1:], start=1):
                mlp = nn.Sequential(nn.Linear(d + EMBED * j, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, vocab[f]))
                nn.init.zeros_(mlp[2].weight)
                nn.init.zeros_(mlp[2].bias)
                self.mlp[f] = mlp
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def reset(self) -> None:
        """Back to the initial weights (the same for every chain of a shape), off: a fit starts from them,
        so that a refit is a function of the network and the data alone."""
        self.load_state_dict(EventChain(self.d, self.vocab).to(self.fitted.device).state_dict())

    def correction(self, field: str, h: torch.Tensor, previous: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(..., V) added to `field`'s logits, given the state h (..., d) and the ids (...) of every field
        before it in FIELDS."""
        j = FIELDS.index(field)
        parts = [h.float()] + [self.emb[f](previous[f]) for f in FIELDS[:j]]
        return self.mlp[field](torch.cat(parts, -1))

    def logits(
        self, h: torch.Tensor, base: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Teacher-forced: every field's logits given the true earlier fields `targets` (ids, same leading
        shape as h); `base`: the network's next-event logits."""
        out = {FIELDS[0]: base[FIELDS[0]].float()}
        for f in FIELDS[1:]:
            out[f] = base[f].float() + self.correction(f, h, targets)
        return out

    def sample(
        self,
        h: torch.Tensor,
        base: Mapping[str, torch.Tensor],
        draw: Callable[[torch.Tensor], torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Field by field: each field's logits given the fields already drawn, passed to `draw` (logits
        (..., V) -> ids (...)). h (..., d) and base (..., V) broadcast over the draws the caller wants."""
        drawn: dict[str, torch.Tensor] = {}
        for f in FIELDS:
            lg = base[f].float()
            if f != FIELDS[0]:
                lg = lg + self.correction(f, h, drawn)
            drawn[f] = draw(lg)
        return drawn


def nll(logits: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-field cross-entropy (N,) of `logits` (field -> (N, V)) at `targets` (field -> (N,))."""
    return {f: F.cross_entropy(logits[f], targets[f], reduction="none") for f in FIELDS}


def fit(
    chain: EventChain,
    h: np.ndarray,
    base: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    targets: Mapping[str, np.ndarray],
    window: np.ndarray,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, object]:
    """Train `chain`'s corrections, from its initial weights, on states h (N, d) whose next events are
    `targets` (field -> (N,) ids), `base` giving the network's logits of a batch of states; `window` (N,)
    names each state's window, so that the held-out check (VALIDATION of the windows) reads windows the
    fit never saw. Switches the chain on only if it lowers the held-out NLL of the fields it corrects;
    returns both NLLs per field (nats per event) on the held-out states."""
    chain.reset()
    rng = np.random.default_rng(seed)
    ids = np.unique(window)
    held = np.isin(window, rng.choice(ids, max(1, int(len(ids) * VALIDATION)), replace=False))
    x = torch.from_numpy(np.asarray(h, np.float32))
    y = {f: torch.from_numpy(np.asarray(targets[f], np.int64)) for f in FIELDS}
    train_idx, val_idx = np.flatnonzero(~held), np.flatnonzero(held)
    opt = torch.optim.Adam(chain.parameters(), lr=LR)
    steps = EPOCHS * max(1, -(-len(train_idx) // BATCH))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    chain.train()
    for epoch in range(EPOCHS):
        order = torch.from_numpy(train_idx)[torch.randperm(len(train_idx), generator=gen)]
        total = 0.0
        for lo in range(0, len(order), BATCH):
            k = order[lo : lo + BATCH]
            t = {f: y[f][k] for f in FIELDS}
            with torch.no_grad():
                b = base(x[k])
            loss = sum(v.mean() for f, v in nll(chain.logits(x[k], b, t), t).items() if f != FIELDS[0])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(k)
        if log is not None:
            log(
                f"event chain epoch {epoch + 1}/{EPOCHS}: training NLL of the corrected fields {total / len(order):.4f}"
            )
    chain.eval()
    factorized, joint = compare_nll(chain, x, y, base, val_idx)
    better = sum(joint[f] for f in FIELDS[1:]) < sum(factorized[f] for f in FIELDS[1:])
    if better:
        chain.fitted.fill_(True)
    else:
        chain.reset()  # zeroed corrections: an unfitted chain is the factorized model
    return {
        "states": len(x),
        "held_out_states": len(val_idx),
        "nll_factorized": {f: round(v, 4) for f, v in factorized.items()},
        "nll_chain": {f: round(v, 4) for f, v in joint.items()},
        "fitted": bool(better),
    }


@torch.no_grad()
def compare_nll(
    chain: EventChain,
    x: torch.Tensor,
    y: Mapping[str, torch.Tensor],
    base: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    idx: np.ndarray,
) -> tuple[dict[str, float], dict[str, float]]:
    """Per-field NLL (nats per event) of the states `idx` of x (N, d) at their next events y (field -> (N,)),
    the factorized heads' (`base`) and the chain's: fit's held-out check, and the bench's."""
    sums_f, sums_j = dict.fromkeys(FIELDS, 0.0), dict.fromkeys(FIELDS, 0.0)
    for lo in range(0, len(idx), BATCH):
        k = torch.from_numpy(idx[lo : lo + BATCH])
        t = {f: y[f][k] for f in FIELDS}
        b = base(x[k])
        for f, v in nll({f: b[f].float() for f in FIELDS}, t).items():
            sums_f[f] += float(v.sum())
        for f, v in nll(chain.logits(x[k], b, t), t).items():
            sums_j[f] += float(v.sum())
    n = max(len(idx), 1)
    return {f: v / n for f, v in sums_f.items()}, {f: v / n for f, v in sums_j.items()}
