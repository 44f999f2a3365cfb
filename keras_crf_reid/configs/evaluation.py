"""The test protocol of a run and what its report shows; no TensorFlow.

keras_crf_reid.evaluation acts on these settings (its baseline module computes each
BASELINE_KINDS feature).
"""
from __future__ import annotations

from keras_crf_reid.configs.tta import TTAConfig
from keras_crf_reid.geometry import GROUP_LEN
from keras_crf_reid.options import config_class, option

BASELINE_KINDS = ("stripe_hsv", "hist", "pixel", "imagenet", "imagenet_224")
DEFAULT_BASELINE_KIND = "stripe_hsv"


@config_class
class EvalConfig:
    """The test protocol and what the report shows."""

    seq_len: int = option(GROUP_LEN, "Frames per evaluation group (also recorded in the export).",
                          flag="eval_seq_len", lower_bound=1)
    tta: TTAConfig = TTAConfig()
    baseline: bool = option(True, "Also report a hand-crafted nearest-neighbour baseline per "
                            "split (--baseline_kind).")
    baseline_kind: str = option(DEFAULT_BASELINE_KIND, "The report's baseline: stripe_hsv (HSV "
                                "histograms of 4 horizontal stripes, the standard one), hist "
                                "(per-frame standardised RGB histogram, weak on real people) "
                                "or pixel (keras_crf_reid/evaluation/baseline.py). Changing it "
                                "recomputes only the baseline row.", choices=BASELINE_KINDS,
                                results=False)
    rerank: bool = option(False, "k-reciprocal re-ranking (Zhong et al. 2017; k1=20, k2=6, "
                          "lambda=0.3) of the query-gallery distances "
                          "(keras_crf_reid.evaluation.rerank).")
    ranked_queries: int = option(5, "Queries shown in the ranked-results figure.", results=False,
                                 lower_bound=1)
    ranked_top_k: int = option(5, "Gallery ranks shown per query in that figure.", results=False,
                               lower_bound=1)
