"""With --tta, evaluation, keras_crf_reid.load(...).embed and a gRPC Predict give one embedding.

Evaluation reads frames through a TrackletStore while load().embed and the client decode the
frame files and compute flow themselves (`flow.model_flow`: rounded to the cache's int8 levels).
Over the same frames (a store without a disk cache) the three agree to float32 rounding (ATOL).
The compact disk cache stores colour as JPEG (quality 90), a stated approximation: its model
input keeps the flow exactly and the colour within JPEG error, checked below.
"""
import os

import keras
import numpy as np
import pytest

import keras_crf_reid
from keras_crf_reid.configs.server import ServerLimits
from keras_crf_reid.datasets import ReidDataset, Tracklet, get_dataset, list_images
from keras_crf_reid.datasets.base import Split
from keras_crf_reid.datasets.pipeline import group_dataset
from keras_crf_reid.datasets.store import TrackletStore
from keras_crf_reid.evaluation.protocol import compiled_embedder, embed_tracklets, evaluate_split
from keras_crf_reid.models.network import ModelConfig, build_crf_model
from keras_crf_reid.models.tta import DEFAULT_VIEWS, build_tta_model
from keras_crf_reid.serving import export
from keras_crf_reid.serving.client import ReidClient
from keras_crf_reid.serving.inference import tracklet_input
from keras_crf_reid.serving.server import service
from tests.fixtures import REALDATA
from tests.inference_test import write_tracklet

GROUP = 4
LIMITS = ServerLimits(max_message_mb=8, max_batch=8, max_frames=40, workers=1)
ATOL = 1e-4
MARS_SAMPLE = os.path.join(REALDATA, "mars_sample")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tta_agree")
    keras.utils.set_random_seed(11)
    model = build_crf_model(ModelConfig(filters=(4, 4, 4), embed_dim=16, dropout=0.0))
    tta = build_tta_model(model)
    folders = [write_tracklet(root / f"cam{c}" / "person_0001", n, seed=c)
               for c, n in ((0, 9), (1, 6))]
    dataset = ReidDataset("tta", str(root), [Tracklet(1, c, tuple(list_images(f)))
                                             for c, f in enumerate(folders)])
    base = str(root / "crf_reid")  # the client's default model name
    export.export_saved_model(tta, base, group_len=GROUP)
    return model, tta, folders, dataset, base


def test_evaluation_load_and_grpc_agree_and_average_the_views(setup, tmp_path):
    model, tta, folders, dataset, base = setup
    store = TrackletStore(dataset, cache_dir=None)  # the frame files, decoded on access
    evaluated = embed_tracklets(compiled_embedder(tta), store, [0, 1], GROUP)
    loaded = keras_crf_reid.load(base)
    assert loaded.group_len == GROUP
    via_load = np.stack([loaded.embed(f) for f in folders])
    srv, port = service.serve(base, poll_s=0, limits=LIMITS)
    try:
        with ReidClient(f"127.0.0.1:{port}", timeout_s=60, max_message_mb=8) as client:
            via_grpc = np.stack([client.embed_tracklet(f) for f in folders])
    finally:
        srv.stop(0)
    np.testing.assert_allclose(evaluated, via_load, atol=ATOL)
    np.testing.assert_allclose(via_grpc, via_load, atol=ATOL)

    # the mean over views of the unwrapped model's tracklet embeddings
    for k, folder in enumerate(folders):
        groups = tracklet_input(folder, GROUP)
        per_view = [build_tta_model(model, (v,))(groups, training=False).numpy().mean(axis=0)
                    for v in DEFAULT_VIEWS]
        np.testing.assert_allclose(via_load[k], np.mean(per_view, axis=0), atol=ATOL)
        assert not np.allclose(via_load[k], per_view[0], atol=ATOL)  # TTA changes the embedding

    # evaluate_split's query-gallery distance is that of the served embeddings
    metrics, dist = evaluate_split(compiled_embedder(tta), store, Split((), (0,), (1,)), GROUP,
                                   with_distances=True)
    np.testing.assert_allclose(dist[0, 0], np.linalg.norm(via_grpc[0] - via_grpc[1]), rtol=1e-4)
    assert metrics["rank1"] == 100.0


def test_cached_model_input_is_load_s_within_jpeg_error(setup, tmp_path):
    """On real pedestrian frames the compact cache (JPEG colour, int8 flow) gives load()'s model
    input: the flow channels exactly, the standardised YUV channels within JPEG quality-90 error
    (measured: mean 0.054 standard deviations, 1.8 of 255 grey levels, on 40 mars_sample
    tracklets), and TTA embeddings within a few percent."""
    _, tta, _, _, _ = setup
    if not os.path.isdir(MARS_SAMPLE):
        pytest.skip(f"{MARS_SAMPLE} not present")
    dataset = get_dataset("prid_layout", MARS_SAMPLE)
    dataset = ReidDataset("mars2", dataset.root, dataset.tracklets[:2])
    cached = TrackletStore(dataset, cache_dir=str(tmp_path / "cache")).build(progress=False)
    for i, t in enumerate(dataset.tracklets):
        direct = tracklet_input(os.path.dirname(t.frames[0]), GROUP)
        ds, counts = group_dataset(cached, [i], GROUP)
        groups = np.concatenate([x.numpy() for x, _ in ds])
        assert counts.tolist() == [len(direct)]
        np.testing.assert_allclose(groups[..., 3:], direct[..., 3:], atol=1e-6)
        colour_error = np.abs(groups[..., :3] - direct[..., :3]).mean()
        assert 0 < colour_error < 0.1, colour_error
        a, b = tta(groups).numpy().mean(0), tta(direct).numpy().mean(0)
        assert np.linalg.norm(a - b) < 0.05 * np.linalg.norm(b)
