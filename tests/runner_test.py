"""The runner: ablation rows over one per-split runner, per-split files, resume, workers, data."""
import json
import os
import time

import numpy as np
import pytest

from keras_crf_reid.configs.data import DataConfig
from keras_crf_reid.configs.evaluation import EvalConfig
from keras_crf_reid.configs.experiment import ExperimentConfig, replace
from keras_crf_reid.configs.run import ROWS, RunConfig
from keras_crf_reid.configs.train import FusionConfig
from keras_crf_reid.datasets.pipeline import PairConfig
from keras_crf_reid.models.network import ModelConfig
from keras_crf_reid.runner import experiment, split as split_mod
from keras_crf_reid.runner.ablation import PART_TITLES, ROW_TITLES, split_jobs, table_rows
from keras_crf_reid.runner.data import load_dataset
from keras_crf_reid.training.trainer import TrainConfig

TITLES = tuple(ROW_TITLES[r] for r in ROWS)


def tiny_config(root, name: str = "abl", rows=ROWS) -> ExperimentConfig:
    return ExperimentConfig(
        data=DataConfig(num_ids=6, data_dir=str(root / "data"), cache_dir=str(root / "cache"),
                        num_splits=2),
        model=ModelConfig(filters=(4, 4, 4), embed_dim=8, dropout=0.0),
        pairs=PairConfig(seq_len=4, batch_size=4),
        train=TrainConfig(steps=3, optimizer="adam", learning_rate=1e-3, ckpt_every=0),
        fusion=FusionConfig(steps=2), eval=EvalConfig(seq_len=8),
        run=RunConfig(name=name, output_dir=str(root / "runs"), export=False, progress=False,
                      rows=tuple(rows)))


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablation")
    cfg = tiny_config(root)
    return cfg, experiment.run(cfg)


def split_metrics(run_dir, k):
    with open(os.path.join(run_dir, f"split_{k}", "metrics.json")) as f:
        return json.load(f)


def test_rows_are_configs_over_one_runner(tmp_path):
    cfg = tiny_config(tmp_path)
    rows = table_rows(cfg)
    assert [r.title for r in rows] == ["CNN", "RNN", "CNN+RNN", *PART_TITLES.values(),
                                      ROW_TITLES["fusion"], "Stripe HSV histogram baseline"]
    jobs = split_jobs(rows)
    assert [(os.path.basename(c.run_dir), e) for c, e in jobs] == [
        ("cnn", ["full", "baseline"]), ("rnn", ["full"]),
        ("cnn_rnn", ["full", "upper", "lower", "fusion"])]
    plain = replace(cfg, run={"rows": ()}, parts=("full", "upper", "lower"))
    assert [r.entry for r in table_rows(plain)] == ["full", "upper", "lower", "fusion", "baseline"]
    assert {r.config.run_dir for r in table_rows(plain)} == {plain.run_dir}
    weak = replace(plain, eval={"baseline_kind": "hist"})
    assert table_rows(weak)[-1].title == "Standardised RGB histogram baseline"


def test_all_rows_and_fusion_weights_reported(ablation):
    cfg, out = ablation
    with open(out["results"]) as f:
        results = json.load(f)
    for title in TITLES + tuple(PART_TITLES.values()) + ("Stripe HSV histogram baseline",):
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
    assert out["ranked_png"].endswith("ranked_cnn_rnn_fusion_split0.png")


