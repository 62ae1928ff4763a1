"""Vectors for the index section: the active index's real ones, and a synthetic million drawn like them.

The synthetic set is a Gaussian mixture with one component per articleType of
the real catalog: weight = the type's share of items, mean = its mean vector,
covariance = its empirical covariance (sampled through its SVD, so a type with
few items keeps its low-rank shape) plus an isotropic 5 % of the average
within-type variance (so no component is degenerate). Types with fewer than 2
items use the global within-type spread. Every draw is L2-normalised, as the
encoder's vectors are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import active_index_dir, setup_django


@dataclass
class Mixture:
    weights: np.ndarray  # (C,)
    means: np.ndarray  # (C, D)
    scales: list[np.ndarray]  # per component: (r, D) rows = singular vectors * spread
    noise: float  # isotropic std added to every draw
    iso: np.ndarray | None = None  # per component: extra isotropic std (``flattened``)

    def flattened(self, share: float) -> Mixture:
        """The same mixture with ``share`` of each type's spread moved into isotropic directions.

        Same means and the same total within-type variance, but a flatter
        spectrum: a harder case for any index (a stress test, not a fit).
        """
        dim = self.means.shape[1]
        total = np.array([float((s ** 2).sum()) for s in self.scales])
        return Mixture(weights=self.weights, means=self.means,
                       scales=[s * np.float32(np.sqrt(1.0 - share)) for s in self.scales], noise=self.noise,
                       iso=np.sqrt(share * total / dim).astype(np.float32))

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(n, self.weights)
        dim = self.means.shape[1]
        out = np.empty((n, dim), np.float32)
        at = 0
        for c, m in enumerate(counts):
            if not m:
                continue
            basis = self.scales[c]
            x = self.means[c] + rng.standard_normal((m, len(basis))).astype(np.float32) @ basis
            x += rng.standard_normal((m, dim)).astype(np.float32) * (
                self.noise if self.iso is None else float(np.hypot(self.noise, self.iso[c])))
            out[at:at + m] = x
            at += m
        out = out[rng.permutation(n)]
        out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-12
        return out


def fit_mixture(vectors: np.ndarray, labels: np.ndarray) -> Mixture:
    vectors = np.asarray(vectors, np.float32)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    dim = vectors.shape[1]
    means = np.zeros((len(classes), dim), np.float32)
    residual = vectors.copy()
    for c in range(len(classes)):
        rows = inverse == c
        means[c] = vectors[rows].mean(axis=0)
        residual[rows] -= means[c]
    within_var = float((residual ** 2).sum() / max(len(vectors) - len(classes), 1) / dim)  # per dimension
    scales = []
    for c in range(len(classes)):
        centred = residual[inverse == c]
        if counts[c] < 2:
            scales.append(np.eye(dim, dtype=np.float32) * np.sqrt(within_var))
            continue
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        scales.append((vt * (s / np.sqrt(counts[c] - 1))[:, None]).astype(np.float32))
    return Mixture(weights=counts / counts.sum(), means=means, scales=scales,
                   noise=float(np.sqrt(0.05 * within_var)))


def real_vectors() -> tuple[np.ndarray, np.ndarray, Path]:
    """(vectors, articleType label per vector, index dir) of the active index."""
    from search.index import VectorStore

    directory = active_index_dir()
    if directory is None:
        raise RuntimeError("no active index: run `python manage.py reindex`")
    store = VectorStore(directory)
    vectors = np.asarray(store.vectors("image"), np.float32)
    setup_django()
    from webapp.models import IndexEntry, IndexVersion

    version = IndexVersion.objects.get(is_active=True)
    labels = np.array(["?"] * len(vectors), dtype=object)
    for annoy_id, category in IndexEntry.objects.filter(version=version).values_list("annoy_id", "item__category"):
        labels[annoy_id] = category
    return vectors, labels.astype(str), directory


def sketch_query_vectors(n: int) -> np.ndarray | None:
    """Image2Vec vectors of sketches of test-split photos (what users send); None without an encoder."""

    from bench import querysets
    from search.pipeline import embed_sketches
    from search.trained import TrainedModels
    from webapp.services import models_dir

    models = TrainedModels(models_dir())
    if not models.available("encoder"):
        return None
    qs = querysets.build(n, seed=2)
    return embed_sketches(models, qs.sketch_arrays, "direct").astype(np.float32)
