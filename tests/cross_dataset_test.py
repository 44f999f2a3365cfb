"""Train on one dataset, evaluate on another (--eval_data_root, --train_fraction)."""
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
from keras_crf_reid.runner import experiment
from keras_crf_reid.runner.data import prepare
from keras_crf_reid.training.trainer import TrainConfig
from tests.fixtures import MARS_TEST, MARS_TRAIN, make_mars_fixture, make_prid_fixture

A_IDS, B_IDS = (1, 2, 3, 4), (3, 4, 5)  # shared numbers 3, 4 are different people


@pytest.fixture
def folders(tmp_path):
    a = make_prid_fixture(str(tmp_path / "a"), person_ids=A_IDS, num_frames=6)
    b = make_prid_fixture(str(tmp_path / "b"), person_ids=B_IDS, num_frames=5)
    return a, b


def data_config(tmp_path, a, b, **kw) -> DataConfig:
    return DataConfig(dataset="prid_layout", data_root=a, eval_data_root=b,
                      cache_dir=str(tmp_path / "cache"), **{"num_splits": 1, **kw})


def under(path: str, root: str) -> bool:
    return os.path.realpath(path).startswith(os.path.realpath(root) + os.sep)


def test_splits_train_on_a_and_test_on_b_only(tmp_path, folders):
    a, b = folders
    data = prepare(data_config(tmp_path, a, b, train_fraction=1.0, num_splits=2), progress=False)
    n_a = 2 * len(A_IDS)
    for split in data.splits:
        assert split.train == tuple(range(n_a))
        assert len(split.query) == len(split.gallery) == len(B_IDS)
        tests = [data.dataset.tracklets[i] for i in split.query + split.gallery]
        assert all(under(t.frames[0], b) for t in tests)
        assert {t.camid for t in tests[:len(B_IDS)]} == {0}
        train_pids = {data.dataset.tracklets[i].pid for i in split.train}
        assert train_pids == set(A_IDS) and not train_pids & {t.pid for t in tests}
    rgb, _ = data.store.get(data.splits[0].query[0])
    assert rgb.shape == (5, 128, 64, 3)  # B's 5-frame tracklet, from B's own cache
    same_a = prepare(data_config(tmp_path, a, b, train_fraction=1.0), progress=False)
    other_b = make_prid_fixture(str(tmp_path / "c"), person_ids=(5, 6, 7), num_frames=5)
    assert prepare(data_config(tmp_path, a, other_b, train_fraction=1.0),
                   progress=False).fingerprint != same_a.fingerprint


def test_train_fraction_takes_a_seeded_share_of_the_training_identities(tmp_path, folders):
    a, b = folders
    data = prepare(data_config(tmp_path, a, b, train_fraction=0.5, num_splits=3), progress=False)
    shares = [{data.dataset.tracklets[i].pid for i in s.train} for s in data.splits]
    assert all(len(ids) == 2 and ids <= set(A_IDS) for ids in shares)
    assert len({tuple(sorted(s)) for s in shares}) > 1  # differs between splits
    again = prepare(data_config(tmp_path, a, b, train_fraction=0.5, num_splits=3), progress=False)
    assert again.splits == data.splits
    plain = prepare(DataConfig(dataset="prid_layout", data_root=a, train_fraction=0.25,
                               num_splits=1, cache_dir=str(tmp_path / "cache")), progress=False)
    assert len({plain.dataset.tracklets[i].pid for i in plain.splits[0].train}) == 1


@pytest.mark.parametrize("kw, match", [
    ({"train_fraction": 0.0}, r"--train_fraction must be in \(0, 1\]"),
    ({"train_fraction": 1.5}, r"--train_fraction must be in \(0, 1\]"),
    ({"train_fraction": 1.0}, r"--train_fraction=1.0 .*--eval_data_root"),
    ({"eval_dataset": "prid_layout"}, r"--eval_dataset=prid_layout needs --eval_data_root"),
    ({"dataset": "mars", "train_split": "all"}, r"--train_split=all .*--eval_data_root"),
])
def test_bad_train_fraction_or_eval_flags_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        DataConfig(**kw)


