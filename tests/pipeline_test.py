"""Pair pipeline: shapes, dtypes, balance, determinism, looping, augmentation; eval groups."""
import numpy as np
import pytest
import tensorflow as tf

from keras_crf_reid.datasets.prid2011 import load_prid_layout
from keras_crf_reid.datasets.synthetic import generate_synthetic
from keras_crf_reid.datasets.pipeline import PairConfig, PairSampler, _augment, group_dataset, pair_dataset
from keras_crf_reid.datasets.preprocess import group_windows, loop_indices, to_model_input
from keras_crf_reid.datasets.store import TrackletStore


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = generate_synthetic(str(tmp_path_factory.mktemp("syn") / "s"), num_ids=6, seed=3,
                              min_len=6, max_len=20, progress=False)
    ds = load_prid_layout(root, min_len=1)
    return TrackletStore(ds, str(tmp_path_factory.mktemp("cache"))).build(progress=False)


def test_pair_batches_shapes_dtypes_and_balance(store):
    cfg = PairConfig(seq_len=4, batch_size=6, seed=1)
    ds, sampler = pair_dataset(store, range(len(store)), cfg, num_batches=3)
    tr = store.dataset.tracklets
    for b, ((a, bb), y) in enumerate(ds):
        assert a.shape == (6, 4, 128, 64, 5) and a.dtype == tf.float32 and bb.shape == a.shape
        assert y["label"].numpy().sum() == 3  # exactly half positive
        spec = sampler.batch(b)
        for k in range(6):
            ia, ib = spec["index"][k]
            same = tr[ia].pid == tr[ib].pid
            assert same == bool(spec["label"][k])
            if same:
                assert tr[ia].camid != tr[ib].camid  # positives cross cameras
            assert sampler.pids[y["class_a"][k]] == tr[ia].pid
            assert sampler.pids[y["class_b"][k]] == tr[ib].pid
        assert np.all(np.isfinite(a.numpy()))


def test_deterministic_and_resumable(store):
    cfg = PairConfig(seq_len=4, batch_size=4, seed=7)
    first = [x[0].numpy() for (x, _) in pair_dataset(store, range(len(store)), cfg, num_batches=3)[0]]
    again = [x[0].numpy() for (x, _) in pair_dataset(store, range(len(store)), cfg, num_batches=3)[0]]
    resumed = [x[0].numpy() for (x, _) in pair_dataset(store, range(len(store)), cfg, num_batches=1,
                                                       start_batch=2)[0]]
    for u, v in zip(first, again):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(first[2], resumed[0])
    other = next(iter(pair_dataset(store, range(len(store)), PairConfig(4, 4, seed=8), 1)[0]))
    assert not np.array_equal(other[0][0].numpy(), first[0])


def test_stream_does_not_depend_on_parallelism(store):
    """The resumable stream is the same for 1, 3 and AUTOTUNE parallel calls, from any start."""
    def stream(calls, start=0, n=4):
        cfg = PairConfig(seq_len=3, batch_size=4, seed=11, num_parallel_calls=calls)
        return [(a.numpy(), b.numpy(), y["label"].numpy()) for (a, b), y in
                pair_dataset(store, range(len(store)), cfg, num_batches=n, start_batch=start)[0]]
    serial = stream(1)
    for other in (stream(3), stream(tf.data.AUTOTUNE), stream(tf.data.AUTOTUNE, 2, 2)):
        for got, want in zip(other, serial[-len(other):]):
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)
    with pytest.raises(ValueError, match="num_parallel_calls"):
        PairConfig(num_parallel_calls=0)


def test_group_dataset_same_for_any_parallelism(store):
    idx = list(range(len(store)))
    runs = [[(x.numpy(), o.numpy()) for x, o in group_dataset(store, idx, 4, 3, calls)[0]]
            for calls in (1, tf.data.AUTOTUNE)]
    assert len(runs[0]) == len(runs[1]) > 1
    for (x1, o1), (x2, o2) in zip(*runs):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(o1, o2)
    first = store.window(0, group_windows(int(store.lengths()[0]), 4)[0])
    np.testing.assert_allclose(runs[0][0][0][0], to_model_input(*first).numpy(), atol=1e-5)


