"""Exports an embedding model as a versioned TensorFlow Serving SavedModel, and reads it back.

Layout (what `tensorflow_model_server --model_base_path=BASE` watches):

    BASE/<version>/saved_model.pb, variables/, assets.extra/tf_serving_warmup_requests

Versions are integers; the server serves the highest one. A version directory is written under a
hidden temporary name (`.tmp-<version>-<pid>`, which TF Serving skips because it is not an
integer) and renamed into place, so a polling server never sees a half-written version.

Signatures of every export:
  serving_default: frames float32 (B, T, H, W, C) -> embedding float32 (B, D)
  embed_raw:       rgb uint8 (B, T, h, w, 3) of any h, w, and flow float32 (B, T, H, W, 2)
                   -> embedding; resizing, YUV conversion and per-frame standardisation run in
                   the graph (`preprocess.to_model_input`). Optical flow cannot be computed with
                   TF graph ops cheaply, so the client computes it (`flow.compute_flow` on the
                   H x W frames) and ships it.

    python -m keras_crf_reid.export --keras_model=run/model.keras --model_base_path=saved_models/crf_reid
    python -m keras_crf_reid.export --checkpoint=run/ckpt --model_base_path=saved_models/crf_reid
"""
from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import shutil

import keras
import numpy as np
import tensorflow as tf

from keras_crf_reid import fusion  # noqa: F401  (registers the fusion layers for loading)
from keras_crf_reid import tta  # noqa: F401  (registers the test-time augmentation layers)
from keras_crf_reid.model import ModelConfig, build_crf_model
from keras_crf_reid.preprocess import to_model_input

SERVING_SIGNATURE = "serving_default"
RAW_SIGNATURE = "embed_raw"
INPUT_NAME = "frames"
RGB_INPUT = "rgb"
FLOW_INPUT = "flow"
OUTPUT_NAME = "embedding"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
WARMUP_FRAMES = 16

log = logging.getLogger(__name__)


class SavedModelError(ValueError):
    """A path that is not a usable (complete, versioned) SavedModel; the message names it."""


def frame_shape(model: keras.Model) -> tuple[int, int, int]:
    """(H, W, C) of a model taking frames (B, T, H, W, C); raises if the input is not like that."""
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    if shape is None or len(shape) != 5 or any(d is None for d in shape[2:]):
        raise ValueError(f"model {model.name!r} must take one input of shape (batch, T, H, W, C) "
                         f"with fixed H, W, C; its input shape is {model.input_shape}")
    return int(shape[2]), int(shape[3]), int(shape[4])


class _ServingModule(tf.Module):
    """Holds the model (so its variables are saved) and the two serving functions."""

    def __init__(self, model: keras.Model):
        super().__init__(name="crf_reid_serving")
        self.model = model
        h, w, c = frame_shape(model)
        self._hw = (h, w)
        self.serve = tf.function(
            self._serve, input_signature=[tf.TensorSpec((None, None, h, w, c), tf.float32, INPUT_NAME)])
        self.embed_raw = tf.function(
            self._embed_raw,
            input_signature=[tf.TensorSpec((None, None, None, None, 3), tf.uint8, RGB_INPUT),
                             tf.TensorSpec((None, None, h, w, 2), tf.float32, FLOW_INPUT)])

    def _serve(self, frames):
        return {OUTPUT_NAME: tf.cast(self.model(frames, training=False), tf.float32)}

    def _embed_raw(self, rgb, flow):
        shape = tf.shape(rgb)
        tf.debugging.assert_equal(shape[:2], tf.shape(flow)[:2],
                                  message="rgb and flow must have the same batch and time sizes")
        flat = tf.reshape(rgb, tf.concat([[-1], shape[2:]], axis=0))
        resized = tf.image.resize(flat, self._hw, method="area")
        resized = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
        frames = to_model_input(tf.reshape(resized, tf.concat([shape[:2], [*self._hw, 3]], axis=0)), flow)
        return self._serve(frames)


