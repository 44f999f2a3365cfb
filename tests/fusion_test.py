"""Local-global fusion: part models cropping their halves and the weighted-sum arithmetic."""
import numpy as np
import pytest

from keras_crf_reid.models.fusion import build_fusion_model, fusion_weights
from keras_crf_reid.models.network import CropRows, ModelConfig, build_crf_model

TINY = dict(filters=(4, 4, 4), embed_dim=8, dropout=0.0)


def _parts(seed=0):
    import keras
    keras.utils.set_random_seed(seed)
    return {p: build_crf_model(ModelConfig(part=p, **TINY), name=f"crf_{p}")
            for p in ("full", "upper", "lower")}


def test_crop_rows():
    x = np.arange(2 * 3 * 128 * 4 * 5, dtype=np.float32).reshape(2, 3, 128, 4, 5)
    np.testing.assert_array_equal(CropRows(0, 64)(x), x[:, :, :64])
    np.testing.assert_array_equal(CropRows(64, 128)(x), x[:, :, 64:])


def test_fusion_equals_weighted_sum_of_parts():
    parts = _parts()
    fusion = build_fusion_model(parts)
    layer = fusion.get_layer("fusion")
    layer.w.assign([0.5, -2.0, 3.0])  # upper, lower, full
    x = np.random.default_rng(1).normal(size=(2, 4, 128, 64, 5)).astype(np.float32)
    expected = (0.5 * parts["upper"](x, training=False)
                - 2.0 * parts["lower"](x, training=False)
                + 3.0 * parts["full"](x, training=False))
    np.testing.assert_allclose(fusion(x, training=False), expected, atol=1e-4)
    assert fusion_weights(fusion) == pytest.approx({"upper": 0.5, "lower": -2.0, "full": 3.0})


def test_fusion_trains_only_its_weights_and_starts_at_one():
    fusion = build_fusion_model(_parts())
    assert [v.name for v in fusion.trainable_variables] == ["fusion_weights"]
    assert fusion_weights(fusion) == {"upper": 1.0, "lower": 1.0, "full": 1.0}


@pytest.mark.parametrize("part,rows", [("lower", slice(0, 64)), ("upper", slice(64, 128))])
def test_half_model_ignores_the_other_half(part, rows):
    fusion = build_fusion_model({part: _parts()[part]})
    x = np.random.default_rng(2).normal(size=(1, 3, 128, 64, 5)).astype(np.float32)
    y = x.copy()
    y[:, :, rows] = 0
    np.testing.assert_allclose(fusion(x, training=False), fusion(y, training=False), atol=1e-6)
    assert not np.allclose(fusion(x, training=False), fusion(x[:, :, ::-1], training=False))


def test_fusion_model_roundtrips_keras_file(tmp_path):
    import keras
    fusion = build_fusion_model(_parts())
    fusion.get_layer("fusion").w.assign([1.5, 0.5, 2.0])
    path = str(tmp_path / "fusion.keras")
    fusion.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(3).normal(size=(2, 4, 128, 64, 5)).astype(np.float32)
    np.testing.assert_allclose(loaded(x, training=False), fusion(x, training=False), atol=1e-5)
    assert fusion_weights(loaded) == pytest.approx({"upper": 1.5, "lower": 0.5, "full": 2.0})
