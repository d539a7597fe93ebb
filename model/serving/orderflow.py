"""The order-flow model (model/network/orderflow.py) behind the forecaster interface: what a worker serves.

A window becomes the model's arrays exactly as the training data did (model.inputs.model_inputs:
the checkpoint's tokenizers for the event tokens and headlines, its FeatureNorm for the book rows); one
forward pass gives the next-event likelihood of the window's last events (the surprise),
the quantiles of the eight targets and the anomaly class probabilities.

anomaly_score = max(1 - p(normal), surprise tail): the supervised head scores the labeled
kinds; the surprise (mapped to 0..1 by its empirical CDF on normal training windows) raises
the score only in its extreme tail (SURPRISE_TAIL), where it catches what no label named.
Taking the whole calibrated surprise instead puts every normal window's uniform surprise into
the score, and some manipulation (quote stuffing) is *more* predictable than normal flow: the
held-out AUROC fell (docs/design.md, "Model decisions"). anomaly_nll is the surprise itself (nats per
event, mean of the last k events). p_up / p_down are the direction head's P(up) and P(down) (a mid
move of at least half a tick either way; 1 - both is P(unchanged)); a checkpoint whose head is not
fitted (written before it existed) reads them off the piecewise-linear CDF through the three mid
quantiles, which sum to 1. The traded volume of books of price levels is the L2 volume head's combined
with the book's own record of realized volumes, which each window carries (`with_volume_record`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from model.inputs import FeatureNorm, encoding_fingerprint, model_inputs
from model.network import checkpoint
from model.network.l2_volume import with_record
from model.network.orderflow import (
    ANOMALY_CLASSES,
    DIRECTION_HORIZONS,
    L2_VOLUME_HORIZONS,
    TARGETS,
    calibrated_score,
    next_event_nll,
    to_batch,
)
from model.network.tokens import Tokenizer, text_encoder_of
from model.serving.forecaster import HORIZONS, QUANTILES, Forecaster, Prediction, Predictions, predictions_of
from model.serving.graphs import GraphedScore
from orderbook.clock import span
from orderbook.events import Kind, Side
from orderbook.features import FEATURE_NAMES
from orderbook.volume_record import VOLUME_HORIZONS
from orderbook.windows import Window

_LOG1P_TARGETS = ("depth", "volume")  # trained on log1p(lots)
SURPRISE_TAIL = 0.999  # calibrated surprise above this (1 normal window in 1000) raises the score


def combined_anomaly_score(surprise: np.ndarray, p_normal: np.ndarray) -> np.ndarray:
    """The served anomaly score from its two parts (see the module docstring)."""
    tail = np.clip((surprise - SURPRISE_TAIL) / (1.0 - SURPRISE_TAIL), 0.0, 1.0)
    return np.maximum(1.0 - p_normal, tail)


def best_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def prob_above_zero(q10: np.ndarray, q50: np.ndarray, q90: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P(X > 0), P(X < 0) under the CDF that is linear between (q10, .1), (q50, .5), (q90, .9)
    and flat at .1/.9 outside: a distribution read off three quantiles, nothing more."""
    xs = np.stack([q10, q50, q90], axis=1)
    ps = np.array([0.1, 0.5, 0.9])
    cdf0 = np.array([np.interp(0.0, x, ps, left=0.1, right=0.9) if np.all(np.diff(x) > 0) else
                     (0.1 if x[0] > 0 else 0.9 if x[2] < 0 else 0.5) for x in xs])  # fmt: skip
    return 1.0 - cdf0, cdf0


