"""ModelConfig.colour_norm: the model input's colour normalisation reaches every consumer.

"frame_std" (the paper's, default) must stay bit-identical to the per-frame standardisation;
"fixed" keeps mean colour, and a model trained with it embeds a tracklet identically through
evaluation, keras_crf_reid.load(...).embed, the embed_raw signature and gRPC.
"""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_crf_reid
from keras_crf_reid.configs.data import DataConfig
from keras_crf_reid.configs.evaluation import EvalConfig
from keras_crf_reid.configs.experiment import ExperimentConfig
from keras_crf_reid.configs.run import RunConfig
from keras_crf_reid.configs.server import ServerLimits
from keras_crf_reid.configs.tta import TTAConfig
from keras_crf_reid.datasets import ReidDataset, Tracklet, list_images
from keras_crf_reid.datasets.augment import crop_resize
from keras_crf_reid.datasets.flow import model_flow
from keras_crf_reid.datasets.frames import read_frames
from keras_crf_reid.datasets.pipeline import PairConfig, group_dataset, pair_dataset
from keras_crf_reid.datasets.preprocess import to_model_input
from keras_crf_reid.datasets.store import TrackletStore
from keras_crf_reid.evaluation.protocol import compiled_embedder, embed_tracklets
from keras_crf_reid.geometry import COLOUR_NORMS, YUV_FIXED_MEAN, YUV_FIXED_STD
from keras_crf_reid.models import factory
from keras_crf_reid.models.network import ModelConfig, build_crf_model
from keras_crf_reid.models.tta import DEFAULT_CROP_SCALE, build_tta_model, view_box
from keras_crf_reid.runner.experiment import run
from keras_crf_reid.serving import contract, export
from keras_crf_reid.serving.client import ReidClient
from keras_crf_reid.serving.inference import tracklet_input
from keras_crf_reid.serving.server import service
from keras_crf_reid.training.trainer import TrainConfig
from tests.inference_test import write_tracklet

