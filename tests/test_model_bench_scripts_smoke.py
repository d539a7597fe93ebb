"""The model's bench scripts run end to end on tiny data and print their tables: bench/news_bound.py,
bench/text_ablation.py, bench/train_bench.py, bench/inputs_bench.py, bench/depth_loss_probe.py,
bench/l2_depth_probe.py, bench/depth_memory.py (on the heads of three real captures), bench/scenario_fidelity.py
(on the heads of the six), bench/generation_context_probe.py, bench/scenario_speed.py, bench/gpu_parity.py
(which says so and exits 0 without CUDA), bench/seed_study.py's seeds averaged.
Figures are not checked here: the scripts print them for docs/ and the README."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from model.sim.engine import SEC, SimConfig
from model.training.dataset import Dataset, build, load, save, sim_source, split_by_seed, subset
from model.training.train import train
from tests.scripts import load_script

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("benches")
    news = SimConfig(n_symbols=2, duration_ns=240 * SEC, news_rate=60.0)
    data = build([sim_source(replace(news, seed=s)) for s in (5, 6)], held_out=[6])
    fit, held = split_by_seed(data, [6])
    save(fit, d / "train.npz")
    save(held, d / "heldout.npz")
    train("finetune", d / "train.npz", d / "ckpt", steps=4, batch=8, device="cpu", preset="tiny", checkpoint_every=100)
    return d


def write_head(capture: Path, to: Path, lines: int = 3000) -> None:
    """The first `lines` records of a gzipped capture, gzipped again at `to`."""
    with gzip.open(capture, "rt") as src, gzip.open(to, "wt") as dst:
        dst.writelines(line for _, line in zip(range(lines), src, strict=False))


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO)  # fmt: skip
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_news_bound_prints_the_kind_alone_and_on_top_of_a_model(lab: Path) -> None:
    data = ["--train", str(lab / "train.npz"), "--held-out", str(lab / "heldout.npz")]
    out = run("news_bound.py", *data, "--model", str(lab / "ckpt"), "--sim-symbols", "2", "--sim-duration", "240s",
              "--news", "60")  # fmt: skip
    assert "pooled" in out and "by kind" in out and "mid_h100" in out and "corrected by its training residuals" in out
    assert out.count("kind, age") == 2


def test_news_bound_reads_the_datasets_headline_ages_as_the_headlines_drawn_again_give_them(lab: Path) -> None:
    bound = load_script(REPO / "bench" / "news_bound.py")
    arrays = subset(ds := load(lab / "train.npz"), ds.arrays["news_kind"] > 0).arrays
    sim = SimConfig(n_symbols=2, duration_ns=240 * SEC, news_rate=60.0)
    from_set = bound.headline_ages(arrays, sim)
    drawn = bound.headline_ages({k: v for k, v in arrays.items() if k != "news_age"}, sim)
    assert len(drawn) > 20 and np.isfinite(drawn).all()
    np.testing.assert_allclose(from_set, drawn, rtol=1e-6, atol=1e-6)  # float32 seconds


def test_news_bound_refuses_headlines_drawn_otherwise_than_it_is_told(lab: Path, tmp_path: Path) -> None:
    """A set written before news_age: its ages come from headlines drawn again. Told the wrong rate, a
    window's newest headline is not of its recorded kind, and the bench says so instead of printing ages
    of other headlines."""
    for name in ("train", "heldout"):
        ds = load(lab / f"{name}.npz")
        save(Dataset({k: v for k, v in ds.arrays.items() if k != "news_age"}, ds.meta), tmp_path / f"{name}.npz")
    args = ["--train", str(tmp_path / "train.npz"), "--held-out", str(tmp_path / "heldout.npz"), "--sim-symbols", "2",
            "--sim-duration", "240s", "--news", "7"]  # fmt: skip
    script = str(REPO / "bench" / "news_bound.py")
    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "no headline of its kind" in done.stderr


def test_text_ablation_prints_each_model_beside_the_first(lab: Path) -> None:
    held = str(lab / "heldout.npz")
    out = run("text_ablation.py", f"a={lab / 'ckpt'}:{held}", f"b={lab / 'ckpt'}:{held}")
    assert "news-driven windows" in out and "perplexity" in out and "AUC 100 earn." in out
    assert "(+0.0%)" in out  # the same model twice: no change


def test_train_bench_prints_steps_per_second(lab: Path) -> None:
    out = run("train_bench.py", "--data", str(lab / "train.npz"), "--presets", "tiny", "--steps", "3", "--batch", "8",
              "--device", "cpu")  # fmt: skip
    assert "steps/s" in out and "\ntiny " in out


def test_inputs_bench_prints_the_host_time_per_batch() -> None:
    out = run("inputs_bench.py", "--batches", "1,8", "--budget", "0.05")
    assert "us a window" in out and "\n     8 " in out


def test_gpu_parity_says_there_is_nothing_to_compare_without_cuda(lab: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the comparison runs on the device machine, see docs/gpu.md")
    assert "no CUDA device" in run("gpu_parity.py", "--data", str(lab / "heldout.npz"))


def test_depth_memory_prints_each_capture_with_and_without_the_slow_ewmas(shared_data: Path, tmp_path: Path) -> None:
    head = tmp_path / "binance-hftbacktest"
    head.mkdir()
    for name in ("spot_btcusdt_20240808.gz", "usdm_btcusdt_20240808.gz", "cm_ethusd_perp_20240808.gz"):
        write_head(shared_data / "binance-hftbacktest" / name, head / name)
    out = run("depth_memory.py", "--data", str(tmp_path))
    assert "depth at 100 messages" in out and "\ncm_ethusd_perp " in out and "(fitted on)" in out


def test_scenario_fidelity_prints_both_draws_beside_the_real_flow_of_each_capture(
    lab: Path, shared_data: Path, tmp_path: Path
) -> None:
    scenario_fidelity = load_script(REPO / "bench" / "scenario_fidelity.py")
    head = tmp_path / "binance-hftbacktest"
    head.mkdir()
    for name in scenario_fidelity.CAPTURES:
        write_head(shared_data / "binance-hftbacktest" / name, head / name)
    out = run("scenario_fidelity.py", "--model", str(lab / "ckpt"), "--data", str(head), "--cuts", "1", "--paths", "2",
              "--horizon", "10", "--heldout", str(lab / "heldout.npz"), "--out", str(tmp_path / "out"))  # fmt: skip
    assert "| simulated | joint |" in out and "| simulated | factorized |" in out
    assert out.count("| 1 | real |") == 6 and "| | | joint |" in out  # one cut of each capture
    assert "| mid moves: events / messages |" in out
    per_cut = json.loads((tmp_path / "out" / "scenario_fidelity.json").read_text())
    assert set(per_cut) == set(scenario_fidelity.CAPTURES)


def test_scenario_fidelity_counts_a_sweep_once_among_the_messages_that_move_the_mid() -> None:
    from orderbook.book import L2Book
    from orderbook.events import Event, Kind, Side

    scenario_fidelity = load_script(REPO / "bench" / "scenario_fidelity.py")
    book = L2Book("binance", "X")
    for side, price in ((Side.BID, 100), (Side.BID, 99), (Side.BID, 98), (Side.BID, 97), (Side.ASK, 101)):
        book.set_level(side, price, 5)

    def level(ts: int, price: int, size: int) -> Event:
        return Event(Kind.LEVEL_SET, "binance", "X", ts, 0, Side.BID, price, size)

    trade = Event(Kind.TRADE, "binance", "X", 2, 0, Side.NONE, 100, 1)
    sweep = [level(1, 100, 0), level(1, 99, 0), level(1, 98, 0)]  # one message empties three bid levels
    share, _, seconds, events, messages = scenario_fidelity.flow_stats(book, [*sweep, trade, level(3, 97, 2)], 1)
    assert (events, messages) == (3.0, 1.0) and share == 0.2 and seconds == 2e-9


@pytest.mark.soak  # a research probe's smoke run (20 s), as test_l2_depth's: make soak
def test_generation_context_probe_prints_the_readings_and_the_messages_of_both_draws(
    lab: Path, shared_data: Path, tmp_path: Path
) -> None:
    name = "usdm_btcusdt_20240808.gz"
    write_head(shared_data / "binance-hftbacktest" / name, tmp_path / name)
    out = run("generation_context_probe.py", "--model", str(lab / "ckpt"), "--data", str(tmp_path), "--records", "1500",
              "--events", "300", "--paths", "2", "--horizon", "10")  # fmt: skip
    assert "| rows before the message |" in out and "| its own row in the window |" in out
    assert "read at the last slot |" in out and "read one slot before it (a path's) |" in out
    assert "| real continuation |" in out and "| generated, factorized |" in out and "inside real level-update" in out
    assert "| flow | at the best | removing it | sweeps | messages moving the mid |" in out
    assert "teacher-forced: chance of a removal, the size head" in out


def test_depth_loss_probe_prints_both_losses_per_source(lab: Path) -> None:
    out = run("depth_loss_probe.py", "--model", str(lab / "ckpt"), "--train", str(lab / "train.npz"),
              "--eval", str(lab / "heldout.npz"))  # fmt: skip
    assert "standardized loss" in out and "loss in log1p(lots)" in out and "persistence" in out


def test_l2_depth_probe_prints_each_head_beside_the_network(lab: Path) -> None:
    out = run("l2_depth_probe.py", "--model", str(lab / "ckpt"), "--train", str(lab / "train.npz"),
              "--eval", str(lab / "heldout.npz"))  # fmt: skip
    assert "depth_h100" in out and "stats+memory / sim" in out and "heldout:simulated" in out


def test_seed_study_averages_the_seeds_quantiles_window_by_window(lab: Path, tmp_path: Path) -> None:
    from model.evaluation.evaluate import evaluate

    study = load_script(REPO / "bench" / "seed_study.py")
    evaluate(lab / "heldout.npz", [lab / "ckpt"], tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    twice = study.ensemble(metrics, [lab / "ckpt", lab / "ckpt"], lab / "heldout.npz", "averaged")
    for part, figures in metrics["parts"].items():
        for target, by_method in figures["crps"].items():
            assert twice["parts"][part]["crps"][target]["averaged"] == pytest.approx(by_method["model"], rel=1e-6)


def test_scenario_speed_times_the_draw_both_ways_and_the_steps_network_read_and_splits_its_time(
    lab: Path, shared_data: Path, tmp_path: Path
) -> None:
    name = "usdm_btcusdt_20240808.gz"
    write_head(shared_data / "binance-hftbacktest" / name, tmp_path / name)
    out = run("scenario_speed.py", "--model", str(lab / "ckpt"), "--data", str(tmp_path), "--captures",
              f"{name}:BTCUSDT", "--records", "1500", "--paths", "2", "--horizon", "10", "--repeats", "1")  # fmt: skip
    assert "| seconds: served | generic copies |" in out and "next_event / whole forward" in out
    assert f"| {name} |" in out