class OrderFlowForecaster(Forecaster):
    """OrderFlowModel served. Besides PREDICTION_FIELDS each prediction keeps what its alert
    explanation reads: the most likely anomaly kind (index into ANOMALY_CLASSES, never 0: normal),
    that kind's probability and the calibrated surprise."""

    name = "orderflow-gpt"
    extra_fields = (("anomaly_class", np.int64), ("anomaly_class_p", np.float64), ("surprise_score", np.float64))

    def __init__(self, directory: str | Path, device: str = "auto", cuda_graphs: bool = True) -> None:
        self.device = best_device(device)
        self.model, self.config, self.extra = checkpoint.load(directory, self.device)
        # the checkpoint's lineage number (`megatrading adapt` counts it up), not its training step: an
        # adapted checkpoint's step restarts, and forecasts must tell a swapped-in model from its parent
        self.version = f"v{checkpoint.version_of(self.extra)}"
        self.tokenizer = Tokenizer.from_json(self.extra["tokenizer"])
        self.text = text_encoder_of(self.extra["text_tokenizer"])
        self.norm = FeatureNorm.from_meta(self.extra, np.float32)  # the network's own precision
        self.feature_names = list(self.extra.get("feature_names") or FEATURE_NAMES)
        self.trained_window: dict | None = self.extra.get("window")  # the WindowConfig fields it was trained on
        self.encoding = encoding_fingerprint(self.extra)
        calibration = self.extra.get("calibration") or {}
        self.k = int(calibration.get("k", 16))
        self.calibration = calibration.get("quantiles")
        # the surprise alone is the training windows' empirical CDF (anomaly_score also folds in the classes)
        self.calibrated_score = "surprise_score" if self.calibration is not None else None
        self.bf16 = self.device.type == "cuda"
        self.direction_fitted = bool(self.model.direction_fitted)
        # on a GPU the small model is launch-bound: replay captured graphs (model/serving/graphs.py)
        self.graphed = GraphedScore(self.model, self.k) if cuda_graphs and self.device.type == "cuda" else None
        self._drivers_of: tuple[Window, int, tuple] | None = None  # see `drivers`
        # the L2 volume head's weight against the book's record of realized volumes (a window's volume_record,
        # whose horizons are the builder's: a model of other volume horizons serves its head alone)
        self.record_weight = self.model.l2_volume_record_weight.cpu().numpy().astype(np.float64)
        self.record_combined = (bool(self.model.l2_volume_fitted) and bool((self.record_weight < 1).any())
                                and L2_VOLUME_HORIZONS == VOLUME_HORIZONS)  # fmt: skip

    def warm_up(self, example: Window) -> None:
        """Before the first real batch: on a GPU the CUDA graph of every batch bucket
        (GraphedScore.capture_all), and anywhere one backward pass of an alert's explanation (`drivers`),
        whose first call sets up autograd on the device: on an H200 a worker's first alerts waited for it
        (bench/overload_bench.py, docs/gpu.md)."""
        if self.graphed is not None:
            self.graphed.capture_all(to_batch(self.arrays([example]), self.device))
        self._drivers(example, 3)  # not `drivers`: its answer is kept for the window it was asked of

    def arrays(self, windows: Sequence[Window]) -> dict[str, np.ndarray]:
        """The model's input for a batch of live windows (model.inputs, as the training data was built)."""
        return model_inputs(windows, self.tokenizer, self.text, self.norm)

    @torch.inference_mode()
    def predict(self, windows: Sequence[Window]) -> Predictions:
        if not windows:
            return np.zeros(0, self.dtype)
        batch = to_batch(self.arrays(windows), self.device)
        if self.graphed is not None:
            s = self.graphed(batch)
        else:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
                s = self.model.score(batch, k=self.k)
        nll = s["nll"].float().cpu().numpy()
        q = s["quantiles"].float().cpu().numpy()  # (B, targets, 3)
        probs = s["probs"].float().cpu().numpy()
        direction = s["direction"].float().cpu().numpy() if self.direction_fitted else None
        if self.record_combined:
            l2 = self.model.l2_depth_windows(batch).cpu().numpy()
            q = self.with_volume_record(q, l2, np.stack([w.volume_record for w in windows]))
        surprise = calibrated_score(nll, self.calibration) if self.calibration is not None else np.zeros_like(nll)
        score = combined_anomaly_score(surprise, probs[:, 0])
        cols: dict[str, np.ndarray] = {"anomaly_score": score, "anomaly_nll": nll,
                                       "anomaly_class_p": probs[:, 1:].max(1), "surprise_score": surprise}  # fmt: skip
        for j, target in enumerate(TARGETS):
            field, h = target.rsplit("_h", 1)
            vals = q[:, j]  # ordered by the model (q10 <= q50 <= q90)
            if field in _LOG1P_TARGETS:
                vals = np.expm1(np.maximum(vals, 0.0))
            if field == "volume":
                cols[f"volume_q50_h{h}"] = vals[:, 1]
                continue
            for i, level in enumerate(QUANTILES):
                cols[f"{field}_q{level}_h{h}"] = vals[:, i]
            if field == "mid" and direction is not None:
                p = direction[:, DIRECTION_HORIZONS.index(int(h))]  # (down, stationary, up)
                cols[f"p_up_h{h}"], cols[f"p_down_h{h}"] = p[:, 2], p[:, 0]
            elif field == "mid":
                cols[f"p_up_h{h}"], cols[f"p_down_h{h}"] = prob_above_zero(vals[:, 0], vals[:, 1], vals[:, 2])
        assert all(f"spread_q50_h{h}" in cols for h in HORIZONS), "checkpoint targets do not cover the horizons"
        finite = {n: np.nan_to_num(np.asarray(c, np.float64)) for n, c in cols.items()}
        return predictions_of(finite | {"anomaly_class": probs[:, 1:].argmax(1) + 1}, self.dtype)

    def with_volume_record(self, q: np.ndarray, l2: np.ndarray, record: np.ndarray) -> np.ndarray:
        """The quantiles `q` (B, targets, 3) with the volume of the windows `l2` (B,) bool, those the L2
        volume head served, combined with their book's `record` (B, H, 3) (l2_volume.with_record); what
        `predict` serves and `evaluate` scores (model.evaluation.outputs)."""
        j = self.model.l2_volume_index.cpu().numpy()
        out = q.copy()
        out[:, j] = np.where(l2[:, None, None], with_record(q[:, j], record, self.record_weight), q[:, j])
        return out

    def explain(self, window: Window, prediction: Prediction) -> str:
        """The alert's why: the event span, the most likely kind, the most surprising event of the
        last k and the book-series columns that drove the head's score (see `drivers`)."""
        kind = ANOMALY_CLASSES[int(prediction["anomaly_class"])]
        surprise, p = float(prediction["surprise_score"]), float(prediction["anomaly_class_p"])
        nll, columns = self.drivers(window)
        parts = [
            f"events {span(int(window.start_ts), int(window.ts))}: most likely {kind} p={p:.2f}",
            f"surprise {prediction['anomaly_nll']:.2f} nats/event over the last {self.k} events "
            f"(calibrated {surprise:.3f})",
        ]
        if nll is not None:
            i, value = nll
            parts.append(
                f"most surprising event {Kind(int(window.kind[i])).name} {Side(int(window.side[i])).name} "
                f"{int(window.price[i]):+d} ticks size {int(window.size[i])} ({value:.1f} nats)"
            )
        if columns:
            parts.append("driven by " + ", ".join(f"{name} {share:.0%}" for name, share in columns))
        return "; ".join(parts)

    def drivers(self, window: Window, top: int = 3) -> tuple[tuple[int, float] | None, list[tuple[str, float]]]:
        """((index, nll) of the window's most surprising event among the last k, or None), and the
        `top` book-series columns by their share of |input x gradient| of 1 - p(normal) summed over
        the rows (gradient x input attribution, Shrikumar et al. 2016): one backward pass, run for
        alerts only. The last window's answer is kept: an alert asks twice (its reason, then the
        window the worker keeps for it: streams/alert_window.py), on the one model thread."""
        last = self._drivers_of
        if last is not None and last[0] is window and last[1] == top:
            return last[2]
        found = self._drivers(window, top)
        self._drivers_of = (window, top, found)
        return found

    def _drivers(self, window: Window, top: int) -> tuple[tuple[int, float] | None, list[tuple[str, float]]]:
        # gradients even when called from inside an inference_mode block (a caller's scoring loop)
        with torch.inference_mode(False), torch.enable_grad():
            batch = to_batch(self.arrays([window]), self.device)
            feats = batch["features"].clone().requires_grad_(True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
                out = self.model({**batch, "features": feats})
                (1.0 - out["anomaly"].float().softmax(-1)[0, 0]).backward()
        with torch.no_grad():
            nll, valid = next_event_nll(out["next"], batch)
        last = (nll[0] * valid[0])[-self.k :].float().cpu().numpy()
        surprising = None
        if valid[0].any():
            j = int(np.argmax(last))
            # nll has N - 1 entries, entry i scoring event i + 1: the j-th of the last k is event N - k + j
            surprising = (len(window.kind) - len(last) + j, float(last[j]))
        attr = (feats.grad * feats).detach().float().abs()[0].sum(0).cpu().numpy()
        total = float(attr.sum())
        if total <= 0 or not np.isfinite(total):
            return surprising, []
        order = np.argsort(-attr)[:top]
        return surprising, [(self.feature_names[c], float(attr[c] / total)) for c in order]
