"""Training loop: checkpoints restore exactly, resume after SIGKILL, NaN handling, P x K batches."""
import dataclasses
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_crf_reid.datasets.pipeline import PairConfig, PairSampler, replica_pairs, training_sampler
from keras_crf_reid.datasets.prid2011 import load_prid_layout
from keras_crf_reid.datasets.store import TrackletStore
from keras_crf_reid.datasets.synthetic import generate_synthetic
from keras_crf_reid.models.network import ModelConfig, build_crf_model
from keras_crf_reid.training.trainer import NonFiniteLossError, TrainConfig, Trainer

TINY = ModelConfig(filters=(4, 4, 4), embed_dim=8, dropout=0.0)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = generate_synthetic(str(tmp_path_factory.mktemp("syn") / "s"), num_ids=6, seed=1,
                              min_len=5, max_len=12, progress=False)
    return TrackletStore(load_prid_layout(root), str(tmp_path_factory.mktemp("c"))).build(progress=False)


def _trainer(store, model_dir, steps, **kw):
    pairs = PairConfig(seq_len=3, batch_size=4, seed=0)
    sampler = PairSampler(store, range(len(store)), pairs)
    trainer = Trainer(build_crf_model(TINY), sampler.num_classes,
                      TrainConfig(steps=steps, ckpt_every=2, log_every=1, **kw), str(model_dir))
    make = lambda start, ctx: replica_pairs(store, range(len(store)), pairs, start, ctx)
    return trainer, make


