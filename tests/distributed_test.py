"""tf.distribute training through the real Trainer: 2 local workers, and one-device mirrored.

The multi-worker test runs tests/helpers/distributed_worker.py as two processes on 127.0.0.1 with
TF_CONFIG (collective ops over gRPC on localhost); both must end with identical weights,
which only happens when every step all-reduces the gradients of the two halves of the batch.
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_crf_reid.datasets.pipeline import PairConfig, PairSampler, replica_pairs
from keras_crf_reid.datasets.prid2011 import load_prid_layout
from keras_crf_reid.datasets.store import TrackletStore
from keras_crf_reid.datasets.synthetic import generate_synthetic
from keras_crf_reid.models.network import ModelConfig, build_crf_model
from keras_crf_reid.training.trainer import TrainConfig, Trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "helpers", "distributed_worker.py")
TINY = ModelConfig(filters=(4, 4, 4), embed_dim=8, dropout=0.0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(data_root, cache_dir) of a tiny synthetic dataset with its flow cache built."""
    root = generate_synthetic(str(tmp_path_factory.mktemp("syn") / "s"), num_ids=6, seed=1,
                              min_len=5, max_len=12, progress=False)
    cache = str(tmp_path_factory.mktemp("cache"))
    TrackletStore(load_prid_layout(root), cache).build(progress=False)
    return root, cache


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _run_workers(data, tmp_path, steps: int) -> list[dict]:
    """Runs the two workers to `steps`; returns their JSON reports (chief first)."""
    root, cache = data
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for i in range(2):
        env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                        "task": {"type": "worker", "index": i}})}
        cmd = [sys.executable, WORKER, "--strategy=multi_worker", f"--data_root={root}",
               f"--cache_dir={cache}", f"--model_dir={tmp_path}/model",
               f"--out={tmp_path}/w{i}.npz", f"--steps={steps}", "--batch_size=4", "--seq_len=3"]
        procs.append(subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=100)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    return [json.loads(out.strip().splitlines()[-1]) for out in outs]


def _load(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return dict(f)


def _assert_identical_and_trained(tmp_path):
    w0, w1 = _load(f"{tmp_path}/w0.npz"), _load(f"{tmp_path}/w1.npz")
    assert sorted(w0) == sorted(w1)
    for k in w0:
        np.testing.assert_array_equal(w0[k], w1[k], err_msg=k)
    finals = [k for k in w0 if k.startswith("final_")]
    assert any(not np.allclose(w0[k], w0[k.replace("final_", "initial_")]) for k in finals)


@pytest.mark.slow
def test_two_workers_train_identically_and_resume(data, tmp_path):
    reports = _run_workers(data, tmp_path, steps=3)
    assert [r["replicas"] for r in reports] == [2, 2]
    assert [r["step"] for r in reports] == [3, 3]
    assert [r["chief"] for r in reports] == [True, False]
    # Only the chief's checkpoints land in model_dir; the other worker's temp dir is gone.
    assert tf.train.latest_checkpoint(f"{tmp_path}/model/ckpt").endswith("ckpt-3")
    assert not os.path.exists(reports[1]["checkpoints"])
    _assert_identical_and_trained(tmp_path)
    # A re-run with more steps resumes both workers from the chief's checkpoint.
    first = _load(f"{tmp_path}/w0.npz")
    reports = _run_workers(data, tmp_path, steps=5)
    assert [r["step"] for r in reports] == [5, 5]
    assert tf.train.latest_checkpoint(f"{tmp_path}/model/ckpt").endswith("ckpt-5")
    resumed = _load(f"{tmp_path}/w1.npz")
    for k in first:
        if k.startswith("final_"):
            np.testing.assert_array_equal(resumed[k.replace("final_", "initial_")], first[k])
    _assert_identical_and_trained(tmp_path)


def test_mirrored_strategy_on_one_cpu_trains(data, tmp_path):
    root, cache = data
    from keras_crf_reid.training.distribute import make_strategy
    strategy = make_strategy("mirrored")
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    store = TrackletStore(load_prid_layout(root), cache)
    pairs = PairConfig(seq_len=3, batch_size=4, seed=0)
    sampler = PairSampler(store, range(len(store)), pairs)
    with strategy.scope():
        model = build_crf_model(TINY)
    trainer = Trainer(model, sampler.num_classes,
                      TrainConfig(steps=2, optimizer="adam", learning_rate=1e-2, ckpt_every=2),
                      str(tmp_path), strategy)
    before = [w.numpy().copy() for w in model.weights]
    out = trainer.fit(lambda s, ctx: replica_pairs(store, range(len(store)), pairs, s, ctx),
                      4, progress=False)
    assert out["step"] == 2 and np.isfinite(out["total"])
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(before, model.weights))
    assert trainer.manager.latest_checkpoint.endswith("ckpt-2")
