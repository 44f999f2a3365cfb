"""Every flagfile in pipelines/ parses into a valid experiment config (a typo or a removed flag
fails here, not an hour into a run), and the paper's recipe stays the default where issue 17
says it must."""
import glob
import os

import pytest
from absl import flags

from keras_crf_reid.configs.experiment import config_from_flags, define_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGFILES = sorted(glob.glob(os.path.join(REPO, "pipelines", "*.flags")))


def _config(monkeypatch, name: str):
    monkeypatch.chdir(REPO)  # nested --flagfile= paths are relative to the repository root
    fv = flags.FlagValues()
    define_flags(fv)
    fv(["prog", f"--flagfile=pipelines/{name}"])
    return config_from_flags(fv)


def test_there_are_flagfiles():
    assert len(FLAGFILES) >= 5, FLAGFILES


@pytest.mark.parametrize("path", FLAGFILES, ids=os.path.basename)
def test_flagfile_parses_into_a_valid_config(monkeypatch, path):
    cfg = _config(monkeypatch, os.path.basename(path))
    assert cfg.train.steps > 0 and cfg.parts, cfg


@pytest.mark.parametrize("name", ["prid.flags", "ilids.flags", "mars.flags"])
def test_paper_protocols_keep_the_papers_training_recipe(monkeypatch, name):
    cfg = _config(monkeypatch, name)
    assert (cfg.pairs.sampler, cfg.train.metric_loss, cfg.train.margin) == (
        "pairs", "contrastive", 2.0)
    w = cfg.train.weights
    assert (w.siamese, w.softmax_a, w.softmax_b) == (1.0, 1.0, 1.0)


def test_mars_multi_recipe_is_identity_batches_with_the_contrastive_loss(monkeypatch):
    cfg = _config(monkeypatch, "mars_multi.flags")
    assert (cfg.pairs.sampler, cfg.pairs.num_persons, cfg.pairs.num_instances) == ("pk", 8, 4)
    assert cfg.train.metric_loss == "contrastive" and cfg.data.dataset == "mars"
    assert cfg.model.variant == "cnn" and cfg.train.steps == 3000  # chosen on the official split