def list_versions(base_path: str) -> list[int]:
    """Integer version directories directly under base_path, ascending (others are ignored)."""
    try:
        names = os.listdir(base_path)
    except OSError:
        return []
    return sorted(int(n) for n in names
                  if n.isascii() and n.isdigit() and os.path.isdir(os.path.join(base_path, n)))


def check_saved_model_dir(path: str) -> str:
    """Returns path if it holds a complete SavedModel, else raises SavedModelError saying why."""
    if not os.path.isdir(path):
        raise SavedModelError(f"{path}: SavedModel directory does not exist"
                              if not os.path.exists(path) else f"{path}: is not a directory")
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise SavedModelError(f"{path}: not a complete SavedModel: missing saved_model.pb")
    if not os.path.isdir(os.path.join(path, "variables")):
        raise SavedModelError(f"{path}: not a complete SavedModel: missing variables/ directory")
    if not os.path.isfile(os.path.join(path, "variables", "variables.index")):
        raise SavedModelError(f"{path}: not a complete SavedModel: missing variables/variables.index")
    return path


def is_complete_saved_model(path: str) -> bool:
    """True if `check_saved_model_dir` accepts path."""
    try:
        check_saved_model_dir(path)
    except SavedModelError:
        return False
    return True


def resolve_version_dir(path: str) -> str:
    """A SavedModel version directory from either that directory or its base path (latest version)."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return check_saved_model_dir(path)
    if not os.path.isdir(path):
        raise SavedModelError(f"{path}: SavedModel path does not exist" if not os.path.exists(path)
                              else f"{path}: is neither a SavedModel directory nor a base path")
    versions = [v for v in list_versions(path) if is_complete_saved_model(os.path.join(path, str(v)))]
    if not versions:
        raise SavedModelError(f"{path}: neither a SavedModel (no saved_model.pb) nor a base path "
                              f"holding a complete integer version directory")
    return os.path.join(path, str(versions[-1]))


def load_saved_model(path: str):
    """tf.saved_model.load of a version directory or base path, refusing incomplete directories."""
    return tf.saved_model.load(resolve_version_dir(path))


def _warmup_log(h: int, w: int, c: int) -> bytes:
    """One serialized PredictionLog (zeros, constant-encoded so the file stays tiny)."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = SERVING_SIGNATURE
    request.inputs[INPUT_NAME].CopyFrom(
        tf.make_tensor_proto(0.0, dtype=tf.float32, shape=[1, WARMUP_FRAMES, h, w, c]))
    entry = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    return entry.SerializeToString()


