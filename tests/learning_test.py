"""Learning test: the CRF trained for real on small synthetic data beats chance and the baseline."""
import json
import os

import pytest

from keras_crf_reid.experiment import ExperimentConfig, run
from keras_crf_reid.model import ModelConfig
from keras_crf_reid.pipeline import PairConfig
from keras_crf_reid.trainer import TrainConfig


@pytest.mark.slow
def test_crf_learns_beyond_chance_and_histogram_baseline(tmp_path):
    cfg = ExperimentConfig(
        num_ids=40, data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"),
        num_splits=1, splits=(0,), model=ModelConfig(filters=(8, 16, 16), embed_dim=32, dropout=0.2),
        pairs=PairConfig(seq_len=4, batch_size=8), name="learn", output_dir=str(tmp_path / "runs"),
        train=TrainConfig(steps=300, optimizer="adam", learning_rate=1e-3, ckpt_every=0),
        export=False, progress=False)
    out = run(cfg)
    with open(out["results"]) as f:
        results = json.load(f)["results"]
    crf = results["CRF cnn_rnn (full)"]["rank1"]["mean"]
    hist = results["Colour histogram baseline"]["rank1"]["mean"]
    chance = 100.0 / 20  # 20 test identities
    assert crf >= 3 * chance, results
    assert crf >= hist + 10.0, results
    assert os.path.getsize(os.path.join(cfg.run_dir, "cmc.png")) > 1000
