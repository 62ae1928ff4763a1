"""Section ``scale``: beyond one machine. Measures the fan-out over shards, then estimates 10M and 100M.

The fan-out is measured here: the active index's vectors built into 1, 2, 4
and 8 shards (``search.index`` supports shards; one process queries them one
after another and merges), with the same total ``search_k`` split over the
shards, so the difference in latency is the cost of fanning out. The cost of
one shard comes from the ``index`` section's big synthetic index (run it
first) and the model stages from the ``query`` section. The estimate and its
assumptions are written as markdown into the results (``scale.markdown``).
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import Run, load_results, say

# Assumptions of the estimate (stated in the markdown).
MACHINE_CORES, MACHINE_GIB, USABLE = 16, 64, 0.75  # a typical serving machine; 75 % of RAM for index pages
TARGET_QPS = 100.0  # peak queries per second to serve
NETWORK_MS = 0.5  # one round trip inside a data centre
SIZES = (10_000_000, 100_000_000)


def fanout(run: Run) -> dict:
    from django.conf import settings

    from bench.index_bench import exact_topk, recall
    from bench.vectors import real_vectors
    from search.index import VectorStore, build_index

    base, _, _ = real_vectors()
    rng = np.random.default_rng(5)
    queries = base[rng.choice(len(base), 30 if run.tiny else 300, replace=False)]
    queries = queries + rng.normal(0, 0.05, queries.shape).astype(np.float32)  # near, not equal, to members
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = exact_topk(base, queries)
    out: dict = {}
    total_k = settings.INDEX_SEARCH_K
    work = Path(tempfile.mkdtemp(prefix="bench-shards-", dir=settings.ARTIFACTS_DIR))
    try:
        for shards in ((1, 2) if run.tiny else (1, 2, 4, 8)):
            build_index(work / f"s{shards}", {"image": base}, version="bench", n_trees=16, shards=shards,
                        search_k=max(total_k // shards, 100))
            store = VectorStore(work / f"s{shards}")
            store.query(queries[0], 10)
            ms, found = [], []
            for q in queries:
                t = time.perf_counter()
                found.append([i for i, _ in store.query(q, 10)])
                ms.append((time.perf_counter() - t) * 1000.0)
            p = f"scale.fanout.s{shards}"
            out[f"{p}.p50_ms"], out[f"{p}.recall_at_10"] = float(np.median(ms)), recall(found, truth)
            say(f"{p} p50 ms / recall", f"{out[f'{p}.p50_ms']:.2f} / {out[f'{p}.recall_at_10']:.3f}")
            del store
    finally:
        shutil.rmtree(work, ignore_errors=True)
    counts = sorted(int(k.split(".s")[1].split(".")[0]) for k in out if k.endswith(".p50_ms"))
    slope = np.polyfit(counts, [out[f"scale.fanout.s{s}.p50_ms"] for s in counts], 1)[0] if len(counts) > 1 else 0.0
    out["scale.fanout.ms_per_extra_shard"] = float(max(slope, 0.0))
    return out


def big_index(results: dict) -> str | None:
    """The synthetic (big) index dataset the ``index`` section measured (e.g. ``index.1m``)."""
    if results.get("index.synthetic_dataset"):
        return results["index.synthetic_dataset"]
    sizes = {k[: -len(".n")]: v for k, v in results.items() if k.startswith("index.") and k.endswith(".n")
             and k.count(".") == 2 and isinstance(v, (int, float))}
    return max(sizes, key=sizes.get) if sizes else None


def estimate(run: Run, log_dir: Path) -> dict:
    out = fanout(run)
    results = {**load_results(run.results_path), **out}
    big = big_index(results)
    if big is None or results.get(f"{big}.p50_ms") is None:
        out["scale.markdown"] = "### Beyond one machine\n\nNo estimate: run the `index` section first."
        return out
    shard_n = int(results[f"{big}.n"])
    shard_p50, shard_p99 = results[f"{big}.p50_ms"], results[f"{big}.p99_ms"]
    shard_gib = (results.get(f"{big}.size_mb") or 0.0) / 1024.0
    shard_recall = results.get(f"{big}.recall_at_10")
    per_extra = out["scale.fanout.ms_per_extra_shard"]
    stage = lambda s: results.get(f"query.sketch.stage.{s}.p50_ms", 0.0)  # noqa: E731
    model_ms = sum(stage(s) for s in ("decode", "normalise", "gan", "encoder"))
    db_ms = stage("database") + stage("serialise")
    measured_models = "query.sketch.stage.encoder.p50_ms" in results
    rows = []
    for n in SIZES:
        shards = math.ceil(n / shard_n)
        per_machine_mem = max(1, int(MACHINE_GIB * USABLE // max(shard_gib, 1e-6)))
        machines_mem = math.ceil(shards / per_machine_mem)
        core_ms = shards * shard_p50  # every query visits every shard once
        machines_cpu = math.ceil(TARGET_QPS * core_ms / (MACHINE_CORES * 1000.0 * 0.7))  # 70 % busy at peak
        machines = max(machines_mem, machines_cpu)
        slowest = shard_p99 if shards >= 10 else shard_p50
        latency_p50 = model_ms + NETWORK_MS * 2 + slowest + per_extra * shards + db_ms
        encoder_machines = math.ceil(TARGET_QPS * model_ms / (MACHINE_CORES * 1000.0 * 0.7)) if model_ms else None
        key = f"scale.{n // 1_000_000}m"
        out.update({f"{key}.shards": shards, f"{key}.index_gib": shards * shard_gib, f"{key}.machines": machines,
                    f"{key}.latency_ms": latency_p50, f"{key}.encoder_machines": encoder_machines})
        rows.append(f"| {n // 1_000_000}M | {shards} × {shard_n:,} | {shards * shard_gib:,.0f} GiB | {machines_mem} "
                    f"| {machines_cpu} | {machines} (+{encoder_machines or '?'} for the models) "
                    f"| ≈ {latency_p50:.0f} ms |")
        say(f"{key}", f"{shards} shards, {machines} index machines, ≈ {latency_p50:.0f} ms")
    fan = ", ".join(f"{s} → {out[f'scale.fanout.s{s}.p50_ms']:.2f} ms"
                    for s in (1, 2, 4, 8) if f"scale.fanout.s{s}.p50_ms" in out)
    out["scale.markdown"] = "\n".join([
        "### Beyond one machine (estimate)", "",
        f"Measured: one index shard of {shard_n:,} vectors ({results.get(f'{big}.chosen', '?')}) answers in "
        f"{shard_p50:.1f} ms p50 / {shard_p99:.1f} ms p99 with recall@10 {shard_recall:.3f} and takes "
        f"{shard_gib:.2f} GiB; fanning the catalog's own index out over shards in one process (same total "
        f"search_k): {fan}, i.e. ≈ {per_extra:.2f} ms per extra shard. The models (decode, normalise, GAN, encoder "
        f"of a sketch) take {model_ms:.0f} ms p50 and the database and JSON {db_ms:.1f} ms"
        + ("." if measured_models else " (not measured: run the `query` section before `scale`)."), "",
        "| items | shards | index size | machines for memory | machines for CPU | machines | query latency p50 |",
        "|---|---|---|---|---|---|---|", *rows, "",
        "Assumptions: shards of the measured size, each kept whole in page cache (mmap) on a "
        f"{MACHINE_CORES}-core, {MACHINE_GIB} GiB machine ({USABLE:.0%} of RAM for index pages); every query visits "
        f"every shard, in parallel across machines (so the slowest shard decides: its p99 once there are 10 or more), "
        f"plus {NETWORK_MS} ms per network round trip (two hops: front → shard servers → front) and the measured "
        f"per-shard merge cost; {TARGET_QPS:.0f} queries/s at peak with cores 70 % busy; recall per shard as "
        "measured (the merged top 10 is at least as good as each shard's). The models run on their own tier, "
        "sized by the same rule. Not included: replicas for availability (×2 or more), and the vectors file "
        "(128 floats a vector) that exact re-ranking or rebuilds need.",
    ])
    return out
