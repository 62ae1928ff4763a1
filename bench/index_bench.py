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
from search.index import auto_nlist

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


SHARING_CHILD = """
import sys, time, numpy as np, psutil
from search.index import VectorStore
store = VectorStore(sys.argv[1], search_k=10**9, nprobe=10**6)  # every list / every tree node is read
store.query(np.full(store.manifest.spaces["image"], store.manifest.spaces["image"] ** -0.5, np.float32), 10)
print("ready", flush=True)
sys.stdin.readline()  # measure once every process has read the whole index
m = psutil.Process().memory_full_info()
print(m.rss / 2**20, m.uss / 2**20, m.pss / 2**20, flush=True)
"""


def sharing(directory: Path, processes: int = 2) -> dict:
    """RSS, private (USS) and proportional (PSS) memory of ``processes`` processes serving one index version."""
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", SHARING_CHILD, str(directory)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
             for _ in range(processes)]
    try:
        for proc in procs:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("an index process did not start")
        rows = []
        for proc in procs:
            proc.stdin.write("\n")
            proc.stdin.flush()
            rows.append([float(x) for x in proc.stdout.readline().split()])
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    rss, uss, pss = (float(np.mean(col)) for col in zip(*rows))
    return {"processes": processes, "rss_mb": rss, "private_mb": uss, "pss_mb": pss}


def store_figures(base, queries, truth, p, out, work: Path, backend: str, builds: list[int], efforts: list[int],
                  exact_qps: float, measure_sharing: bool = False) -> None:
    """Our store (``search.index``, the real build and query code) for one backend, swept.

    annoy: ``builds`` are n_trees, ``efforts`` search_k; ivf: ``builds`` are
    nlist (0 = the store's default, about sqrt(n)), ``efforts`` nprobe.
    """
    from search.index import VectorStore, build_index

    for build in builds:
        directory = work / f"{backend}-{build}"
        if backend == "ivf":
            manifest = build_index(directory, {"image": base}, version="bench", backend="ivf", nlist=build)
            tag, pattern = f"n{manifest.nlist}", "*.ivf"
        else:
            manifest = build_index(directory, {"image": base}, version="bench", n_trees=build, search_k=efforts[0])
            tag, pattern = f"t{build}", "*.ann"
        out[f"{p}.{backend}.{tag}.build_s"] = manifest.build_seconds
        out[f"{p}.{backend}.{tag}.size_mb"] = dir_size_mb(directory, pattern)
        say(f"{p}.{backend}.{tag} build s / MB", f"{manifest.build_seconds:.1f} / "
            f"{out[f'{p}.{backend}.{tag}.size_mb']:.0f}")
        store = VectorStore(directory)
        for effort in efforts:
            if backend == "ivf":
                if effort > manifest.nlist:
                    continue
                ask, s = {"nprobe": effort}, f"{p}.sweep.ivf.{tag}-p{effort}"
            else:
                ask, s = {"search_k": effort}, f"{p}.sweep.annoy.{tag}-k{effort}"
            ms: list[float] = []
            answers, qps = timed_queries(
                lambda q, a=ask, st=store: [i for i, _ in st.query(q, K, **a)], queries, ms)
            out[f"{s}.p50_ms"], out[f"{s}.p99_ms"] = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
            out[f"{s}.recall_at_10"] = recall(answers, truth)
            out[f"{s}.qps"] = qps
            out[f"{s}.speedup_vs_exact"] = qps / exact_qps
            say(f"{s} recall / qps / x", f"{out[f'{s}.recall_at_10']:.3f} / {qps:.0f} / {qps / exact_qps:.1f}")
        del store
        if measure_sharing:
            for key, value in sharing(directory).items():
                out[f"{p}.{backend}.{tag}.sharing.{key}"] = value
            say(f"{p}.{backend}.{tag} 2 processes: rss / private / pss MiB each",
                " / ".join(f"{out[f'{p}.{backend}.{tag}.sharing.{k}']:.0f}" for k in ("rss_mb", "private_mb", "pss_mb")))
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


STORES = ("annoy", "ivf")  # the backends of our own store (search.index); hnswlib and faiss are peers


def setting_name(tag: str) -> str:
    """'annoy.t32-k5000' -> 'annoy n_trees=32, search_k=5000'; 'ivf.n1000-p16' -> 'ivf nlist=1000, nprobe=16'."""
    backend, params = tag.split(".", 1)
    build, effort = params.split("-")
    if backend == "ivf":
        return f"ivf nlist={build[1:]}, nprobe={effort[1:]}"
    return f"annoy n_trees={build[1:]}, search_k={effort[1:]}"


