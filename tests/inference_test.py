"""Python inference API: tracklet folder -> model input, and load() of every model format."""
import os
import shutil

import cv2
import keras
import numpy as np
import pytest

from keras_crf_reid.datasets.base import DatasetError
from keras_crf_reid.datasets.flow import model_flow
from keras_crf_reid.datasets.frames import read_frames
from keras_crf_reid.datasets.preprocess import group_windows, to_model_input
from keras_crf_reid.models.network import ModelConfig, build_crf_model
from keras_crf_reid.serving import contract, export, inference

TINY = ModelConfig(filters=(4, 4, 4), embed_dim=16, dropout=0.0)


def write_tracklet(folder, n, seed=0, size=(128, 64)):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    for i in range(n):
        cv2.imwrite(os.path.join(folder, f"{i:04d}.png"), np.roll(base, i, axis=1))
    return str(folder)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(3)
    return build_crf_model(TINY)


@pytest.fixture(scope="module")
def paths(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("inference")
    keras_path = str(root / "tiny.keras")
    model.save(keras_path)
    base = str(root / "crf_reid")
    version_dir = export.export_saved_model(model, base)
    return {"keras": keras_path, "base": base, "version": version_dir}


def test_tracklet_input_groups(tmp_path):
    folder = write_tracklet(tmp_path / "t", 20, size=(256, 128))
    x = inference.tracklet_input(folder)
    assert x.shape == (2, 16, 128, 64, 5) and x.dtype == np.float32
    rgb, _ = read_frames(sorted(os.path.join(folder, n) for n in os.listdir(folder)))
    full = to_model_input(rgb, model_flow(rgb)).numpy()
    np.testing.assert_array_equal(x[0], full[:16])
    np.testing.assert_array_equal(x[1], full[4:20])


@pytest.mark.parametrize("n", [1, 3, 4, 8, 11])
def test_streamed_groups_are_the_evaluation_groups(tmp_path, n):
    """tracklet_groups streams exactly group_windows over the whole sequence's model input."""
    folder = write_tracklet(tmp_path / "t", n)
    rgb, _ = read_frames(sorted(os.path.join(folder, name) for name in os.listdir(folder)))
    full = to_model_input(rgb, model_flow(rgb)).numpy()[group_windows(n, 4)]
    batches = list(inference.tracklet_groups(folder, 4, batch=2))
    assert all(1 <= len(b) <= 2 for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches), full)


def test_embed_holds_one_batch_of_groups_however_long_the_tracklet(model, paths, tmp_path, monkeypatch):
    folder = write_tracklet(tmp_path / "t", 70)
    embedder = inference.load(paths["keras"], batch_size=2, group_len=4)
    want = embedder.predict(inference.tracklet_input(folder, 4)).mean(0)
    sizes = {"frames": [], "groups": []}
    real_input, real_predict = inference.to_model_input, embedder.predict
    monkeypatch.setattr(inference, "to_model_input",
                        lambda rgb, *rest: sizes["frames"].append(len(rgb)) or real_input(rgb, *rest))
    monkeypatch.setattr(embedder, "predict", lambda x: sizes["groups"].append(len(x)) or real_predict(x))
    np.testing.assert_allclose(embedder.embed(folder), want, rtol=1e-6, atol=1e-6)
    assert max(sizes["frames"]) <= 4 and max(sizes["groups"]) <= 2   # not all 70 frames at once


@pytest.mark.parametrize("call_frames, groups", [(12, 3), (3, 1)])
def test_embed_passes_at_most_call_frames_through_the_model_at_once(paths, tmp_path, monkeypatch,
                                                                    call_frames, groups):
    """Memory is bounded by frames per call, not by batch_size groups (16 here: 64 frames)."""
    folder = write_tracklet(tmp_path / "t", 41)
    embedder = inference.load(paths["keras"], group_len=4, call_frames=call_frames)
    assert embedder.batch_size == 16 and embedder.group_batch == groups
    want = embedder.predict(inference.tracklet_input(folder, 4)).mean(0)
    calls, real_predict = [], embedder.predict
    monkeypatch.setattr(embedder, "predict", lambda x: calls.append(x.shape[:2]) or real_predict(x))
    np.testing.assert_allclose(embedder.embed(folder), want, rtol=1e-6, atol=1e-6)
    assert sum(b for b, _ in calls) == 11 and max(calls) == (groups, 4)   # every group, few at a time


def test_load_refuses_a_call_frames_below_one(paths):
    with pytest.raises(ValueError, match="call_frames must be >= 1, got 0"):
        inference.load(paths["keras"], call_frames=0)


def test_short_tracklet_is_looped(tmp_path):
    x = inference.tracklet_input(write_tracklet(tmp_path / "t", 5))
    assert x.shape == (1, 16, 128, 64, 5)
    np.testing.assert_array_equal(x[0, 5], x[0, 0])


def test_tracklet_input_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        inference.tracklet_input(str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no images"):
        inference.tracklet_input(str(tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "0001.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="none of the 1 images"):
        inference.tracklet_input(str(tmp_path / "bad"))


@pytest.mark.parametrize("kind", ["keras", "base", "version"])
def test_load_every_format_gives_same_embeddings(model, paths, kind, tmp_path):
    embedder = inference.load(paths[kind])
    assert embedder.frame_shape == (128, 64, 5) and embedder.embed_dim == 16
    x = np.random.default_rng(0).normal(size=(3, 4, 128, 64, 5)).astype(np.float32)
    np.testing.assert_allclose(embedder.predict(x), model(x).numpy(), atol=1e-5)
    folder = write_tracklet(tmp_path / "t", 18)
    want = model(inference.tracklet_input(folder)).numpy().mean(0)
    np.testing.assert_allclose(embedder.embed(folder), want, atol=1e-5)
    with pytest.raises(ValueError, match=r"frames must be \(B>0, T>0, 128, 64, 5\)"):
        embedder.predict(np.zeros((1, 4, 64, 64, 5), np.float32))


def test_load_refuses_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent: model path does not exist"):
        inference.load(str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="Keras model file does not exist"):
        inference.load(str(tmp_path / "absent.keras"))
    (tmp_path / "1").mkdir()
    with pytest.raises(contract.SavedModelError, match="complete integer version"):
        inference.load(str(tmp_path))


@pytest.mark.parametrize("kind", ["keras", "version"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_predict_refuses_non_finite_frames(paths, kind, value):
    embedder = inference.load(paths[kind])
    x = np.zeros((2, 4, 128, 64, 5), np.float32)
    x[1, 2, 3, 4, 0] = value
    with pytest.raises(ValueError, match="frames contain [01] NaN and [01] Inf values"):
        embedder.predict(x)
    with pytest.raises(ValueError, match="frames contain 40960 NaN"):
        embedder.predict(np.full((1, 1, 128, 64, 5), np.nan, np.float32))


def test_load_names_a_truncated_variables_file(paths, tmp_path):
    version = str(tmp_path / "crf_reid" / "1")
    shutil.copytree(paths["version"], version)
    data = os.path.join(version, "variables", "variables.data-00000-of-00001")
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    with pytest.raises(contract.SavedModelError) as e:
        inference.load(version)
    message = str(e.value)
    assert message.startswith(version) and "truncated or corrupt" in message
    assert os.path.join(version, "variables") in message
