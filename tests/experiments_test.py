"""Ablation runner: all rows reported, per-split files, resume, parallel workers, flag errors."""
import dataclasses
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_crf_reid import experiment, experiments
from keras_crf_reid.experiment import ExperimentConfig
from keras_crf_reid.model import ModelConfig
from keras_crf_reid.pipeline import PairConfig
from keras_crf_reid.trainer import TrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TITLES = ("CNN", "RNN", "CNN+RNN", experiments.ROW_TITLES["fusion"])


def tiny_config(root, name: str = "abl") -> ExperimentConfig:
    return ExperimentConfig(
        num_ids=6, data_dir=str(root / "data"), cache_dir=str(root / "cache"), num_splits=2,
        model=ModelConfig(filters=(4, 4, 4), embed_dim=8, dropout=0.0),
        pairs=PairConfig(seq_len=4, batch_size=4),
        train=TrainConfig(steps=3, optimizer="adam", learning_rate=1e-3, ckpt_every=0),
        fusion_steps=2, eval_seq_len=8, name=name, output_dir=str(root / "runs"), export=False,
        progress=False)


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablation")
    cfg = tiny_config(root)
    out = experiments.run_ablation(cfg, experiments.ROWS)
    return cfg, out


def split_metrics(cfg, k):
    with open(os.path.join(cfg.run_dir, f"split_{k}", "metrics.json")) as f:
        return json.load(f)


def test_all_rows_and_fusion_weights_reported(ablation):
    cfg, out = ablation
    with open(out["results"]) as f:
        results = json.load(f)
    part_titles = tuple(experiments.PART_TITLES.values())
    for title in TITLES + part_titles + ("Colour histogram baseline",):
        assert results["results"][title]["num_splits"] == 2
        assert f"| {title} |" in out["markdown_text"]
    with open(out["markdown"]) as f:
        assert f.read() == out["markdown_text"]
    weights = results["extra"]["fusion_weights"]
    assert [w["split"] for w in weights] == [0, 1]
    assert all(np.isfinite([w["upper"], w["lower"], w["full"]]).all() for w in weights)
    assert "W_u (upper)" in out["markdown_text"] and "mean ± std" in out["markdown_text"]
    assert set(results["extra"]["fusion_weights_share"]) == {"upper", "lower", "full"}
    assert os.path.getsize(out["cmc_png"]) > 1000
    assert os.path.getsize(out["ranked_png"]) > 1000
    assert out["ranked_png"].endswith("ranked_fusion_split0.png")


def test_per_split_files_and_model_dirs(ablation):
    cfg, _ = ablation
    for k in (0, 1):
        m = split_metrics(cfg, k)
        assert set(m["rows"]) == {"cnn", "rnn", "cnn_rnn", "fusion", "baseline"}
        assert set(m["fusion_weights"]) == {"upper", "lower", "full"}
        assert set(m["parts"]) == {"upper", "lower"}
        with np.load(os.path.join(cfg.run_dir, f"split_{k}", "distances.npz")) as d:
            assert set(d.files) == {"cnn", "rnn", "cnn_rnn", "fusion"}
            assert d["fusion"].shape == (m["num_query"], m["num_gallery"])
        trained = [(t["variant"], t["part"]) for t in m["train"]]
        # the fusion row reuses row cnn_rnn's full-body model of the same split
        assert sorted(trained) == sorted([("cnn", "full"), ("rnn", "full"), ("cnn_rnn", "full"),
                                          ("cnn_rnn", "upper"), ("cnn_rnn", "lower")])
        for sub in ("cnn/full", "rnn/full", "cnn_rnn/full", "cnn_rnn/upper", "cnn_rnn/lower",
                    "cnn_rnn/fusion"):
            variant, part = sub.split("/")
            assert os.path.isdir(os.path.join(cfg.run_dir, variant, f"split_{k}", part, "ckpt"))


def test_rerun_skips_finished_splits(ablation, monkeypatch):
    cfg, _ = ablation
    paths = [os.path.join(cfg.run_dir, f"split_{k}", "metrics.json") for k in (0, 1)]
    mtimes = [os.stat(p).st_mtime_ns for p in paths]

    def no_training(*args, **kwargs):
        raise AssertionError("a finished split was trained again")

    monkeypatch.setattr(experiment, "train_part", no_training)
    monkeypatch.setattr(experiment, "train_fusion", no_training)
    t0 = time.time()
    out = experiments.run_ablation(cfg, experiments.ROWS)
    assert time.time() - t0 < 30
    assert [os.stat(p).st_mtime_ns for p in paths] == mtimes
    with open(out["results"]) as f:
        assert json.load(f)["results"]["CNN"]["num_splits"] == 2


