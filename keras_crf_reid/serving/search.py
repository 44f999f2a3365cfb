"""Gallery search: rank query tracklets against a gallery of tracklets by embedding distance.

A tracklet is any folder holding image files directly; --gallery and --query are searched
recursively for them, so both a flat folder of tracklet folders and the PRID layout
(`root/cam_a/person_0001/*.png`) work, tracklets being named by their path relative to the root.
Gallery embeddings are cached in `<cache_dir>/gallery_<hash>.npz`, the hash covering the model
(path and modification time) and the gallery's files (names, sizes, modification times).
A tracklet none of whose images decodes stops the search with an error naming it, or, with
--skip_bad_tracklets, is left out with one warning and counted in the output's `skipped`.

    python -m keras_crf_reid.serving.search --model=saved_models/crf_reid --gallery=data/prid/cam_b \
        --query=data/prid/cam_a --top_k=10 --output=results.json
"""
from __future__ import annotations

import abc
import hashlib
import json
import logging
import os
import sys
from typing import Sequence

import numpy as np
from tqdm import tqdm

from keras_crf_reid import cli
from keras_crf_reid.atomic import atomic_path, write_atomic
from keras_crf_reid.configs.search import INDEXES, SearchConfig
from keras_crf_reid.datasets import DatasetError, list_images
from keras_crf_reid.datasets.base import warn_skipped
from keras_crf_reid.evaluation.metrics import euclidean_distances
from keras_crf_reid.evaluation.rerank import rerank_features
from keras_crf_reid.serving import contract, inference
from keras_crf_reid.serving.inference import Embedder

log = logging.getLogger(__name__)


class Index(abc.ABC):
    """Nearest-neighbour index over (N, D) float32 vectors under Euclidean distance."""

    @abc.abstractmethod
    def add(self, vectors: np.ndarray) -> None:
        """Appends vectors (N, D); their ids continue from the current size."""

    @abc.abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances (Q, k'), ids (Q, k')) of the k' = min(k, size) nearest vectors, nearest first."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of vectors added."""