def test_per_split_files_and_model_dirs(ablation):
    cfg, _ = ablation
    for k in (0, 1):
        cnn_rnn = split_metrics(os.path.join(cfg.run_dir, "cnn_rnn"), k)
        assert set(cnn_rnn["entries"]) == {"full", "upper", "lower", "fusion"}
        assert set(cnn_rnn["fusion_weights"]) == {"upper", "lower", "full"}
        # the fusion row reuses row cnn_rnn's full-body model of the same split
        assert sorted(t["part"] for t in cnn_rnn["train"]) == ["full", "lower", "upper"]
        with np.load(os.path.join(cfg.run_dir, "cnn_rnn", f"split_{k}", "distances.npz")) as d:
            assert set(d.files) == {"full", "upper", "lower", "fusion"}
            assert d["fusion"].shape == (cnn_rnn["num_query"], cnn_rnn["num_gallery"])
        assert set(split_metrics(os.path.join(cfg.run_dir, "cnn"), k)["entries"]) == {"full", "baseline"}
        for sub in ("cnn/full", "rnn/full", "cnn_rnn/full", "cnn_rnn/upper", "cnn_rnn/lower",
                    "cnn_rnn/fusion"):
            variant, part = sub.split("/")
            assert os.path.isdir(os.path.join(cfg.run_dir, variant, f"split_{k}", part, "ckpt"))


def test_rerun_skips_finished_splits(ablation, monkeypatch):
    cfg, _ = ablation
    paths = [os.path.join(cfg.run_dir, v, f"split_{k}", "metrics.json")
             for v in ("cnn", "rnn", "cnn_rnn") for k in (0, 1)]
    mtimes = [os.stat(p).st_mtime_ns for p in paths]

    def no_training(*args, **kwargs):
        raise AssertionError("a finished split was trained again")

    monkeypatch.setattr(split_mod, "train_part", no_training)
    monkeypatch.setattr(split_mod, "train_fusion", no_training)
    t0 = time.time()
    out = experiment.run(cfg)
    assert time.time() - t0 < 30
    assert [os.stat(p).st_mtime_ns for p in paths] == mtimes
    with open(out["results"]) as f:
        assert json.load(f)["results"]["CNN"]["num_splits"] == 2


def test_lost_split_file_is_rebuilt_from_checkpoints(ablation):
    cfg, _ = ablation
    run_dir = os.path.join(cfg.run_dir, "cnn_rnn")
    before = split_metrics(run_dir, 1)
    keep = os.stat(os.path.join(run_dir, "split_0", "metrics.json")).st_mtime_ns
    os.remove(os.path.join(run_dir, "split_1", "metrics.json"))
    experiment.run(cfg)
    after = split_metrics(run_dir, 1)
    assert after["entries"] == before["entries"]
    assert os.stat(os.path.join(run_dir, "split_0", "metrics.json")).st_mtime_ns == keep


def test_resume_with_other_settings_is_refused_naming_the_flags(ablation):
    cfg, _ = ablation
    other = replace(cfg, train={"margin": 1.0, "learning_rate": 0.01})
    with pytest.raises(ValueError, match=r"other settings: --learning_rate \(was 0.001, now 0.01\), "
                                         r"--margin \(was 2.0, now 1.0\)"):
        experiment.run(other)
    # a finished split trained for fewer steps is not reused either
    with pytest.raises(ValueError, match=r"different settings or data \(differing: --steps\)"):
        experiment.run(replace(cfg, train={"steps": 5}))
    # settings that cannot change results (paths, logging, which splits) may change
    experiment.check_settings(replace(cfg, run={"progress": True}, data={"splits": (1,)}))


def test_finished_split_of_other_data_is_refused(ablation, tmp_path):
    cfg, _ = ablation
    from keras_crf_reid.runner.data import prepare
    run_data = prepare(cfg.data, progress=False)
    run_data.fingerprint = "0" * 16
    row = table_rows(cfg)[0]
    with pytest.raises(ValueError, match="different settings or data.*data files"):
        split_mod.read_split(row.config, run_data, 0)


