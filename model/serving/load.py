"""A forecaster from its spec (`--model`, MT_MODEL): apart from model/serving/forecaster.py, which
the forecasters themselves import, so that the interface does not import its implementations."""

from __future__ import annotations

from model.serving.forecaster import Forecaster


def load_forecaster(spec: str, device: str = "auto") -> Forecaster:
    """`baseline`, or `generative:CHECKPOINT_DIR` (torch; CUDA when there is one, else CPU)."""
    if spec == "baseline":
        from model.serving.baseline import BaselineForecaster

        return BaselineForecaster()
    if spec.startswith("generative:"):
        from model.serving.orderflow import OrderFlowForecaster

        return OrderFlowForecaster(spec.split(":", 1)[1], device=device)
    raise ValueError(f"unknown model {spec!r} (baseline or generative:CHECKPOINT_DIR)")
