"""The vector store: versioned index directories, memory-mapped, with exact search beside them.

A version directory holds, per vector *space* (``image``, and ``text`` when the
text model has a space of its own)::

    <space>.<shard>.ann   backend "annoy" (the default): Annoy, metric "angular" (cosine)
    <space>.<shard>.ivf   backend "ivf": faiss IVF-Flat, inner product (= cosine on unit vectors)
    <space>.vectors.npy   the same float32 vectors (exact search, filters, recall checks)
    manifest.json         backend, model versions, dim, metric, n_trees/search_k or nlist/nprobe, count, shards

Both backends are opened memory-mapped, so every process on a machine shares
one copy of the pages. Annoy is the catalog-scale default; IVF (k-means
partitions scanned exactly, ``nprobe`` of ``nlist`` per query) is for large
catalogs, where the benchmarks measured Annoy falling short (bench/results.md).

Directories are written under a temporary name and renamed into place, so a
reader never sees half an index. Ids are positions 0..count-1; the caller
keeps the id -> item mapping (the web app keeps it in its database).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from annoy import AnnoyIndex

METRIC = "angular"
MANIFEST = "manifest.json"
BACKENDS = ("annoy", "ivf")


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
    backend: str = "annoy"  # manifests written before the IVF backend are Annoy
    nlist: int = 0  # ivf: partitions per shard (0 for annoy)
    nprobe: int = 0  # ivf: partitions scanned per query

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        try:
            manifest = cls(**json.loads((directory / MANIFEST).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise IndexFileError(f"index {directory} has no readable manifest: {exc}") from exc
        if manifest.backend not in BACKENDS:
            raise IndexFileError(f"index {directory} has an unknown backend {manifest.backend!r}")
        return manifest


def shard_bounds(count: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous id ranges, one per shard."""
    edges = np.linspace(0, count, shards + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def auto_nlist(count: int) -> int:
    """IVF partitions for ``count`` vectors: about sqrt(count), and at least 39 training points each."""
    return int(max(1, min(round(np.sqrt(count)), count // 39 or 1)))


def _faiss():
    import faiss  # imported on demand: only the ivf backend needs it

    return faiss


def _build_ivf(vectors: np.ndarray, path: Path, nlist: int, seed: int) -> int:
    """Train k-means partitions on (a sample of) ``vectors``, fill the lists and write the file; the nlist used."""
    faiss = _faiss()
    dim = vectors.shape[1]
    nlist = max(1, min(nlist or auto_nlist(len(vectors)), max(len(vectors), 1)))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    if len(vectors):
        rng = np.random.default_rng(seed)
        sample = vectors if len(vectors) <= 256 * nlist else vectors[rng.choice(len(vectors), 256 * nlist,
                                                                               replace=False)]
        index.train(np.ascontiguousarray(sample))
        index.add(vectors)
    else:  # an empty catalog still gets a valid (empty) index
        index.train(np.zeros((1, dim), np.float32))
    faiss.write_index(index, str(path))
    return nlist


def build_index(directory: Path, spaces: dict[str, np.ndarray], *, version: str, n_trees: int = 32,
                search_k: int = 3000, shards: int = 1, models: dict[str, str] | None = None,
                seed: int = 0, backend: str = "annoy", nlist: int = 0, nprobe: int = 16) -> Manifest:
    """Build every space's index file(s) into ``directory`` atomically and return the manifest."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown index backend {backend!r}: use one of {', '.join(BACKENDS)}")
    directory = Path(directory)
    counts = {len(v) for v in spaces.values()}
    if len(counts) != 1:
        raise ValueError("every space needs one vector per item")
    count = counts.pop()
    start = time.perf_counter()
    tmp = directory.with_name(directory.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    used_nlist = 0
    # k-means and list filling use every core; the OpenMP setting is process-wide (PyTorch's
    # thread count follows it), so the previous value comes back afterwards.
    threads = _faiss().omp_get_max_threads() if backend == "ivf" else 0
    try:
        if backend == "ivf":
            _faiss().omp_set_num_threads(len(os.sched_getaffinity(0)))
        for space, vectors in spaces.items():
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            np.save(tmp / f"{space}.vectors.npy", vectors)
            for shard, (lo, hi) in enumerate(shard_bounds(count, shards)):
                if backend == "ivf":
                    used_nlist = _build_ivf(vectors[lo:hi], tmp / f"{space}.{shard}.ivf", nlist, seed)
                    continue
                ann = AnnoyIndex(vectors.shape[1], METRIC)
                ann.set_seed(seed)
                for i in range(lo, hi):
                    ann.add_item(i - lo, vectors[i])
                ann.build(n_trees, n_jobs=-1)
                ann.save(str(tmp / f"{space}.{shard}.ann"))
                ann.unload()
        ivf = backend == "ivf"
        manifest = Manifest(version=version, metric="inner_product" if ivf else METRIC,
                            n_trees=0 if ivf else n_trees, search_k=0 if ivf else search_k, count=count,
                            spaces={s: int(v.shape[1]) for s, v in spaces.items()}, shards=shards,
                            models=dict(models or {}), build_seconds=time.perf_counter() - start,
                            backend=backend, nlist=used_nlist, nprobe=nprobe if ivf else 0)
        (tmp / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2))
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if backend == "ivf":
            _faiss().omp_set_num_threads(threads)
    return manifest


def angular_to_cosine(distance: float) -> float:
    """Annoy's angular distance is sqrt(2 - 2 cos)."""
    return 1.0 - distance * distance / 2.0


class VectorStore:
    """A loaded (memory-mapped) index version. Safe to share between threads for reading.

    ``search_k`` (Annoy) and ``nprobe`` (IVF) trade speed for recall; they
    default to the manifest's values.
    """

    def __init__(self, directory: Path, search_k: int | None = None, nprobe: int | None = None):
        self.directory = Path(directory)
        self.manifest = Manifest.read(self.directory)
        self.backend = self.manifest.backend
        self.search_k = search_k or self.manifest.search_k
        self.nprobe = nprobe or self.manifest.nprobe or 16
        self._ann: dict[str, list] = {}
        self._vectors: dict[str, np.ndarray] = {}
        self._offsets = [lo for lo, _ in shard_bounds(self.manifest.count, self.manifest.shards)]
        for space, dim in self.manifest.spaces.items():
            self._ann[space] = [self._open(space, shard, dim) for shard in range(self.manifest.shards)]
            try:
                vectors = np.load(self.directory / f"{space}.vectors.npy", mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise IndexFileError(f"vectors of index {self.directory} cannot be read: {exc}") from exc
            if vectors.shape != (self.manifest.count, dim):
                raise IndexFileError(f"vectors of index {self.directory} have shape {vectors.shape}, "
                                  f"the manifest says {(self.manifest.count, dim)}")
            self._vectors[space] = vectors

    def _open(self, space: str, shard: int, dim: int):
        """One shard's index, memory-mapped: every process shares the pages."""
        if self.backend == "ivf":
            faiss = _faiss()
            path = self.directory / f"{space}.{shard}.ivf"
            try:
                index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            except RuntimeError as exc:
                raise IndexFileError(f"index file {path} cannot be loaded: {exc}") from exc
            if index.d != dim:
                raise IndexFileError(f"index file {path} has dimension {index.d}, the manifest says {dim}")
            lists = faiss.downcast_InvertedLists(index.invlists)  # mmap: OnDiskInvertedLists over the file
            if hasattr(lists, "prefetch_nthread"):
                lists.prefetch_nthread = 0  # its default starts 32 prefetch threads per query: 10x slower here
            return index
        path = self.directory / f"{space}.{shard}.ann"
        ann = AnnoyIndex(dim, self.manifest.metric)
        try:
            ann.load(str(path))
        except OSError as exc:
            raise IndexFileError(f"index file {path} cannot be loaded: {exc}") from exc
        return ann

    @property
    def count(self) -> int:
        return self.manifest.count

    def vectors(self, space: str = "image") -> np.ndarray:
        return self._vectors[space]

    def has_space(self, space: str) -> bool:
        return space in self._ann

    def describe(self) -> str:
        """The backend and its search parameters, for reports."""
        if self.backend == "ivf":
            return f"ivf nlist={self.manifest.nlist} nprobe={self.nprobe}"
        return f"annoy n_trees={self.manifest.n_trees} search_k={self.search_k}"

    def query(self, vector: np.ndarray, k: int, *, space: str = "image", allowed: np.ndarray | None = None,
              search_k: int | None = None, nprobe: int | None = None) -> list[tuple[int, float]]:
        """Top-k (id, cosine similarity), best first.

        ``allowed`` is a boolean mask over ids (filters, hidden items). A
        selective mask is searched exactly over its members; a broad one asks
        the index for more neighbours and filters them, falling back to exact
        search when too few pass.
        """
        vector = np.asarray(vector, dtype=np.float32).ravel()
        if allowed is not None:
            n_allowed = int(allowed.sum())
            if n_allowed == 0:
                return []
            if n_allowed < 0.25 * self.count or n_allowed < 5000:
                return self.exact(vector, k, space=space, candidates=np.flatnonzero(allowed))
            fetch = int(k * self.count / n_allowed * 2) + 10
            hits = [h for h in self._ann_query(vector, fetch, space, search_k, nprobe) if allowed[h[0]]]
            if len(hits) >= k:
                return hits[:k]
            return self.exact(vector, k, space=space, candidates=np.flatnonzero(allowed))
        return self._ann_query(vector, k, space, search_k, nprobe)

    def _ann_query(self, vector: np.ndarray, k: int, space: str, search_k: int | None,
                   nprobe: int | None) -> list[tuple[int, float]]:
        hits: list[tuple[int, float]] = []
        if self.backend == "ivf":
            faiss = _faiss()
            params = faiss.SearchParametersIVF(nprobe=nprobe or self.nprobe)
            for offset, index in zip(self._offsets, self._ann[space]):  # fan out over shards, merge top k
                sims, ids = index.search(vector[None], k, params=params)
                hits.extend((offset + int(i), float(s)) for i, s in zip(ids[0], sims[0]) if i >= 0)
        else:
            search_k = search_k or self.search_k
            for offset, ann in zip(self._offsets, self._ann[space]):
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


def recall_at_k(store: VectorStore, queries: np.ndarray, k: int = 10, space: str = "image",
                search_k: int | None = None, nprobe: int | None = None) -> float:
    """Mean overlap of the index's top k with exact search's top k."""
    if len(queries) == 0:
        return float("nan")
    total = 0.0
    for q in queries:
        approx = {i for i, _ in store.query(q, k, space=space, search_k=search_k, nprobe=nprobe)}
        exact = {i for i, _ in store.exact(q, k, space=space)}
        total += len(approx & exact) / max(len(exact), 1)
    return total / len(queries)
