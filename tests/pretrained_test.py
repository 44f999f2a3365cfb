"""The committed real-data models, saved_models/crf_mars_sample and crf_mars, load and re-identify.

Both were trained on all 255 identities of ../shared/realdata/mars_sample (crf_mars on every
tracklet of the same people, in mars_multi), so ranking them checks
that the artifact loads and works end to end (frames on disk -> flow -> TTA fusion model ->
embedding), not how it generalises (docs/real_data.md has the 5-split figures).
"""
import os

import numpy as np
import pytest

import keras_crf_reid
from keras_crf_reid.datasets import get_dataset
from keras_crf_reid.datasets.base import Split
from keras_crf_reid.evaluation.baseline import evaluate_baseline
from keras_crf_reid.evaluation.metrics import euclidean_distances, evaluate_rank
from keras_crf_reid.serving import contract
from tests.fixtures import REALDATA

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("crf_mars_sample", "crf_mars")
VERSIONS = {"crf_mars_sample": "1", "crf_mars": "3"}  # the version each ships (TF Serving serves the latest)
MARS_SAMPLE = os.path.join(REALDATA, "mars_sample")
NUM_IDS = 40  # the first 40 identities: chance rank-1 is 2.5%
MARGIN = 15.0  # points of rank-1 and of mAP a shipped model must be ahead of the histogram


def model_path(name: str) -> str:
    return os.path.join(ROOT, "saved_models", name)


@pytest.fixture(scope="module", params=MODELS)
def ranked(request):
    if not os.path.isdir(MARS_SAMPLE):
        pytest.skip(f"{MARS_SAMPLE} not present (the real data lives beside the checkout)")
    model = keras_crf_reid.load(model_path(request.param))
    dataset = get_dataset("prid_layout", MARS_SAMPLE)
    pids = sorted({t.pid for t in dataset.tracklets})[:NUM_IDS]
    chosen = [i for i, t in enumerate(dataset.tracklets) if t.pid in pids]
    split = Split((), tuple(i for i in chosen if dataset.tracklets[i].camid == 0),
                  tuple(i for i in chosen if dataset.tracklets[i].camid == 1))
    query, gallery = ([dataset.tracklets[i] for i in ids] for ids in (split.query, split.gallery))
    embed = lambda ts: np.stack([model.embed(os.path.dirname(t.frames[0])) for t in ts])
    qf, gf = embed(query), embed(gallery)
    cmc, mean_ap = evaluate_rank(euclidean_distances(qf, gf), [t.pid for t in query],
                                 [t.pid for t in gallery], [t.camid for t in query],
                                 [t.camid for t in gallery])
    return model, qf, cmc[0], mean_ap, evaluate_baseline(dataset, split)


@pytest.mark.parametrize("name", MODELS)
def test_committed_model_is_a_serving_export_with_its_group_length(name):
    version = contract.resolve_version_dir(model_path(name))
    assert os.path.basename(version) == VERSIONS[name]
    assert set(os.listdir(model_path(name))) == {"README.md", VERSIONS[name]}  # one version, its card
    assert os.path.isfile(os.path.join(version, "saved_model.pb"))
    model = keras_crf_reid.load(model_path(name))
    assert model.frame_shape == (128, 64, 5) and model.embed_dim == 128
    assert model.group_len == 8  # recorded by the export: the recipe's evaluation groups


def test_committed_model_beats_the_histogram_by_a_margin(ranked):
    """On these 40 people (whom every shipped model saw in training: this checks the artifact,
    not generalisation) the stripe HSV histogram gets rank-1 30.0 / mAP 43.4; each shipped model
    must be MARGIN points ahead in both (they get 62-63 / 76-77), so a broken model fails."""
    model, qf, rank1, mean_ap, hist = ranked
    assert qf.shape == (NUM_IDS, model.embed_dim) and np.isfinite(qf).all()
    assert len({tuple(np.round(v, 4)) for v in qf}) == NUM_IDS  # not a constant embedding
    assert 100 * rank1 >= hist["rank1"] + MARGIN, (rank1, hist["rank1"])  # baseline: percent
    assert 100 * mean_ap >= hist["mAP"] + MARGIN, (mean_ap, hist["mAP"])
