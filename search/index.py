"""The Annoy store: versioned index directories, memory-mapped, with exact search beside them.

A version directory holds, per vector *space* (``image``, and ``text`` when the
text model has a space of its own)::

    <space>.ann           Annoy index, metric "angular" (cosine), one per shard: <space>.<shard>.ann
    <space>.vectors.npy   the same float32 vectors (exact search, filters, recall checks)
    manifest.json         encoder version, dim, metric, n_trees, search_k, count, shards

Directories are written under a temporary name and renamed into place, so a
reader never sees half an index. Annoy ids are positions 0..count-1; the
caller keeps the id -> item mapping (the web app keeps it in its database).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from annoy import AnnoyIndex

METRIC = "angular"
MANIFEST = "manifest.json"


class IndexFileError(RuntimeError):
    """An index directory is missing, incomplete or corrupt."""


@dataclass
class Manifest:
    version: str
    metric: str
    n_trees: int
    search_k: int
    count: int
    spaces: dict[str, int]  # space -> dim
    shards: int = 1
    models: dict[str, str] = field(default_factory=dict)  # role -> model version
    created: float = field(default_factory=time.time)
    build_seconds: float = 0.0

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        try:
            return cls(**json.loads((directory / MANIFEST).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise IndexFileError(f"index {directory} has no readable manifest: {exc}") from exc


def shard_bounds(count: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous id ranges, one per shard."""
    edges = np.linspace(0, count, shards + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def build_index(directory: Path, spaces: dict[str, np.ndarray], *, version: str, n_trees: int = 32,
                search_k: int = 3000, shards: int = 1, models: dict[str, str] | None = None,
                seed: int = 0) -> Manifest:
    """Build every space's Annoy file(s) into ``directory`` atomically and return the manifest."""
    directory = Path(directory)
    counts = {len(v) for v in spaces.values()}
    if len(counts) != 1:
        raise ValueError("every space needs one vector per item")
    count = counts.pop()
    start = time.perf_counter()
    tmp = directory.with_name(directory.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for space, vectors in spaces.items():
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            np.save(tmp / f"{space}.vectors.npy", vectors)
            for shard, (lo, hi) in enumerate(shard_bounds(count, shards)):
                ann = AnnoyIndex(vectors.shape[1], METRIC)
                ann.set_seed(seed)
                for i in range(lo, hi):
                    ann.add_item(i - lo, vectors[i])
                ann.build(n_trees, n_jobs=-1)
                ann.save(str(tmp / f"{space}.{shard}.ann"))
                ann.unload()
        manifest = Manifest(version=version, metric=METRIC, n_trees=n_trees, search_k=search_k, count=count,
                            spaces={s: int(v.shape[1]) for s, v in spaces.items()}, shards=shards,
                            models=dict(models or {}), build_seconds=time.perf_counter() - start)
        (tmp / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2))
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def angular_to_cosine(distance: float) -> float:
    """Annoy's angular distance is sqrt(2 - 2 cos)."""
    return 1.0 - distance * distance / 2.0


class AnnoyStore:
    """A loaded (memory-mapped) index version. Safe to share between threads for reading."""

    def __init__(self, directory: Path, search_k: int | None = None):
        self.directory = Path(directory)
        self.manifest = Manifest.read(self.directory)
        self.search_k = search_k or self.manifest.search_k
        self._ann: dict[str, list[AnnoyIndex]] = {}
        self._vectors: dict[str, np.ndarray] = {}
        self._offsets = [lo for lo, _ in shard_bounds(self.manifest.count, self.manifest.shards)]
        for space, dim in self.manifest.spaces.items():
            shards = []
            for shard in range(self.manifest.shards):
                path = self.directory / f"{space}.{shard}.ann"
                ann = AnnoyIndex(dim, self.manifest.metric)
                try:
                    ann.load(str(path))  # mmap: every process shares the pages
                except OSError as exc:
                    raise IndexFileError(f"index file {path} cannot be loaded: {exc}") from exc
                shards.append(ann)
            self._ann[space] = shards
            try:
                vectors = np.load(self.directory / f"{space}.vectors.npy", mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise IndexFileError(f"vectors of index {self.directory} cannot be read: {exc}") from exc
            if vectors.shape != (self.manifest.count, dim):
                raise IndexFileError(f"vectors of index {self.directory} have shape {vectors.shape}, "
                                  f"the manifest says {(self.manifest.count, dim)}")
            self._vectors[space] = vectors

    @property
    def count(self) -> int:
        return self.manifest.count

    def vectors(self, space: str = "image") -> np.ndarray:
        return self._vectors[space]

    def has_space(self, space: str) -> bool:
        return space in self._ann

    def query(self, vector: np.ndarray, k: int, *, space: str = "image", allowed: np.ndarray | None = None,
              search_k: int | None = None) -> list[tuple[int, float]]:
        """Top-k (annoy id, cosine similarity), best first.

        ``allowed`` is a boolean mask over annoy ids (filters, hidden items). A
        selective mask is searched exactly over its members; a broad one asks
        Annoy for more neighbours and filters them, falling back to exact search
        when too few pass.
        """
        vector = np.asarray(vector, dtype=np.float32).ravel()
        if allowed is not None:
            n_allowed = int(allowed.sum())
            if n_allowed == 0:
                return []
            if n_allowed < 0.25 * self.count or n_allowed < 5000:
                return self.exact(vector, k, space=space, candidates=np.flatnonzero(allowed))
            fetch = int(k * self.count / n_allowed * 2) + 10
            hits = [h for h in self._ann_query(vector, fetch, space, search_k) if allowed[h[0]]]
            if len(hits) >= k:
                return hits[:k]
            return self.exact(vector, k, space=space, candidates=np.flatnonzero(allowed))
        return self._ann_query(vector, k, space, search_k)

    def _ann_query(self, vector: np.ndarray, k: int, space: str, search_k: int | None) -> list[tuple[int, float]]:
        search_k = search_k or self.search_k
        hits: list[tuple[int, float]] = []
        for offset, ann in zip(self._offsets, self._ann[space]):  # fan out over shards, merge top k
            ids, dists = ann.get_nns_by_vector(vector, k, search_k=search_k, include_distances=True)
            hits.extend((offset + i, angular_to_cosine(d)) for i, d in zip(ids, dists))
        hits.sort(key=lambda h: -h[1])
        return hits[:k]

    def exact(self, vector: np.ndarray, k: int, *, space: str = "image",
              candidates: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Brute-force cosine search (vectors are L2-normalised)."""
        vectors = self._vectors[space]
        sub = vectors if candidates is None else vectors[candidates]
        if len(sub) == 0:
            return []
        sims = sub @ np.asarray(vector, dtype=np.float32)
        k = min(k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top])]
        ids = top if candidates is None else candidates[top]
        return [(int(i), float(sims[j])) for i, j in zip(ids, top)]


def recall_at_k(store: AnnoyStore, queries: np.ndarray, k: int = 10, space: str = "image",
                search_k: int | None = None) -> float:
    """Mean overlap of Annoy's top k with exact search's top k."""
    if len(queries) == 0:
        return float("nan")
    total = 0.0
    for q in queries:
        approx = {i for i, _ in store.query(q, k, space=space, search_k=search_k)}
        exact = {i for i, _ in store.exact(q, k, space=space)}
        total += len(approx & exact) / max(len(exact), 1)
    return total / len(queries)
