"""tf.distribute strategies, which task is the chief, and a warning that the multi-worker port
is open on every interface.

TensorFlow's worker server (MultiWorkerMirroredStrategy) binds "0.0.0.0:<port>" whatever host
TF_CONFIG names for the task (tensorflow/core/distributed_runtime/rpc/grpc_server_lib.cc,
GrpcServer::Init), without authentication, and offers no option to bind one address; so the
port must be firewalled (docs/distributed.md, "Security: the worker port").
"""
from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

log = logging.getLogger(__name__)


def task_address(tf_config: str) -> tuple[str, int]:
    """(host, port) of this process's own task in a TF_CONFIG JSON string; ValueError naming
    TF_CONFIG when it is malformed."""
    try:
        config = json.loads(tf_config)
        task = config["task"]
        address = config["cluster"][task["type"]][int(task["index"])]
        host, _, port = str(address).rpartition(":")
        return host.strip("[]"), int(port)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise ValueError(f"TF_CONFIG does not name this task's host:port in its cluster "
                         f"({type(e).__name__}: {e}): {tf_config!r}") from e


def exposure_warning(tf_config: str) -> str:
    """The warning logged when a multi-worker strategy starts: which port is open to whom."""
    host, port = task_address(tf_config)
    return (f"TensorFlow's multi-worker server listens on port {port} of every network interface "
            f"(0.0.0.0 and ::), not only on {host} named in TF_CONFIG, and accepts unauthenticated "
            f"requests that run TensorFlow operations in this process; TensorFlow offers no way to "
            f"bind one address, so allow port {port} only from the other workers with a firewall "
            f"(docs/distributed.md, 'Security: the worker port')")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """default | mirrored (GPUs of one machine) | multi_worker (machines via TF_CONFIG).

    For multi_worker, logs `exposure_warning` first (TF_CONFIG is checked to name this task).
    """
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        tf_config = os.environ.get("TF_CONFIG", "")
        if tf_config:
            log.warning("%s", exposure_warning(tf_config))
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this is a non-chief worker of a multi-worker cluster (TF_CONFIG).

    The chief is task "chief", or worker 0 when the cluster names no chief.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not cluster:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)
