"""The direction head of L2 books (OrderFlowModel.direction_logits, train.fit_l2_direction): fitted on the
real captures alone when asked (`train --stage l2-direction`, several --data files), it serves the windows
of books of price levels and nothing else, and evaluate counts the windows it was fitted on as seen."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model.network import checkpoint  # noqa: E402
from model.network.direction import direction_labels, fit_captures  # noqa: E402
from model.network.orderflow import ModelConfig, OrderFlowModel  # noqa: E402
from model.training.train import TrainData  # noqa: E402
from orderbook.features import FEATURE_NAMES  # noqa: E402
from tests.test_direction_head import imbalance_world  # noqa: E402
from tests.test_l2_depth import _windows  # noqa: E402


def test_the_head_serves_the_direction_of_l2_windows_once_fitted_and_nothing_else():
    torch.manual_seed(0)
    shapes = dict(n_events=24, n_rows=6, n_features=len(FEATURE_NAMES), max_news=2, news_len=4, text_vocab=64)
    model = OrderFlowModel(ModelConfig.tiny(**shapes)).eval()
    batch = _windows(model)  # a book of levels, one of orders, a book of levels never two-sided
    with torch.no_grad():
        torch.nn.init.normal_(model.direction_head.weight)
        before = model(batch)["direction"]
        model.l2_direction_weight.copy_(torch.randn_like(model.l2_direction_weight))
        model.l2_direction_bias.copy_(torch.randn_like(model.l2_direction_bias))
        assert torch.equal(model(batch)["direction"], before)  # not fitted: the direction head's
        model.l2_direction_fitted.fill_(True)
        out = model(batch)
    after, state = out["direction"], out["direction_input"]
    assert torch.equal(after[1], before[1])  # a book of orders keeps the direction head
    for i in (0, 2):
        l2 = state[i] @ model.l2_direction_weight.T + model.l2_direction_bias
        assert torch.allclose(after[i], l2.view(after.shape[1:]), atol=1e-5)
        assert not torch.allclose(after[i], before[i])


def test_the_captures_fit_chooses_its_penalty_leaving_each_capture_out():
    x, moves = imbalance_world(3000, seed=7)
    groups = np.repeat(["a", "b", "c"], 1000)
    w, _, report = fit_captures(x, direction_labels(moves), groups)
    assert w.shape == (3, x.shape[1]) and report["penalty"] in (1e-3, 1e-2, 3e-2, 1e-1)
    assert report["held_out_log_loss"][f"{report['penalty']:g}"] == min(report["held_out_log_loss"].values())
    assert report["log_loss"] < report["log_loss_prior"]


def test_the_stage_fits_the_captures_of_several_files_and_evaluate_counts_them_as_seen(
    l2_trained, l2_held, tmp_path, capsys
):
    from streams.cli import main

    path, d = l2_trained
    out = tmp_path / "l2dir"
    assert main(["train", "--stage", "l2-direction", "--data", str(path), str(l2_held), "--init", str(d / "fine"),
                 "--out", str(out), "--device", "cpu"]) == 0  # fmt: skip
    entry = json.loads((out / "config.json").read_text())["l2_direction"]
    assert entry["data"] == [str(path), str(l2_held)]
    assert entry["captures"] == ["cm_ethusd_perp_20240808", "spot_btcusdt_20240808", "usdm_ethusdt_20240808"]
    both = TrainData.concat([TrainData.load(path), TrainData.load(l2_held)])
    assert 0 < entry["windows"] <= int((both.arrays["seed"] < 0).sum())  # real windows of L2 books alone
    fitted, _, _ = checkpoint.load(out)
    original, _, _ = checkpoint.load(d / "fine")
    assert bool(fitted.l2_direction_fitted) and not bool(original.l2_direction_fitted)
    for name, tensor in original.state_dict().items():
        if not name.startswith("l2_direction_"):
            assert torch.equal(fitted.state_dict()[name], tensor), name  # nothing else moved

    assert main(["evaluate", "--data", str(l2_held), "--model", str(out), "--out", str(tmp_path / "refused")]) == 2
    assert "post-hoc heads were fitted on seeds" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(l2_held), "--model", str(out), "--out", str(tmp_path / "ev"),
                 "--allow-seen"]) == 0  # fmt: skip
    model = json.loads((tmp_path / "ev" / "metrics.json").read_text())["models"][0]
    held_seeds = sorted(int(s) for s in np.unique(TrainData.load(l2_held).arrays["seed"]))
    assert set(held_seeds) <= set(model["head_seeds"]) and model["head_files"] == {"l2_direction": entry["data"]}
    assert "| evaluated seeds seen by those heads |" in (tmp_path / "ev" / "evaluation.md").read_text()


def test_the_stage_needs_the_real_windows_of_two_captures(l2_trained, tmp_path, capsys):
    from streams.cli import main

    path, d = l2_trained  # one capture beside the simulator
    assert main(["train", "--stage", "l2-direction", "--data", str(path), "--init", str(d / "fine"),
                 "--out", str(tmp_path / "one"), "--device", "cpu"]) == 2  # fmt: skip
    assert "two captures at least" in capsys.readouterr().err and not (tmp_path / "one").exists()


def test_a_format_6_checkpoint_loads_with_the_head_unfitted_and_its_depth_head_as_it_served(l2_trained, tmp_path):
    """Format 6 had no L2 direction head, and its L2 depth head read one input less (the log-scale stat
    as it is, last): it gets a zero weight there, so the depth served is what it was."""
    from safetensors.torch import save_file

    _, d = l2_trained
    model, config, extra = checkpoint.load(d / "fine")
    old = tmp_path / "old"
    old.mkdir()
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("l2_direction_")}
    state["l2_depth_weight"] = state["l2_depth_weight"][:, :-1].contiguous()
    save_file(state, str(old / checkpoint.WEIGHTS), {"format": "6"})
    (old / checkpoint.CONFIG).write_text(json.dumps({"format": 6, "model": config.to_json(), **extra}))
    loaded, _, _ = checkpoint.load(old)
    assert not bool(loaded.l2_direction_fitted) and not loaded.l2_direction_weight.any()
    assert torch.equal(loaded.l2_depth_weight[:, :-1], state["l2_depth_weight"])
    assert not loaded.l2_depth_weight[:, -1].any() and bool(loaded.l2_depth_fitted)


def test_training_from_a_checkpoint_switches_the_head_off(l2_trained, l2_held, tmp_path):
    """The head reads the network's state: a finetune from a checkpoint that has it moves that state, so
    the checkpoint written serves L2 books from the direction head it refits, not a stale L2 head."""
    from model.training.train import fit_head, train

    path, d = l2_trained
    fit_head("l2_direction", d / "fine", [path, l2_held], tmp_path / "heads", device="cpu")
    train("finetune", path, tmp_path / "again", init=tmp_path / "heads", steps=2, batch=8, device="cpu")
    again, _, extra = checkpoint.load(tmp_path / "again")
    assert not bool(again.l2_direction_fitted) and "l2_direction" not in extra and bool(again.direction_fitted)


def test_adapt_refits_the_parents_l2_heads_on_their_files_and_the_recent_windows(
    l2_trained, l2_held, shared_data, tmp_path
):
    """A parent whose L2 heads were fitted on several files: the adapted checkpoint's heads are refitted
    on those files and the recent windows (not left to the fine-tuning: a depth head on the mixed windows
    alone, no direction head). With a file gone, the depth and volume heads are the parent's and the direction
    head off."""
    import gzip
    import shutil
    from itertools import islice

    from model.training.adapt import adapt
    from model.training.train import fit_head
    from streams.cli import main

    path, d = l2_trained
    files = []
    for src in (path, l2_held):  # copies, one of which goes away below
        for suffix in (".npz", ".json"):
            shutil.copy(src.with_suffix(suffix), tmp_path / (src.stem + suffix))
        files.append(tmp_path / (src.stem + ".npz"))
    fit_head("l2_direction", d / "fine", files, tmp_path / "parent", device="cpu")
    fit_head("l2_depth", tmp_path / "parent", files, tmp_path / "parent", device="cpu")
    fit_head("l2_volume", tmp_path / "parent", files, tmp_path / "parent", device="cpu")
    fit_head("l2_recalibration", tmp_path / "parent", files, tmp_path / "parent", device="cpu")
    capture = tmp_path / "spot_ethusdt_20240808.gz"
    with gzip.open(shared_data / "binance-hftbacktest" / capture.name, "rt") as f, gzip.open(capture, "wt") as out:
        out.writelines(islice(f, 4000))
    recent = tmp_path / "recent.npz"
    assert main(["dataset", "--like", str(tmp_path / "parent"), "--capture", f"binance:{capture}",
                 "--out", str(recent)]) == 0  # fmt: skip
    kw = dict(replay=path, steps=2, batch=8, replay_fraction=0.5, device="cpu")

    done = adapt(tmp_path / "parent", recent, out_dir=tmp_path / "child", **kw)
    child, _, extra = checkpoint.load(tmp_path / "child")
    assert bool(child.l2_direction_fitted) and bool(child.l2_depth_fitted) and child.l2_recal_fitted.any()
    assert bool(child.l2_volume_fitted)
    for head in ("l2_direction", "l2_depth", "l2_volume", "l2_recalibration"):
        assert extra[head]["data"] == [str(recent), *map(str, files)]
        assert done.details["l2_heads"][head].startswith("refitted on 2 files")
    assert extra["adapt"]["l2_heads"] == done.details["l2_heads"]

    files[1].unlink()
    done = adapt(tmp_path / "parent", recent, out_dir=tmp_path / "orphan", **kw)
    parent, _, parent_extra = checkpoint.load(tmp_path / "parent")
    orphan, _, extra = checkpoint.load(tmp_path / "orphan")
    assert not bool(orphan.l2_direction_fitted) and "l2_direction" not in extra
    assert not orphan.l2_recal_fitted.any() and "l2_recalibration" not in extra
    assert torch.equal(orphan.l2_depth_weight, parent.l2_depth_weight) and bool(orphan.l2_depth_fitted)
    assert extra["l2_depth"] == parent_extra["l2_depth"]
    assert torch.equal(orphan.l2_volume_coef, parent.l2_volume_coef) and bool(orphan.l2_volume_fitted)
    assert extra["l2_volume"] == parent_extra["l2_volume"]
    assert done.details["l2_heads"]["l2_direction"].startswith("off (not here")
    assert done.details["l2_heads"]["l2_recalibration"].endswith("refit with train --stage l2-recalibration)")