def test_split_of_older_code_is_reused_and_its_baseline_recomputed(ablation, monkeypatch):
    """A metrics.json written before --colour_norm and --baseline_kind existed (no such keys,
    its baseline the standardised RGB histogram) keeps its model entries; only the baseline is
    computed again, with the new default kind."""
    cfg, _ = ablation
    from keras_crf_reid.runner.data import prepare
    run_data = prepare(cfg.data, progress=False)
    row = table_rows(cfg)[0]  # cnn, whose folder holds the baseline entry
    path = os.path.join(row.config.run_dir, "split_0", "metrics.json")
    done = split_metrics(row.config.run_dir, 0)
    assert done["baseline_kind"] == "stripe_hsv"
    for key in ("colour_norm",):
        del done["key"]["config"][key]
    del done["baseline_kind"]
    with open(path, "w") as f:
        json.dump(done, f)
    assert split_mod.read_split(row.config, run_data, 0)["entries"] == done["entries"]
    assert split_mod.missing_entries(row.config, run_data, 0, ["full", "baseline"]) == ["baseline"]
    monkeypatch.setattr(split_mod, "train_part", lambda *a, **k: pytest.fail("retrained"))
    again = split_mod.run_split(row.config, run_data, 0, ["full", "baseline"])
    assert again["baseline_kind"] == "stripe_hsv" and again["entries"]["full"] == done["entries"]["full"]
    # a non-default value of a setting the old split lacks is a different setting
    with pytest.raises(ValueError, match="--colour_norm"):
        split_mod.read_split(replace(row.config, model={"colour_norm": "fixed"}), run_data, 0)


@pytest.mark.slow
def test_two_workers_give_the_same_per_split_results(ablation):
    cfg, _ = ablation
    parallel = replace(cfg, run={"name": "abl_parallel", "workers": 2, "threads": 1})
    out = experiment.run(parallel)
    for v in ("cnn", "rnn", "cnn_rnn"):
        for k in (0, 1):
            one = split_metrics(os.path.join(cfg.run_dir, v), k)
            two = split_metrics(os.path.join(parallel.run_dir, v), k)
            assert set(two["entries"]) == set(one["entries"])
            for entry, metrics in one["entries"].items():
                for key, value in metrics.items():
                    assert two["entries"][entry][key] == pytest.approx(value, abs=1e-6), (v, k, entry)
    for k in (0, 1):
        assert os.path.exists(os.path.join(parallel.run_dir, f"split_{k}", "worker.log"))
    with open(out["results"]) as f:
        assert set(json.load(f)["results"]) >= set(TITLES)


def test_bad_rows_value_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"--rows.*'cnnn'.*cnn,rnn,cnn_rnn,fusion"):
        RunConfig(rows=("cnn", "cnnn"))
    assert [r.title for r in table_rows(tiny_config(tmp_path, rows=("fusion", "cnn")))][0] == "CNN"


def test_pooled_data_roots_renumber_identities(tmp_path):
    from tests.fixtures import make_prid_fixture
    roots = [make_prid_fixture(str(tmp_path / n), num_ids=3, num_frames=4) for n in ("a", "b")]
    ds = load_dataset(DataConfig(dataset="prid_layout", data_root=",".join(roots)), progress=False)
    assert ds.pids == [1, 2, 3, 10001, 10002, 10003]
    assert len(ds.tracklets) == 12 and ds.name == "prid_2011+prid_2011"


def test_a_setting_added_since_a_split_ran_resumes_at_its_default(tmp_path):
    """metrics.json of a split run before a result-changing option existed is reused when the
    option is at its default, and refused (naming the flag) otherwise."""
    from keras_crf_reid.datasets.base import Split
    from keras_crf_reid.runner.data import RunData
    cfg = ExperimentConfig(run=RunConfig(output_dir=str(tmp_path)))
    data = RunData(dataset=None, store=None, splits=[Split((0, 1), (2,), (3,))], fingerprint="f")
    key = split_mod.split_key(cfg, data, 0)
    del key["config"]["fusion_learning_rate"]
    os.makedirs(split_mod.split_dir(cfg, 0))
    with open(os.path.join(split_mod.split_dir(cfg, 0), split_mod.METRICS_FILE), "w") as f:
        json.dump({"key": key, "entries": {}}, f)
    assert split_mod.read_split(cfg, data, 0)["key"] == key
    with pytest.raises(ValueError, match=r"differing: --fusion_learning_rate\)"):
        split_mod.read_split(replace(cfg, fusion={"learning_rate": 0.5}), data, 0)
