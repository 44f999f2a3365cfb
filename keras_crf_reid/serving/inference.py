"""Python inference API: load an exported or saved model and embed frames or tracklet folders.

    import keras_crf_reid.serving.inference as inference
    embedder = inference.load("saved_models/crf_reid")      # base path, version dir or .keras
    vector = embedder.embed("data/prid_2011/multi_shot/cam_a/person_0001")   # (D,)

`tracklet_groups` is the one place where a folder of frames becomes model input (`tracklet_input`
collects it; the gRPC client and the gallery search use that), so every path embeds a tracklet
identically (and as the evaluation protocol does: every frame, colour normalised as the model was
trained, cut into groups of the length the model was evaluated with (both recorded in its export;
by default frame_std and 16 frames), group embeddings averaged). It streams: frames are read,
given flow and cut into groups one at a time, so `Embedder.embed` holds a few groups in memory
however long the tracklet is, and passes them through the model at most EMBED_CALL_FRAMES frames
at a time: the model's activations, not the frames, are what a long tracklet costs (6-8 MB per
frame for the four test-time views of crf_mars_sample's three parts).
"""
from __future__ import annotations

import os
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf

from keras_crf_reid.datasets import DatasetError, list_images
from keras_crf_reid.datasets.flow import dequantize_flow, iter_flow, quantize_flow
from keras_crf_reid.datasets.frames import iter_frames
from keras_crf_reid.datasets.preprocess import loop_indices, to_model_input
from keras_crf_reid.geometry import (DEFAULT_COLOUR_NORM, FRAME_HEIGHT, FRAME_WIDTH, GROUP_LEN,
                                     check_colour_norm)
from keras_crf_reid.models import factory
from keras_crf_reid.models.tta import TTAViews
from keras_crf_reid.serving import contract
from keras_crf_reid.serving.export import frame_shape

# Frames per model call when `Embedder.embed` embeds a folder: bounds its peak memory (one call's
# activations) whatever the folder's length: on crf_mars_sample a 2,000-frame folder peaks
# +233 MB over a one-frame one, against +1,027 MB at the 128 frames of 16 of its 8-frame groups
# per call (tools/bench_embed_memory.py, 2 shared CPU cores).
EMBED_CALL_FRAMES = 32


def tracklet_groups(folder: str, seq_len: int = GROUP_LEN, height: int = FRAME_HEIGHT,
                    width: int = FRAME_WIDTH, on_bad_image: str = "skip",
                    batch: int = 16,
                    colour_norm: str = DEFAULT_COLOUR_NORM) -> Iterator[np.ndarray]:
    """A folder of frames -> float32 groups (<= batch, seq_len, height, width, 5), streamed.

    Frames are read in file-name order, undecodable ones skipped (or raised, on_bad_image="fail"),
    optical flow is computed over the sequence (`flow.iter_flow`, rounded to the cache's levels as
    `flow.model_flow` does), colour is normalised per `colour_norm` (the model's, see
    preprocess.to_model_input), and the groups are those of `preprocess.group_windows`: consecutive
    groups of seq_len, one more of the last seq_len frames for a remainder, a looped group for a
    tracklet shorter than seq_len. At most seq_len + batch * seq_len frames are held at a time.
    """
    if not os.path.isdir(folder):
        raise DatasetError(f"{folder}: tracklet folder does not exist or is not a directory")
    paths = list_images(folder)
    if not paths:
        raise DatasetError(f"{folder}: tracklet folder holds no images")
    yield from frame_groups(paths, seq_len, height, width, on_bad_image, batch, where=folder,
                            colour_norm=colour_norm)


def frame_groups(paths: list[str], seq_len: int = GROUP_LEN, height: int = FRAME_HEIGHT,
                 width: int = FRAME_WIDTH, on_bad_image: str = "skip", batch: int = 16,
                 where: str = "tracklet",
                 colour_norm: str = DEFAULT_COLOUR_NORM) -> Iterator[np.ndarray]:
    """`tracklet_groups` of a tracklet given as its image files in order (e.g. a MARS track,
    whose frames share a folder with the person's other tracks)."""
    frames = iter_frames(paths, on_bad_image=on_bad_image, height=height, width=width)
    pending, current, last = [], [], None
    for frame, flow in iter_flow(frames):
        current.append((frame, flow))
        if len(current) == seq_len:
            last = _group_input(current, colour_norm)
            pending.append(last)
            current = []
            if len(pending) == batch:
                yield np.stack(pending)
                pending = []
    if last is None and not current:
        raise DatasetError(f"{where}: none of the {len(paths)} images could be decoded")
    if last is None:
        pending.append(_group_input([current[i] for i in loop_indices(len(current), seq_len)],
                                     colour_norm))
    elif current:
        tail = _group_input(current, colour_norm)
        pending.append(np.concatenate([last[len(current):], tail]))
    if pending:
        yield np.stack(pending)


