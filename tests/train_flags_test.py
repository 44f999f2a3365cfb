"""The training CLI checks every flag before reading data or writing a folder (issue 13 items
5-7): exit status 2 with a message naming the flag, no runs/, data/ or cache/ left behind."""
import json
import os
import subprocess
import sys

import pytest

from keras_crf_reid.configs import experiment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRITTEN = ("runs", "data", "cache", "saved_models")


def train(tmp_path, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "keras_crf_reid.train", *args],
                          cwd=str(tmp_path), env={**os.environ, "PYTHONPATH": REPO},
                          capture_output=True, text=True, timeout=timeout)


def assert_nothing_written(tmp_path):
    assert not [n for n in WRITTEN if (tmp_path / n).exists()], os.listdir(tmp_path)


@pytest.mark.parametrize("flag,value", [
    ("eval_seq_len", "0"), ("fusion_steps", "-1"), ("embed_dim", "0"), ("learning_rate", "nan"),
    ("ckpt_every", "-1"), ("clipnorm", "0"), ("eval_every", "-1"), ("name", "../../x"),
    ("name", "a/b"), ("no_such_flag", "1"),
])
def test_bad_flag_exits_2_naming_it_before_anything_is_written(tmp_path, flag, value):
    done = train(tmp_path, f"--{flag}={value}")
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert flag in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert_nothing_written(tmp_path)


def test_missing_flagfile_exits_2(tmp_path):
    done = train(tmp_path, "--flagfile=absent.flags")
    assert done.returncode == 2 and "--flagfile: absent.flags not found" in done.stderr
    assert_nothing_written(tmp_path)


def test_failed_start_leaves_no_run_folder(tmp_path):
    done = train(tmp_path, "--dataset=prid2011", f"--data_root={tmp_path}/missing", "--name=x")
    assert done.returncode == 2 and f"{tmp_path}/missing: dataset root does not exist" in done.stderr
    assert_nothing_written(tmp_path)


def test_resume_with_another_learning_rate_is_refused(tmp_path):
    """A run folder records its settings; resuming it with another --learning_rate is refused."""
    base = ["--num_ids=4", "--name=r", f"--data_dir={tmp_path}/data", f"--cache_dir={tmp_path}/cache"]
    cfg = experiment.replace(experiment.ExperimentConfig(), data={"num_ids": 4}, run={"name": "r"})
    os.makedirs(tmp_path / "runs" / "r")
    (tmp_path / "runs" / "r" / "settings.json").write_text(json.dumps(cfg.results_key()))
    done = train(tmp_path, *base, "--learning_rate=0.01", timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--learning_rate (was 0.001, now 0.01)" in done.stderr
    assert os.listdir(tmp_path / "runs" / "r") == ["settings.json"]
    assert not (tmp_path / "data").exists()  # refused before the dataset is generated
    assert json.loads((tmp_path / "runs" / "r" / "settings.json").read_text())["learning_rate"] == 0.001
