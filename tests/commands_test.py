"""Every command line runs through `cli.run`: flags generated from its config, a bad value or a
missing required flag exits 2 with `error:` naming the flag, and --flagfile also looks in
pipelines/ (issue 27 item 2)."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command(module, *args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": REPO})


@pytest.mark.parametrize("module,args,flag", [
    ("keras_crf_reid.serving.search", ["--model=m", "--gallery=g", "--query=q", "--top_k=0"],
     "--top_k"),
    ("keras_crf_reid.serving.search", ["--gallery=g", "--query=q"], "--model"),
    ("keras_crf_reid.serving.client", ["--status", "--retries=-1"], "--retries"),
    ("keras_crf_reid.serving.server", ["--model_base_path=m", "--max_batch=0"], "--max_batch"),
    ("keras_crf_reid.datasets.synthetic", ["--out=x", "--num_ids=0"], "--num_ids"),
    ("keras_crf_reid.baseline", ["--num_splits=0"], "--num_splits"),
    ("keras_crf_reid.baseline", ["--kind=nonesuch"], "--kind"),
    ("keras_crf_reid.serving.rerank_eval", ["--settings=20:6"], "--settings"),
    ("keras_crf_reid.tracking.evaluate", ["--detections=public,nonesuch"], "--detections"),
    ("keras_crf_reid.tracking.evaluate", ["--sequences=nonesuch"], "--sequences"),
    ("keras_crf_reid.tracking.evaluate", ["--max_age=0"], "--max_age"),
    ("keras_crf_reid.tracking.crop_person", ["--video=v", "--gt=g", "--out=o"], "--id"),
    ("keras_crf_reid.tracking.crop_person", ["--video=v", "--gt=g", "--id=1", "--out=o",
                                             "--every=0"], "--every"),
    ("keras_crf_reid.evaluate", ["--part=upper"], "--checkpoint"),
    ("keras_crf_reid.evaluate", ["--checkpoint=c", "--part=torso"], "--part"),
    ("keras_crf_reid.serving.export", ["--keras_model=m.keras"], "--model_base_path"),
    ("keras_crf_reid.serving.export", ["--keras_model=m.keras", "--model_base_path=b",
                                       "--version=-1"], "--version"),
    ("keras_crf_reid.serving.export", ["--model_base_path=b"], "--keras_model"),
])
def test_bad_flags_exit_2_naming_the_flag(tmp_path, module, args, flag):
    done = command(module, *args, cwd=str(tmp_path))
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "error:" in done.stderr and flag in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and not os.listdir(tmp_path)


def test_flagfile_is_looked_up_in_pipelines(tmp_path):
    done = command("keras_crf_reid.datasets.synthetic", "--flagfile=no_such_pipeline")
    assert done.returncode == 2
    assert "--flagfile: no_such_pipeline not found (also looked in" in done.stderr
    flagfile = tmp_path / "tiny.flags"
    flagfile.write_text(f"--out={tmp_path / 'tiny'}\n--num_ids=2\n--max_len=9\n")
    done = command("keras_crf_reid.datasets.synthetic", f"--flagfile={flagfile}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(tmp_path / "tiny")


def test_client_without_anything_to_do_exits_2():
    done = command("keras_crf_reid.serving.client")
    assert done.returncode == 2 and "give --tracklet_dir" in done.stderr