def _group_input(frames: list[tuple[np.ndarray, np.ndarray]],
                 colour_norm: str = DEFAULT_COLOUR_NORM) -> np.ndarray:
    """Model input float32 (n, H, W, 5) of (rgb frame, float16 flow) pairs."""
    rgb = np.stack([f for f, _ in frames])
    flow = dequantize_flow(quantize_flow(np.stack([g for _, g in frames])))
    return to_model_input(rgb, flow, colour_norm).numpy()


def tracklet_input(folder: str, seq_len: int = GROUP_LEN, height: int = FRAME_HEIGHT,
                   width: int = FRAME_WIDTH, on_bad_image: str = "skip",
                   colour_norm: str = DEFAULT_COLOUR_NORM) -> np.ndarray:
    """A folder of frames -> float32 groups (G, seq_len, height, width, 5) covering every frame
    (all of `tracklet_groups` at once)."""
    return np.concatenate(list(tracklet_groups(folder, seq_len, height, width, on_bad_image,
                                               colour_norm=colour_norm)))


class Embedder:
    """Maps frames (B, T, H, W, C) float32 to embeddings (B, D), in batches of `batch_size`;
    embeds tracklet folders `call_frames` frames (whole groups, at least one) per model call."""

    def __init__(self, fn: Callable[[tf.Tensor], tf.Tensor], frame_shape: tuple[int, int, int],
                 embed_dim: int, source: str, batch_size: int = 16, group_len: int = GROUP_LEN,
                 colour_norm: str = DEFAULT_COLOUR_NORM, call_frames: int = EMBED_CALL_FRAMES):
        self._fn = fn
        self.frame_shape = tuple(int(d) for d in frame_shape)
        self.embed_dim = int(embed_dim)
        self.source = source
        self.batch_size = int(batch_size)
        self.group_len = int(group_len)
        self.colour_norm = check_colour_norm(colour_norm)
        if call_frames < 1:
            raise ValueError(f"call_frames must be >= 1, got {call_frames}")
        self.call_frames = int(call_frames)

    def __repr__(self) -> str:
        return (f"Embedder({self.source!r}, frames={self.frame_shape}, embed_dim={self.embed_dim}, "
                f"group_len={self.group_len}, colour_norm={self.colour_norm!r})")

    def predict(self, frames: np.ndarray) -> np.ndarray:
        """Embeddings (B, D) float32 of frames (B, T, H, W, C)."""
        x = np.asarray(frames, dtype=np.float32)
        if x.ndim != 5 or tuple(x.shape[2:]) != self.frame_shape or 0 in x.shape[:2]:
            raise ValueError(f"frames must be (B>0, T>0, {', '.join(map(str, self.frame_shape))}); "
                             f"got {x.shape} for model {self.source}")
        if not np.isfinite(x).all():
            raise ValueError(f"frames contain {int(np.isnan(x).sum())} NaN and {int(np.isinf(x).sum())} "
                             f"Inf values (model {self.source}); the model's output would be meaningless")
        out = [np.asarray(self._fn(tf.constant(x[i:i + self.batch_size])))
               for i in range(0, len(x), self.batch_size)]
        return np.concatenate(out).astype(np.float32)

    def embed(self, tracklet_dir: str) -> np.ndarray:
        """Embedding (D,) of a tracklet folder: the mean of its `group_len`-frame group embeddings.

        Peak memory is that of one call of `group_batch` groups, whatever the folder's length.
        """
        h, w, _ = self.frame_shape
        embeddings = [self.predict(groups) for groups in tracklet_groups(
            tracklet_dir, self.group_len, height=h, width=w, batch=self.group_batch,
            colour_norm=self.colour_norm)]
        return np.concatenate(embeddings).mean(axis=0)

    @property
    def group_batch(self) -> int:
        """Groups per model call in `embed`: call_frames worth, at least one, at most batch_size."""
        return max(1, min(self.batch_size, self.call_frames // self.group_len))


def _keras_embedder(path: str, batch_size: int, group_len: int | None,
                    colour_norm: str | None, call_frames: int) -> Embedder:
    model = factory.load_keras_model(path)
    shape = frame_shape(model)
    fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True,
                     input_signature=[tf.TensorSpec((None, None) + shape, tf.float32)])
    tta = [layer.colour_norm for layer in model.layers if isinstance(layer, TTAViews)]
    return Embedder(fn, shape, model.output_shape[-1], os.path.abspath(path), batch_size,
                    group_len or GROUP_LEN, colour_norm or (tta or [DEFAULT_COLOUR_NORM])[0], call_frames)


def _saved_model_embedder(path: str, batch_size: int, group_len: int | None,
                          colour_norm: str | None, call_frames: int) -> Embedder:
    version_dir = contract.resolve_version_dir(path)
    try:
        loaded = tf.saved_model.load(version_dir)
    except (IndexError, ValueError, OSError, tf.errors.OpError) as e:
        variables = os.path.join(version_dir, "variables")
        raise contract.SavedModelError(
            f"{version_dir}: cannot load the SavedModel ({type(e).__name__}: {e}); its variables files "
            f"under {variables} are probably truncated or corrupt (e.g. a copy that did not finish): "
            f"copy or export it again") from e
    if contract.SERVING_SIGNATURE not in loaded.signatures:
        raise contract.SavedModelError(f"{version_dir}: SavedModel has no "
                                       f"{contract.SERVING_SIGNATURE!r} signature")
    sig = loaded.signatures[contract.SERVING_SIGNATURE]
    _, inputs = sig.structured_input_signature
    outputs = sig.structured_outputs
    if list(inputs) != [contract.INPUT_NAME] or contract.OUTPUT_NAME not in outputs:
        raise contract.SavedModelError(f"{version_dir}: signature {contract.SERVING_SIGNATURE!r} must map "
                                     f"{contract.INPUT_NAME!r} to {contract.OUTPUT_NAME!r}; it maps "
                                     f"{sorted(inputs)} to {sorted(outputs)}")
    spec = inputs[contract.INPUT_NAME]
    shape = tuple(spec.shape)[2:]
    if len(spec.shape) != 5 or any(d is None for d in shape):
        raise contract.SavedModelError(f"{version_dir}: input {contract.INPUT_NAME!r} must be "
                                     f"(B, T, H, W, C) with fixed H, W, C; it is {spec.shape}")

    def fn(x):
        return sig(**{contract.INPUT_NAME: x})[contract.OUTPUT_NAME]

    group_len = group_len or contract.group_len_of(loaded) or GROUP_LEN
    colour_norm = colour_norm or contract.colour_norm_of(loaded, version_dir)
    embedder = Embedder(fn, shape, outputs[contract.OUTPUT_NAME].shape[-1], version_dir, batch_size,
                        group_len, colour_norm, call_frames)
    embedder.saved_model = loaded
    return embedder


def load(path: str, batch_size: int = 16, group_len: int | None = None,
         colour_norm: str | None = None, call_frames: int | None = None) -> Embedder:
    """An Embedder for a SavedModel version directory, a model base path (its latest complete
    version) or a `.keras` file. `group_len` and `colour_norm` override what the export records
    (a .keras file records no group length: 16 by default; its colour_norm is its TTA views',
    else "frame_std"); `call_frames` bounds the frames per model call of `embed`, hence its
    memory (default EMBED_CALL_FRAMES)."""
    call_frames = EMBED_CALL_FRAMES if call_frames is None else call_frames
    if group_len is not None and group_len < 1:
        raise ValueError(f"group_len must be >= 1, got {group_len}")
    if colour_norm is not None:
        check_colour_norm(colour_norm)
    if path.endswith(".keras"):
        return _keras_embedder(path, batch_size, group_len, colour_norm, call_frames)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: model path does not exist (expected a .keras file, a "
                                f"SavedModel directory or a model base path)")
    return _saved_model_embedder(path, batch_size, group_len, colour_norm, call_frames)
