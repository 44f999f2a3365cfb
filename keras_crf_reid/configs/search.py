"""Settings of a gallery search (keras_crf_reid.serving.search); no TensorFlow."""
from __future__ import annotations

from keras_crf_reid.options import config_class, option

INDEXES = ("exact", "faiss")


@config_class
class SearchConfig:
    """Which model ranks which query tracklets against which gallery, and what is written."""

    model: str | None = option(None, "SavedModel version dir, model base path, or .keras file.",
                               required=True)
    gallery: str | None = option(None, "Folder of gallery tracklet folders (or PRID layout).",
                                 required=True)
    query: str | None = option(None, "Folder of query tracklet folders (or one tracklet folder).",
                               required=True)
    top_k: int = option(10, "Matches reported per query.", lower_bound=1)
    index: str = option("exact", "Nearest-neighbour index.", choices=INDEXES)
    rerank: bool = option(False, "k-reciprocal re-ranking of the distances (query and gallery "
                          "pooled; keras_crf_reid.evaluation.rerank); --index is then unused.")
    cache_dir: str = option("cache/search", "Where gallery embeddings are cached ('' = no cache).")
    batch_size: int = option(16, "Frame groups per forward pass.", lower_bound=1)
    output: str | None = option(None, "Write the results as JSON to this file.")
    picture: str | None = option(None, "Write a ranked-results PNG of the first queries here "
                                 "(green: same folder name as the query).")
    skip_bad_tracklets: bool = option(False, "Leave out tracklets none of whose images decode (one "
                                      "warning, counted in the output's 'skipped') instead of "
                                      "stopping.")
    picture_queries: int = option(5, "Queries shown in --picture.", lower_bound=1)
