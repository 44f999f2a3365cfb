"""Recipe options of issue 11: flow normalisation, batch norm, LR schedules, jitter, erasing, logs."""
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_crf_reid.datasets.pipeline import PairConfig, PairSampler, _augment, pair_dataset, replica_pairs
from keras_crf_reid.datasets.prid2011 import load_prid_layout
from keras_crf_reid.datasets.store import TrackletStore
from keras_crf_reid.datasets.synthetic import generate_synthetic
from keras_crf_reid.models.network import FlowStandardize, ModelConfig, build_crf_model
from keras_crf_reid.training.trainer import (TrainConfig, Trainer, WarmupDecay, learning_rate,
                                             make_optimizer)

TINY = dict(filters=(4, 4, 4), embed_dim=8, dropout=0.0)


def _x(b=2, t=3, seed=0):
    x = np.random.default_rng(seed).normal(size=(b, t, 128, 64, 5)).astype(np.float32)
    x[..., 3:] = x[..., 3:] * 0.1 + 0.05  # flow on its stored (small) scale, off-centre
    return x


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = generate_synthetic(str(tmp_path_factory.mktemp("syn") / "s"), num_ids=6, seed=1,
                              min_len=5, max_len=12, progress=False)
    return TrackletStore(load_prid_layout(root), str(tmp_path_factory.mktemp("c"))).build(progress=False)


@pytest.mark.parametrize("kwargs, flag", [
    (dict(flow_norm="per_pixel"), "--flow_norm"), (dict(batch_norm="yes"), "--batch_norm")])