def _write_warmup(export_dir: str, shape: tuple[int, int, int]) -> None:
    path = os.path.join(export_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(_warmup_log(*shape))


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


def export_saved_model(model: keras.Model, base_path: str, version: int | None = None,
                       overwrite: bool = False) -> str:
    """Writes `model` to base_path/<version>/ atomically and returns that directory.

    version defaults to the latest existing version + 1 (1 for an empty base path). An existing
    version is refused unless overwrite=True, which swaps the new directory in atomically (note
    that a running TF Serving does not reload a version number it already serves: publish a new
    version for that).
    """
    shape = frame_shape(model)
    base_path = os.path.abspath(base_path)
    if os.path.exists(base_path) and not os.path.isdir(base_path):
        raise SavedModelError(f"{base_path}: model base path exists and is not a directory")
    os.makedirs(base_path, exist_ok=True)
    if version is None:
        existing = list_versions(base_path)
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
    module = _ServingModule(model)
    try:
        tf.saved_model.save(module, tmp, signatures={SERVING_SIGNATURE: module.serve,
                                                     RAW_SIGNATURE: module.embed_raw})
        _write_warmup(tmp, shape)
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


def load_keras_model(path: str) -> keras.Model:
    """Loads a `.keras` file (without optimizer state), naming the path in any error."""
    if not path.endswith(".keras"):
        raise ValueError(f"{path}: expected a .keras model file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: Keras model file does not exist")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:
        raise ValueError(f"{path}: cannot load Keras model ({type(e).__name__}: {e})") from e


def checkpoint_prefix(checkpoint: str) -> str:
    """The checkpoint prefix of a prefix or of a directory (its latest checkpoint)."""
    prefix = tf.train.latest_checkpoint(checkpoint) if os.path.isdir(checkpoint) else checkpoint
    if not prefix or not tf.io.gfile.exists(prefix + ".index"):
        raise FileNotFoundError(f"{checkpoint}: no TensorFlow checkpoint found (expected a prefix "
                                f"with a .index file, or a directory with a 'checkpoint' file)")
    return prefix


def restore_checkpoint(checkpoint: str, config: ModelConfig = ModelConfig()) -> keras.Model:
    """A CRF model built from `config` with weights from a trainer checkpoint (prefix or directory).

    The trainer saves tf.train.Checkpoint(model=...); a directory means its latest checkpoint.
    """
    prefix = checkpoint_prefix(checkpoint)
    model = build_crf_model(config)
    # Fails for any model variable without an entry in the checkpoint, so a partial checkpoint
    # never leaves random initial values in an exported or evaluated model.
    try:
        tf.train.Checkpoint(model=model).restore(prefix).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise ValueError(f"{prefix}: checkpoint does not hold the weights of a model with config "
                         f"{config} ({e})") from e
    return model


def _main(argv) -> None:
    from absl import flags

    f = flags.FLAGS
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    if bool(f.keras_model) == bool(f.checkpoint):
        raise SystemExit("give exactly one of --keras_model (a .keras file) or --checkpoint")
    try:
        if f.keras_model:
            model = load_keras_model(f.keras_model)
        else:
            config = ModelConfig(variant=f.variant, filters=tuple(int(x) for x in f.filters),
                                 embed_dim=f.embed_dim, dropout=0.0, flow_norm=f.flow_norm,
                                 batch_norm=f.batch_norm)
            model = restore_checkpoint(f.checkpoint, config)
        path = export_saved_model(model, f.model_base_path, f.version, f.overwrite)
    except (ValueError, OSError) as e:
        raise SystemExit(f"error: {e}")
    print(json.dumps({"export_dir": path, "frame_shape": list(frame_shape(model)),
                      "embed_dim": int(model.output_shape[-1]),
                      "signatures": [SERVING_SIGNATURE, RAW_SIGNATURE]}))


def main() -> None:
    from absl import app, flags

    flags.DEFINE_string("keras_model", None, "A .keras model file to export.")
    flags.DEFINE_string("checkpoint", None,
                        "A trainer checkpoint prefix or directory (CRF models; see --variant etc.).")
    flags.DEFINE_enum("variant", "cnn_rnn", ["cnn", "rnn", "cnn_rnn"],
                      "CRF variant of the --checkpoint model.")
    flags.DEFINE_list("filters", ["16", "32", "32"], "Conv filters of the --checkpoint model.")
    flags.DEFINE_integer("embed_dim", 128, "Embedding size of the --checkpoint model.")
    flags.DEFINE_enum("flow_norm", "fixed", ["fixed", "frame_std"],
                      "Flow normalisation of the --checkpoint model.")
    flags.DEFINE_bool("batch_norm", False, "Whether the --checkpoint model has batch normalisation.")
    flags.DEFINE_string("model_base_path", None, "Base directory; the export goes to <base>/<version>.")
    flags.DEFINE_integer("version", None, "Version number (default: latest existing + 1).", lower_bound=0)
    flags.DEFINE_bool("overwrite", False, "Atomically replace an existing version.")
    flags.mark_flag_as_required("model_base_path")
    app.run(_main)


if __name__ == "__main__":
    main()
