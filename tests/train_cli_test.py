"""The user-facing commands: train with a paper flagfile on a PRID-2011 layout fixture, evaluate
the checkpoint, reload the exported fusion SavedModel; clear errors for bad flags."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.fixtures import make_prid_fixture

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--filters=4,4,4", "--embed_dim=8", "--seq_len=4", "--batch_size=4", "--progress=false"]


def _run(args, tmp_path, timeout=300):
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-m"] + args, cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_prid_flagfile_train_evaluate_export(tmp_path):
    root = make_prid_fixture(str(tmp_path / "data"), num_ids=8, num_frames=22,
                             lengths={("cam_b", 8): 12})  # 12 frames: kept by the paper's protocol
    out = tmp_path / "runs"
    common = ["--flagfile=prid.flags", f"--data_root={root}", f"--cache_dir={tmp_path}/cache",
              f"--output_dir={out}", "--splits=0", *TINY]
    res = _run(["keras_crf_reid.train", *common, "--steps=4", "--fusion_steps=2", "--ckpt_every=2",
                "--eval_every=0", f"--model_base_path={tmp_path}/sm"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "| CRF fusion (upper+lower+full) |" in res.stdout
    results = json.load(open(out / "prid2011" / "results.json"))
    assert set(results["results"]) >= {"CRF cnn_rnn (full)", "CRF cnn_rnn (upper)",
                                       "CRF cnn_rnn (lower)", "CRF fusion (upper+lower+full)"}
    assert len(results["extra"]["fusion_weights"]) == 1
    for name in ("cmc.png", "ranked_split0.png", "results.md", "flags.json", "per_split.json"):
        assert os.path.getsize(out / "prid2011" / name) > 100, name
    splits = json.load(open(out / "prid2011" / "splits.json"))["splits"]
    # the paper's protocol keeps every person of both cameras, short ones too: 8 persons, 4 + 4
    assert len(splits) == 10 and len(splits[0]["query"]) == len(splits[0]["train"]) // 2 == 4
    # the exported fusion SavedModel gives the Keras model's embeddings
    import keras
    from keras_crf_reid.models import fusion, network, tta  # noqa: F401  (registers the custom layers)
    keras_model = keras.models.load_model(out / "prid2011" / "model.keras")
    loaded = tf.saved_model.load(str(tmp_path / "sm" / "1"))
    x = np.random.default_rng(0).normal(size=(2, 5, 128, 64, 5)).astype(np.float32)
    served = loaded.signatures["serving_default"](frames=tf.constant(x))["embedding"].numpy()
    np.testing.assert_allclose(served, keras_model(x, training=False).numpy(), atol=1e-5)
    # the checkpoint evaluates with the same flags
    ev = _run(["keras_crf_reid.evaluate", *common, f"--checkpoint={out}/prid2011/split_0/upper/ckpt",
               "--part=upper"], tmp_path)
    assert ev.returncode == 0, ev.stderr[-3000:]
    metrics = json.loads(ev.stdout[ev.stdout.index("{"):])
    assert metrics["checkpoint"].endswith("ckpt-4") and 0 <= metrics["rank1"] <= 100
    per_split = json.load(open(out / "prid2011" / "per_split.json"))
    assert metrics["rank1"] == pytest.approx(per_split["CRF cnn_rnn (upper)"][0]["rank1"])


@pytest.mark.parametrize("args,message", [
    (["--flagfile=nope.flags"], "nope.flags not found"),
    (["--dataset=prid2011"], "--data_root is required"),
    (["--dataset=prid2011", "--data_root=/does/not/exist"], "/does/not/exist: dataset root does not exist"),
    (["--batch_size=5"], "batch_size must be an even number"),
    (["--parts=full,torso"], "--parts: unknown value(s) ['torso']"),
    (["--loss_weights=1,1"], "--loss_weights must be 3 numbers"),
])
def test_bad_flags_give_clear_errors(tmp_path, args, message):
    res = _run(["keras_crf_reid.train", *args, "--steps=1", f"--data_dir={tmp_path}"], tmp_path, timeout=120)
    assert res.returncode != 0
    assert message in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