def test_lost_split_file_is_rebuilt_from_checkpoints(ablation):
    cfg, _ = ablation
    before = split_metrics(cfg, 1)
    keep = os.stat(os.path.join(cfg.run_dir, "split_0", "metrics.json")).st_mtime_ns
    os.remove(os.path.join(cfg.run_dir, "split_1", "metrics.json"))
    experiments.run_ablation(cfg, experiments.ROWS)
    after = split_metrics(cfg, 1)
    assert after["rows"] == before["rows"]
    assert os.stat(os.path.join(cfg.run_dir, "split_0", "metrics.json")).st_mtime_ns == keep


def test_resume_with_other_settings_is_refused(ablation):
    cfg, _ = ablation
    other = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=5))
    with pytest.raises(ValueError, match="different settings.*train"):
        experiments.run_ablation(other, experiments.ROWS)


@pytest.mark.slow
def test_two_workers_give_the_same_per_split_results(ablation, tmp_path):
    cfg, _ = ablation
    parallel = dataclasses.replace(cfg, name="abl_parallel")
    out = experiments.run_ablation(parallel, experiments.ROWS, workers=2, threads=1)
    for k in (0, 1):
        one, two = split_metrics(cfg, k), split_metrics(parallel, k)
        assert set(two["rows"]) == set(one["rows"])
        for row, metrics in one["rows"].items():
            for key, value in metrics.items():
                assert two["rows"][row][key] == pytest.approx(value, abs=1e-6), (k, row, key)
        assert two["fusion_weights"] == pytest.approx(one["fusion_weights"], rel=1e-5)
        assert os.path.exists(os.path.join(parallel.run_dir, f"split_{k}", "worker.log"))
    with open(out["results"]) as f:
        assert set(json.load(f)["results"]) >= set(TITLES)


def test_bad_rows_value_is_a_clear_error():
    with pytest.raises(ValueError, match=r"--rows.*'cnnn'.*cnn,rnn,cnn_rnn,fusion"):
        experiments.parse_rows(["cnn", "cnnn"])
    with pytest.raises(ValueError, match="--rows"):
        experiments.parse_rows([])
    assert experiments.parse_rows(["fusion", "cnn", "cnn"]) == ("cnn", "fusion")
    done = subprocess.run([sys.executable, "-m", "keras_crf_reid.experiments", "--rows=cnn,lstm"],
                          capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert done.returncode == 2
    assert "--rows" in done.stderr and "'lstm'" in done.stderr


def test_pooled_data_roots_renumber_identities(tmp_path):
    from tests.fixtures import make_prid_fixture
    roots = [make_prid_fixture(str(tmp_path / n), num_ids=3, num_frames=4) for n in ("a", "b")]
    cfg = dataclasses.replace(tiny_config(tmp_path), dataset="prid_layout",
                              data_root=",".join(roots))
    from keras_crf_reid.experiment import load_data
    ds = load_data(cfg)
    assert ds.pids == [1, 2, 3, 10001, 10002, 10003]
    assert len(ds.tracklets) == 12 and ds.name == "prid_2011+prid_2011"


def test_data_fingerprint_sees_replaced_frames_not_moved_folders(tmp_path):
    from keras_crf_reid.datasets import load_prid_layout
    from tests.fixtures import make_prid_fixture, write_image
    root = make_prid_fixture(str(tmp_path / "a"), num_ids=3, num_frames=4)
    fp = experiments.data_fingerprint(load_prid_layout(root))
    os.rename(tmp_path / "a", tmp_path / "b")
    moved = str(tmp_path / "b" / "prid_2011")
    assert experiments.data_fingerprint(load_prid_layout(moved)) == fp
    write_image(os.path.join(moved, "multi_shot", "cam_a", "person_0002", "0001.png"), 2, 0, 1,
                size=(32, 64))
    assert experiments.data_fingerprint(load_prid_layout(moved)) != fp
