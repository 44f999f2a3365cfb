"""Serving the exported model over TensorFlow Serving's gRPC API.

`client.ReidClient` talks to the real TensorFlow Serving (production) or to `server`, a
development server with the same protos and semantics (tests, benchmarks, laptops).
"""
