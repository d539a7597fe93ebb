"""bench/seed_study.py reads the figures it compares across seeds out of `megatrading evaluate`'s
metrics.json: each must be found in the committed model card's, and read as the card prints it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.scripts import load_script

REPO = Path(__file__).resolve().parents[1]
CARD = REPO / "model/checkpoints/demo"
study = load_script(REPO / "bench" / "seed_study.py")


def committed() -> tuple:
    held = json.loads((CARD / "evaluation/metrics.json").read_text())
    unseen = json.loads((CARD / "evaluation-unseen/metrics.json").read_text())
    return held, unseen, "demo", "demo-nonews", "model"


def test_every_figure_is_found_in_the_committed_cards_metrics() -> None:
    card = committed()
    missing = [label for label, figure in study.FIGURES.items() if study._safe(figure, *card) is None]
    assert not missing


def test_the_same_run_twice_has_no_spread_and_its_mean_is_the_cards() -> None:
    card = committed()
    rows = study.table({"seed a": card, "seed b": card}, card).splitlines()[2:]
    assert len(rows) == len(study.FIGURES)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        a, b, mean, sd, _, card_value = cells[1:]
        assert a == b == mean == card_value and float(sd) == 0, row


def test_a_real_instruments_gain_is_the_one_the_card_prints() -> None:
    md = (CARD / "evaluation/evaluation.md").read_text()
    real = md.split("### CRPS on the real windows")[1]
    printed = re.search(r"^\| spread_h10 \|.*?\| ([-+]\d+\.\d)% \[", real, re.M)
    assert printed
    figure = study.FIGURES["spot ETHUSDT spread h10, gain %"](*committed())
    assert f"{figure:+.1f}" == printed.group(1)


def test_an_unseen_instruments_gain_is_the_cards_left_one_out_one() -> None:
    """The served heads and level maps of L2 books saw the three instruments outside the dataset: their
    honest figure is the row refitted without the instrument, the card's last gain column."""
    md = (CARD / "evaluation-unseen/evaluation.md").read_text()
    part = md.split("usdm_ethusdt_20240808.gz")[-1]
    printed = re.search(r"^\| spread_h10 \|.*\| ([-+]\d+\.\d)% \[[^|]*\| *$", part, re.M)
    assert printed
    figure = study.FIGURES["usdm_ethusdt spread h10 left one out, gain %"](*committed())
    assert f"{figure:+.1f}" == printed.group(1)
