"""Config dataclasses without TensorFlow: parsing flags and reading a run's settings need no TF.

Each module holds the settings of one concern (declared with `options.option`, so
`keras_crf_reid.cli` generates their flags); the modules that act on them (model, trainer,
pipelines, TTA) import them from here.
"""
