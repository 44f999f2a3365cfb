"""Exports an embedding model as a versioned TensorFlow Serving SavedModel (layout: serving.contract).

A version directory is written under a hidden temporary name (`.tmp-<version>-<pid>`, which TF
Serving skips because it is not an integer) and renamed into place, so a polling server never
sees a half-written version. The `embed_raw` signature resizes, converts to YUV and standardises
in the graph (`preprocess.to_model_input`); optical flow cannot be computed with TF graph ops
cheaply, so the client computes it (`flow.compute_flow` on the 128x64 frames) and ships it.
Every export records the frame-group length its model was evaluated with and the colour
normalisation of its input (`model_info`; `embed_raw` applies the latter), and a digest of its
weights (DIGEST_FILE): exporting the same weights again returns the latest version
instead of a duplicate. Scratch folders left by killed exports are removed at the next export.

    python -m keras_crf_reid.serving.export --keras_model=runs/demo/model.keras --model_base_path=saved_models/crf_reid
    python -m keras_crf_reid.serving.export --checkpoint=runs/demo/split_0/upper/ckpt --part=upper --model_base_path=...

A checkpoint is wrapped as the run's own export wraps it (`tta.scored_model`): give the run's
--tta, --tta_views and --tta_crop_scale (or its flagfile) to export the same model.
"""
from __future__ import annotations

import ctypes
import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from keras_crf_reid import cli
from keras_crf_reid.atomic import pid_alive
from keras_crf_reid.configs.export import ExportConfig
from keras_crf_reid.datasets.preprocess import to_model_input
from keras_crf_reid.geometry import DEFAULT_COLOUR_NORM, GROUP_LEN, check_colour_norm
from keras_crf_reid.models.tta import TTAViews
from keras_crf_reid.serving.contract import (COLOUR_NORM_OUTPUT, EMBED_DIM_OUTPUT, FLOW_INPUT,
                                             GROUP_LEN_OUTPUT,
                                             INFO_SIGNATURE, INPUT_NAME, OUTPUT_NAME, RAW_SIGNATURE,
                                             RGB_INPUT, SERVING_SIGNATURE, WARMUP_FILE, SavedModelError,
                                             check_saved_model_dir, list_versions, serving_apis)

log = logging.getLogger(__name__)
# Digest of what an export serves (weights, graph kind, group length): a re-run of a finished
# command that would export the same thing returns the latest version instead of a duplicate.
DIGEST_FILE = os.path.join("assets.extra", "crf_reid_export_digest.txt")
# Scratch folders of an export: `.tmp-<version>-<pid>` / `.old-<version>-<pid>`.
SCRATCH_RE = re.compile(r"\.(tmp|old)-\d+-(\d+)\Z")
# A scratch folder this old is abandoned even if its pid is alive again (pid reuse).
SCRATCH_MAX_AGE_S = 30 * 60


def frame_shape(model: keras.Model) -> tuple[int, int, int]:
    """(H, W, C) of a model taking frames (B, T, H, W, C); raises if the input is not like that."""
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    if shape is None or len(shape) != 5 or any(d is None for d in shape[2:]):
        raise ValueError(f"model {model.name!r} must take one input of shape (batch, T, H, W, C) "
                         f"with fixed H, W, C; its input shape is {model.input_shape}")
    return int(shape[2]), int(shape[3]), int(shape[4])


class _ServingModule(tf.Module):
    """Holds the model (so its variables are saved) and the two serving functions."""

    def __init__(self, model: keras.Model, group_len: int, colour_norm: str = DEFAULT_COLOUR_NORM):
        super().__init__(name="crf_reid_serving")
        self.model = model
        h, w, c = frame_shape(model)
        self._hw = (h, w)
        self._colour_norm = colour_norm
        self._info = {GROUP_LEN_OUTPUT: tf.constant([group_len], tf.int32),
                      EMBED_DIM_OUTPUT: tf.constant([int(model.output_shape[-1])], tf.int32),
                      COLOUR_NORM_OUTPUT: tf.constant([colour_norm], tf.string)}
        self.model_info = tf.function(lambda: dict(self._info), input_signature=[])
        self.serve = tf.function(
            self._serve, input_signature=[tf.TensorSpec((None, None, h, w, c), tf.float32, INPUT_NAME)])
        self.embed_raw = tf.function(
            self._embed_raw,
            input_signature=[tf.TensorSpec((None, None, None, None, 3), tf.uint8, RGB_INPUT),
                             tf.TensorSpec((None, None, h, w, 2), tf.float32, FLOW_INPUT)])

    def signatures(self) -> dict:
        """{signature name: function} of every signature an export has."""
        return {SERVING_SIGNATURE: self.serve, RAW_SIGNATURE: self.embed_raw, INFO_SIGNATURE: self.model_info}

    def _serve(self, frames):
        return {OUTPUT_NAME: tf.cast(self.model(frames, training=False), tf.float32)}

    def _embed_raw(self, rgb, flow):
        check = tf.debugging.assert_equal(
            tf.shape(rgb)[:2], tf.shape(flow)[:2],
            message="rgb and flow must have the same batch and time sizes")
        with tf.control_dependencies([check]):  # before any op that would fail on the mismatch
            rgb, flow = tf.identity(rgb), tf.identity(flow)
        shape = tf.shape(rgb)
        flat = tf.reshape(rgb, tf.concat([[-1], shape[2:]], axis=0))
        resized = tf.image.resize(flat, self._hw, method="area")
        resized = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
        frames = to_model_input(tf.reshape(resized, tf.concat([shape[:2], [*self._hw, 3]], axis=0)),
                                flow, self._colour_norm)
        return self._serve(frames)


