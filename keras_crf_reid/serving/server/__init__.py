"""Development gRPC server speaking TensorFlow Serving's API, for tests, benchmarks and laptops.

Production serves the exported SavedModels with the real TensorFlow Serving
(`tensorflow_model_server` or the tensorflow/serving Docker image; see docs/serving.md). This
server implements the same protos and semantics for what the project uses, so
`serving.client.ReidClient` works unchanged against either:

  PredictionService.Predict, PredictionService.GetModelMetadata (signature_def),
  ModelService.GetModelStatus.

The pieces, by concern:
  __main__.py   the command line (`python -m keras_crf_reid.serving.server`)
  launch.py     `spawn`: the server in a subprocess
  limits.py     request validation against ServerLimits (configs/server.py: every limit and
                its flag, declared once, with the command line's other settings)
  admission.py  the decoded-bytes budget and the bounded, deadline-aware inference queue
  versions.py   ModelManager: version folders loaded, swapped, unloaded, warmed up
  service.py    the gRPC services and `serve`

    python -m keras_crf_reid.serving.server --model_base_path=saved_models/crf_reid --port=8500
"""