def test_trains_checkpoints_and_restores_identical_weights(store, tmp_path):
    trainer, make = _trainer(store, tmp_path, steps=5, optimizer="adam", learning_rate=1e-2)
    before = [w.numpy().copy() for w in trainer.model.weights]
    out = trainer.fit(make, 4, progress=False)
    assert out["step"] == 5 and np.isfinite(out["total"])
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(before, trainer.model.weights))
    assert trainer.manager.latest_checkpoint.endswith("ckpt-5")
    fresh, _ = _trainer(store, tmp_path, steps=5, optimizer="adam", learning_rate=1e-2)
    assert fresh.restore() == 5
    for a, b in zip(trainer.model.weights, fresh.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Already finished: fit returns at once without training further.
    assert fresh.fit(make, 4, progress=False) == {"step": 5}
    with pytest.raises(ValueError, match="different model or optimizer"):
        _trainer(store, tmp_path, steps=5, optimizer="sgd")[0].restore()


def test_non_finite_loss_stops_without_checkpoint(store, tmp_path):
    trainer, make = _trainer(store, tmp_path, steps=4)
    k = trainer.classifier.kernel
    k.assign(tf.fill(k.shape, np.nan))
    with pytest.raises(NonFiniteLossError, match="step 1"):
        trainer.fit(make, 4, progress=False)
    assert trainer.manager.latest_checkpoint is None


def test_non_finite_loss_skip_mode_leaves_weights_finite(store, tmp_path):
    trainer, make = _trainer(store, tmp_path, steps=3, on_nan="skip")
    k = trainer.classifier.kernel
    k.assign(tf.fill(k.shape, np.nan))
    before = [v.numpy().copy() for v in trainer.model.trainable_variables]
    trainer.fit(make, 4, progress=False)
    for a, v in zip(before, trainer.model.trainable_variables):
        np.testing.assert_array_equal(a, v.numpy())  # every batch skipped: nothing applied


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    """Kill a real training process mid-run; the same command resumes from its checkpoint."""
    cmd = [sys.executable, "-m", "keras_crf_reid.train", "--dataset=synthetic", "--num_ids=6",
           f"--data_dir={tmp_path}/data", f"--cache_dir={tmp_path}/cache",
           f"--output_dir={tmp_path}/runs", "--name=kill", "--splits=0", "--num_splits=1",
           "--filters=4,4,4", "--embed_dim=8", "--seq_len=3", "--batch_size=4", "--steps=400",
           "--ckpt_every=5", "--export=false", "--baseline=false", "--progress=false"]
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt_dir = tmp_path / "runs" / "kill" / "split_0" / "full" / "ckpt"
    deadline = time.time() + 240
    while time.time() < deadline and not (ckpt_dir.exists() and tf.train.latest_checkpoint(str(ckpt_dir))
                                          and int(tf.train.latest_checkpoint(str(ckpt_dir)).rsplit("-", 1)[1]) >= 10):
        time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = int(tf.train.latest_checkpoint(str(ckpt_dir)).rsplit("-", 1)[1])
    assert 10 <= killed_at < 400
    cmd[cmd.index("--steps=400")] = f"--steps={killed_at + 10}"
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    last = tf.train.latest_checkpoint(str(ckpt_dir))
    assert last.endswith(f"ckpt-{killed_at + 10}")
    model = build_crf_model(TINY)
    tf.train.Checkpoint(model=model).restore(last).expect_partial().assert_existing_objects_matched()
    assert "Restoring" in done.stderr or "restored" in done.stderr


def test_resume_with_dropout_matches_uninterrupted_run(store, tmp_path):
    """5 + 5 steps with a restart in between give bit-identical weights to 10 steps at once:
    the dropout generators' state is checkpointed with the model."""
    cfg = dataclasses.replace(TINY, dropout=0.5)

    def trainer(model_dir, steps, seed=0):
        keras.utils.set_random_seed(seed)
        pairs = PairConfig(seq_len=3, batch_size=4, seed=0)
        sampler = PairSampler(store, range(len(store)), pairs)
        t = Trainer(build_crf_model(cfg), sampler.num_classes,
                    TrainConfig(steps=steps, ckpt_every=5, log_every=1, learning_rate=0.05),
                    str(model_dir))
        return t, lambda start, ctx: replica_pairs(store, range(len(store)), pairs, start, ctx)

    whole, make = trainer(tmp_path / "whole", 10)
    whole.fit(make, 4, progress=False)
    first, make = trainer(tmp_path / "resumed", 5)
    first.fit(make, 4, progress=False)
    # a restarted process may have another global random state: the checkpoint decides
    second, make = trainer(tmp_path / "resumed", 10, seed=123)
    second.fit(make, 4, progress=False)
    assert second.current_step == whole.current_step == 10
    assert [int(v.numpy()[-1]) for v in second.rng_states] == [10]  # one dropout draw per step
    for a, b in zip(whole.model.weights + whole.classifier.weights,
                    second.model.weights + second.classifier.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_running_losses_of_a_resumed_run_equal_the_uninterrupted_ones(store, tmp_path):
    """The running loss averages are checkpointed: 4 + 4 steps with a restart report the same
    losses (what metrics.json records) as 8 steps at once."""
    def run(model_dir, steps):
        keras.utils.set_random_seed(0)
        trainer, make = _trainer(store, model_dir, steps, optimizer="adam", learning_rate=1e-2)
        out = trainer.fit(make, 4, progress=False)
        return {k: v for k, v in out.items() if k != "steps_per_s"}

    whole = run(tmp_path / "whole", 8)
    run(tmp_path / "resumed", 4)
    resumed = run(tmp_path / "resumed", 8)
    assert resumed == whole and whole["step"] == 8 and len(whole) > 2


def _pk_trainer(store, model_dir, steps, seed=0, **kw):
    keras.utils.set_random_seed(seed)
    pk = PairConfig(seq_len=3, sampler="pk", num_persons=3, num_instances=2, seed=0,
                    random_erase=0.5)
    sampler = training_sampler(store, range(len(store)), pk)
    t = Trainer(build_crf_model(dataclasses.replace(TINY, dropout=0.5)), sampler.num_classes,
                TrainConfig(steps=steps, ckpt_every=3, log_every=1, learning_rate=0.05,
                            **{"metric_loss": "triplet", **kw}), str(model_dir))
    return t, lambda start, ctx: replica_pairs(store, range(len(store)), pk, start, ctx)


def test_soft_margin_triplet_trains(store, tmp_path):
    """--metric_loss=triplet_soft reaches the trainer: its term is logged and the weights move."""
    t, make = _pk_trainer(store, tmp_path / "soft", 2, metric_loss="triplet_soft")
    before = [w.numpy().copy() for w in t.model.weights]
    out = t.fit(make, 2, progress=False)
    assert {"total", "triplet_soft", "softmax"} <= set(out) and out["triplet_soft"] > 0, out
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(before, t.model.weights))


def test_pk_triplet_training_resumes_bit_identically(store, tmp_path):
    """P x K batches with the triplet loss: 3 + 3 steps with a restart equal 6 at once."""
    whole, make = _pk_trainer(store, tmp_path / "whole", 6)
    before = [w.numpy().copy() for w in whole.model.weights]
    out = whole.fit(make, 6, progress=False)
    assert {"total", "triplet", "softmax"} <= set(out) and np.isfinite(out["total"])
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(before, whole.model.weights))
    first, make = _pk_trainer(store, tmp_path / "resumed", 3)
    first.fit(make, 6, progress=False)
    second, make = _pk_trainer(store, tmp_path / "resumed", 6, seed=123)
    second.fit(make, 6, progress=False)
    assert second.current_step == 6
    for a, b in zip(whole.model.weights + whole.classifier.weights,
                    second.model.weights + second.classifier.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_triplet_refuses_pair_batches(store, tmp_path):
    trainer, make = _trainer(store, tmp_path, steps=2, metric_loss="triplet")
    with pytest.raises(ValueError, match="--metric_loss=triplet needs .*--sampler=pk"):
        trainer.fit(make, 4, progress=False)
