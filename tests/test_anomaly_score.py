"""The served anomaly score rises on spoofing: a tiny model trained on CPU for a few hundred steps
on simulated flow with labeled spoofing scores windows of a seed it never saw. The spoofing is
injected into normal windows (their newest events replaced by those of real spoofing windows),
so the windows compared differ only in that flow."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model.evaluation.outputs import model_outputs  # noqa: E402
from model.network.tokens import Tokenizer  # noqa: E402
from model.sim.anomalies import KINDS  # noqa: E402
from model.sim.engine import SimConfig  # noqa: E402
from model.training.dataset import build, save, sim_source  # noqa: E402
from model.training.train import train  # noqa: E402

SEC = 1_000_000_000
TRAIN = SimConfig(n_symbols=2, duration_ns=900 * SEC, seed=21, anomaly_rates={"spoofing": 12.0})
SPOOFING = 1 + KINDS.index("spoofing")
TOKENS = ("kind", "side", "price", "size", "dt")
INJECTED = 32  # the newest events of a window that are replaced


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("spoof")
    ds = build([sim_source(TRAIN)])
    assert (ds.arrays["label"] == SPOOFING).sum() >= 20
    path, _ = save(ds, d / "train.npz")
    kw = dict(batch=16, device="cpu", preset="tiny", checkpoint_every=10_000, seed=0)
    train("pretrain", path, d / "pre", steps=150, lr=3e-3, **kw)
    train("finetune", path, d / "fine", init=d / "pre", steps=300, lr=3e-3, **kw)
    held = build([sim_source(replace(TRAIN, seed=22))], tokenizer=Tokenizer.from_json(ds.meta["tokenizer"]))
    return d / "fine", held


def test_the_anomaly_score_rises_on_an_injected_spoofing_window(trained):
    directory, held = trained
    a = held.arrays
    normal = np.flatnonzero((a["label"] == 0) & a["mask"].all(axis=1))[:200]
    spoof = np.flatnonzero(a["label"] == SPOOFING)
    assert len(normal) >= 50 and len(spoof) >= 5
    base = {k: v[normal] for k, v in a.items()}
    injected = {k: v.copy() for k, v in base.items()}
    donors = spoof[np.arange(len(normal)) % len(spoof)]
    for f in (*TOKENS, "mask"):
        injected[f][:, -INJECTED:] = a[f][donors, -INJECTED:]
    # model_outputs re-normalizes the rows with the checkpoint's own feature mean/std
    before = model_outputs(directory, base, held.meta, "model")
    after = model_outputs(directory, injected, held.meta, "model")
    # the flow is more surprising (here 0.54 -> 0.62 calibrated), the served score rises many-fold on
    # average (0.03 -> 0.51) and many more windows reach an alert's level (4 -> 97 of 200 at 0.5). On
    # the flow where makers reprice (2026-12-05) most of the rise is the supervised head's; where every
    # crossing limit order traded, spoofing's cancels stood out more and the surprise's tail carried it
    # (0.55 -> 0.76, served 0.02 -> 0.13)
    assert after.surprise.mean() > before.surprise.mean() + 0.05
    assert after.anomaly.mean() > 3 * before.anomaly.mean()
    assert (after.anomaly >= 0.5).sum() >= max(15, 3 * (before.anomaly >= 0.5).sum())
