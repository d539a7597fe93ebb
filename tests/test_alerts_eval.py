"""`megatrading evaluate --alerts` (model.evaluation.alerts): the alert-rate arithmetic on hand-built
windows, the threshold rule, and the verb end to end on a tiny simulated input."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from model.evaluation.alerts import Counts, choose_threshold, count_alerts, symbol_hours
from streams.cli import main

H = 3_600_000_000_000  # an hour in ns


def windows(*spans: tuple[str, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(symbol, start, end) arrays of windows given as (symbol, start hour, end hour)."""
    return (np.array([s for s, _, _ in spans], dtype=object), np.array([int(a * H) for _, a, _ in spans], np.int64),
            np.array([int(b * H) for _, _, b in spans], np.int64))  # fmt: skip


def test_symbol_hours_are_the_union_of_each_symbols_window_spans():
    # A: [0, 1] and [0.5, 1.5] overlap (1.5 h), then [3, 3.5] after a gap (0.5 h); B: 0.25 h at the same times
    sym, start, end = windows(("A", 0, 1), ("B", 0, 0.25), ("A", 0.5, 1.5), ("A", 3, 3.5))
    assert symbol_hours(sym, start, end) == pytest.approx(1.5 + 0.5 + 0.25)


def test_alerts_count_per_symbol_hour_with_precision_over_alerts_and_recall_over_labels():
    sym, start, end = windows(
        ("A", 0.0, 0.5),  # alert, overlaps label 1 (A 0.4-0.6)
        ("A", 0.5, 1.0),  # alert, overlaps label 1 too: one label, two alerts inside it
        ("A", 1.0, 1.5),  # alert, touches label 2 (A 1.5-1.7) at its start only: closed intervals overlap
        ("B", 0.0, 1.0),  # alert in B's time of label 1, but label 1 is A's: outside any label
        ("B", 1.0, 2.0),  # no alert (score under the threshold) though it overlaps label 3 (B 1.2-1.3)
    )
    score = np.array([0.99, 0.995, 0.99, 1.0, 0.5])
    labels = [("A", int(0.4 * H), int(0.6 * H), "spoofing"), ("A", int(1.5 * H), int(1.7 * H), "layering"),
              ("B", int(1.2 * H), int(1.3 * H), "spoofing")]  # fmt: skip
    c = count_alerts(sym, start, end, score, labels, threshold=0.99)  # score == threshold alerts, as the sink
    assert (c.alerts, c.alerts_in_labels, c.labels, c.labels_hit) == (4, 3, 3, 2)
    assert c.hours == pytest.approx(1.5 + 2.0)
    assert c.rate == pytest.approx(4 / 3.5)
    assert c.precision == pytest.approx(3 / 4)
    assert c.recall == pytest.approx(2 / 3)
    assert c.hit_by_kind == {"spoofing": [1, 2], "layering": [1, 1]}
    strict = count_alerts(sym, start, end, score, labels, threshold=0.999)
    assert (strict.alerts, strict.alerts_in_labels, strict.labels_hit) == (1, 0, 0)
    assert math.isnan(count_alerts(sym, start, end, score, [], 1.1).precision)  # no alert: precision undefined


def test_counts_add_up_over_streams():
    a = Counts(10, 1.0, 3, 2, 4, 1, {"spoofing": [1, 2]})
    b = Counts(5, 0.5, 1, 1, 1, 1, {"spoofing": [0, 1], "layering": [1, 1]})
    s = a + b
    assert (s.windows, s.hours, s.alerts, s.alerts_in_labels, s.labels, s.labels_hit) == (15, 1.5, 4, 3, 5, 2)
    assert s.hit_by_kind == {"spoofing": [1, 3], "layering": [1, 1]}


def _row(real: tuple[int, float], normal: tuple[int, float], hit: int, labels: int = 4) -> dict[str, Counts]:
    return {"real": Counts(alerts=real[0], hours=real[1]), "normal": Counts(alerts=normal[0], hours=normal[1]),
            "anomalies x1": Counts(labels=labels, labels_hit=hit, hours=1.0),
            "anomalies x0.5": Counts(labels=labels, labels_hit=labels, hours=1.0)}  # fmt: skip


def test_the_rule_takes_the_highest_full_intensity_recall_within_the_rate_bound_on_both_normal_flows():
    rows = {
        0.9: _row((12, 10.0), (0, 20.0), hit=4),  # best recall; on real flow 1.2 per symbol-hour (<= 1.94)
        0.99: _row((1, 10.0), (15, 20.0), hit=4),  # simulated 0.75 per symbol-hour, but it could be 1.15
        0.995: _row((1, 10.0), (4, 20.0), hit=3),  # both bounded under 1 per symbol-hour
        0.999: _row((0, 10.0), (0, 20.0), hit=3),  # the same recall, fewer alerts on normal flow: the tie goes here
        0.9999: _row((0, 10.0), (0, 20.0), hit=1),
    }
    normal = rows[0.99]["normal"]
    assert normal.rate < 1.0 < normal.rate_upper  # the rate itself would let 0.99 in
    assert choose_threshold(rows, max_rate=1.0) == 0.999
    assert choose_threshold(rows, max_rate=1.2) == 0.99
    assert choose_threshold(rows, max_rate=2.0) == 0.9  # 0.99 is in too, same recall, 16 normal alerts to 0.9's 12
    assert choose_threshold(rows, max_rate=0.2) == 0.999  # nothing is bounded under 0.2: the floors, 0.3 and 0.15


