"""Flags generated from the config dataclasses: one flag per setting, defaults from one place."""
import dataclasses
import os

import pytest
from absl import flags

from keras_crf_reid import cli
from keras_crf_reid.configs.experiment import ExperimentConfig, config_from_flags, define_flags
from keras_crf_reid.options import flag_name
from keras_crf_reid.datasets import DATASETS


@pytest.fixture()
def fv():
    values = flags.FlagValues()
    define_flags(values)
    return values


def test_defaults_come_from_the_dataclasses(fv):
    fv(["prog"])
    assert config_from_flags(fv) == ExperimentConfig()
    assert fv["steps"].default == ExperimentConfig().train.steps
    assert fv["eval_seq_len"].default == ExperimentConfig().eval.seq_len
    assert fv["loss_weights"].default == ["1.0", "1.0", "1.0"]


def test_flags_override_nested_fields(fv):
    fv(["prog", "--seq_len=4", "--variant=cnn", "--filters=4,8", "--loss_weights=1,0.5,0.5",
        "--splits=1,3", "--min_len=5", "--eval_seq_len=8", "--name=x"])
    cfg = config_from_flags(fv)
    assert cfg.pairs.seq_len == 4 and cfg.model.variant == "cnn" and cfg.model.filters == (4, 8)
    assert dataclasses.astuple(cfg.train.weights) == (1.0, 0.5, 0.5)
    assert cfg.data.splits == (1, 3) and cfg.data.min_len == 5 and cfg.eval.seq_len == 8
    assert cfg.run.name == "x"


def test_internal_fields_have_no_flag(fv):
    assert "part" not in fv and "stream" not in fv
    names = [flag_name(f) for _, f, _ in cli._leaves(ExperimentConfig)]
    assert len(names) == len(set(names)), "two settings share a flag name"


@pytest.mark.parametrize("args,message", [
    (["--filters=4,x"], "--filters must be a comma-separated list of int"),
    (["--loss_weights=1,1"], "--loss_weights must be 3 numbers"),
    (["--learning_rate=nan"], "--learning_rate must be a finite number"),
    (["--eval_seq_len=0"], "--eval_seq_len must be >= 1"),
    (["--fusion_steps=-1"], "--fusion_steps must be >= 0"),
    (["--embed_dim=0"], "--embed_dim must be >= 1"),
    (["--clipnorm=0"], "--clipnorm must be a finite number > 0"),
    (["--ckpt_every=-1"], "--ckpt_every must be >= 0"),
    (["--name=../x"], "--name must be a plain folder name"),
])
def test_bad_values_name_the_flag(fv, args, message):
    fv(["prog", *args])
    with pytest.raises(ValueError, match=message):
        config_from_flags(fv)


def test_results_key_leaves_out_paths_and_cadence():
    key = ExperimentConfig().results_key()
    assert "learning_rate" in key and "seq_len" in key and "eval_seq_len" in key
    assert not {"name", "output_dir", "cache_dir", "ckpt_every", "progress", "splits"} & set(key)


PIPELINES = sorted(f for f in os.listdir(cli.PIPELINES_DIR) if f.endswith(".flags"))


@pytest.mark.parametrize("name", PIPELINES)
def test_every_pipeline_flagfile_is_a_valid_config(fv, name):
    fv(["prog", f"--flagfile={cli.PIPELINES_DIR}/{name}"])
    cfg = config_from_flags(fv)  # raises, naming the flag, on an invalid value
    assert cfg.data.dataset in DATASETS, name


def test_mars_sample_flags_hold_the_study_recipe(fv):
    fv(["prog", f"--flagfile={cli.PIPELINES_DIR}/mars_sample.flags"])
    cfg = config_from_flags(fv)
    assert cfg.eval.tta.enabled and cfg.model.flow_norm == "frame_std" and cfg.train.lr_schedule == "cosine"
    assert cfg.pairs.seq_len == cfg.eval.seq_len == 8 and cfg.parts == ("full", "upper", "lower")
    assert cfg.data.data_root == "../shared/realdata/mars_sample" and cfg.data.num_splits == 5
    for paper in ("prid", "ilids", "mars"):
        fv.unparse_flags()
        fv(["prog", f"--flagfile={cli.PIPELINES_DIR}/{paper}.flags"])
        assert config_from_flags(fv).eval.tta.enabled, paper


def test_two_settings_with_one_flag_name_are_refused():
    """A nested config reusing a flag name would be set by one flag silently: refused."""
    from keras_crf_reid.options import config_class, option

    @config_class
    class Inner:
        steps: int = option(1, "inner steps", lower_bound=1)

    @config_class
    class Outer:
        steps: int = option(2, "outer steps", lower_bound=1)
        inner: Inner = dataclasses.field(default_factory=Inner)

    with pytest.raises(ValueError, match=r"Outer: several settings want the flag name\(s\) \['steps'\]"):
        cli.define_flags(Outer, flags.FlagValues())
