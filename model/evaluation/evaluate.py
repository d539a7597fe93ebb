"""Held-out evaluation of the order-flow model beside its baselines (issue 5, `megatrading evaluate`).

The evaluation run (`evaluate`) reads a dataset file of the contract (model.training.dataset), refuses
data the model was trained on (the seeds of the checkpoint's training file), and computes every metric
(model.evaluation.metrics) on the same windows for: each model directory given (several give an ablation
side by side: a model trained without the text or without the book series; model.evaluation.outputs
runs them), and the classic baselines (model.evaluation.baselines): the z-score and an isolation forest
for anomalies, the baseline forecaster, persistence, EWMA and HAR for liquidity. It writes the figures
(metrics.json), the model card with its tables (evaluation.md) and the plots (model.evaluation.report).

Anomalies are ranked overall (any kind vs normal) and per kind (windows of that kind vs normal windows;
the other kinds left out); the liquidity metrics leave out the windows whose target is missing, and are
reported on all windows and again on each part present (PARTS: simulated, real, news-driven).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.evaluation import direction_folds, l2_depth_folds
from model.evaluation.baselines import baseline_forecasts, isolation_forest_scores, window_vectors, zscore_anomaly
from model.evaluation.direction import DEEPLOB_STEPS
from model.evaluation.l2_depth_folds import LEFT_ONE_OUT
from model.evaluation.metrics import (
    TAUS,
    auroc,
    average_precision,
    coverage,
    crps_per_window,
    gain_intervals,
    paired_difference,
    pinball,
)
from model.evaluation.outputs import ModelOutputs, model_outputs, target_ok
from model.evaluation.report import GAIN_REFERENCES, markdown, plot_calibration, plot_roc
from model.inputs import FeatureNorm, check_encoding
from model.serving.forecaster import HORIZONS
from model.sim.anomalies import KINDS as ANOMALY_KINDS
from orderbook.features import FEATURE_NAMES

TARGET_FIELDS = ("spread", "depth", "volume", "mid")
TARGETS = tuple(f"{t}_h{h}" for h in HORIZONS for t in TARGET_FIELDS)


@dataclass
class Evaluation:
    """Every figure of a run: `anomaly[group][method] = (auroc, ap)`, `crps[target][method]`,
    `pinball[target][method] = [tau 0.1, 0.5, 0.9]`, `coverage[target][method]`, `gain_ci[target][method] =
    [lo, hi]` (all windows),
    `perplexity[model][part]`, and `parts[part] = {"n": {target: n}, "crps": {target: {method: v}}, "gain_ci": ...}`
    for the windows of each part present (PARTS: simulated, real, news-driven); with several
    models, `ablations[part][model][target or "nll"]` (ablation_differences). `models`: per model
    its name, directory, training seeds and its model card (model.evaluation.outputs.model_card)."""

    data: str
    seeds: list[int]
    sources: list[dict[str, Any]]
    n_windows: int
    n_liquidity: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    anomaly: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    crps: dict[str, dict[str, float]] = field(default_factory=dict)
    pinball: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    coverage: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    gain_ci: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # gain_ci over all windows
    perplexity: dict[str, dict[str, float]] = field(default_factory=dict)
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    ablations: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    direction: list[dict[str, Any]] = field(default_factory=list)  # model.evaluation.direction rows, if asked
    l2_depth_folds: dict[str, list[str]] = field(default_factory=dict)  # capture -> the captures its fold fitted on
    direction_folds: dict[str, dict[str, Any]] = field(default_factory=dict)  # direction_folds.left_one_out's

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def anomaly_groups(label: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """group -> (mask of the windows compared, positives among them): `overall` (any kind vs normal)
    and each kind present (that kind vs normal)."""
    out = {"overall": (np.ones(len(label), bool), label > 0)}
    for i, kind in enumerate(ANOMALY_KINDS, start=1):
        if (label == i).any():
            out[kind] = ((label == 0) | (label == i), label == i)
    return out


def window_crps(
    arrays: dict[str, np.ndarray], forecasts: dict[str, dict[str, np.ndarray]]
) -> dict[str, dict[str, np.ndarray]]:
    """method -> target -> (B,) each window's CRPS (crps_per_window), NaN where the target is missing:
    computed once, then averaged over each set of windows a table reports."""
    out: dict[str, dict[str, np.ndarray]] = {m: {} for m in forecasts}
    for t in TARGETS:
        ok = target_ok(arrays, t)
        y = arrays[t][ok]
        for method, per_target in forecasts.items():
            if t in per_target:
                c = np.full(len(ok), np.nan)
                c[ok] = crps_per_window(y, per_target[t][ok])
                out[method][t] = c
    return out


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else math.nan


def liquidity_metrics(
    ev: Evaluation,
    arrays: dict[str, np.ndarray],
    forecasts: dict[str, dict[str, np.ndarray]],
    crps: dict[str, dict[str, np.ndarray]],
) -> None:
    """CRPS (from `crps`, window_crps), pinball per quantile and coverage per target and method, on
    windows with a valid target."""
    for t in TARGETS:
        ok = target_ok(arrays, t)
        y = arrays[t][ok].astype(np.float64)
        ev.n_liquidity[t] = int(ok.sum())
        for method, per_target in forecasts.items():
            if t not in per_target:
                continue
            qs = per_target[t][ok]
            ev.crps.setdefault(t, {})[method] = _mean(crps[method][t][ok])
            ev.pinball.setdefault(t, {})[method] = [pinball(y, qs[:, k], tau) for k, tau in enumerate(TAUS)]
            ev.coverage.setdefault(t, {})[method] = [coverage(y, qs[:, k]) for k in range(len(TAUS))]


# the evaluated windows' parts, each reported on its own where present
PARTS: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {
    "simulated": lambda a: a["seed"] >= 0,
    "real": lambda a: a["seed"] < 0,
    "news-driven": lambda a: a["news_kind"] > 0,  # a headline of the symbol inside the window's span
}


def per_instrument(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """Each real source's windows (as "real <file>") when there are several: a model is judged on
    every held-out instrument, and the pooled real figure hides one it fails on under one it does well."""
    seeds = sorted({int(s) for s in arrays["seed"][arrays["seed"] < 0]})
    if len(seeds) < 2:
        return {}
    from model.training.dataset import source_file

    sources = [s for s in meta.get("sources", []) if "seed" in s and "name" in s]
    names = {int(s["seed"]): source_file(str(s["name"])) for s in sources}
    return {f"real {names.get(s, str(s))}": arrays["seed"] == s for s in seeds}


def part_metrics(
    arrays: dict[str, np.ndarray], crps: dict[str, dict[str, np.ndarray]], keep: np.ndarray
) -> dict[str, Any]:
    """{"windows": n, "n": {target: n}, "crps": {target: {method: CRPS}}, "gain_ci": gain_ci(...)} over
    the windows `keep` (`crps`: window_crps)."""
    out: dict[str, Any] = {"windows": int(keep.sum()), "n": {}, "crps": {}}
    for t in TARGETS:
        ok = target_ok(arrays, t) & keep
        out["n"][t] = int(ok.sum())
        out["crps"][t] = {m: _mean(per[t][ok]) for m, per in crps.items() if t in per}
    out["gain_ci"] = gain_ci(arrays, crps, keep)
    return out


def gain_ci(
    arrays: dict[str, np.ndarray], crps: dict[str, dict[str, np.ndarray]], keep: np.ndarray
) -> dict[str, dict[str, list[float]]]:
    """{target: {method: [lo, hi]}}: the 95% bootstrap interval of each forecast's CRPS gain over the best
    of GAIN_REFERENCES on the windows `keep` (metrics.gain_intervals), for every method but those and the
    baseline. On a one-tick book a handful of windows where the spread moves carry the CRPS, and the
    interval says how far a gain measured there can be trusted."""
    out: dict[str, dict[str, list[float]]] = {}
    for t in TARGETS:
        ok = target_ok(arrays, t) & keep
        refs = [per[t][ok] for m, per in crps.items() if m in GAIN_REFERENCES and t in per]
        methods = [m for m, per in crps.items() if t in per and m not in (*GAIN_REFERENCES, "baseline")]
        if refs and methods and ok.sum() >= 2:
            ci = gain_intervals(np.stack([crps[m][t][ok] for m in methods]), np.stack(refs))
            out[t] = {m: [float(lo), float(hi)] for m, (lo, hi) in zip(methods, ci, strict=True)}
    return out


def ablation_differences(
    arrays: dict[str, np.ndarray], outputs: Sequence[ModelOutputs], crps: dict[str, dict[str, np.ndarray]]
) -> dict[str, dict[str, dict[str, list[float]]]]:
    """part ("all" and each of PARTS present) -> model (each after the first) -> target -> [mean,
    lo, hi]: per window, the model's CRPS (`crps`: window_crps) less the first model's, with its 95%
    bootstrap interval; and "nll": the same for the next-event NLL per event (nats). For ablations
    evaluated beside the full model: above 0, the part left out helps; an interval clear of 0,
    beyond the noise of the evaluated windows (not of training: two training seeds of one recipe
    differ too)."""
    full, *others = outputs
    parts = {"all": np.ones(len(arrays["label"]), bool)} | {p: f(arrays) for p, f in PARTS.items()}
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for part, keep in parts.items():
        if not keep.any():
            continue
        per_event = np.maximum(full.n_events[keep], 1)
        for o in others:
            diff = {}
            for t in TARGETS:
                ok = target_ok(arrays, t) & keep
                diff[t] = list(paired_difference(crps[o.name][t][ok], crps[full.name][t][ok]))
            diff["nll"] = list(paired_difference(o.nll[keep] / per_event, full.nll[keep] / per_event))
            out.setdefault(part, {})[o.name] = diff
    return out


def evaluate(
    data_path: str | Path,
    model_dirs: Sequence[str | Path],
    out_dir: str | Path,
    seeds: Iterable[int] | None = None,
    device: str = "cpu",
    batch: int = 256,
    names: Sequence[str] | None = None,
    allow_seen: bool = False,
    progress: Callable[[int], None] | None = None,
    direction: bool = False,
    direction_train: str | Path | None = None,
    direction_steps: int | None = None,
    l2_depth_pool: Sequence[str | Path] = (),
    direction_pool: Sequence[str | Path] = (),
) -> Evaluation:
    """Evaluate each model of `model_dirs` (none: the baselines alone) on the windows of `data_path`
    (restricted to `seeds` if given) beside the baselines; writes evaluation.md, metrics.json, roc.png
    and calibration.png into `out_dir`. A window whose seed the model was trained on is refused
    (ValueError) unless `allow_seen`: the figures are for held-out data only. A dataset not encoded as
    a model encodes is refused (model.inputs.EncodingMismatch): build it with `dataset --like` that model.
    `direction`: also the mid-price direction table (model.evaluation.direction: direction.md and
    direction.csv), its baselines fitted on `direction_train` (a dataset file), else on the first model's
    training file where it is here, else cross-fitted over the evaluated seeds; `direction_steps`: the
    DeepLOB-style baseline's training steps (0: left out; None: direction.DEEPLOB_STEPS). `l2_depth_pool`:
    datasets (encoded as the first model) whose real captures the first model's L2 depth head and L2 level
    maps are refitted on, one capture left out at a time, for a variant row `<model> L2 heads left one
    out` (model.evaluation.l2_depth_folds). `direction_pool` (with `direction`): the same for the direction
    table, rows `<method> left one out` for the first model's direction head and the three baselines,
    each fitted on every real capture of the pool but the one scored (model.evaluation.direction_folds)."""
    from model.training.dataset import load, subset

    ds = load(Path(data_path))
    if seeds is not None:
        ds = subset(ds, np.isin(ds.arrays["seed"], np.fromiter(seeds, np.int64)))
    arrays, meta = ds.arrays, ds.meta
    if len(ds) == 0:
        raise ValueError(f"{data_path}: no windows to evaluate")
    present = sorted(int(s) for s in np.unique(arrays["seed"]))
    ev = Evaluation(str(data_path), present, [s for s in meta.get("sources", []) if s.get("seed") in present], len(ds))
    label = arrays["label"]
    ev.counts = {"normal": int((label == 0).sum())} | {
        k: int((label == i).sum()) for i, k in enumerate(ANOMALY_KINDS, 1)
    }
    for d in model_dirs:  # before any model runs: a refused pair should cost no forward pass
        config = Path(d) / "config.json"
        if config.is_file():
            check_encoding(meta, str(data_path), json.loads(config.read_text()), str(d))
    names = list(names) if names else _model_names(model_dirs)
    direction_pool = direction_pool if direction else ()
    outputs = [
        model_outputs(
            d, arrays, meta, n, device, batch, progress, str(data_path), direction_state=bool(direction_pool) and i == 0
        )
        for i, (d, n) in enumerate(zip(model_dirs, names, strict=True))
    ]
    for o in outputs:
        seen = sorted(set(o.train_seeds or ()) & set(present))
        if seen and not allow_seen:
            raise ValueError(f"{o.directory} was trained on seeds {seen} of the evaluation data: not held out")
        by_heads = sorted(set(o.head_seeds or ()) & set(present))
        if by_heads and not allow_seen:
            raise ValueError(f"{o.directory}'s post-hoc heads were fitted on seeds {by_heads} of the evaluation "
                             f"data ({o.card.get('head_files')}): not held out")  # fmt: skip
        ev.models.append(
            {"name": o.name, "directory": o.directory, "train_seeds": o.train_seeds, "head_seeds": o.head_seeds}
            | o.card
        )
        ev.perplexity[o.name] = {"all": o.perplexity()} | {p: o.perplexity(f(arrays)) for p, f in PARTS.items()}
    raw = FeatureNorm.from_meta(meta).invert(arrays["features"], arrays["row_mask"])
    scores = {o.name: o.anomaly for o in outputs}
    if len(outputs) == 1:
        scores |= {f"{outputs[0].name} surprise": outputs[0].surprise, f"{outputs[0].name} head": outputs[0].supervised}
    scores["z-score"] = zscore_anomaly(raw, arrays["row_mask"], meta.get("feature_names") or FEATURE_NAMES)
    vectors = window_vectors(arrays["features"], arrays["row_mask"])
    scores["isolation forest"] = isolation_forest_scores(vectors, seed=0)
    for group, (keep, pos) in anomaly_groups(label).items():
        ev.anomaly[group] = {
            m: (auroc(s[keep], pos[keep]), average_precision(s[keep], pos[keep])) for m, s in scores.items()
        }
    forecasts = {o.name: o.quantiles for o in outputs}
    # what the network adds: its anchor alone (the band a head that outputs 0 would serve); what
    # the recalibration adds: the head's quantiles before it
    forecasts |= {f"{o.name} anchor": o.anchor for o in outputs[:1] if o.anchor}
    forecasts |= {f"{o.name} unrecalibrated": o.unrecalibrated for o in outputs[:1] if o.unrecalibrated}
    if (l2_depth_pool or direction_pool) and not outputs:
        raise ValueError("a left-one-out row needs a model")
    # the evaluated file in a pool is taken whole from this run (unless restricted to some seeds)
    evaluated = None if seeds is not None else Path(data_path).resolve()
    pool_runs = _pool_runs(outputs, [*l2_depth_pool, *direction_pool], evaluated, device, batch, bool(direction_pool))
    if l2_depth_pool:
        first = outputs[0]
        windows = l2_depth_folds.pool(
            l2_depth_folds.l2_windows(first, arrays, meta) if p == evaluated else l2_depth_folds.l2_windows(*run)
            for p, run in _runs_of(l2_depth_pool, evaluated, pool_runs)
        )
        served, ev.l2_depth_folds = l2_depth_folds.left_one_out(first, arrays, meta, windows)
        forecasts[f"{first.name} {LEFT_ONE_OUT}"] = served
    forecasts |= baseline_forecasts(arrays, meta)
    crps = window_crps(arrays, forecasts)
    liquidity_metrics(ev, arrays, forecasts, crps)
    ev.gain_ci = gain_ci(arrays, crps, np.ones(len(arrays["label"]), bool))
    for part, select in PARTS.items():
        keep = select(arrays)
        if keep.any():
            ev.parts[part] = part_metrics(arrays, crps, keep)
    for part, keep in per_instrument(arrays, meta).items():
        ev.parts[part] = part_metrics(arrays, crps, keep)
    if len(outputs) > 1:
        ev.ablations = ablation_differences(arrays, outputs, crps)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if direction:
        folds = None
        if direction_pool:
            steps = DEEPLOB_STEPS if direction_steps is None else direction_steps
            scored = direction_folds.capture_windows(outputs[0], arrays, meta, steps > 0)
            windows = l2_depth_folds.pool(
                (
                    scored if p == evaluated else direction_folds.capture_windows(*run, steps > 0)
                    for p, run in _runs_of(direction_pool, evaluated, pool_runs)
                ),
                direction_folds.join,
            )
            folds = direction_folds.left_one_out(outputs[0].name, arrays, meta, scored, windows, steps)
        _direction(ev, ds, outputs, out, direction_train, direction_steps, folds)
    (out / "metrics.json").write_text(json.dumps(_no_nan(ev.to_json()), indent=1, default=_json_default) + "\n")
    (out / "evaluation.md").write_text(markdown(ev))
    plot_roc(out / "roc.png", scores, anomaly_groups(label))
    plot_calibration(out / "calibration.png", ev)
    return ev


def _pool_runs(
    outputs: Sequence[ModelOutputs],
    paths: Sequence[str | Path],
    evaluated: Path | None,
    device: str,
    batch: int,
    direction_state: bool,
) -> dict[Path, tuple[ModelOutputs, dict[str, np.ndarray], dict[str, Any]] | None]:
    """Each pool file but the evaluated one, run once through the first model (its real windows:
    l2_depth_folds.score_real), by resolved path; None for a file without real windows."""
    runs: dict[Path, Any] = {}
    for path in dict.fromkeys(Path(p).resolve() for p in paths):
        if path != evaluated:
            runs[path] = l2_depth_folds.score_real(outputs[0].directory, path, device, batch, direction_state)
    return runs


def _runs_of(paths: Sequence[str | Path], evaluated: Path | None, runs: dict[Path, Any]) -> list[tuple[Path, Any]]:
    """(path, run) of the pool `paths` that have real windows; the evaluated file's run is None (taken
    from the evaluation itself)."""
    resolved = dict.fromkeys(Path(p).resolve() for p in paths)
    return [(p, runs.get(p)) for p in resolved if p == evaluated or runs.get(p) is not None]


def _direction(
    ev: Evaluation,
    ds: Any,
    outputs: Sequence[ModelOutputs],
    out: Path,
    train_path: Any,
    steps: int | None,
    folds: tuple[dict[int, dict[str, np.ndarray]], dict[str, dict[str, Any]]] | None = None,
) -> None:
    from model.evaluation.direction import direction_rows, write_direction
    from model.training.dataset import load

    if train_path is None and outputs:
        data = (outputs[0].card.get("training") or {}).get("data")
        train_path = data if data and Path(data).is_file() else None
    train = None
    if train_path is not None:
        t = load(Path(train_path))
        seen = sorted(set(np.unique(t.arrays["seed"]).tolist()) & set(ev.seeds))
        if seen:
            raise ValueError(f"direction: training file {train_path} holds evaluated seeds {seen}: not held out")
        train = (t.arrays, t.meta)
    fitted_on = f"{train_path}" if train else "cross-fitted over the evaluated seeds (two folds of alternate seeds)"
    quantiles = {o.name: o.quantiles for o in outputs}
    heads = {o.name: o.direction for o in outputs if o.direction}
    extra, ev.direction_folds = folds if folds is not None else (None, {})
    compare = direction_folds.loo_rivals(outputs[0].name) if folds else None
    ev.direction = direction_rows(
        ds.arrays, ds.meta, quantiles, train, deeplob_steps=steps, model_direction=heads, extra=extra, compare=compare
    )
    appendix = direction_folds.folds_markdown(ev.direction_folds, ev.direction, outputs[0].name) if folds else ""
    write_direction(out, ev.direction, fitted_on, appendix)


def _model_names(dirs: Sequence[str | Path]) -> list[str]:
    if len(dirs) == 1:
        return ["model"]
    names = [Path(d).name or str(d) for d in dirs]
    return names if len(set(names)) == len(names) else [f"model{i + 1}:{n}" for i, n in enumerate(names)]


def _no_nan(x: Any) -> Any:
    """NaN (an undefined metric) as null: strict JSON has no NaN."""
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_no_nan(v) for v in x]
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON: {type(x)}")
