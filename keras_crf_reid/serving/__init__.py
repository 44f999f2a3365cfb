"""Serving the exported model over TensorFlow Serving's gRPC API.

The artifact: `export` writes the versioned SavedModel, `contract` names its signatures, tensors
and folder layout, `inference` loads it (or a .keras file) and embeds frames in process.
`client.ReidClient` talks to the real TensorFlow Serving (production) or to `server/`, a
development server with the same protos and semantics (tests, benchmarks, laptops); `search`
ranks query tracklets against a gallery.
"""
