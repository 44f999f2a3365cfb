"""gRPC client for the exported model behind TensorFlow Serving (or the development server).

Uses only the official `tensorflow_serving.apis` stubs, so it talks to `tensorflow_model_server`
and to `keras_crf_reid.serving.server` alike.

    python -m keras_crf_reid.serving.client --target=127.0.0.1:8500 --model_name=crf_reid \
        --tracklet_dir=data/prid_2011/multi_shot/cam_a/person_0001 --output=emb.npy
"""
from __future__ import annotations

import json
import sys
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from keras_crf_reid import cli
from keras_crf_reid.configs.client import ClientConfig
from keras_crf_reid.geometry import GROUP_LEN
from keras_crf_reid.serving import contract
from keras_crf_reid.serving.inference import tracklet_input

MB = 1 << 20
_STATES = get_model_status_pb2.ModelVersionStatus.State


def _shape(info) -> list[int] | None:
    return None if info.tensor_shape.unknown_rank else [int(d.size) for d in info.tensor_shape.dim]


def _tensor_info(info) -> dict:
    return {"dtype": types_pb2.DataType.Name(info.dtype), "shape": _shape(info)}


class ReidClient:
    """Embeds frames and tracklet folders through a TF Serving PredictionService.

    Calls that fail with UNAVAILABLE (server starting, restarting, unreachable) are retried
    `retries` times with exponential backoff; every other error is raised at once as
    grpc.RpcError. Requests larger than max_message_mb are split along the batch axis.
    """

    def __init__(self, target: str = "127.0.0.1:8500", model_name: str = "crf_reid",
                 version: int | None = None, timeout_s: float = 10.0, retries: int = 3,
                 max_message_mb: int = 64, signature_name: str = contract.SERVING_SIGNATURE):
        if retries < 0 or timeout_s <= 0 or max_message_mb <= 0:
            raise ValueError("retries must be >= 0, timeout_s and max_message_mb > 0")
        self.target = target
        self.model_name = model_name
        self.version = version
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.max_message_bytes = int(max_message_mb) * MB
        self.signature_name = signature_name
        self._channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes)])
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._frame_shape: tuple[int, int, int] | None = None
        self._info: dict | None = None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "ReidClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _spec(self, spec, signature_name: str | None = None) -> None:
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = int(self.version)
        if signature_name:
            spec.signature_name = signature_name

    def _call(self, method, request):
        delay = 0.1
        for attempt in range(self.retries + 1):
            try:
                return method(request, timeout=self.timeout_s)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or attempt == self.retries:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _predict_request(self, inputs: dict, signature_name: str | None = None) -> dict:
        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, signature_name or self.signature_name)
        for alias, value in inputs.items():
            request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
        response = self._call(self._predict.Predict, request)
        return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

    def predict(self, frames: np.ndarray) -> np.ndarray:
        """Embeddings (B, D) of model input frames (B, T, H, W, C) float32."""
        x = np.ascontiguousarray(frames, dtype=np.float32)
        if x.ndim != 5:
            raise ValueError(f"frames must be (B, T, H, W, C); got shape {x.shape}")
        step = max(1, int(0.9 * self.max_message_bytes) // max(1, x[0].nbytes if len(x) else 1))
        out = [self._predict_request({contract.INPUT_NAME: x[i:i + step]})[contract.OUTPUT_NAME]
               for i in range(0, max(len(x), 1), step)]
        return np.concatenate(out).astype(np.float32)

    def predict_raw(self, rgb: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """Embeddings via the `embed_raw` signature: rgb uint8 (B, T, h, w, 3), flow (B, T, H, W, 2)."""
        inputs = {contract.RGB_INPUT: np.asarray(rgb, np.uint8),
                  contract.FLOW_INPUT: np.asarray(flow, np.float32)}
        return self._predict_request(inputs, contract.RAW_SIGNATURE)[contract.OUTPUT_NAME]

    def frame_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the served model's frames, read from its metadata once."""
        if self._frame_shape is None:
            sig = self.metadata()["signatures"].get(self.signature_name)
            shape = sig and sig["inputs"].get(contract.INPUT_NAME, {}).get("shape")
            if not shape or len(shape) != 5 or min(shape[2:]) <= 0:
                raise ValueError(f"model {self.model_name!r} at {self.target}: signature "
                                 f"{self.signature_name!r} has no (B, T, H, W, C) input "
                                 f"{contract.INPUT_NAME!r}: {sig}")
            self._frame_shape = tuple(shape[2:])
        return self._frame_shape

    def model_info(self) -> dict:
        """The served model's `model_info` result ({name: array}, read once; {} for exports
        without that signature)."""
        if self._info is None:
            self._info = (self._predict_request({}, contract.INFO_SIGNATURE)
                          if contract.INFO_SIGNATURE in self.metadata()["signatures"] else {})
        return self._info

    def group_len(self) -> int:
        """Frames per group the served model was evaluated with (its `model_info` signature;
        exports without one: the default 16)."""
        info = self.model_info()
        return int(info[contract.GROUP_LEN_OUTPUT][0]) if contract.GROUP_LEN_OUTPUT in info \
            else GROUP_LEN

    def colour_norm(self) -> str:
        """How the served model's input colour is normalised (its `model_info`; exports without
        the field: "frame_std")."""
        return contract.colour_norm_from_info(self.model_info(), f"model {self.model_name!r} at "
                                              f"{self.target}")

    def embed_tracklet(self, folder: str) -> np.ndarray:
        """Embedding (D,) of a folder of frames: mean over its frame groups, cut to the served
        model's group length and colour-normalised as it was trained (as evaluation does)."""
        h, w, _ = self.frame_shape()
        groups = tracklet_input(folder, self.group_len(), height=h, width=w,
                                colour_norm=self.colour_norm())
        return self.predict(groups).mean(axis=0)

    def metadata(self) -> dict:
        """GetModelMetadata: {"model_spec": {...}, "signatures": {name: {"inputs", "outputs", "method"}}}."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec)
        response = self._call(self._predict.GetModelMetadata, request)
        sigs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sigs)
        return {
            "model_spec": {"name": response.model_spec.name, "version": response.model_spec.version.value},
            "signatures": {
                key: {"inputs": {k: _tensor_info(v) for k, v in s.inputs.items()},
                      "outputs": {k: _tensor_info(v) for k, v in s.outputs.items()},
                      "method": s.method_name}
                for key, s in sigs.signature_def.items() if not key.startswith("__")},
        }

    def status(self) -> list[dict]:
        """GetModelStatus: one {"version", "state", "error_code", "error_message"} per version."""
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec)
        response = self._call(self._models.GetModelStatus, request)
        return [{"version": s.version, "state": _STATES.Name(s.state),
                 "error_code": int(s.status.error_code), "error_message": s.status.error_message}
                for s in response.model_version_status]


def main(argv: list[str]) -> int:
    """`python -m keras_crf_reid.serving.client`: embeds a tracklet or prints the model's status
    or signatures (ClientConfig)."""
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        cfg = cli.from_flags(ClientConfig, flags.FLAGS)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.EXIT_USAGE
    if not (cfg.tracklet_dir or cfg.status or cfg.metadata):
        print("error: give --tracklet_dir to embed, or --status / --metadata", file=sys.stderr)
        return cli.EXIT_USAGE
    with ReidClient(cfg.target, cfg.model_name, cfg.version, cfg.timeout_s, cfg.retries,
                    cfg.max_message_mb) as client:
        try:
            if cfg.status:
                print(json.dumps(client.status(), indent=1))
            if cfg.metadata:
                print(json.dumps(client.metadata(), indent=1))
            if cfg.tracklet_dir:
                emb = client.embed_tracklet(cfg.tracklet_dir)
                if cfg.output:
                    np.save(cfg.output, emb)
                print(json.dumps({"tracklet_dir": cfg.tracklet_dir, "dim": int(emb.shape[0]),
                                  "norm": float(np.linalg.norm(emb)), "output": cfg.output}))
        except grpc.RpcError as e:
            print(f"error: {cfg.target} model {cfg.model_name!r}: {e.code().name}: {e.details()}",
                  file=sys.stderr)
            return cli.EXIT_USAGE
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return cli.EXIT_USAGE
    return 0


if __name__ == "__main__":
    cli.define_flags(ClientConfig)
    cli.run(main)
