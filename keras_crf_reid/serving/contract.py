"""The serving contract: signature and tensor names, the version-folder layout, model facts.

What `tensorflow_model_server --model_base_path=BASE` watches, and what every client relies on:

    BASE/<version>/saved_model.pb, variables/, assets.extra/tf_serving_warmup_requests

Versions are integers; the server serves the highest complete one. Signatures of every export:
  serving_default: frames float32 (B, T, 128, 64, 5) -> embedding float32 (B, D)
  embed_raw:       rgb uint8 (B, T, h, w, 3) and flow float32 (B, T, 128, 64, 2) -> embedding
  model_info:      no input -> group_len int32 (1,), embed_dim int32 (1,): the frame-group
                   length the model was evaluated with, which every tracklet embedder uses;
                   colour_norm string (1,): how the model's input colour is normalised
                   (geometry.COLOUR_NORMS; exports without it: "frame_std"), which every
                   client preparing `frames` itself must apply (`embed_raw` applies it).
"""
from __future__ import annotations

import os

import tensorflow as tf

from keras_crf_reid.geometry import COLOUR_NORMS, DEFAULT_COLOUR_NORM

SERVING_SIGNATURE = "serving_default"
RAW_SIGNATURE = "embed_raw"
INFO_SIGNATURE = "model_info"
INPUT_NAME = "frames"
RGB_INPUT = "rgb"
FLOW_INPUT = "flow"
OUTPUT_NAME = "embedding"
GROUP_LEN_OUTPUT = "group_len"
EMBED_DIM_OUTPUT = "embed_dim"
COLOUR_NORM_OUTPUT = "colour_norm"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


SERVING_APIS_MISSING = (
    "the official TF Serving protos are needed here: pip install --no-deps "
    "tensorflow-serving-api==2.21.0 (it declares the full `tensorflow` wheel, which would clash "
    "with tensorflow-cpu; tools/setup_env.sh installs it this way)")


def serving_apis():
    """(predict_pb2, prediction_log_pb2) of `tensorflow_serving.apis`, or ImportError saying how
    to install the package."""
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
    except ImportError as e:
        raise ImportError(f"{SERVING_APIS_MISSING} ({e})") from e
    return predict_pb2, prediction_log_pb2


class SavedModelError(ValueError):
    """A path that is not a usable (complete, versioned) SavedModel; the message names it."""


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


def group_len_of(loaded) -> int | None:
    """The evaluation group length recorded in a loaded export (None for exports without it)."""
    if INFO_SIGNATURE not in loaded.signatures:
        return None
    return int(loaded.signatures[INFO_SIGNATURE]()[GROUP_LEN_OUTPUT].numpy()[0])


def colour_norm_from_info(info: dict, source: str) -> str:
    """The colour_norm of a model_info result ({name: array}); "frame_std" when it has none
    (exports from before the field); SavedModelError for a value this package does not know."""
    if COLOUR_NORM_OUTPUT not in info:
        return DEFAULT_COLOUR_NORM
    value = info[COLOUR_NORM_OUTPUT]
    value = value.numpy() if hasattr(value, "numpy") else value
    value = value.reshape(-1)[0] if hasattr(value, "reshape") else value
    value = value.decode() if isinstance(value, bytes) else str(value)
    if value not in COLOUR_NORMS:
        raise SavedModelError(f"{source}: model_info records colour_norm {value!r}, which this "
                              f"version does not know (expected one of {', '.join(COLOUR_NORMS)})")
    return value


def colour_norm_of(loaded, source: str = "SavedModel") -> str:
    """The input colour normalisation recorded in a loaded export ("frame_std" without it)."""
    if INFO_SIGNATURE not in loaded.signatures:
        return DEFAULT_COLOUR_NORM
    return colour_norm_from_info(loaded.signatures[INFO_SIGNATURE](), source)