def test_model_options_are_validated(kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        ModelConfig(**kwargs)


@pytest.mark.parametrize("kwargs, flag", [
    (dict(lr_schedule="linear"), "--lr_schedule"), (dict(warmup_steps=-1), "--warmup_steps"),
    (dict(weight_decay=-0.1), "--weight_decay"), (dict(log_every=0), "--log_every")])
def test_train_options_are_validated(kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        TrainConfig(**kwargs)


@pytest.mark.parametrize("kwargs, flag", [
    (dict(color_jitter=-0.1), "--color_jitter"), (dict(color_jitter=1.0), "--color_jitter"),
    (dict(random_erase=1.5), "--random_erase"), (dict(min_crop_scale=0.05), "--min_crop_scale")])
def test_pair_options_are_validated(kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        PairConfig(**kwargs)


def test_default_model_has_no_new_layers_and_same_weights():
    keras.utils.set_random_seed(3)
    plain = build_crf_model(ModelConfig(**TINY))
    keras.utils.set_random_seed(3)
    named = build_crf_model(ModelConfig(flow_norm="fixed", batch_norm=False, **TINY))
    assert sorted(l.name for l in plain.layers) == ["embedding", "frame_cnn", "frames", "rnn",
                                                    "x_c", "x_f", "x_r"]
    assert [w.shape for w in plain.weights] == [w.shape for w in named.weights]
    for a, b in zip(plain.weights, named.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x = _x()
    np.testing.assert_array_equal(plain(x, training=False).numpy(), named(x, training=False).numpy())


def test_frame_std_standardises_flow_per_frame_and_keeps_colour():
    x = _x()
    y = FlowStandardize()(x).numpy()
    np.testing.assert_array_equal(y[..., :3], x[..., :3])
    flow = y[..., 3:]
    np.testing.assert_allclose(flow.mean(axis=(2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(flow.std(axis=(2, 3)), 1.0, atol=1e-4)
    # zero flow (a one-frame tracklet) stays zero instead of dividing by zero
    x[0, 0, ..., 3:] = 0.0
    np.testing.assert_array_equal(FlowStandardize()(x).numpy()[0, 0, ..., 3:], 0.0)


def test_frame_std_is_the_first_layer_and_changes_the_embedding():
    keras.utils.set_random_seed(3)
    plain = build_crf_model(ModelConfig(**TINY))
    keras.utils.set_random_seed(3)
    normed = build_crf_model(ModelConfig(flow_norm="frame_std", **TINY))
    assert normed.layers[1].name == "flow_norm"
    for a, b in zip(plain.weights, normed.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x = _x()
    want = plain(FlowStandardize()(x), training=False).numpy()
    np.testing.assert_allclose(normed(x, training=False).numpy(), want, atol=1e-5)
    assert not np.allclose(plain(x, training=False).numpy(), want, atol=1e-3)


def test_batch_norm_variant_trains_its_statistics_and_round_trips(tmp_path):
    model = build_crf_model(ModelConfig(batch_norm=True, **TINY))
    bns = [l for l in model.get_layer("frame_cnn")._layers if isinstance(l, keras.layers.BatchNormalization)]
    assert [b.name for b in bns] == ["bn1", "bn2", "bn3"]
    x = _x()
    before = bns[0].moving_mean.numpy().copy()
    model(x, training=True)
    assert not np.allclose(before, bns[0].moving_mean.numpy())
    path = str(tmp_path / "bn.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(loaded(x, training=False).numpy(), model(x, training=False).numpy(),
                               atol=1e-6)


def test_constant_schedule_keeps_a_plain_float():
    assert learning_rate(TrainConfig(learning_rate=0.01)) == 0.01


@pytest.mark.parametrize("schedule, warmup, expect", [
    ("constant", 10, {0: 0.1, 4: 0.5, 9: 1.0, 50: 1.0}),
    ("step", 0, {0: 1.0, 49: 1.0, 50: 0.1, 74: 0.1, 75: 0.01, 99: 0.01}),
    ("cosine", 0, {0: 1.0, 50: 0.5, 100: 0.0, 150: 0.0}),
    ("cosine", 4, {0: 0.25, 3: 0.5 * (1 + np.cos(np.pi * 0.03)), 50: 0.5}),
])
def test_schedule_values(schedule, warmup, expect):
    sched = WarmupDecay(1.0, 100, schedule, warmup)
    for step, lr in expect.items():
        assert float(sched(step)) == pytest.approx(lr, abs=1e-6), (schedule, step)
    again = WarmupDecay.from_config(sched.get_config())
    assert float(again(37)) == pytest.approx(float(sched(37)))


def test_schedule_follows_the_optimizer_iterations_through_a_checkpoint(tmp_path):
    cfg = TrainConfig(steps=8, lr_schedule="step", learning_rate=1.0, weight_decay=1e-4)
    var = tf.Variable([1.0, 2.0])
    opt = make_optimizer(cfg)
    opt.build([var])
    for _ in range(5):
        opt.apply_gradients([(tf.constant([0.1, 0.1]), var)])
    assert float(opt.learning_rate) == pytest.approx(0.1)
    path = tf.train.Checkpoint(opt=opt, var=var).save(str(tmp_path / "ck"))
    opt2 = make_optimizer(cfg)
    var2 = tf.Variable([0.0, 0.0])
    opt2.build([var2])
    assert float(opt2.learning_rate) == pytest.approx(1.0)
    tf.train.Checkpoint(opt=opt2, var=var2).restore(path)
    assert int(opt2.iterations) == 5 and float(opt2.learning_rate) == pytest.approx(0.1)
    opt2.apply_gradients([(tf.constant([0.1, 0.1]), var2)])
    assert float(opt2.learning_rate) == pytest.approx(0.01)


def _spec_batch(store, **kw):
    return PairSampler(store, range(len(store)), PairConfig(seq_len=3, batch_size=4, **kw)).batch(2)


def test_jitter_and_erase_draws_leave_the_default_stream_unchanged(store):
    plain = _spec_batch(store)
    both = _spec_batch(store, color_jitter=0.3, random_erase=0.5)
    assert "jitter" not in plain and "erase" not in plain
    for k in plain:
        np.testing.assert_array_equal(plain[k], both[k])
    again = _spec_batch(store, color_jitter=0.3, random_erase=0.5)
    np.testing.assert_array_equal(both["jitter"], again["jitter"])
    np.testing.assert_array_equal(both["erase"], again["erase"])
    assert not np.array_equal(both["jitter"], _spec_batch(store, color_jitter=0.3, random_erase=0.5,
                                                         seed=1)["jitter"])
    j = both["jitter"]
    assert np.all((j[..., :3] >= 0.7) & (j[..., :3] <= 1.3)) and np.all(np.abs(j[..., 3]) <= 0.03)
    e = both["erase"].reshape(-1, 4)
    assert np.all((e >= 0) & (e <= 1)) and np.all(e[:, 2] >= e[:, 0]) and np.all(e[:, 3] >= e[:, 1])


def test_jitter_and_erase_change_pixels_deterministically(store):
    def first(**kw):
        ds, _ = pair_dataset(store, range(len(store)), PairConfig(seq_len=3, batch_size=4, **kw),
                             num_batches=1, start_batch=5)
        (a, b), _ = next(iter(ds))
        return np.concatenate([a.numpy(), b.numpy()])
    plain = first()
    jit = first(color_jitter=0.5)
    assert np.abs(jit - plain)[..., :3].mean() > 0.01
    np.testing.assert_array_equal(jit[..., 3:], plain[..., 3:])  # flow is not colour-jittered
    np.testing.assert_array_equal(jit, first(color_jitter=0.5))
    erased = first(random_erase=1.0)
    zero = np.all(erased == 0, axis=-1)  # (N, T, H, W): pixels with all five channels zeroed
    assert zero.any() and not np.all(plain == 0, axis=-1).any()
    # the same rectangle in every frame of a sequence
    for seq in zero:
        assert all(np.array_equal(seq[0], f) for f in seq[1:])
    keep = ~zero
    np.testing.assert_array_equal(erased[keep], plain[keep])


def test_erase_zeroes_exactly_its_box():
    rgb = tf.constant(np.random.default_rng(0).integers(0, 255, (1, 2, 128, 64, 3)), tf.uint8)
    flow = tf.fill((1, 2, 128, 64, 2), 0.3)
    out = _augment(rgb, flow, tf.constant([[0.0, 0.0, 1.0, 1.0]]), tf.constant([False]),
                   erase=tf.constant([[0.25, 0.5, 0.5, 1.0]])).numpy()
    zero = np.all(out == 0, axis=-1)
    want = np.zeros((128, 64), bool)
    want[32:64, 32:64] = True
    assert np.array_equal(zero[0, 0], want) and np.array_equal(zero[0, 1], want)


def test_log_lines_without_progress_bar(store, tmp_path, capsys):
    pairs = PairConfig(seq_len=3, batch_size=4, seed=0)
    sampler = PairSampler(store, range(len(store)), pairs)
    trainer = Trainer(build_crf_model(ModelConfig(**TINY)), sampler.num_classes,
                      TrainConfig(steps=5, ckpt_every=0, log_every=2, lr_schedule="cosine",
                                  warmup_steps=2), str(tmp_path))
    trainer.fit(lambda s, c: replica_pairs(store, range(len(store)), pairs, s, c), 4, progress=False)
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("train crf step")]
    assert [int(re.search(r"step (\d+)/5", l).group(1)) for l in lines] == [2, 4, 5]
    for line in lines:
        assert re.search(r"total \d+\.\d{4}", line) and "steps/s" in line and "ETA 0:" in line
        assert re.search(r"lr \d", line)


def test_no_log_lines_with_progress_bar(store, tmp_path, capsys):
    pairs = PairConfig(seq_len=3, batch_size=4, seed=0)
    sampler = PairSampler(store, range(len(store)), pairs)
    trainer = Trainer(build_crf_model(ModelConfig(**TINY)), sampler.num_classes,
                      TrainConfig(steps=2, ckpt_every=0, log_every=1), str(tmp_path))
    trainer.fit(lambda s, c: replica_pairs(store, range(len(store)), pairs, s, c), 4, progress=True)
    assert "steps/s |" not in capsys.readouterr().out


def test_flags_map_to_the_configs():
    from absl import flags
    from keras_crf_reid.configs.experiment import config_from_flags, define_flags
    fv = flags.FlagValues()
    define_flags(fv)
    given = {"flow_norm": "frame_std", "batch_norm": "true", "lr_schedule": "step",
             "warmup_steps": "7", "weight_decay": "0.001", "min_crop_scale": "0.6",
             "color_jitter": "0.2", "random_erase": "0.5", "log_every": "3", "tta": "true"}
    fv(["prog"] + [f"--{k}={v}" for k, v in given.items()])
    cfg = config_from_flags(fv)
    assert (cfg.model.flow_norm, cfg.model.batch_norm) == ("frame_std", True)
    assert (cfg.train.lr_schedule, cfg.train.warmup_steps, cfg.train.weight_decay,
            cfg.train.log_every) == ("step", 7, 0.001, 3)
    assert (cfg.pairs.min_crop_scale, cfg.pairs.color_jitter, cfg.pairs.random_erase) == (0.6, 0.2, 0.5)
    assert cfg.eval.tta.enabled is True
    fresh = flags.FlagValues()
    define_flags(fresh)
    fresh(["prog"])
    defaults = config_from_flags(fresh)
    assert defaults.model == ModelConfig() and defaults.pairs == PairConfig()
    assert defaults.train == TrainConfig()


def test_checkpoint_of_a_variant_restores_with_its_config(tmp_path):
    from keras_crf_reid.models.factory import restore_checkpoint
    config = ModelConfig(flow_norm="frame_std", batch_norm=True, **TINY)
    model = build_crf_model(config)
    x = _x()
    model(x, training=True)  # moves the batch-norm statistics away from their initial values
    prefix = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    restored = restore_checkpoint(prefix, config)
    assert "flow_norm" in [layer.name for layer in restored.layers]
    np.testing.assert_allclose(restored(x, training=False).numpy(), model(x, training=False).numpy(),
                               atol=1e-6)
