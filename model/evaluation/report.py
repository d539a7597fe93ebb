"""The evaluation's report: evaluation.md (a model card: the models evaluated, their training, the
held-out data, then one table per metric family, each model beside the baselines), roc.png and
calibration.png.

Everything in them is read from the Evaluation (what metrics.json holds): the targets, parts, methods
and models are the ones it has, so the report states no figure of its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model.evaluation.baselines import LIQUIDITY_BASELINES
from model.evaluation.l2_depth_folds import LEFT_ONE_OUT
from model.evaluation.metrics import TAUS, auroc, roc_curve

if TYPE_CHECKING:
    from model.evaluation.evaluate import Evaluation

# the classic forecasts a model's gain is measured against: the best of them per target
GAIN_REFERENCES = ("persistence", "ewma", "har")


def _f(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _interval(v: Sequence[float]) -> str:
    mean, lo, hi = v
    return "—" if mean is None or math.isnan(mean) else f"{mean:+.4g} [{lo:+.3g}, {hi:+.3g}]"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _quantile_names(sep: str = " / ") -> str:
    return sep.join(f"q{round(100 * t)}" for t in TAUS)


def seed_ranges(seeds: Iterable[int]) -> str:
    """Seeds as runs of consecutive values: [-3, -2, 9, 10, 21, 22, 23] -> "-3 to -2, 9-10, 21-23"."""
    runs: list[list[int]] = []
    for s in sorted(set(seeds)):
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return ", ".join(str(a) if a == b else f"{a}-{b}" if a >= 0 else f"{a} to {b}" for a, b in runs) or "none"


def sources_summary(sources: Sequence[dict[str, Any]]) -> str:
    """A dataset's sources in a line: the simulated ones by seed, the real captures by name
    (a real source's seed is negative: model.training.dataset)."""
    sim = [s["seed"] for s in sources if s.get("seed") is not None and s["seed"] >= 0]
    real = [f"{s['name'].removeprefix('real:')} (seed {s['seed']})" for s in sources if (s.get("seed") or 0) < 0]
    parts = [f"{len(sim)} simulated (seeds {seed_ranges(sim)})"] if sim else []
    parts += [f"{len(real)} real: " + ", ".join(real)] if real else []
    windows = sum(s.get("windows") or 0 for s in sources)
    return "; ".join(parts) + (f"; {windows} windows" if windows else "")


def _card_rows(models: Sequence[dict[str, Any]], evaluated_seeds: Sequence[int]) -> list[list[str]]:
    """One row per property of the model card, one column per model (what a model's entry lacks: "—")."""

    def row(label: str, cell: Any) -> list[str]:
        return [label, *(cell(m) for m in models)]

    def arch(m: dict[str, Any]) -> str:
        a = m.get("architecture")
        if not a:
            return "—"
        layers = f"{a['n_layers']} layer" + ("s" if a["n_layers"] != 1 else "")
        widths = f"width {a['d_model']}, {layers}, {a['n_heads']} heads, feed-forward x{a['ff_mult']}"
        return f"{m.get('preset', '—')}: {widths}"

    def window(m: dict[str, Any]) -> str:
        a = m.get("architecture")
        inputs = ", ".join(m.get("inputs") or []) or "—"
        return f"{inputs} ({a['n_events']} events, {a['n_rows']} rows of {a['n_features']} features)" if a else inputs

    def training(m: dict[str, Any]) -> str:
        t = m.get("training")
        if not t:
            return "—"
        run = f"{t.get('stage')}, step {t.get('step')} of {t.get('steps')}, batch {t.get('batch')}, lr {t.get('lr')}"
        return run + f", seed {t.get('seed')}" + (f", from `{t['init']}`" if t.get("init") else "")

    def data(m: dict[str, Any]) -> str:
        path = (m.get("training") or {}).get("data")
        sources = m.get("training_sources")
        where = f"`{path}`" if path else "—"
        return f"{where}: {sources_summary(sources)}" if sources else f"{where} (its json is not here)"

    def seeds(m: dict[str, Any]) -> str:
        s = m.get("train_seeds")
        return "unknown (training file not found)" if s is None else seed_ranges(s)

    def seen(m: dict[str, Any]) -> str:
        s = m.get("train_seeds")
        return "unknown" if s is None else seed_ranges(set(s) & set(evaluated_seeds))

    def heads(m: dict[str, Any]) -> str:
        files = m.get("head_files") or {}
        return "; ".join(f"{h}: " + ", ".join(f"`{f}`" for f in fs) for h, fs in files.items()) or "—"

    def seen_by_heads(m: dict[str, Any]) -> str:
        s = m.get("head_seeds")
        return "unknown" if s is None else seed_ranges(set(s) & set(evaluated_seeds))

    def parameters(m: dict[str, Any]) -> str:
        if m.get("parameters") is None:
            return "—"
        chain = m.get("event_chain_parameters")
        return f"{m['parameters']:,}" + (f" (and {chain:,} in the scenarios' event chain)" if chain else "")

    def count(key: str) -> Any:
        return lambda m: "—" if m.get(key) is None else f"{m[key]:,} windows"

    return [
        row("directory", lambda m: f"`{m['directory']}`"),
        row("parameters", parameters),
        row("preset", arch),
        row("inputs", window),
        row("training run", training),
        row("training data", data),
        row("trained on seeds", seeds),
        row("evaluated seeds seen in training", seen),
        row("post-hoc heads fitted on more data", heads),
        row("evaluated seeds seen by those heads", seen_by_heads),
        row("anomaly score calibrated on", count("calibration_windows")),
        row("quantiles recalibrated on", count("recalibration_windows")),
    ]


def _part_methods(crps: dict[str, dict[str, float]]) -> list[str]:
    """The first model's parts served alone (its anchor band, its head before recalibration) and its
    variant with the L2 depth head left one capture out (model.evaluation.l2_depth_folds)."""
    suffixes = (" anchor", " unrecalibrated", f" {LEFT_ONE_OUT}")
    return [m for m in next(iter(crps.values()), {}) if m.endswith(suffixes)]


def _crps_table(
    crps: dict[str, dict[str, float]],
    n: dict[str, int],
    models: Sequence[str],
    targets: Sequence[str],
    ci: dict[str, dict[str, list[float]]],
) -> list[str]:
    """Rows of targets: n, CRPS of each model and baseline, each model's gain over the best of
    GAIN_REFERENCES with its bootstrap interval (`ci`: evaluate.gain_ci)."""
    cols = [*models, *_part_methods(crps), *LIQUIDITY_BASELINES]
    models = [*models, *(m for m in _part_methods(crps) if m.endswith(LEFT_ONE_OUT))]  # a model as served, too
    rows = []
    for t in targets:
        per = crps.get(t, {})
        best = min((per[m] for m in GAIN_REFERENCES if per.get(m) is not None), default=math.nan)
        gain = []
        for m in models:
            if per.get(m) is None or not best > 0:
                gain.append("—")
                continue
            lo, hi = ci.get(t, {}).get(m, (math.nan, math.nan))
            interval = f" [{100 * lo:+.1f}, {100 * hi:+.1f}]" if math.isfinite(lo) and math.isfinite(hi) else ""
            gain.append(f"{100 * (1 - per[m] / best):+.1f}%{interval}")
        rows.append([t, str(n.get(t, 0))] + [_f(per.get(c, math.nan)) for c in cols] + gain)
    return _table(["target", "n", *cols, *(f"gain {m}" for m in models)], rows)


def markdown(ev: Evaluation) -> str:
    """evaluation.md: the model card (models, their training, the held-out data), then one table per
    metric family, each model beside the baselines."""
    models = [m["name"] for m in ev.models]
    targets = list(ev.n_liquidity)
    qs = _quantile_names()
    lines = ["# Model card: evaluation on held-out data", ""]
    if ev.models:
        lines += ["## Models", ""]
        lines += _table(["", *(f"`{m}`" for m in models)], _card_rows(ev.models, ev.seeds))
        lines.append("")
    lines += [
        "## Evaluation data",
        "",
        f"`{ev.data}`: {ev.n_windows} windows of seeds {seed_ranges(ev.seeds)}; sources: "
        f"{sources_summary(ev.sources) or '—'}.",
        "",
        *_table(["kind", "windows"], [[k, str(v)] for k, v in ev.counts.items() if v]),
    ]
    lines += ["", "## Anomalies: AUROC / average precision", "",
              "Each kind: its windows against the normal windows. `surprise` and `head` are the two parts of the "
              "model's score (calibrated next-event surprise, supervised head); the isolation forest is fitted on "
              "the evaluated windows themselves (last and mean feature row), no labels.", ""]  # fmt: skip
    methods = list(next(iter(ev.anomaly.values())).keys()) if ev.anomaly else []
    rows = []
    for group, per in ev.anomaly.items():
        n = ev.counts.get(group, sum(v for k, v in ev.counts.items() if k != "normal"))
        rows.append([group, str(n)] + [f"{_f(per[m][0])} / {_f(per[m][1])}" for m in methods])
    lines += _table(["kind vs normal", "positives", *methods], rows)
    cols = [*models, *_part_methods(ev.crps), *LIQUIDITY_BASELINES]
    lines += ["", "## Liquidity: CRPS (lower is better)", "",
              f"CRPS ~ 2/{len(TAUS)} x (pinball at {qs.replace(' / ', ' + ')}) (Gneiting & Raftery 2007); point "
              "forecasts (persistence, the baseline's volume) have equal quantiles, so their CRPS is the MAE. Units: "
              "spread and mid in ticks, depth and volume log1p(lots). Windows whose target is missing (stream end, "
              f"one-sided book) are left out. `gain` = 1 - model / best of {', '.join(GAIN_REFERENCES)}, with its 95% "
              "bootstrap interval (the windows resampled, 1,000 times, alike for every method). `anchor`: "
              "the band the model's quantile head corrects (model.network.orderflow.OrderFlowModel.anchor), served "
              "alone: what the network adds is the difference. `unrecalibrated`: the head's quantiles before the "
              "recalibration fitted after training (model.network.recalibration)."]  # fmt: skip
    if ev.l2_depth_folds:
        folds = "; ".join(f"{k} <- {', '.join(v)}" for k, v in ev.l2_depth_folds.items())
        lines[-1] += (f" `{LEFT_ONE_OUT}`: the model with the depth of L2 books served by its L2 depth head, and "
                      "their spread and mid by its L2 level maps (model.network.recalibration), both fitted on every "
                      "other capture of the pool, never on the one evaluated (model.evaluation.l2_depth_folds); "
                      f"folds: {folds}.")  # fmt: skip
    lines.append("")
    lines += _crps_table(ev.crps, ev.n_liquidity, models, targets, ev.gain_ci)
    for part, per in ev.parts.items():
        lines += ["", f"### CRPS on the {part} windows ({per['windows']})", ""]
        lines += _crps_table(per["crps"], per["n"], models, targets, per.get("gain_ci", {}))
    lines += ["", f"## Liquidity: pinball loss at {qs}", ""]
    nan3 = [math.nan] * len(TAUS)
    rows = [[t] + ["/".join(_f(v) for v in ev.pinball.get(t, {}).get(c, nan3)) for c in cols] for t in targets]
    lines += _table(["target", *cols], rows)
    ideal = " / ".join(f"{t:g}" for t in TAUS)
    lines += ["", f"## Calibration: empirical coverage of {qs} (ideal {ideal})", ""]
    rows = [[t] + ["/".join(_f(v, 2) for v in ev.coverage.get(t, {}).get(c, nan3)) for c in cols] for t in targets]
    lines += _table(["target", *cols], rows)
    if ev.perplexity:
        lines += [
            "",
            "## Next-event perplexity: exp(mean NLL per event; an event's NLL sums its five fields, nats)",
            "",
        ]
        parts = list(next(iter(ev.perplexity.values())))
        rows = [[m, *(_f(per.get(p, math.nan)) for p in parts)] for m, per in ev.perplexity.items()]
        lines += _table(["model", *(f"{p} windows" for p in parts)], rows)
    if ev.ablations:
        lines += ["", f"## Ablations: paired differences against `{models[0]}`", "",
                  f"Per window, each model's CRPS (and next-event NLL per event, nats) less `{models[0]}`'s: the mean "
                  "and its 95% bootstrap interval. Above 0, the part the model leaves out helps; an interval clear "
                  "of 0 is a difference beyond the noise of these windows; it says nothing of training's noise (a "
                  "model trained with another seed differs as well, by as much on some targets).", ""]  # fmt: skip
        for part, per_model in ev.ablations.items():
            names = list(per_model)
            keys = list(per_model[names[0]])
            rows = [[k] + [_interval(per_model[m][k]) for m in names] for k in keys]
            lines += [f"### {part} windows", "", *_table(["target", *names], rows), ""]
    lines += [
        "",
        "Plots: roc.png (ROC per kind), calibration.png (coverage per target). All figures: metrics.json.",
        "",
    ]
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(path: Path, scores: dict[str, np.ndarray], groups: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """One panel per group ((windows compared, positives among them): evaluate.anomaly_groups), one ROC
    curve per scoring method."""
    plt = _pyplot()
    cols = min(3, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4 * rows), squeeze=False)
    for ax, (group, (keep, pos)) in zip(axes.flat, groups.items(), strict=False):
        for method, s in scores.items():
            fpr, tpr = roc_curve(s[keep], pos[keep])
            ax.plot(fpr, tpr, label=f"{method} ({_f(auroc(s[keep], pos[keep]), 2)})", linewidth=1)
        ax.plot([0, 1], [0, 1], color="gray", linewidth=0.5, linestyle=":")
        ax.set_title(f"{group} (n+={int(pos[keep].sum())})")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(groups) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_calibration(path: Path, ev: Evaluation) -> None:
    """Reliability of the quantiles: empirical coverage against the nominal level, per target. The
    first model (the one evaluated) is drawn bold with markers, its variants (ablations, anchor,
    unrecalibrated) thin and dashed, the baselines thin and grey, one legend for the figure: nine
    equal series a panel could not be told apart."""
    plt = _pyplot()
    targets = list(ev.n_liquidity)
    cols, rows = 4, max(1, math.ceil(len(targets) / 4))
    fig, axes = plt.subplots(rows, cols, figsize=(14, 3.25 * rows + 0.6), squeeze=False)
    greys = dict(zip(LIQUIDITY_BASELINES, ("0.15", "0.35", "0.55", "0.7"), strict=True))
    for ax, t in zip(axes.flat, targets, strict=False):
        ax.plot([0, 1], [0, 1], color="gray", linewidth=0.5, linestyle=":")
        methods = list(ev.coverage.get(t, {}).items())
        models = [m for m, _ in methods if m not in greys]
        for method, cov in methods:
            if method in greys:
                style = {"color": greys[method], "linewidth": 0.8, "linestyle": "-"}
            elif models and method == models[0]:
                style = {"color": "C0", "linewidth": 2.0, "marker": "o"}
            else:
                style = {"color": f"C{models.index(method)}", "linewidth": 1.0, "linestyle": "--"}
            ax.plot(TAUS, cov, label=method, **style)
        ax.set_title(f"{t} (n={ev.n_liquidity.get(t, 0)})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("nominal quantile")
        ax.set_ylabel("P(y <= q)")
    for ax in list(axes.flat)[len(targets) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 9), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)
