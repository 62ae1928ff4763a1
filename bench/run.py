"""``python -m bench.run [--sections query,index,...] [--quick] [--tiny]``: run benchmark sections.

Sections run in the order given; each merges its figures into the results file
(others' keys are kept) and rewrites the markdown beside it. A section that
fails is reported and the others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from bench.common import BENCH_DIR, Run

SECTIONS = ("training", "embed", "index", "query", "throughput", "health", "memory", "reindex", "scale", "load")


def section_function(name: str):
    from bench import health, http_queries, index_bench, load, models_bench, reindex_bench, scale, system

    return {
        "query": http_queries.latency,
        "throughput": http_queries.throughput,
        "health": health.health,
        "embed": models_bench.embedding,
        "training": models_bench.training,
        "index": index_bench.index,
        "reindex": reindex_bench.reindex,
        "memory": system.memory,
        "scale": scale.estimate,
        "load": load.load,
    }[name]


def make_run(args) -> Run:
    run = Run(results_path=Path(args.out), quick=args.quick, tiny=args.tiny)
    if args.quick:
        run.queries, run.index_n, run.throughput_seconds, run.throughput_requests = 100, 200_000, 10.0, 200
        run.health_requests = 200
    if args.tiny:
        run.queries, run.warmup, run.index_n, run.index_queries = 6, 2, 3000, 30
        run.throughput_seconds, run.throughput_requests, run.reindex_items = 3.0, 8, 0
        run.health_requests = 20
    for name in ("queries", "index_n", "index_queries", "big_trees", "reindex_items", "web_workers",
                 "load_queries"):
        value = getattr(args, name)
        if value is not None:
            setattr(run, name, value)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, from: {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller counts; the big index at 200k, not 1M")
    parser.add_argument("--tiny", action="store_true", help="a handful of everything (smoke tests)")
    parser.add_argument("--out", default=str(BENCH_DIR / "results.json"), help="results file (merged into)")
    parser.add_argument("--queries", type=int, help="timed HTTP queries per kind")
    parser.add_argument("--index-n", type=int, help="synthetic vectors in the big index")
    parser.add_argument("--index-queries", type=int, help="queries for recall and QPS")
    parser.add_argument("--big-trees", type=lambda v: [int(x) for x in v.split(",")],
                        help="Annoy n_trees to build for the big synthetic index, comma-separated (default 32)")
    parser.add_argument("--reindex-items", type=int, help="reindex only this many items (0: all)")
    parser.add_argument("--load-queries", type=int, help="queries in the load section's memory run (default 10000)")
    parser.add_argument("--web-workers", type=int, help="gunicorn workers (default min(2, cores))")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections: {', '.join(unknown)}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    run = make_run(args)
    log_dir = run.results_path.parent  # servers' and workers' logs: <name>.log beside the results
    log_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in sections:
        print(f"==> {name}", flush=True)
        started = time.perf_counter()
        try:
            figures = section_function(name)(run, log_dir)
        except Exception as exc:  # one broken section must not lose the others' figures
            traceback.print_exc()
            print(f"!! section {name} failed: {exc}", flush=True)
            failed.append(name)
            continue
        figures[f"{name}.section_seconds"] = time.perf_counter() - started
        run.merge(figures, name)
        print(f"    {name}: {len(figures)} figures in {figures[f'{name}.section_seconds']:.0f} s", flush=True)
    print(f"==> results: {run.results_path} and {run.results_path.with_suffix('.md')}")
    if failed:
        print(f"!! failed sections: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