def test_evaluation_root_that_is_the_training_root_is_refused(tmp_path, folders):
    a, b = folders
    cases = [a, os.path.dirname(a) + "/./prid_2011/..", f"{b},{a}"]
    os.symlink(os.path.dirname(a), tmp_path / "link")
    cases.append(str(tmp_path / "link"))
    for root in cases:
        with pytest.raises(ValueError, match=r"--eval_data_root .* (is|overlaps) the training "
                                             r"folder --data_root"):
            prepare(data_config(tmp_path, a, root, train_fraction=1.0), progress=False)
    assert not os.path.exists(tmp_path / "cache")  # refused before any flow is computed
    with pytest.raises(ValueError, match=r"--eval_data_root .*--data_root"):  # pooled training
        prepare(data_config(tmp_path, f"{b},{a}", a, train_fraction=1.0), progress=False)
    import shutil
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    with pytest.raises(ValueError, match=r"same frames as --data_root"):
        prepare(data_config(tmp_path, a, str(tmp_path / "copy"), train_fraction=1.0),
                progress=False)


def test_flags_are_generated(tmp_path, folders):
    from absl import flags

    from keras_crf_reid.configs.experiment import config_from_flags, define_flags
    a, b = folders
    fv = flags.FlagValues()
    define_flags(fv)
    fv(["prog", "--dataset=prid_layout", f"--data_root={a}", f"--eval_data_root={b}",
        "--eval_dataset=prid_layout", "--train_fraction=1.0"])
    cfg = config_from_flags(fv)
    assert (cfg.data.eval_data_root, cfg.data.eval_dataset, cfg.data.train_fraction) == \
        (b, "prid_layout", 1.0)
    assert cfg.results_key()["eval_data_root"] == b


def test_tiny_run_trains_on_a_and_reports_b(tmp_path, folders):
    a, b = folders
    cfg = ExperimentConfig(
        data=data_config(tmp_path, a, b, train_fraction=1.0),
        model=ModelConfig(filters=(4, 4, 4), embed_dim=8, dropout=0.0),
        pairs=PairConfig(seq_len=4, batch_size=4),
        train=TrainConfig(steps=2, optimizer="adam", learning_rate=1e-3, ckpt_every=0),
        eval=EvalConfig(seq_len=4, ranked_queries=2, ranked_top_k=2),
        run=RunConfig(name="ab", output_dir=str(tmp_path / "runs"), export=False, progress=False))
    out = experiment.run(cfg)
    with open(os.path.join(cfg.run_dir, "split_0", "metrics.json")) as f:
        metrics = json.load(f)
    assert (metrics["num_query"], metrics["num_gallery"]) == (len(B_IDS), len(B_IDS))
    assert set(metrics["entries"]) == {"full", "baseline"}
    for m in metrics["entries"].values():
        assert 0.0 <= m["rank1"] <= 100.0
    assert metrics["entries"]["full"]["cmc"][len(B_IDS) - 1] == 1.0  # 3 gallery people: rank 3
    with np.load(os.path.join(cfg.run_dir, "split_0", "distances.npz")) as d:
        assert d["full"].shape == (len(B_IDS), len(B_IDS))
    with open(os.path.join(cfg.run_dir, "splits.json")) as f:
        split = json.load(f)["splits"][0]
    assert min(split["query"] + split["gallery"]) == 2 * len(A_IDS)
    assert max(split["train"]) < 2 * len(A_IDS)
    assert os.path.getsize(out["ranked_png"]) > 1000 and os.path.getsize(out["cmc_png"]) > 1000


@pytest.mark.parametrize("train_split", ["train", "all"])
def test_mars_trains_on_its_training_part_or_every_real_person(tmp_path, folders, train_split):
    """--train_split=all trains on the MARS root's bbox_train and bbox_test people (junk and
    distractor tracks excluded); the default its bbox_train people only."""
    mars = make_mars_fixture(str(tmp_path / "mars"))
    _, b = folders
    cfg = DataConfig(dataset="mars", data_root=mars, eval_dataset="prid_layout", eval_data_root=b,
                     train_fraction=1.0, num_splits=1, train_split=train_split,
                     cache_dir=str(tmp_path / "cache"))
    data = prepare(cfg, progress=False)
    split = data.splits[0]
    trained = [data.dataset.tracklets[i] for i in split.train]
    expected = [t for t in MARS_TRAIN + (MARS_TEST if train_split == "all" else ()) if t[0] > 0]
    assert sorted((t.pid, t.camid + 1, len(t)) for t in trained) == sorted(expected)
    assert all(under(t.frames[0], os.path.join(mars, "bbox_test")) == (t.pid in (3, 5))
               for t in trained)
    tests = [data.dataset.tracklets[i] for i in split.query + split.gallery]
    assert all(under(t.frames[0], b) for t in tests) and len(split.query) == len(B_IDS)
