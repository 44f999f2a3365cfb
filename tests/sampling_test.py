"""Identity-balanced P x K batches: persons, cameras, repeats, determinism, the tf.data stream."""
import types

import numpy as np
import pytest
import tensorflow as tf

from keras_crf_reid.datasets.base import Tracklet
from keras_crf_reid.datasets.pipeline import PairConfig, pk_dataset, replica_pairs
from keras_crf_reid.datasets.prid2011 import load_prid_layout
from keras_crf_reid.datasets.sampling import PKSampler
from keras_crf_reid.datasets.store import TrackletStore
from keras_crf_reid.datasets.synthetic import generate_synthetic

# person -> {camera: tracklets}: several cameras and tracklets, one camera only, fewer than K
LAYOUT = {1: {1: 3, 2: 2, 3: 1}, 2: {1: 5}, 3: {1: 1, 4: 1}, 4: {2: 2, 5: 4}, 5: {1: 1, 2: 1, 3: 1,
                                                                                  4: 1, 5: 1}}


def _stub_store(layout=LAYOUT, length=10):
    tracklets = [Tracklet(pid, cam, tuple(f"{pid}_{cam}_{t}_{f}.jpg" for f in range(length)))
                 for pid, cams in layout.items() for cam, n in cams.items() for t in range(n)]
    dataset = types.SimpleNamespace(tracklets=tracklets, root="stub")
    return types.SimpleNamespace(dataset=dataset, lengths=lambda: np.full(len(tracklets), length))


def _pk(**kw):
    return PairConfig(**{"sampler": "pk", "num_persons": 3, "num_instances": 4, "seq_len": 4, **kw})


def test_batch_has_p_distinct_persons_times_k_tracklets_from_cycled_cameras():
    store = _stub_store()
    tr = store.dataset.tracklets
    sampler = PKSampler(store, range(len(tr)), _pk())
    seen = set()
    for b in range(40):
        spec = sampler.batch(b)
        assert spec["index"].shape == spec["start"].shape == spec["class"].shape == (12,)
        assert spec["boxes"].shape == (12, 4) and spec["flip"].shape == (12,)
        persons = spec["class"].reshape(3, 4)
        assert np.all(persons == persons[:, :1]) and len(set(persons[:, 0])) == 3
        for p, rows in zip(persons[:, 0], spec["index"].reshape(3, 4)):
            pid = sampler.pids[p]
            seen.add(pid)
            assert all(tr[i].pid == pid for i in rows)
            mine = [i for i, t in enumerate(tr) if t.pid == pid]
            cams = {tr[i].camid for i in mine}
            assert len({tr[i].camid for i in rows}) == min(4, len(cams))  # cameras differ
            if len(mine) >= 4:
                assert len(set(rows.tolist())) == 4  # no repeat while unused tracklets remain
            else:
                assert set(rows.tolist()) == set(mine)  # with replacement: all of them used
        assert np.all((spec["start"] >= 0) & (spec["start"] <= 10 - 4))
    assert seen == set(LAYOUT)


def test_batches_are_deterministic_per_index_and_stream():
    store = _stub_store()
    train = range(len(store.dataset.tracklets))
    one, two = PKSampler(store, train, _pk()), PKSampler(store, train, _pk())
    for b in (0, 5, 17):
        x, y = one.batch(b), two.batch(b)
        assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
    differs = lambda u, v: not np.array_equal(u["index"], v["index"]) or \
        not np.array_equal(u["boxes"], v["boxes"])
    assert differs(one.batch(0), one.batch(1))
    assert differs(one.batch(0), PKSampler(store, train, _pk(stream=1)).batch(0))
    assert differs(one.batch(0), PKSampler(store, train, _pk(seed=1)).batch(0))


def test_optional_augmentation_draws_come_after_the_rest():
    store = _stub_store()
    train = range(len(store.dataset.tracklets))
    plain = PKSampler(store, train, _pk()).batch(3)
    more = PKSampler(store, train, _pk(color_jitter=0.2, random_erase=1.0)).batch(3)
    assert "erase" not in plain and "jitter" not in plain
    assert more["jitter"].shape == more["erase"].shape == (12, 4)
    assert np.all(more["erase"][:, 2] > more["erase"][:, 0])  # probability 1: every one erased
    for k in plain:
        np.testing.assert_array_equal(plain[k], more[k])


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_persons=1), "--num_persons >= 2"), (dict(num_instances=1), "--num_instances >= 2"),
    (dict(sampler="triplets"), "--sampler")])