def choose(out: dict, p: str, default: str, targets: bool) -> None:
    """The chosen store setting: the fastest (either backend) meeting the targets, else the default; say which."""
    prefix = f"{p}.sweep."
    rows = {k[len(prefix):-len(".recall_at_10")]: v for k, v in out.items()
            if k.startswith(prefix) and k.endswith(".recall_at_10") and k[len(prefix):].split(".")[0] in STORES}

    def qps(tag: str) -> float:
        return out[f"{prefix}{tag}.qps"]

    def meets(tag: str) -> bool:
        return rows[tag] >= TARGET_RECALL and out[f"{prefix}{tag}.speedup_vs_exact"] >= TARGET_SPEEDUP

    meeting = [t for t in rows if meets(t)]
    chosen = max(meeting, key=qps) if meeting else (default if default in rows else max(rows, key=rows.get))
    s = f"{prefix}{chosen}"
    out[f"{p}.chosen"] = setting_name(chosen)
    out[f"{p}.recall_at_10"] = out[f"{s}.recall_at_10"]
    out[f"{p}.qps"] = out[f"{s}.qps"]
    out[f"{p}.speedup_vs_exact"] = out[f"{s}.speedup_vs_exact"]
    out[f"{p}.p50_ms"], out[f"{p}.p99_ms"] = out[f"{s}.p50_ms"], out[f"{s}.p99_ms"]
    backend, params = chosen.split(".", 1)
    out[f"{p}.size_mb"] = out.get(f"{p}.{backend}.{params.split('-')[0]}.size_mb")
    out[f"{p}.target_met"] = bool(meeting)
    verdicts = []
    for store in STORES:
        good = [t for t in rows if t.startswith(store + ".") and rows[t] >= TARGET_RECALL]
        fastest = ""
        if good:
            best = max(good, key=qps)
            fastest = (f"{setting_name(best)}: recall {rows[best]:.3f} at "
                       f"{out[f'{prefix}{best}.speedup_vs_exact']:.1f}× exact")
            out[f"{p}.{store}_fastest_at_recall_{TARGET_RECALL}"] = fastest
        met = any(meets(t) for t in rows if t.startswith(store + "."))
        out[f"{p}.{store}.target_met"] = met
        verdicts.append(f"{store} {'meets it' if met else 'misses it'}"
                        + (f" (fastest at recall ≥ {TARGET_RECALL}: {fastest})" if fastest else ""))
    if targets:
        out[f"{p}.note"] = (f"Target: recall@10 ≥ {TARGET_RECALL} at ≥ {TARGET_SPEEDUP:g}× the queries/s of exact "
                            f"search, by our store — {'; '.join(verdicts)}.")
    say(f"{p}.chosen", f"{out[f'{p}.chosen']} (targets met: {bool(meeting)})")


def dataset(run: Run, name: str, base: np.ndarray, queries: np.ndarray, trees: list[int], search_ks: list[int],
            nprobes: list[int], default: str, work: Path, out: dict, source: str, targets: bool = False) -> None:
    p = f"index.{name}"
    out[f"{p}.n"], out[f"{p}.dim"], out[f"{p}.source"] = len(base), int(base.shape[1]), source
    out[f"{p}.queries"] = len(queries)
    truth = exact_topk(base, queries)
    exact_qps = exact_figures(base, queries, p, out)
    store_figures(base, queries, truth, p, out, work, "annoy", trees, search_ks, exact_qps, measure_sharing=targets)
    store_figures(base, queries, truth, p, out, work, "ivf", [0], nprobes, exact_qps, measure_sharing=targets)
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
    if settings.INDEX_BACKEND == "ivf":
        default = f"ivf.n{auto_nlist(len(real)) if not settings.INDEX_NLIST else settings.INDEX_NLIST}-p{settings.INDEX_NPROBE}"
    else:
        default = f"annoy.t{settings.INDEX_N_TREES}-k{settings.INDEX_SEARCH_K}"
    search_ks = sorted({1000, 3000, 10000, settings.INDEX_SEARCH_K, 50000})
    nprobes = [1, 4] if run.tiny else sorted({4, 8, 16, 32, settings.INDEX_NPROBE})
    work = Path(tempfile.mkdtemp(prefix="bench-index-", dir=settings.ARTIFACTS_DIR))
    try:
        trees = sorted({16, 32, settings.INDEX_N_TREES}) if not run.tiny else [settings.INDEX_N_TREES]
        dataset(run, label(len(real)), real, queries, trees, search_ks, nprobes, default, work, out, source)
        mixture = fit_mixture(real, labels)
        name = label(run.index_n)
        out["index.synthetic_dataset"] = f"index.{name}"
        big_trees = [8] if run.tiny else run.big_trees
        big_ks = [1000, 20000] if run.tiny else [5000, 10000, 20000, 30000, 50000, 100000]
        variants = [(name, mixture, "")]
        if not (run.tiny or run.quick):
            variants.append((f"{name}-flat", mixture.flattened(0.5), " with half of each type's spread made isotropic "
                             "(a flatter spectrum: stress test)"))
        for ds, mix, how in variants:
            dataset(run, ds, mix.sample(run.index_n, seed=0), mix.sample(run.index_queries, seed=1), big_trees,
                    big_ks, nprobes, f"annoy.t{big_trees[0]}-k20000", work, out,
                    f"synthetic: Gaussian mixture fitted per articleType ({len(mix.weights)} types){how}",
                    targets=True)
            check = mix.sample(len(real), seed=4)
            out[f"index.{ds}.synthetic"] = (
                f"Synthetic vectors: one Gaussian per articleType of the real index (its share, mean, empirical "
                f"covariance + 5 % isotropic noise){how}, L2-normalised. Crowding check at the real size: mean cosine "
                f"to the 10th neighbour {neighbour_cosine(real):.3f} (real) vs {neighbour_cosine(check):.3f} "
                f"(synthetic).")
            say(f"index.{ds}.synthetic", out[f"index.{ds}.synthetic"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out
