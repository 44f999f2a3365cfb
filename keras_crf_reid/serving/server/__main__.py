"""Development gRPC server speaking TensorFlow Serving's API, for tests, benchmarks and laptops.

Production serves the exported SavedModels with the real TensorFlow Serving
(`tensorflow_model_server` or the tensorflow/serving Docker image; see docs/serving.md). This
server implements the same protos and semantics for what the project uses, so
`serving.client.ReidClient` works unchanged against either:

  PredictionService.Predict, PredictionService.GetModelMetadata (signature_def),
  ModelService.GetModelStatus.

This module is its command line (`launch.spawn` runs it in a subprocess); the package docstring
lists the pieces.

    python -m keras_crf_reid.serving.server --model_base_path=saved_models/crf_reid --port=8500
"""
from __future__ import annotations

import logging
import os
import signal
import threading

from keras_crf_reid import cli
from keras_crf_reid.atomic import write_atomic
from keras_crf_reid.serving.server.limits import ServerLimits
from keras_crf_reid.serving.server.service import serve
from keras_crf_reid.serving.server.versions import SETTLE_S


def _main(argv) -> None:
    from absl import flags

    f = flags.FLAGS
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        limits = cli.from_flags(ServerLimits, f)
        server, port = serve(f.model_base_path, f.port, f.host, f.model_name, f.poll_s, f.num_versions, limits,
                             f.settle_s)
    except (ValueError, OSError) as e:
        raise SystemExit(f"error: {e}")
    print(f"serving {f.model_name or os.path.basename(os.path.abspath(f.model_base_path))} "
          f"on {f.host}:{port}", flush=True)
    if f.port_file:
        write_atomic(f.port_file, str(port))
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop(2).wait()


def main() -> None:
    from absl import app, flags

    flags.DEFINE_string("model_base_path", None, "Directory holding integer version subdirectories.")
    flags.DEFINE_string("model_name", None, "Model name clients ask for (default: basename of the base path).")
    flags.DEFINE_string("host", "127.0.0.1", "Interface to listen on (0.0.0.0 for all).")
    flags.DEFINE_integer("port", 8500, "gRPC port (0 = pick a free one; the bound port is printed).")
    flags.DEFINE_string("port_file", None, "Write the bound port to this file once listening.")
    flags.DEFINE_float("poll_s", 1.0, "Seconds between scans of the base path for new versions (0: never).")
    flags.DEFINE_integer("num_versions", 1, "How many of the newest versions to keep loaded.")
    flags.DEFINE_float("settle_s", SETTLE_S, "Seconds a version folder must stay unchanged before it "
                       "is loaded (a folder still being copied is not served).", lower_bound=0)
    cli.define_flags(ServerLimits)
    flags.mark_flag_as_required("model_base_path")
    app.run(_main)


if __name__ == "__main__":
    main()