def _as_matrix(x: np.ndarray, dim: int, what: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{what} must be (N, {dim}); got shape {x.shape}")
    return x


class ExactIndex(Index):
    """Brute-force NumPy search: exact, and fast enough for re-id galleries (thousands)."""

    def __init__(self, dim: int):
        self.dim = int(dim)
        self._vectors = np.zeros((0, self.dim), np.float32)

    def add(self, vectors: np.ndarray) -> None:
        self._vectors = np.concatenate([self._vectors, _as_matrix(vectors, self.dim, "vectors")])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = _as_matrix(queries, self.dim, "queries")
        k = min(int(k), len(self))
        if k <= 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        dist = euclidean_distances(q, self._vectors)
        ids = np.argsort(dist, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(dist, ids, axis=1), ids.astype(np.int64)

    def __len__(self) -> int:
        return len(self._vectors)


class FaissIndex(Index):
    """faiss IndexFlatL2 (exact, multi-threaded); needs `pip install faiss-cpu`."""

    def __init__(self, dim: int):
        try:
            import faiss
        except ImportError as e:
            raise ImportError("--index=faiss needs the faiss-cpu package: pip install faiss-cpu "
                              "(or pip install 'keras_crf_reid[ann]'), or use --index=exact") from e
        self.dim = int(dim)
        self._index = faiss.IndexFlatL2(self.dim)

    def add(self, vectors: np.ndarray) -> None:
        self._index.add(_as_matrix(vectors, self.dim, "vectors"))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = _as_matrix(queries, self.dim, "queries")
        k = min(int(k), len(self))
        if k <= 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        d2, ids = self._index.search(q, k)
        return np.sqrt(np.maximum(d2, 0.0)), ids.astype(np.int64)

    def __len__(self) -> int:
        return int(self._index.ntotal)


def make_index(kind: str, dim: int) -> Index:
    """An empty index of the given kind ("exact" or "faiss")."""
    if kind == "exact":
        return ExactIndex(dim)
    if kind == "faiss":
        return FaissIndex(dim)
    raise ValueError(f"--index must be one of {INDEXES}, got {kind!r}")


def find_tracklets(root: str) -> list[tuple[str, str]]:
    """(name, folder) of every folder under root (root included) that holds images, sorted."""
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: tracklet root does not exist or is not a directory")
    found = []
    for folder, dirs, _ in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if list_images(folder):
            found.append((os.path.relpath(folder, root).replace(os.sep, "/"), folder))
    if not found:
        raise DatasetError(f"{root}: no folder of images (tracklet) found under it")
    return sorted(found)


def _model_fingerprint(model_path: str) -> list:
    if model_path.endswith(".keras"):
        files = [model_path]
    else:
        version_dir = contract.resolve_version_dir(model_path)
        files = [os.path.join(version_dir, "saved_model.pb"),
                 os.path.join(version_dir, "variables", "variables.index")]
    return [[os.path.abspath(p), os.stat(p).st_mtime_ns, os.stat(p).st_size] for p in files]


def gallery_cache_path(cache_dir: str, model_path: str, tracklets: Sequence[tuple[str, str]]) -> str:
    """`<cache_dir>/gallery_<hash>.npz` for this model file state and gallery file list."""
    h = hashlib.sha256(json.dumps(_model_fingerprint(model_path)).encode())
    for name, folder in tracklets:
        for path in list_images(folder):
            st = os.stat(path)
            h.update(f"{name}/{os.path.basename(path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return os.path.join(cache_dir, f"gallery_{h.hexdigest()[:20]}.npz")


def embed_folders(embedder: Embedder, tracklets: Sequence[tuple[str, str]], progress: bool = False,
                  skip_bad: bool = False) -> tuple[np.ndarray, dict[str, str]]:
    """(N', D) embeddings of (name, folder) tracklets and {name: reason} of those skipped.

    A tracklet that cannot be embedded (no decodable image) raises its DatasetError, or with
    skip_bad is left out (N' < N) with one warning for all of them.
    """
    out, skipped = [], {}
    for name, folder in tqdm(tracklets, desc="embed", unit="tracklet", disable=not progress):
        try:
            out.append(embedder.embed(folder))
        except DatasetError as e:
            if not skip_bad:
                raise DatasetError(f"{e} (pass --skip_bad_tracklets to leave such tracklets out)") from e
            skipped[name] = str(e)
    if skipped:
        warn_skipped("tracklets that cannot be embedded", skipped)
    return np.asarray(out, np.float32).reshape(len(out), embedder.embed_dim), skipped


def embed_gallery(embedder: Embedder, model_path: str, gallery_root: str, cache_dir: str | None,
                  progress: bool = False, skip_bad: bool = False,
                  ) -> tuple[list[str], np.ndarray, dict[str, str]]:
    """Gallery names, embeddings and skipped tracklets ({name: reason}), read from the cache
    when the model and files are unchanged."""
    tracklets = find_tracklets(gallery_root)
    all_names = [n for n, _ in tracklets]
    cache = gallery_cache_path(cache_dir, model_path, tracklets) if cache_dir else None
    if cache and os.path.isfile(cache):
        try:
            with np.load(cache) as data:
                names = list(data["names"])
                skipped = dict(zip(data["skipped_names"], data["skipped_reasons"])) \
                    if "skipped_names" in data else {}
                if (sorted(names + list(skipped)) == sorted(all_names) and (skip_bad or not skipped)
                        and data["embeddings"].shape == (len(names), embedder.embed_dim)):
                    log.info("gallery embeddings read from %s", cache)
                    if skipped:
                        warn_skipped("tracklets that cannot be embedded", skipped)
                    return names, data["embeddings"].astype(np.float32), skipped
        except (OSError, ValueError, KeyError) as e:
            log.warning("ignoring unreadable gallery cache %s: %s", cache, e)
    embeddings, skipped = embed_folders(embedder, tracklets, progress, skip_bad)
    names = [n for n in all_names if n not in skipped]
    if cache:
        with atomic_path(cache) as tmp, open(tmp, "wb") as f:
            np.savez(f, names=np.asarray(names), embeddings=embeddings,
                     skipped_names=np.asarray(list(skipped), dtype=str),
                     skipped_reasons=np.asarray(list(skipped.values()), dtype=str))
        log.info("gallery embeddings cached in %s", cache)
    return names, embeddings, skipped


def search(embedder: Embedder, model_path: str, gallery_root: str, query_root: str, top_k: int = 10,
           index: str = "exact", cache_dir: str | None = None, progress: bool = False,
           skip_bad: bool = False, rerank: bool = False) -> dict:
    """Top-k gallery matches of every query tracklet: {"results": [{"query", "matches": [...]}]}.

    skip_bad: tracklets that cannot be embedded are left out (listed in "skipped") instead of
    stopping the search. rerank: k-reciprocal re-ranked distances over the whole gallery (the
    index is not used).
    """
    if top_k <= 0:
        raise ValueError(f"--top_k must be positive, got {top_k}")
    names, gallery, skipped_gallery = embed_gallery(embedder, model_path, gallery_root, cache_dir,
                                                    progress, skip_bad)
    if not names:
        raise DatasetError(f"{gallery_root}: no gallery tracklet could be embedded")
    queries = find_tracklets(query_root)
    q, skipped_queries = embed_folders(embedder, queries, progress, skip_bad)
    queries = [(n, f) for n, f in queries if n not in skipped_queries]
    if rerank:
        full = rerank_features(q, gallery)
        ids = np.argsort(full, axis=1, kind="stable")[:, :top_k]
        dist = np.take_along_axis(full, ids, axis=1)
    else:
        idx = make_index(index, embedder.embed_dim)
        idx.add(gallery)
        dist, ids = idx.search(q, top_k)
    results = [{"query": qname,
                "matches": [{"rank": r + 1, "tracklet": names[j], "distance": float(d)}
                            for r, (j, d) in enumerate(zip(ids[i], dist[i]))]}
               for i, (qname, _) in enumerate(queries)]
    return {"model": embedder.source, "gallery": os.path.abspath(gallery_root),
            "query": os.path.abspath(query_root), "gallery_size": len(names), "top_k": top_k,
            "index": index, "rerank": rerank, "results": results,
            "skipped": {"gallery": skipped_gallery, "query": skipped_queries,
                        "count": len(skipped_gallery) + len(skipped_queries)}}


def plot_search(out: dict, gallery_root: str, query_root: str, out_png: str,
                num_queries: int = 5) -> str:
    """Picture of the first `num_queries` queries and their ranked matches. A match is drawn
    green when its folder has the query's folder name (e.g. person_0001 in both cameras)."""
    from keras_crf_reid.datasets.frames import read_frames
    from keras_crf_reid.evaluation import plots

    def frames(root: str, name: str) -> np.ndarray:
        folder = root if name == "." else os.path.join(root, name)
        return read_frames(list_images(folder))[0]

    shown = out["results"][:num_queries]
    if not shown:
        raise ValueError("no query results to picture")
    same = lambda q, g: os.path.basename(q) == os.path.basename(g)  # noqa: E731
    return plots.plot_ranked_results(
        [frames(query_root, r["query"]) for r in shown],
        [[frames(gallery_root, m["tracklet"]) for m in r["matches"]] for r in shown],
        [[same(r["query"], m["tracklet"]) for m in r["matches"]] for r in shown], out_png)


def main(argv: list[str]) -> int:
    """`python -m keras_crf_reid.serving.search`: prints each query's matches (SearchConfig)."""
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        cfg = cli.from_flags(SearchConfig, flags.FLAGS)
        embedder = inference.load(cfg.model, batch_size=cfg.batch_size)
        out = search(embedder, cfg.model, cfg.gallery, cfg.query, cfg.top_k, cfg.index,
                     cfg.cache_dir or None, progress=True, skip_bad=cfg.skip_bad_tracklets,
                     rerank=cfg.rerank)
    except (ValueError, OSError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.EXIT_USAGE
    if out["skipped"]["count"]:
        print(f"skipped {out['skipped']['count']} tracklet(s) that cannot be embedded: "
              f"{sorted(out['skipped']['gallery']) + sorted(out['skipped']['query'])}")
    for r in out["results"]:
        best = ", ".join(f"{m['tracklet']} ({m['distance']:.3f})" for m in r["matches"])
        print(f"{r['query']}: {best}")
    if cfg.output:
        write_atomic(cfg.output, json.dumps(out, indent=1))
        print(f"results written to {cfg.output}")
    if cfg.picture:
        print(f"ranked results pictured in "
              f"{plot_search(out, cfg.gallery, cfg.query, cfg.picture, cfg.picture_queries)}")
    return 0


if __name__ == "__main__":
    cli.define_flags(SearchConfig)
    cli.run(main)
