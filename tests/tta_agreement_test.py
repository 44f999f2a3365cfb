"""With --tta, evaluation, keras_crf_reid.load(...).embed and a gRPC Predict give one embedding.

The evaluation path reads a TrackletStore's disk cache (uint8 frames, float16 flow) while
load().embed and the client decode the frames and compute flow themselves. `compute_flow`
returns float16 in both cases, so the cache holds exactly what load() computes (checked below)
and the embeddings agree to float32 rounding (ATOL), not merely to a quantisation tolerance.
"""
import keras
import numpy as np
import pytest

import keras_crf_reid
from keras_crf_reid.datasets import ReidDataset, Tracklet, list_images
from keras_crf_reid.datasets.base import Split
from keras_crf_reid.datasets.pipeline import group_dataset
from keras_crf_reid.datasets.store import TrackletStore
from keras_crf_reid.evaluation import compiled_embedder, embed_tracklets, evaluate_split
from keras_crf_reid.model import ModelConfig, build_crf_model
from keras_crf_reid.serving import export, server
from keras_crf_reid.serving.client import ReidClient
from keras_crf_reid.serving.inference import tracklet_input
from keras_crf_reid.tta import DEFAULT_VIEWS, build_tta_model
from tests.inference_test import write_tracklet

GROUP = 4
LIMITS = server.ServerLimits(max_message_mb=8, max_batch=8, max_frames=40, workers=1)
ATOL = 1e-4


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
    store = TrackletStore(dataset, cache_dir=str(tmp_path / "cache")).build(progress=False)
    evaluated = embed_tracklets(compiled_embedder(tta), store, [0, 1], GROUP)
    loaded = keras_crf_reid.load(base)
    assert loaded.group_len == GROUP
    via_load = np.stack([loaded.embed(f) for f in folders])
    srv, port = server.serve(base, poll_s=0, limits=LIMITS)
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


def test_cached_frames_and_flow_are_what_load_computes(setup, tmp_path):
    """The evaluation's cache (float16 flow) and load()'s own decoding give the same model input."""
    _, _, folders, dataset, _ = setup
    cached = TrackletStore(dataset, cache_dir=str(tmp_path / "cache")).build(progress=False)
    _, flow = cached.get(0)
    assert flow.dtype == np.float16
    direct = tracklet_input(folders[0], GROUP)
    ds, counts = group_dataset(cached, [0], GROUP)
    groups = np.concatenate([x.numpy() for x, _ in ds])
    assert counts.tolist() == [len(direct)]
    np.testing.assert_array_equal(groups, direct)