def test_bad_pk_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _pk(**kwargs)


def test_too_few_persons_names_the_flag():
    store = _stub_store()
    with pytest.raises(ValueError, match="--num_persons=6 .* only 5"):
        PKSampler(store, range(len(store.dataset.tracklets)), _pk(num_persons=6))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = generate_synthetic(str(tmp_path_factory.mktemp("syn") / "s"), num_ids=6, seed=3,
                              min_len=6, max_len=20, progress=False)
    return TrackletStore(load_prid_layout(root, min_len=1),
                         str(tmp_path_factory.mktemp("cache"))).build(progress=False)


def test_pk_dataset_batches_resume_and_erase(store):
    cfg = _pk(num_persons=2, num_instances=3, seq_len=3, seed=4)
    ds, sampler = pk_dataset(store, range(len(store)), cfg, num_batches=3)
    batches = [(x.numpy(), y["class"].numpy()) for x, y in ds]
    for b, (x, classes) in enumerate(batches):
        assert x.shape == (6, 3, 128, 64, 5) and x.dtype == np.float32 and np.all(np.isfinite(x))
        np.testing.assert_array_equal(classes, sampler.batch(b)["class"])
    (x2, c2), = [(x.numpy(), y["class"].numpy()) for x, y in
                 pk_dataset(store, range(len(store)), cfg, num_batches=1, start_batch=2)[0]]
    np.testing.assert_array_equal(x2, batches[2][0])
    erased, _ = next(iter(pk_dataset(store, range(len(store)), _pk(
        num_persons=2, num_instances=3, seq_len=3, seed=4, random_erase=1.0), num_batches=1)[0]))
    erased = erased.numpy()
    zero = np.all(erased == 0, axis=-1)  # every channel of an erased pixel is 0
    assert np.all(zero.any(axis=(2, 3)))  # every sequence of the batch has its rectangle
    assert not np.all(batches[0][0] == 0, axis=-1).any(axis=(2, 3)).all()


def test_replica_stream_splits_persons_per_replica(store):
    cfg = _pk(num_persons=4, num_instances=2, seq_len=2, seed=3)
    ctxs = [tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i,
                                       num_replicas_in_sync=2) for i in range(2)]
    firsts = []
    for ctx in ctxs:
        x, y = next(iter(replica_pairs(store, range(len(store)), cfg, 0, ctx)))
        assert x.shape[0] == 4 and len(set(y["class"].numpy().tolist())) == 2
        firsts.append(x.numpy())
    assert not np.array_equal(firsts[0], firsts[1])
    assert next(iter(replica_pairs(store, range(len(store)), cfg, 0, None)))[0].shape[0] == 8
    with pytest.raises(ValueError, match="--num_persons=4 over 4 replicas"):
        replica_pairs(store, range(len(store)), cfg, 0, tf.distribute.InputContext(1, 0, 4))


def test_flags_select_the_sampler_and_loss_and_refuse_triplet_on_pairs():
    from absl import flags
    from keras_crf_reid.configs.experiment import config_from_flags, define_flags
    fv = flags.FlagValues()
    define_flags(fv)
    fv(["prog", "--sampler=pk", "--num_persons=6", "--num_instances=3", "--metric_loss=triplet",
        "--triplet_margin=0.5"])
    cfg = config_from_flags(fv)
    assert (cfg.pairs.sampler, cfg.pairs.num_persons, cfg.pairs.num_instances,
            cfg.pairs.global_batch) == ("pk", 6, 3, 18)
    assert (cfg.train.metric_loss, cfg.train.triplet_margin) == ("triplet", 0.5)
    fresh = flags.FlagValues()
    define_flags(fresh)
    fresh(["prog", "--metric_loss=triplet"])
    with pytest.raises(ValueError, match="--metric_loss=triplet needs .*--sampler=pk"):
        config_from_flags(fresh)
    soft = flags.FlagValues()
    define_flags(soft)
    soft(["prog", "--metric_loss=triplet_soft"])
    with pytest.raises(ValueError, match="--metric_loss=triplet_soft needs .*--sampler=pk"):
        config_from_flags(soft)
    defaults = flags.FlagValues()
    define_flags(defaults)
    defaults(["prog"])
    cfg = config_from_flags(defaults)
    assert (cfg.pairs.sampler, cfg.train.metric_loss, cfg.pairs.global_batch) == (
        "pairs", "contrastive", cfg.pairs.batch_size)
