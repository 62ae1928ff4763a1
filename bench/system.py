"""Section ``memory``: resident memory of web and worker processes, and how much of the index they share.

Two deployments are started on loopback and warmed with queries: the embedded
default (2 gunicorn workers, models and index in each) and search in workers
(2 gunicorn workers holding the index, one Celery inference worker holding the
models; filesystem broker in a temporary directory, or Redis when REDIS_URL is
set). Figures come from /proc/<pid>/smaps_rollup (whole process) and
/proc/<pid>/smaps (the mappings of the active index's files: the Annoy file and
vectors are memory-mapped, so several processes share those pages; PSS splits
each shared page among the processes mapping it).
"""

from __future__ import annotations

import os
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path

from bench import querysets
from bench.common import Run, active_index_dir, say
from bench.http_queries import one, web_workers
from bench.server import running_server, server_env
from bench.workers import running_worker, worker_children

FIELDS = ("Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty")


def rollup(pid: int) -> dict[str, float]:
    """MiB per field of /proc/<pid>/smaps_rollup."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        if name in FIELDS:
            out[name] = int(rest.split()[0]) / 1024.0
    return out


def mapped(pid: int, directory: Path) -> dict[str, float]:
    """MiB per field summed over the mappings of files under ``directory``."""
    out = dict.fromkeys(FIELDS, 0.0)
    inside = False
    prefix = str(directory.resolve()) + os.sep
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and ":" not in head[0]:  # a mapping's header line
            inside = len(head) >= 6 and head[5].startswith(prefix)
        elif inside and head and head[0].rstrip(":") in FIELDS:
            out[head[0].rstrip(":")] += int(head[1]) / 1024.0
    return out


def warm(port: int, qs, n: int) -> set[str]:
    """Queries from two clients at once, so that every web worker loads the models and the index.

    Returns the stages the answers' ``timings_ms`` named (``queue``: the models ran in a worker)."""
    stages: set[str] = set()

    def client(offset: int) -> None:
        for i in range(n):
            _, status, data = one(port, "photo" if i % 2 else "sketch", qs, offset + i)
            if status == 200:
                stages.update(data["timings_ms"])

    threads = [threading.Thread(target=client, args=(k * n,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return stages


def describe(out: dict, prefix: str, pids: list[int], index_dir: Path | None) -> None:
    for n, pid in enumerate(pids):
        p = f"{prefix}.{n}"
        whole = rollup(pid)
        out[f"{p}.rss_mb"], out[f"{p}.pss_mb"] = whole["Rss"], whole["Pss"]
        out[f"{p}.private_mb"] = whole["Private_Clean"] + whole["Private_Dirty"]
        if index_dir is not None:
            idx = mapped(pid, index_dir)
            out[f"{p}.index_rss_mb"], out[f"{p}.index_pss_mb"] = idx["Rss"], idx["Pss"]
            out[f"{p}.index_shared_mb"] = idx["Shared_Clean"] + idx["Shared_Dirty"]
        say(f"{p} rss / pss / private MiB", f"{whole['Rss']:.0f} / {whole['Pss']:.0f} / {out[f'{p}.private_mb']:.0f}")


def memory(run: Run, log_dir: Path) -> dict:
    out: dict = {}
    index_dir = active_index_dir()
    if index_dir is not None:
        out["memory.index_files_mb"] = sum(f.stat().st_size for f in index_dir.iterdir()) / 2**20
    qs = querysets.build(20, seed=3)
    workers, threads = web_workers(run)
    n = 4 if run.tiny else 20
    with running_server(workers, threads, {**run.env, "SEARCH_IN_WORKERS": "0", "REDIS_URL": ""}, log_dir) as server:
        warm(server.port, qs, n)
        describe(out, "memory.web_embedded", server.worker_pids(), index_dir)
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-broker-") as broker:
        env = {**run.env, "SEARCH_IN_WORKERS": "1", "CELERY_INFERENCE_QUEUE": f"bench-inference-{os.getpid()}",
               "REDIS_URL": os.environ.get("REDIS_URL", ""), "CELERY_BROKER_DIR": broker}
        worker_env = server_env(env, threads * workers)
        worker = stack.enter_context(running_worker(env["CELERY_INFERENCE_QUEUE"], 1, worker_env,
                                                    log_dir / "worker-inference.log"))
        server = stack.enter_context(running_server(workers, threads, env, log_dir))
        if "queue" not in warm(server.port, qs, n):
            out["memory.web_in_workers.status"] = ("the API ran the models in the web process (no 'queue' stage in "
                                                   "timings_ms): SEARCH_IN_WORKERS is not wired into /api/search")
            say("memory.web_in_workers", out["memory.web_in_workers.status"])
        describe(out, "memory.web_in_workers", server.worker_pids(), index_dir)
        describe(out, "memory.worker", worker_children(worker), None)
    out["memory.how"] = ("gunicorn workers after warm-up queries; worker = Celery inference child; index_* = the "
                         "active index's memory-mapped files only")
    return out
