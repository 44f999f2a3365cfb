"""The checks that enforce the development server's request limits before inference.

`ServerLimits` (keras_crf_reid.configs.server) declares every limit once, with its flag;
`decoded_bytes` / `decode_inputs` validate a PredictRequest against a
SignatureDef (names, dtypes, shapes, batch and frame limits) and bound its size as decoded, not
as sent: a TensorProto holding one value and a large shape is a few bytes on the wire.
Failures are `RpcError`s carrying the gRPC status the caller gets.
"""
from __future__ import annotations

import math

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2

from keras_crf_reid.configs.server import ServerLimits

MB = 1 << 20


class RpcError(Exception):
    """A request failure to report to the caller with a gRPC status code."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _dtype_name(enum: int) -> str:
    try:
        return f"{tf.dtypes.as_dtype(enum).name} ({types_pb2.DataType.Name(enum)})"
    except (TypeError, ValueError):
        return f"unknown dtype {enum}"


def _check_shape(alias: str, proto, info, limits: ServerLimits) -> tuple[int, ...]:
    if proto.tensor_shape.unknown_rank:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{alias}': tensor_shape has unknown rank")
    shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    want = [int(d.size) for d in info.tensor_shape.dim]
    if not info.tensor_shape.unknown_rank:
        if len(shape) != len(want):
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input '{alias}': expected rank {len(want)} with shape "
                           f"{tuple(want)} (-1 = any), got rank {len(shape)} shape {shape}")
        bad = [i for i, (g, w) in enumerate(zip(shape, want)) if w >= 0 and g != w]
        if bad:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input '{alias}': expected shape {tuple(want)} (-1 = any), got {shape}: "
                           f"dimension {bad[0]} must be {want[bad[0]]}")
    if any(d < 0 for d in shape):
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{alias}': negative dimension in {shape}")
    for i, name in enumerate(("batch size", "number of frames T")[:max(0, len(shape) - 3)]):
        if shape[i] == 0:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{alias}': {name} is 0 in shape {shape}")
    if len(shape) >= 3 and shape[0] > limits.max_batch:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"input '{alias}': batch size {shape[0]} exceeds the server limit "
                       f"--max_batch={limits.max_batch}; split the request")
    if len(shape) >= 5 and shape[1] > limits.max_frames:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"input '{alias}': {shape[1]} frames exceed the server limit "
                       f"--max_frames={limits.max_frames}; send shorter groups")
    if 0 in shape:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{alias}': empty tensor of shape {shape}")
    return shape


def decoded_bytes(request: predict_pb2.PredictRequest, signature, limits: ServerLimits) -> int:
    """Validates request.inputs' names, dtypes and shapes against a SignatureDef and returns the
    bytes the inputs take once decoded, without decoding them.

    The decoded size, not the wire size, is what the limits bound: a TensorProto holding one value
    and a large shape is a few bytes on the wire and a full-size array once decoded.
    """
    got, want = set(request.inputs), set(signature.inputs)
    if got != want:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"input size does not match signature: {len(got)}!={len(want)} "
                       f"len({{{', '.join(sorted(want))}}}). Sent extra: {sorted(got - want)}. "
                       f"Missing but required: {sorted(want - got)}.")
    total = 0
    for alias in sorted(want):
        proto, info = request.inputs[alias], signature.inputs[alias]
        if proto.dtype != info.dtype:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input '{alias}': expects {_dtype_name(info.dtype)} but "
                           f"{_dtype_name(proto.dtype)} is provided")
        shape = _check_shape(alias, proto, info, limits)
        total += math.prod(shape) * tf.dtypes.as_dtype(info.dtype).size
        if total > limits.max_message_mb * MB:
            raise RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"inputs would take {total / MB:.1f} MB decoded, over the server limit "
                           f"--max_message_mb={limits.max_message_mb}")
    return total


def decode_inputs(request: predict_pb2.PredictRequest, signature, limits: ServerLimits) -> dict:
    """Validates request.inputs against a SignatureDef and returns {alias: np.ndarray}."""
    decoded_bytes(request, signature, limits)
    out = {}
    for alias in sorted(signature.inputs):
        proto = request.inputs[alias]
        shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
        try:
            arr = tf.make_ndarray(proto)
        except Exception as e:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input '{alias}': malformed TensorProto ({type(e).__name__}: {e})") from e
        if arr.shape != shape:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input '{alias}': values do not fill shape {shape}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input '{alias}': contains {int(np.isnan(arr).sum())} NaN and "
                           f"{int(np.isinf(arr).sum())} Inf values")
        out[alias] = arr
    return out