GROUP = 4
ATOL = 1e-4
LIMITS = ServerLimits(max_message_mb=8, max_batch=8, max_frames=40, workers=1)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _frames(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(30, 200, (2, 128, 64, 3), dtype=np.uint8)


def test_frame_std_is_the_per_frame_standardisation_bit_for_bit():
    rgb, flow = _frames(0), np.zeros((2, 128, 64, 2), np.float32)
    yuv = tf.image.rgb_to_yuv(tf.cast(rgb, tf.float32) / 255.0)
    mean = tf.reduce_mean(yuv, axis=[-3, -2], keepdims=True)
    std = tf.math.reduce_std(yuv, axis=[-3, -2], keepdims=True)
    expected = tf.concat([(yuv - mean) / tf.maximum(std, 1e-3), flow], -1).numpy()
    np.testing.assert_array_equal(to_model_input(rgb, flow).numpy(), expected)
    np.testing.assert_array_equal(to_model_input(rgb, flow, "frame_std").numpy(), expected)


def test_fixed_keeps_mean_colour_with_documented_constants():
    rgb, flow = _frames(1), np.zeros((2, 128, 64, 2), np.float32)
    yuv = tf.image.rgb_to_yuv(tf.cast(rgb, tf.float32) / 255.0).numpy()
    fixed = to_model_input(rgb, flow, "fixed").numpy()
    np.testing.assert_allclose(fixed[..., :3], (yuv - YUV_FIXED_MEAN) / YUV_FIXED_STD, atol=1e-5)
    shifted = rgb + np.array([40, 0, 0], np.uint8)  # a global colour shift, no clipping
    a, b = (to_model_input(x, flow, "frame_std").numpy() for x in (rgb, shifted))
    assert np.abs(a - b).max() < 1e-4  # frame_std cannot see it
    a, b = (to_model_input(x, flow, "fixed").numpy() for x in (rgb, shifted))
    assert np.abs(a[..., :3].mean((1, 2)) - b[..., :3].mean((1, 2))).min() > 0.1  # fixed does
    with pytest.raises(ValueError, match="colour_norm"):
        to_model_input(rgb, flow, "hsv")
    with pytest.raises(ValueError, match="--colour_norm"):
        ModelConfig(colour_norm="hsv")


def test_tta_crop_views_keep_fixed_colour():
    """A fixed-normalised crop view is the resized crop (no per-frame re-standardisation)."""
    x = to_model_input(_frames(2), np.zeros((2, 128, 64, 2), np.float32), "fixed").numpy()[None]
    identity = keras.Sequential([keras.layers.Input((None, 128, 64, 5)),
                                 keras.layers.Lambda(lambda t: keras.ops.mean(t, axis=(1, 2, 3)))])
    out = {}
    for norm in COLOUR_NORMS:
        out[norm] = build_tta_model(identity, ("crop_center",), colour_norm=norm)(x).numpy()[0]
    box, _ = view_box("crop_center", DEFAULT_CROP_SCALE)
    crop = crop_resize(tf.constant(x[0]), tf.constant([box, box], tf.float32),
                       tf.constant([False, False]), (128, 64)).numpy()
    np.testing.assert_allclose(out["fixed"][:3], crop[..., :3].mean((0, 1, 2)), atol=1e-3)
    np.testing.assert_allclose(out["frame_std"][:3], 0.0, atol=1e-3)


def test_export_records_colour_norm_and_refuses_a_mismatch(tmp_path):
    model = build_crf_model(ModelConfig(filters=(4, 4, 4), embed_dim=8, dropout=0.0))
    tta = build_tta_model(model, colour_norm="fixed")
    with pytest.raises(ValueError, match="colour_norm=fixed"):
        export.export_saved_model(tta, str(tmp_path / "bad"))
    plain = export.export_saved_model(model, str(tmp_path / "plain"))
    fixed = export.export_saved_model(tta, str(tmp_path / "fixed"), colour_norm="fixed")
    assert contract.colour_norm_of(tf.saved_model.load(plain)) == "frame_std"
    assert contract.colour_norm_of(tf.saved_model.load(fixed)) == "fixed"
    assert export.export_digest(model, 16) == export.export_digest(model, 16, "frame_std") \
        != export.export_digest(model, 16, "fixed")
    assert contract.colour_norm_from_info({}, "old export") == "frame_std"
    with pytest.raises(contract.SavedModelError, match="colour_norm"):
        contract.colour_norm_from_info({contract.COLOUR_NORM_OUTPUT: np.array([b"hsv"])}, "x")


def test_committed_export_without_the_field_is_frame_std():
    path = os.path.join(ROOT, "saved_models", "crf_mars_sample")
    if not os.path.isdir(path):
        pytest.skip(f"{path} not present")
    assert keras_crf_reid.load(path).colour_norm == "frame_std"


@pytest.fixture(scope="module")
def trained_fixed(tmp_path_factory):
    """A tiny TTA model trained a few steps by the runner with colour_norm=fixed, exported."""
    root = tmp_path_factory.mktemp("colour_fixed")
    base = str(root / "crf_reid")  # the client's default model name
    cfg = ExperimentConfig(
        data=DataConfig(num_ids=6, data_dir=str(root / "data"), cache_dir=str(root / "cache"),
                        num_splits=1, splits=(0,)),
        model=ModelConfig(filters=(4, 4, 4), embed_dim=8, dropout=0.0, colour_norm="fixed"),
        pairs=PairConfig(seq_len=4, batch_size=4),
        train=TrainConfig(steps=3, optimizer="adam", learning_rate=1e-3, ckpt_every=0),
        eval=EvalConfig(seq_len=GROUP, tta=TTAConfig(enabled=True), baseline=False),
        run=RunConfig(name="fixed", output_dir=str(root / "runs"), model_base_path=base,
                      progress=False))
    out = run(cfg)
    folders = [write_tracklet(root / f"cam{c}" / "person_0001", n, seed=c)
               for c, n in ((0, 9), (1, 6))]
    return out, base, folders


@pytest.mark.slow
def test_fixed_export_embeds_alike_through_evaluation_load_and_grpc(trained_fixed):
    out, base, folders = trained_fixed
    scored = factory.load_keras_model(out["keras_model"])
    dataset = ReidDataset("fixed", os.path.dirname(os.path.dirname(folders[0])),
                          [Tracklet(1, c, tuple(list_images(f))) for c, f in enumerate(folders)])
    store = TrackletStore(dataset, cache_dir=None)
    evaluated = embed_tracklets(compiled_embedder(scored), store, [0, 1], GROUP,
                                colour_norm="fixed")
    loaded = keras_crf_reid.load(base)
    assert (loaded.colour_norm, loaded.group_len) == ("fixed", GROUP)
    via_load = np.stack([loaded.embed(f) for f in folders])
    np.testing.assert_allclose(evaluated, via_load, atol=ATOL)
    # the same export read as if it were frame_std gives other embeddings: the field matters
    wrong = np.stack([keras_crf_reid.load(base, colour_norm="frame_std").embed(f) for f in folders])
    assert not np.allclose(wrong, via_load, atol=10 * ATOL)

    rgb, _ = read_frames(list_images(folders[0]))
    rgb, flow = rgb[None, :GROUP], model_flow(rgb)[None, :GROUP]
    frames = to_model_input(rgb, flow, "fixed").numpy()
    raw = loaded.saved_model.signatures[contract.RAW_SIGNATURE](
        rgb=tf.constant(rgb), flow=tf.constant(flow))[contract.OUTPUT_NAME].numpy()
    np.testing.assert_allclose(raw, loaded.predict(frames), atol=ATOL)

    srv, port = service.serve(base, poll_s=0, limits=LIMITS)
    try:
        with ReidClient(f"127.0.0.1:{port}", timeout_s=60, max_message_mb=8) as client:
            assert client.colour_norm() == "fixed"
            via_grpc = np.stack([client.embed_tracklet(f) for f in folders])
            np.testing.assert_allclose(client.predict_raw(rgb, flow), raw, atol=ATOL)
    finally:
        srv.stop(0)
    np.testing.assert_allclose(via_grpc, via_load, atol=ATOL)


def test_training_and_evaluation_batches_apply_the_colour_norm(tmp_path):
    tracklets = [Tracklet(pid, cam, tuple(list_images(write_tracklet(
        tmp_path / f"cam{cam}" / f"person_{pid:04d}", 6, seed=10 * pid + cam))))
        for pid in (1, 2) for cam in (0, 1)]
    store = TrackletStore(ReidDataset("tiny", str(tmp_path), tracklets), cache_dir=None)
    means = {}
    for norm in COLOUR_NORMS:
        (a, _), _ = next(iter(pair_dataset(store, range(4), PairConfig(seq_len=4, batch_size=2),
                                           colour_norm=norm)[0]))
        groups, _ = next(iter(group_dataset(store, [0], 4, colour_norm=norm)[0]))
        means[norm] = [np.abs(x.numpy()[..., :3].mean(axis=(-3, -2))).max() for x in (a, groups)]
    assert max(means["frame_std"]) < 1e-3  # each frame's colour standardised to mean 0
    assert min(means["fixed"]) > 0.05, means  # the frames' mean colour kept