def test_a_tie_on_recall_and_normal_alerts_goes_to_the_higher_recall_at_half_intensity():
    rows = {0.99: _row((0, 10.0), (0, 40.0), hit=3), 0.995: _row((0, 10.0), (0, 40.0), hit=3)}
    rows[0.99]["anomalies x0.5"].labels_hit = 3
    rows[0.995]["anomalies x0.5"].labels_hit = 2
    assert choose_threshold(rows, max_rate=1.0) == 0.99
    rows[0.99]["anomalies x0.5"].labels_hit = 2  # all equal: the higher threshold
    assert choose_threshold(rows, max_rate=1.0) == 0.995


def test_the_rule_bounds_a_normal_flow_by_its_floor_where_no_threshold_gets_under_the_rate():
    rows = {
        0.9: _row((5, 1.0), (0, 40.0), hit=4),
        0.99: _row((3, 1.0), (0, 40.0), hit=3),  # 3 windows scored 1.0 alert at every threshold: the floor
        0.999: _row((3, 1.0), (0, 40.0), hit=2),
    }
    assert choose_threshold(rows, max_rate=1.0) == 0.99
    # a flow too short to bound any count under the budget: 0 alerts in 0.8 symbol-hours could be 3.7
    rows = {0.99: _row((1, 0.8), (0, 40.0), hit=4), 0.999: _row((0, 0.8), (0, 40.0), hit=3)}
    assert choose_threshold(rows, max_rate=1.0) == 0.999
    assert choose_threshold(rows, max_rate=6.0) == 0.99


def test_the_rule_gives_no_threshold_when_those_within_the_bound_catch_nothing():
    rows = {0.9: _row((5, 1.0), (5, 1.0), hit=4), 0.99: _row((0, 1.0), (0, 1.0), hit=0)}
    assert choose_threshold(rows, max_rate=1.0) is None


def test_evaluate_alerts_counts_what_score_would_alert_on(tmp_path):
    """End to end on a simulated capture (counted with the real captures) and two tiny simulated hours: the
    alerts counted on the capture are the `megatrading score` rows at or above each threshold."""
    from model.sim.engine import SimConfig
    from model.sim.run import simulate
    from streams.cli.simulate import write_outputs

    files = write_outputs(simulate(SimConfig(n_symbols=1, duration_ns=H // 20, seed=3)), "itch", tmp_path / "cap")
    out = tmp_path / "out"
    args = ["--model", "baseline", "--no-real", "--capture", f"itch:{files[0]}", "--normal-seeds", "5",
            "--anomaly-seeds", "6", "--sim-duration", "4m", "--sim-symbols", "1", "--anomaly-rate", "60",
            "--intensities", "1", "--thresholds", "0.5,0.99", "--out", str(out)]  # fmt: skip
    assert main(["evaluate", "--alerts", *args]) == 0
    scored = tmp_path / "s.csv"
    assert main(["score", str(files[0]), "--format", "itch", "--model", "baseline", "--out", str(scored)]) == 0
    with open(scored) as f:
        scores = [float(r["anomaly_score"]) for r in csv.DictReader(f)]
    got = json.loads((out / "alerts.json").read_text())
    baseline = {row["threshold"]: row for row in got["table"]["baseline"]}
    for t in (0.5, 0.99):
        assert baseline[t]["real"]["alerts"] == sum(s >= t for s in scores)
        assert baseline[t]["real"]["windows"] == len(scores)
        assert baseline[t]["anomalies x1"]["labels"] > 0
    assert baseline[0.5]["anomalies x1"]["recall"] >= baseline[0.99]["anomalies x1"]["recall"]
    assert "anomalies x1" in got["auroc"]["baseline"]
    md = (out / "alerts.md").read_text()
    assert "| baseline | 0.99" in md and "## The rule and the chosen threshold" in md
    assert (out / "alerts.png").stat().st_size > 0


def test_evaluate_alerts_simulates_the_pricing_it_is_told():
    """The demo network trained on earnings priced over seconds: its alerts are judged on hours simulated
    so (`--news-discovery 5`), not on the simulator's default."""
    from streams.cli import build_parser
    from streams.cli.evaluate import sim_plan

    def plan(*flags: str):
        return sim_plan(build_parser().parse_args(["evaluate", "--alerts", "--out", "o", *flags]))

    default, told = plan(), plan("--news-discovery", "5", "--news", "12")
    assert default.base.flow.news_discovery_s == 0.0 and default.base.flow.efficient_price
    assert told.base.flow.news_discovery_s == 5.0 and told.base.news_rate == 12.0
    queue = plan("--queue-price")
    assert not queue.base.flow.efficient_price
    _, _, _, cfg = next(told.configs())
    assert cfg.flow.news_discovery_s == 5.0  # every simulated hour keeps it