def test_windows_are_consecutive_and_short_tracklets_loop(store):
    assert list(loop_indices(3, 7)) == [0, 1, 2, 0, 1, 2, 0]
    cfg = PairConfig(seq_len=16, batch_size=4, seed=0, augment=False)
    sampler = PairSampler(store, range(len(store)), cfg)
    lengths = store.lengths()
    assert lengths.min() < 16  # the fixture has short tracklets
    for b in range(5):
        spec = sampler.batch(b)
        for i, s in zip(spec["index"].ravel(), spec["start"].ravel()):
            assert 0 <= s <= max(0, lengths[i] - 16)
            if lengths[i] < 16:
                assert s == 0


def test_mirror_flips_image_and_negates_horizontal_flow():
    rng = np.random.default_rng(0)
    rgb = tf.constant(rng.integers(0, 255, (1, 2, 128, 64, 3)), tf.uint8)
    flow = tf.constant(rng.uniform(-0.5, 0.5, (1, 2, 128, 64, 2)), tf.float32)
    box = tf.constant([[0.0, 0.0, 1.0, 1.0]])
    plain = _augment(rgb, flow, box, tf.constant([False])).numpy()
    mirrored = _augment(rgb, flow, box, tf.constant([True])).numpy()
    np.testing.assert_allclose(mirrored[..., :3], plain[:, :, :, ::-1, :3], atol=1e-4)
    np.testing.assert_allclose(mirrored[..., 3], -plain[:, :, :, ::-1, 3], atol=1e-5)
    np.testing.assert_allclose(mirrored[..., 4], plain[:, :, :, ::-1, 4], atol=1e-5)


def test_crop_is_identical_for_all_frames_of_a_sequence():
    frame = np.random.default_rng(1).integers(0, 255, (128, 64, 3)).astype(np.uint8)
    rgb = tf.constant(np.stack([frame] * 3)[None])
    flow = tf.zeros((1, 3, 128, 64, 2))
    out = _augment(rgb, flow, tf.constant([[0.1, 0.2, 0.9, 0.95]]), tf.constant([False])).numpy()
    np.testing.assert_allclose(out[0, 0], out[0, 1], atol=1e-6)
    np.testing.assert_allclose(out[0, 0], out[0, 2], atol=1e-6)


def test_group_dataset_covers_every_frame(store):
    idx = list(range(len(store)))
    ds, counts = group_dataset(store, idx, seq_len=4, batch_size=5)
    owners = np.concatenate([o.numpy() for _, o in ds])
    lengths = store.lengths()
    assert list(counts) == [len(group_windows(int(n), 4)) for n in lengths]
    assert np.array_equal(np.bincount(owners, minlength=len(idx)), counts)
    for n in lengths:
        covered = np.unique(group_windows(int(n), 4))
        assert set(covered) == set(range(int(n))) or n < 4


def test_bad_config():
    with pytest.raises(ValueError, match="even"):
        PairConfig(batch_size=5)


def test_replica_pairs_per_pipeline_batches(store):
    from keras_crf_reid.datasets.pipeline import replica_pairs
    cfg = PairConfig(seq_len=2, batch_size=8, seed=3)
    ctxs = [tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i,
                                       num_replicas_in_sync=2) for i in range(2)]
    firsts = []
    for ctx in ctxs:
        (a, _), y = next(iter(replica_pairs(store, range(len(store)), cfg, 0, ctx)))
        assert a.shape[0] == 4 and y["label"].numpy().sum() == 2  # per replica, balanced
        firsts.append(a.numpy())
    assert not np.array_equal(firsts[0], firsts[1])  # each worker has its own stream
    single = next(iter(replica_pairs(store, range(len(store)), cfg, 0, None)))[0][0]
    assert single.shape[0] == 8
    with pytest.raises(ValueError, match="must be even"):
        replica_pairs(store, range(len(store)), PairConfig(2, 6), 0,
                      tf.distribute.InputContext(1, 0, 2))
