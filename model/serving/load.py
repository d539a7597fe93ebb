"""A forecaster from its spec (`--model`, MT_MODEL): apart from model/serving/forecaster.py, which
the forecasters themselves import, so that the interface does not import its implementations."""

from __future__ import annotations

from dataclasses import asdict

from model.serving.forecaster import Forecaster
from orderbook.features import FEATURE_NAMES
from orderbook.windows import WindowConfig

# What a window holds and how its tokens are clipped: a model trained on windows cut otherwise is
# handed shapes or token levels it never saw (a longer window runs past its learned positions; a
# wider price clip gives it price levels it has no embedding for). The stride (`every_events`,
# `every_ns`) only says which windows are cut, each scored on its own, so it is not compared.
WINDOW_SHAPE = ("n_events", "n_rows", "max_news", "price_clip")


def load_forecaster(spec: str, device: str = "auto") -> Forecaster:
    """`baseline`, or `generative:CHECKPOINT_DIR` (torch; CUDA when there is one, else CPU)."""
    if spec == "baseline":
        from model.serving.baseline import BaselineForecaster

        return BaselineForecaster()
    if spec.startswith("generative:"):
        from model.serving.orderflow import OrderFlowForecaster

        return OrderFlowForecaster(spec.split(":", 1)[1], device=device)
    raise ValueError(f"unknown model {spec!r} (baseline or generative:CHECKPOINT_DIR)")


def serving_mismatch(forecaster: Forecaster, window: WindowConfig) -> str | None:
    """Why `forecaster` cannot score the windows a worker cuts with `window` (None: it can): its
    training windows' shape (WINDOW_SHAPE) or feature columns differ. Its tokenizers and feature
    normalization may differ from another model's: each checkpoint encodes the raw windows itself
    at predict time. A forecaster that declares no `trained_window` (the baseline) reads any window."""
    trained = getattr(forecaster, "trained_window", None)
    if trained:
        cut = asdict(window)
        differ = [f"{k} {trained[k]} (worker {cut[k]})" for k in WINDOW_SHAPE if k in trained and trained[k] != cut[k]]
        if differ:
            return f"trained on other windows: {', '.join(differ)}"
    names = getattr(forecaster, "feature_names", None)
    if names is not None and list(names) != list(FEATURE_NAMES):
        return f"trained on other feature columns ({len(names)}) than the worker computes ({len(FEATURE_NAMES)})"
    return None
