"""Learning test: the CRF trained for real on small synthetic data beats chance and the baseline.

On the synthetic data (strong camera colour casts) the per-frame standardised RGB histogram is
the stronger hand-crafted baseline (stripe HSV sits near chance there), so it is the bar here."""
import json
import os

import numpy as np
import pytest

from keras_crf_reid.configs.data import DataConfig
from keras_crf_reid.configs.evaluation import EvalConfig
from keras_crf_reid.configs.experiment import ExperimentConfig
from keras_crf_reid.configs.run import RunConfig
from keras_crf_reid.datasets.pipeline import PairConfig
from keras_crf_reid.models.network import ModelConfig
from keras_crf_reid.runner.experiment import run
from keras_crf_reid.training.trainer import TrainConfig


def _train(tmp_path, name: str, pairs: PairConfig, eval_cfg: EvalConfig, **train) -> tuple:
    """Trains and scores one small config on 40 synthetic identities; (config, results)."""
    cfg = ExperimentConfig(
        data=DataConfig(num_ids=40, data_dir=str(tmp_path / "data"),
                        cache_dir=str(tmp_path / "cache"), num_splits=1, splits=(0,)),
        model=ModelConfig(filters=(8, 16, 16), embed_dim=32, dropout=0.2),
        pairs=pairs,
        train=TrainConfig(steps=300, optimizer="adam", learning_rate=1e-3, ckpt_every=0, **train),
        eval=eval_cfg,
        run=RunConfig(name=name, output_dir=str(tmp_path / "runs"), export=False, progress=False))
    with open(run(cfg)["results"]) as f:
        return cfg, json.load(f)["results"]


@pytest.mark.slow
def test_crf_learns_beyond_chance_and_histogram_baseline(tmp_path):
    cfg, results = _train(tmp_path, "learn", PairConfig(seq_len=4, batch_size=8),
                          EvalConfig(baseline_kind="hist"))
    crf = results["CRF cnn_rnn (full)"]["rank1"]["mean"]
    hist = results["Standardised RGB histogram baseline"]["rank1"]["mean"]
    chance = 100.0 / 20  # 20 test identities
    assert crf >= 3 * chance, results
    assert crf >= hist + 10.0, results
    assert os.path.getsize(os.path.join(cfg.run_dir, "cmc.png")) > 1000


@pytest.mark.slow
def test_pk_batches_with_triplet_loss_learn_beyond_chance(tmp_path):
    """The same small problem trained on P x K identity batches with the batch-hard triplet
    loss (and the identity softmax) also ranks far above chance."""
    pk = PairConfig(seq_len=4, sampler="pk", num_persons=8, num_instances=2, random_erase=0.3)
    cfg, results = _train(tmp_path, "learn_pk", pk, EvalConfig(baseline=False),
                          metric_loss="triplet")
    crf = results["CRF cnn_rnn (full)"]["rank1"]["mean"]
    assert crf >= 3 * 100.0 / 20, results  # 20 test identities
    with open(os.path.join(cfg.run_dir, "split_0", "metrics.json")) as f:
        train = json.load(f)["train"][0]
    assert "triplet" in train and train["softmax"] < np.log(20), train  # 20 training identities
