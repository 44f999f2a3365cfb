"""Test-time augmentation wrapper: view definitions, averaging, save/load, export and load().embed."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_crf_reid
from keras_crf_reid.datasets.preprocess import to_model_input
from keras_crf_reid.models.fusion import build_fusion_model
from keras_crf_reid.models.network import ModelConfig, build_crf_model
from keras_crf_reid.models.tta import DEFAULT_VIEWS, VIEWS, TTAViews, build_tta_model, view_box
from keras_crf_reid.serving import contract, export, inference
from tests.inference_test import write_tracklet

TINY = ModelConfig(filters=(4, 4, 4), embed_dim=16, dropout=0.0)


def _raw(b=2, t=3, seed=0):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (b, t, 128, 64, 3), dtype=np.uint8)
    flow = rng.uniform(-0.3, 0.3, (b, t, 128, 64, 2)).astype(np.float32)
    return rgb, flow


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(5)
    return build_crf_model(TINY)


def test_mirror_flips_width_and_negates_horizontal_flow():
    rgb, flow = _raw()
    x = to_model_input(rgb, flow).numpy()
    out = TTAViews(("mirror",))(x).numpy()
    np.testing.assert_array_equal(out[..., :3], x[:, :, :, ::-1, :3])
    np.testing.assert_array_equal(out[..., 3], -x[:, :, :, ::-1, 3])
    np.testing.assert_array_equal(out[..., 4], x[:, :, :, ::-1, 4])
    # the same as preparing the mirrored raw frames and their mirrored motion
    want = to_model_input(rgb[:, :, :, ::-1], flow[:, :, :, ::-1] * np.float32([-1, 1])).numpy()
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_view_boxes_are_relative_crops_of_crop_scale():
    assert view_box("identity", 0.9) == ((0.0, 0.0, 1.0, 1.0), False)
    assert view_box("mirror", 0.9) == ((0.0, 0.0, 1.0, 1.0), True)
    box, mirror = view_box("mirror_crop_bottom_right", 0.75)
    assert box == (0.25, 0.25, 1.0, 1.0) and mirror
    np.testing.assert_allclose(view_box("crop_center", 0.8)[0], (0.1, 0.1, 0.9, 0.9))


def test_embedding_is_the_mean_of_the_view_embeddings(model):
    x = to_model_input(*_raw()).numpy()
    views = ("identity", "mirror", "crop_center", "crop_top_right")
    tta = build_tta_model(model, views)
    by_hand = np.mean([model(TTAViews((v,))(x), training=False).numpy() for v in views], axis=0)
    got = tta(x, training=False).numpy()
    np.testing.assert_allclose(got, by_hand, atol=1e-5)
    assert not np.allclose(got, model(x, training=False).numpy(), atol=1e-4)
    # identity alone is the model itself
    np.testing.assert_allclose(build_tta_model(model, ("identity",))(x).numpy(),
                               model(x, training=False).numpy(), atol=1e-6)


def test_wraps_a_fusion_model(model):
    keras.utils.set_random_seed(6)
    parts = {p: build_crf_model(ModelConfig(filters=(4, 4, 4), embed_dim=16, dropout=0.0, part=p),
                                name=f"crf_{p}") for p in ("upper", "lower")}
    fusion = build_fusion_model({**parts, "full": model})
    x = to_model_input(*_raw(1, 2)).numpy()
    tta = build_tta_model(fusion)
    by_hand = np.mean([fusion(TTAViews((v,))(x)).numpy() for v in DEFAULT_VIEWS], axis=0)
    np.testing.assert_allclose(tta(x).numpy(), by_hand, atol=1e-5)


def test_bad_views_are_refused(model):
    with pytest.raises(ValueError, match="TTA views"):
        build_tta_model(model, ("identity", "rotate"))
    with pytest.raises(ValueError, match="repeat"):
        build_tta_model(model, ("mirror", "mirror"))
    with pytest.raises(ValueError, match="crop_scale"):
        build_tta_model(model, crop_scale=0.0)
    assert set(DEFAULT_VIEWS) <= set(VIEWS)


def test_keras_file_export_and_load_embed_agree(model, tmp_path):
    tta = build_tta_model(model)
    folder = write_tracklet(tmp_path / "person", 9)
    groups = inference.tracklet_input(folder)
    want = tta(groups, training=False).numpy().mean(axis=0)

    path = str(tmp_path / "tta.keras")
    tta.save(path)
    reloaded = keras.saving.load_model(path, compile=False)
    assert [l.name for l in reloaded.layers if l.name.startswith("tta")] == ["tta_views", "tta_mean"]
    np.testing.assert_allclose(reloaded(groups).numpy().mean(axis=0), want, atol=1e-5)

    base = str(tmp_path / "crf_tta")
    export.export_saved_model(tta, base)
    served = contract.load_saved_model(base).signatures["serving_default"](frames=tf.constant(groups))
    assert set(served) == {"embedding"}
    np.testing.assert_allclose(served["embedding"].numpy().mean(axis=0), want, atol=1e-5)
    for source in (base, path):
        embedder = keras_crf_reid.load(source)
        np.testing.assert_allclose(embedder.embed(folder), want, atol=1e-5)