def warmup_requests(group_len: int, h: int, w: int, c: int) -> dict:
    """{signature: a PredictRequest of one group of zeros} for every signature an export has.

    Constant-encoded, so the warm-up file stays tiny. Replaying them gives the server a run-time
    estimate of every signature before the first real request, which is what lets it refuse work
    that cannot finish before its deadline (a flood on `embed_raw` as much as on serving_default).
    """
    predict_pb2, _ = serving_apis()
    inputs = {SERVING_SIGNATURE: {INPUT_NAME: (tf.float32, c)},
              RAW_SIGNATURE: {RGB_INPUT: (tf.uint8, 3), FLOW_INPUT: (tf.float32, 2)},
              INFO_SIGNATURE: {}}
    requests = {}
    for name, tensors in inputs.items():
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = name
        for alias, (dtype, channels) in tensors.items():
            request.inputs[alias].CopyFrom(
                tf.make_tensor_proto(0, dtype=dtype, shape=[1, group_len, h, w, channels]))
        requests[name] = request
    return requests


def _write_warmup(export_dir: str, group_len: int, shape: tuple[int, int, int]) -> None:
    _, prediction_log_pb2 = serving_apis()
    path = os.path.join(export_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for request in warmup_requests(group_len, *shape).values():
            entry = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(entry.SerializeToString())


def _exchange(a: str, b: str) -> bool:
    """Atomically swaps two paths with Linux renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    if ctypes.get_errno() in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    err = ctypes.get_errno()
    raise OSError(err, f"cannot swap {a} and {b}: {os.strerror(err)}")


def _replace_dir(new: str, target: str, scratch: str) -> None:
    """Puts directory `new` at `target`, which exists; the old contents end up in `scratch`."""
    if _exchange(new, target):
        os.rename(new, scratch)
        return
    os.rename(target, scratch)
    os.rename(new, target)


def export_digest(model: keras.Model, group_len: int,
                  colour_norm: str = DEFAULT_COLOUR_NORM) -> str:
    """sha256 of the model's class, name, input/output shapes, every weight, `group_len` and
    `colour_norm` (frame_std leaves the digest of earlier exports unchanged)."""
    facts = {"class": type(model).__name__, "name": model.name, "group_len": int(group_len),
             "input_shape": str(model.input_shape), "output_shape": str(model.output_shape)}
    if colour_norm != DEFAULT_COLOUR_NORM:
        facts["colour_norm"] = colour_norm
    h = hashlib.sha256(json.dumps(facts, sort_keys=True).encode())
    for w in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(w))
        h.update(f"{w.path}|{value.dtype}|{value.shape}\n".encode())
        h.update(value.tobytes())
    return h.hexdigest()


def _read_digest(version_dir: str) -> str | None:
    try:
        with open(os.path.join(version_dir, DIGEST_FILE)) as f:
            return f.read().strip()
    except OSError:
        return None


def clean_abandoned(base_path: str, max_age_s: float = SCRATCH_MAX_AGE_S) -> list[str]:
    """Removes scratch folders of killed exports under base_path; returns the removed paths.

    A `.tmp-*`/`.old-*` folder is abandoned when its writer's pid is gone, or when it is older
    than `max_age_s` (the pid may have been reused). Those of this process are left alone.
    """
    removed = []
    try:
        names = os.listdir(base_path)
    except OSError:
        return removed
    now = time.time()
    for name in names:
        m = SCRATCH_RE.match(name)
        if m is None or int(m.group(2)) == os.getpid():
            continue
        path = os.path.join(base_path, name)
        try:
            age = now - os.lstat(path).st_mtime
        except OSError:
            continue
        if not pid_alive(int(m.group(2))) or age > max_age_s:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.warning("%s: removed %d abandoned export folder(s): %s", base_path, len(removed),
                    ", ".join(os.path.basename(p) for p in removed))
    return removed


def export_saved_model(model: keras.Model, base_path: str, version: int | None = None,
                       overwrite: bool = False, group_len: int = GROUP_LEN,
                       colour_norm: str = DEFAULT_COLOUR_NORM) -> str:
    """Writes `model` to base_path/<version>/ atomically and returns that directory.

    `group_len` is the frame-group length tracklets are embedded with (the evaluation's
    --eval_seq_len) and `colour_norm` the model's input colour normalisation
    (ModelConfig.colour_norm, applied by `embed_raw`); clients read both back from the
    `model_info` signature.

    version defaults to the latest existing version + 1 (1 for an empty base path), except when
    the latest version already serves the same weights and group length (its recorded
    `export_digest`): that version is returned and nothing is written. An existing
    version is refused unless overwrite=True, which swaps the new directory in atomically (note
    that a running TF Serving does not reload a version number it already serves: publish a new
    version for that).
    """
    shape = frame_shape(model)
    if isinstance(group_len, bool) or not isinstance(group_len, (int, np.integer)) or group_len < 1:
        raise ValueError(f"group_len must be a positive integer, got {group_len!r}")
    check_colour_norm(colour_norm)
    for layer in model.layers:
        if isinstance(layer, TTAViews) and layer.colour_norm != colour_norm:
            raise ValueError(f"model {model.name!r} was built for colour_norm "
                             f"{layer.colour_norm!r} (its TTA views), not {colour_norm!r}: export "
                             f"it with --colour_norm={layer.colour_norm}")
    base_path = os.path.abspath(base_path)
    if os.path.exists(base_path) and not os.path.isdir(base_path):
        raise SavedModelError(f"{base_path}: model base path exists and is not a directory")
    os.makedirs(base_path, exist_ok=True)
    clean_abandoned(base_path)
    digest = export_digest(model, int(group_len), colour_norm)
    if version is None:
        existing = list_versions(base_path)
        if existing:
            latest = os.path.join(base_path, str(existing[-1]))
            if _read_digest(latest) == digest:
                log.info("%s already serves these weights; nothing exported", latest)
                return latest
        version = existing[-1] + 1 if existing else 1
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise ValueError(f"version must be a non-negative integer, got {version!r}")
    version = int(version)
    final = os.path.join(base_path, str(version))
    if os.path.exists(final) and not overwrite:
        raise FileExistsError(f"{final}: version {version} already exists; choose another version "
                              f"or pass overwrite=True (--overwrite)")
    tmp = os.path.join(base_path, f".tmp-{version}-{os.getpid()}")
    old = os.path.join(base_path, f".old-{version}-{os.getpid()}")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    module = _ServingModule(model, int(group_len), colour_norm)
    try:
        tf.saved_model.save(module, tmp, signatures=module.signatures())
        _write_warmup(tmp, int(group_len), shape)
        with open(os.path.join(tmp, DIGEST_FILE), "w") as f:
            f.write(digest + "\n")
        check_saved_model_dir(tmp)
        if os.path.exists(final):
            if not overwrite:
                raise FileExistsError(f"{final}: version {version} was created by another writer")
            _replace_dir(tmp, final, old)
        else:
            try:
                os.rename(tmp, final)
            except OSError as e:
                if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    raise FileExistsError(f"{final}: version {version} was created by another "
                                          f"writer during the export") from e
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    log.info("exported %s (frames %s) to %s", model.name, shape, final)
    return final


def main(argv: list[str]) -> int:
    """`python -m keras_crf_reid.serving.export` (configs.export.ExportConfig's flags): exports
    and prints the export's facts as JSON."""
    from absl import app, flags

    from keras_crf_reid.models import factory
    from keras_crf_reid.models.tta import scored_model

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        cfg = cli.from_flags(ExportConfig, flags.FLAGS)
        if bool(cfg.keras_model) == bool(cfg.checkpoint):
            raise ValueError("give exactly one of --keras_model (a .keras file) or --checkpoint")
        if cfg.keras_model:
            model = factory.load_keras_model(cfg.keras_model)
        else:
            config = dataclasses.replace(cfg.model, dropout=0.0)
            model = scored_model(factory.restore_checkpoint(cfg.checkpoint, config, cfg.part),
                                 cfg.tta, config.colour_norm)
        path = export_saved_model(model, cfg.model_base_path, cfg.version, cfg.overwrite,
                                  cfg.group_len, cfg.model.colour_norm)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.EXIT_USAGE
    print(json.dumps({"export_dir": path, "frame_shape": list(frame_shape(model)),
                      "embed_dim": int(model.output_shape[-1]), "group_len": cfg.group_len,
                      "colour_norm": cfg.model.colour_norm,
                      "signatures": [SERVING_SIGNATURE, RAW_SIGNATURE, INFO_SIGNATURE]}))
    return 0


if __name__ == "__main__":
    cli.define_flags(ExportConfig)
    cli.run(main)
