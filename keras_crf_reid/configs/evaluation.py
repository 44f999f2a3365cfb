"""The test protocol of a run and what its report shows, and the baseline command line; no
TensorFlow.

keras_crf_reid.evaluation acts on these settings (its baseline module computes each
BASELINE_KINDS feature).
"""
from __future__ import annotations

from keras_crf_reid.configs.data import DATASETS
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


@config_class
class BaselineConfig:
    """`python -m keras_crf_reid.baseline`: a hand-crafted baseline scored on a dataset's splits."""

    data_root: str = option("", "Dataset folder (comma-separated two-camera folders are pooled, as "
                            "in training); empty: generate synthetic data under --data_dir.")
    dataset: str = option("prid_layout", "Reader for --data_root.", choices=DATASETS)
    data_dir: str = option("data", "Where generated synthetic data is written.")
    num_ids: int = option(100, "Identities of the generated synthetic dataset.", lower_bound=2)
    synthetic_seed: int = option(0, "Seed of the generated synthetic dataset.")
    num_splits: int = option(10, "Number of random train/test identity splits.", lower_bound=1)
    seed: int = option(0, "Seed of the random splits.")
    kind: str = option(DEFAULT_BASELINE_KIND, "Features: stripe HSV histogram, whole-frame joint "
                       "RGB histogram, raw pixels, or ImageNet MobileNetV2 features without "
                       "fine-tuning at 128x64 or 224x224 (keras_crf_reid/evaluation/baseline.py).",
                       choices=BASELINE_KINDS)
    normalize: bool = option(True, "hist and pixel: standardise each frame's colours first (like "
                             "the model input); false: raw colour values. Ignored by stripe_hsv.")
    unseen: bool = option(False, "Score every identity, as a --eval_data_root folder of unseen "
                          "people is: its probe camera against its gallery camera (one split).")
    max_frames: int = option(0, "Frames used per tracklet, evenly spaced (0: all).", lower_bound=0)


def rerank_setting(text: str) -> tuple[int, int, float]:
    """(k1, k2, lambda) of a re-ranking setting written k1:k2:lambda; ValueError naming
    --settings otherwise."""
    try:
        k1, k2, lam = text.split(":")
        return int(k1), int(k2), float(lam)
    except ValueError:
        raise ValueError(f"--settings: each setting must be k1:k2:lambda (e.g. 20:6:0.3), got "
                         f"{text!r}") from None


@config_class
class RerankEvalConfig:
    """`python -m keras_crf_reid.serving.rerank_eval`: plain against re-ranked distances on
    MARS's official query/gallery split."""

    data_root: str = option("../shared/realdata/mars_multi", "MARS-layout dataset.")
    model: str = option("saved_models/crf_mars_sample", "Model embedding the tracklets.")
    baselines: tuple[str, ...] = option(("stripe_hsv", "hist"), "Hand-crafted baseline features "
                                        "also compared.", choices=BASELINE_KINDS)
    group_len: int | None = option(None, "Frames per embedded group (default: what the export "
                                   "records; a .keras file records none and gets 16: give the "
                                   "run's --eval_seq_len).", lower_bound=1)
    model_rows: bool = option(True, "Embed with --model (off: baselines only).")
    settings: tuple[str, ...] = option(("20:6:0.3",), "Re-ranking settings k1:k2:lambda compared "
                                       "(the first is torchreid's default).")
    features_cache: str = option("", "An .npz keeping the model's query/gallery features (reused "
                                 "when present, so other settings need no second embedding "
                                 "pass).")

    def __post_init__(self):
        for s in self.settings:
            rerank_setting(s)
