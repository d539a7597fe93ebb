"""bench/scaling_study.py end to end on a tiny simulated dataset: the three presets x two data sizes
trained 2 steps per stage in process, evaluated on a handful of held-out windows; the markdown table has
the six cells and the PNG is written. The figures themselves are not checked (bench/ prints them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orderbook.events import NS_PER_S as SEC
from tests.scripts import load_script

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.soak  # 20-30 s: make soak; `make scaling` runs the study itself
def test_scaling_study_writes_six_cells_and_the_figure(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    from model.sim.engine import SimConfig
    from model.training.dataset import build, save, sim_source, split_by_seed

    cfgs = [SimConfig(n_symbols=1, duration_ns=120 * SEC, seed=s) for s in (1, 2, 3)]
    train_ds, held = split_by_seed(build([sim_source(c) for c in cfgs], held_out=[3]), [3])
    save(train_ds, tmp_path / "train.npz")
    save(held, tmp_path / "held.npz")

    study = load_script(REPO / "bench" / "scaling_study.py")
    md, png = tmp_path / "scaling.md", tmp_path / "scaling.png"
    argv = ["--data", str(tmp_path / "train.npz"), "--heldout", str(tmp_path / "held.npz"),
            "--pretrain-steps", "2", "--finetune-steps", "2", "--batch", "4", "--eval-windows", "8",
            "--jobs", "1", "--work", str(tmp_path / "work"), "--out-md", str(md), "--out-png", str(png)]  # fmt: skip
    assert study.main(argv) == 0

    text = md.read_text()
    table = next(b for b in text.split("\n\n") if b.startswith("| preset | parameters | data |")).splitlines()
    rows = [r.split(" | ") for r in table[2:]]
    assert len(rows) == 6
    assert {(r[0].strip("| "), r[2]) for r in rows} == {(p, d) for p in study.PRESETS for d in study.DATA_SIZES}
    assert all(r[6] != "—" for r in rows)  # the simulated windows' NLL
    half = {r[3] for r in rows if r[2] == "half"}
    full = {r[3] for r in rows if r[2] == "full"}
    assert len(half) == len(full) == 1 and int(half.pop().replace(",", "")) < int(full.pop().replace(",", ""))
    assert png.is_file() and png.stat().st_size > 1000
    assert (tmp_path / "work" / "heldout-eval.npz").is_file()
