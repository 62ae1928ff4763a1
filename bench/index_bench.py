"""Section ``index``: Annoy (our store, the real build and query code) against exact search, hnswlib and faiss.

Two datasets: the active index's real vectors with sketch queries, and a
synthetic set of ``run.index_n`` vectors (1M; 200k with --quick) drawn like
them (``bench.vectors``) with fresh draws as queries. Every method answers
one query at a time (single-threaded, as a web worker asks), except that
numpy's exact matrix-vector product may use every core through BLAS; batch
exact search is reported beside it. Recall@10 is against exact search.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import Run, say

logging.getLogger("faiss.loader").setLevel(logging.WARNING)

K = 10
TARGET_RECALL, TARGET_SPEEDUP = 0.95, 20.0


def label(n: int) -> str:
    """1m, 200k, 44k, 160: the dataset's name in the result keys."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    return f"{round(n / 1000)}k" if n >= 1000 else str(n)


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    out = np.empty((len(queries), k), np.int64)
    block = max(1, int(2e8 // max(len(base), 1)))  # ~800 MB of scores at a time
    for lo in range(0, len(queries), block):
        sims = queries[lo:lo + block] @ base.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        out[lo:lo + block] = np.take_along_axis(top, order, axis=1)
    return out


def recall(found: list[np.ndarray] | np.ndarray, truth: np.ndarray) -> float:
    hits = [len(set(np.asarray(f)[:K].tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / K


def timed_queries(fn, queries: np.ndarray, latencies: list | None = None) -> tuple[list, float]:
    """(answers, queries per second) of ``fn`` called once per query; per-query ms into ``latencies``."""
    answers = []
    start = time.perf_counter()
    for q in queries:
        t = time.perf_counter()
        answers.append(fn(q))
        if latencies is not None:
            latencies.append((time.perf_counter() - t) * 1000.0)
    return answers, len(queries) / (time.perf_counter() - start)


def dir_size_mb(path: Path, pattern: str = "*") -> float:
    return sum(p.stat().st_size for p in Path(path).glob(pattern)) / 2**20


def exact_figures(base, queries, p: str, out: dict) -> float:
    one = queries[: max(5, min(len(queries), 50 if len(base) > 200_000 else 200))]

    def single(q):
        sims = base @ q
        top = np.argpartition(-sims, K - 1)[:K]
        return top[np.argsort(-sims[top])]

    _, qps = timed_queries(single, one)
    start = time.perf_counter()
    exact_topk(base, queries)
    out[f"{p}.exact.qps"] = qps
    out[f"{p}.exact.batch_qps"] = len(queries) / (time.perf_counter() - start)
    say(f"{p}.exact.qps (one at a time / batched)", f"{qps:.1f} / {out[f'{p}.exact.batch_qps']:.1f}")
    return qps


def annoy_figures(base, queries, truth, p, out, work: Path, trees: list[int], search_ks: list[int],
                  exact_qps: float) -> None:
    from search.index import AnnoyStore, build_index

    for n_trees in trees:
        directory = work / f"annoy-t{n_trees}"
        manifest = build_index(directory, {"image": base}, version="bench", n_trees=n_trees, search_k=search_ks[0])
        out[f"{p}.annoy.t{n_trees}.build_s"] = manifest.build_seconds
        out[f"{p}.annoy.t{n_trees}.size_mb"] = dir_size_mb(directory, "*.ann")
        say(f"{p}.annoy.t{n_trees} build s / MB", f"{manifest.build_seconds:.1f} / "
            f"{out[f'{p}.annoy.t{n_trees}.size_mb']:.0f}")
        store = AnnoyStore(directory)
        for search_k in search_ks:
            ms: list[float] = []
            answers, qps = timed_queries(
                lambda q, sk=search_k, st=store: [i for i, _ in st.query(q, K, search_k=sk)], queries, ms)
            s = f"{p}.sweep.annoy.t{n_trees}-k{search_k}"
            out[f"{s}.p50_ms"], out[f"{s}.p99_ms"] = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
            out[f"{s}.recall_at_10"] = recall(answers, truth)
            out[f"{s}.qps"] = qps
            out[f"{s}.speedup_vs_exact"] = qps / exact_qps
            say(f"{s} recall / qps / x", f"{out[f'{s}.recall_at_10']:.3f} / {qps:.0f} / {qps / exact_qps:.1f}")
        del store
        shutil.rmtree(directory, ignore_errors=True)


def hnsw_figures(base, queries, truth, p, out, work: Path, exact_qps: float, efs=(10, 20, 40, 80, 160)) -> None:
    try:
        import hnswlib
    except ImportError:
        out[f"{p}.hnswlib.status"] = "unavailable: hnswlib is not installed"
        return
    m, ef_construction = 16, 100
    index = hnswlib.Index(space="ip", dim=base.shape[1])  # unit vectors: inner product = cosine
    start = time.perf_counter()
    index.init_index(max_elements=len(base), ef_construction=ef_construction, M=m, random_seed=0)
    index.add_items(base, np.arange(len(base)), num_threads=len(os.sched_getaffinity(0)))
    tag = f"M{m}"
    out[f"{p}.hnswlib.{tag}.build_s"] = time.perf_counter() - start
    index.save_index(str(work / "hnsw.bin"))
    out[f"{p}.hnswlib.{tag}.size_mb"] = dir_size_mb(work, "hnsw.bin")
    say(f"{p}.hnswlib.{tag} build s", out[f"{p}.hnswlib.{tag}.build_s"])
    index.set_num_threads(1)
    for ef in efs:
        index.set_ef(max(ef, K))
        answers, qps = timed_queries(lambda q: index.knn_query(q[None], k=K)[0][0], queries)
        s = f"{p}.sweep.hnswlib.{tag}-ef{ef}"
        out.update({f"{s}.recall_at_10": recall(answers, truth), f"{s}.qps": qps,
                    f"{s}.speedup_vs_exact": qps / exact_qps})
        say(f"{s} recall / qps / x", f"{out[f'{s}.recall_at_10']:.3f} / {qps:.0f} / {qps / exact_qps:.1f}")
    (work / "hnsw.bin").unlink(missing_ok=True)


def faiss_figures(base, queries, truth, p, out, exact_qps: float, nprobes=(1, 4, 16, 64)) -> None:
    try:
        import faiss
    except ImportError:
        out[f"{p}.faiss.status"] = "unavailable: faiss-cpu is not installed"
        return
    nlist = int(max(16, min(4096, round(np.sqrt(len(base))))))
    tag = f"ivf{nlist}"
    faiss.omp_set_num_threads(len(os.sched_getaffinity(0)))
    start = time.perf_counter()
    quantizer = faiss.IndexFlatIP(base.shape[1])
    index = faiss.IndexIVFFlat(quantizer, base.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    index.train(base[rng.choice(len(base), min(len(base), 40 * nlist), replace=False)])
    index.add(base)
    out[f"{p}.faiss.{tag}.build_s"] = time.perf_counter() - start
    out[f"{p}.faiss.{tag}.size_mb"] = base.nbytes / 2**20 * 1.02  # inverted lists hold the raw vectors
    say(f"{p}.faiss.{tag} build s", out[f"{p}.faiss.{tag}.build_s"])
    faiss.omp_set_num_threads(1)
    for nprobe in nprobes:
        index.nprobe = nprobe
        answers, qps = timed_queries(lambda q: index.search(q[None], K)[1][0], queries)
        s = f"{p}.sweep.faiss.{tag}-np{nprobe}"
        out.update({f"{s}.recall_at_10": recall(answers, truth), f"{s}.qps": qps,
                    f"{s}.speedup_vs_exact": qps / exact_qps})
        say(f"{s} recall / qps / x", f"{out[f'{s}.recall_at_10']:.3f} / {qps:.0f} / {qps / exact_qps:.1f}")
    faiss.omp_set_num_threads(len(os.sched_getaffinity(0)))


def choose(out: dict, p: str, default: str, targets: bool) -> None:
    """The chosen Annoy setting: the fastest that meets the targets, else the default; say which."""
    rows = {k[len(p) + len(".sweep.annoy."):-len(".recall_at_10")]: v for k, v in out.items()
            if k.startswith(p + ".sweep.annoy.") and k.endswith(".recall_at_10")}
    meeting = [t for t, r in rows.items() if r >= TARGET_RECALL
               and out[f"{p}.sweep.annoy.{t}.speedup_vs_exact"] >= TARGET_SPEEDUP]
    chosen = max(meeting, key=lambda t: out[f"{p}.sweep.annoy.{t}.qps"]) if meeting else (
        default if default in rows else max(rows, key=lambda t: rows[t]))
    s = f"{p}.sweep.annoy.{chosen}"
    out[f"{p}.chosen"] = f"annoy {chosen.replace('-', ', ').replace('t', 'n_trees=', 1).replace('k', 'search_k=', 1)}"
    out[f"{p}.recall_at_10"] = out[f"{s}.recall_at_10"]
    out[f"{p}.qps"] = out[f"{s}.qps"]
    out[f"{p}.speedup_vs_exact"] = out[f"{s}.speedup_vs_exact"]
    out[f"{p}.p50_ms"], out[f"{p}.p99_ms"] = out[f"{s}.p50_ms"], out[f"{s}.p99_ms"]
    out[f"{p}.size_mb"] = out.get(f"{p}.annoy.{chosen.split('-')[0]}.size_mb")
    out[f"{p}.target_met"] = bool(meeting)
    others = [k.rsplit(".", 1)[0] for k, v in out.items() if k.startswith(p + ".sweep.") and k.endswith(".recall_at_10")
              and ".annoy." not in k and v >= TARGET_RECALL and out[k.rsplit(".", 1)[0] + ".speedup_vs_exact"]
              >= TARGET_SPEEDUP]
    good = [t for t, r in rows.items() if r >= TARGET_RECALL]
    if good:
        best = max(good, key=lambda t: out[f"{p}.sweep.annoy.{t}.qps"])
        out[f"{p}.annoy_fastest_at_recall_{TARGET_RECALL}"] = (
            f"{best}: {out[f'{p}.sweep.annoy.{best}.speedup_vs_exact']:.1f}x exact")
    if targets and not meeting:
        out[f"{p}.note"] = (f"No Annoy setting measured reaches recall@10 ≥ {TARGET_RECALL} at ≥ {TARGET_SPEEDUP:g}× "
                            f"exact; meeting it: {', '.join(o.split('.sweep.')[1] for o in others) or 'none'}.")
    say(f"{p}.chosen", f"{out[f'{p}.chosen']} (targets met: {bool(meeting)})")


def dataset(run: Run, name: str, base: np.ndarray, queries: np.ndarray, trees: list[int], search_ks: list[int],
            default: str, work: Path, out: dict, source: str, targets: bool = False) -> None:
    p = f"index.{name}"
    out[f"{p}.n"], out[f"{p}.dim"], out[f"{p}.source"] = len(base), int(base.shape[1]), source
    out[f"{p}.queries"] = len(queries)
    truth = exact_topk(base, queries)
    exact_qps = exact_figures(base, queries, p, out)
    annoy_figures(base, queries, truth, p, out, work, trees, search_ks, exact_qps)
    choose(out, p, default, targets)
    hnsw_figures(base, queries, truth, p, out, work, exact_qps)
    faiss_figures(base, queries, truth, p, out, exact_qps)


def neighbour_cosine(base: np.ndarray, n: int = 200) -> float:
    """Mean cosine of the 10th nearest neighbour of base members (itself excluded): how crowded the space is."""
    sample = base[np.random.default_rng(3).choice(len(base), min(n, len(base)), replace=False)]
    sims = np.sort(sample @ base.T, axis=1)[:, ::-1]
    return float(sims[:, K].mean())  # column 0 is the vector itself


def index(run: Run, log_dir: Path) -> dict:
    from django.conf import settings

    from bench.vectors import fit_mixture, real_vectors, sketch_query_vectors

    out: dict = {}
    real, labels, directory = real_vectors()
    queries = sketch_query_vectors(run.index_queries)
    source = "active index; queries: sketches of test-split photos"
    if queries is None:
        queries = real[np.random.default_rng(1).choice(len(real), run.index_queries)]
        source = "active index; queries: members of the index"
    default = f"t{settings.INDEX_N_TREES}-k{settings.INDEX_SEARCH_K}"
    search_ks = sorted({1000, 3000, 10000, settings.INDEX_SEARCH_K, 50000})
    work = Path(tempfile.mkdtemp(prefix="bench-index-", dir=settings.ARTIFACTS_DIR))
    try:
        trees = sorted({16, 32, settings.INDEX_N_TREES}) if not run.tiny else [settings.INDEX_N_TREES]
        dataset(run, label(len(real)), real, queries, trees, search_ks, default, work, out, source)
        mixture = fit_mixture(real, labels)
        synthetic = mixture.sample(run.index_n, seed=0)
        name = label(run.index_n)
        out["index.synthetic_dataset"] = f"index.{name}"
        big_trees = [8] if run.tiny else run.big_trees
        big_ks = [1000, 20000] if run.tiny else [5000, 10000, 20000, 30000, 50000, 100000]
        dataset(run, name, synthetic, mixture.sample(run.index_queries, seed=1), big_trees, big_ks,
                f"t{big_trees[0]}-k20000", work, out,
                f"synthetic: Gaussian mixture fitted per articleType ({len(mixture.weights)} types)", targets=True)
        check = mixture.sample(len(real), seed=4)
        out[f"index.{name}.synthetic"] = (
            f"Synthetic vectors: one Gaussian per articleType of the real index (its share, mean, empirical "
            f"covariance + 5 % isotropic noise), L2-normalised. Crowding check at the real size: mean cosine to the "
            f"10th neighbour {neighbour_cosine(real):.3f} (real) vs {neighbour_cosine(check):.3f} (synthetic).")
        say(f"index.{name}.synthetic", out[f"index.{name}.synthetic"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out
