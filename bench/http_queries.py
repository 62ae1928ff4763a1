"""Sections ``query`` (latency per kind and stage) and ``throughput`` (QPS at 1-16 clients), over HTTP.

Both start gunicorn on loopback against the configured database and active
index. Kinds: ``photo`` (a test-split catalog photo), ``sketch`` (its line
drawing, default road), ``sketch_gan`` (road=gan), ``text`` (its title) and
``combined`` (photo + title). A kind the API refuses (400/503, or a ``text``
field it ignores) is recorded as unavailable with the reason.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from bench import querysets
from bench.common import UNAVAILABLE, Run, percentiles, say
from bench.server import multipart, request, running_server
from bench.workers import running_worker

KINDS = ("photo", "sketch", "sketch_gan", "text", "combined")
THROUGHPUT_CLIENTS = (1, 2, 4, 8, 16)


def body_for(kind: str, qs: querysets.QuerySet, i: int) -> tuple[bytes, str]:
    i %= len(qs.photos)
    fields, files = {"k": "12"}, {}
    if kind in ("photo", "combined"):
        files["photo"] = ("q.jpg", qs.photos[i], "image/jpeg")
    if kind in ("sketch", "sketch_gan"):
        files["sketch"] = ("q.png", qs.sketches[i], "image/png")
    if kind == "sketch_gan":
        fields["road"] = "gan"
    if kind in ("text", "combined"):
        fields["text"] = qs.titles[i]
    return multipart(fields, files)


def check(kind: str, status: int, data: dict | None) -> str | None:
    """None when the answer is a real answer to this kind of query, else why not."""
    if status != 200:
        return f"HTTP {status}: {(data or {}).get('error', '')}"[:200]
    if kind in ("text", "combined") and "text" not in str((data or {}).get("query", {}).get("kind", "")):
        return "the API ignored the text field (no text search yet)"
    return None


def web_workers(run: Run) -> tuple[int, int]:
    """(gunicorn workers, torch threads each): the cores shared out."""
    cores = len(os.sched_getaffinity(0))
    workers = run.web_workers or min(2, cores)
    return workers, max(1, cores // workers)


def modes(run: Run) -> list[tuple[str, dict[str, str]]]:
    """(key prefix, extra env) of each deployment shape to measure: embedded always, Redis + workers if set."""
    out = [("", {"SEARCH_IN_WORKERS": "0", "REDIS_URL": ""})]
    if os.environ.get("REDIS_URL"):
        out.append(("redis", {"SEARCH_IN_WORKERS": "1", "REDIS_URL": os.environ["REDIS_URL"]}))
    return out


def serving(stack: ExitStack, run: Run, mode: str, extra: dict[str, str], log_dir: Path):
    """Start the server (and, for the Redis mode, an inference worker); returns the server."""
    workers, threads = web_workers(run)
    env = {**run.env, **extra}
    if mode == "redis":
        from bench.server import server_env

        queue = "bench-inference-" + str(os.getpid())
        env["CELERY_INFERENCE_QUEUE"] = queue
        stack.enter_context(running_worker(queue, workers, server_env(env, threads), log_dir / "worker-inference.log"))
    return stack.enter_context(running_server(workers, threads, env, log_dir))


def one(port: int, kind: str, qs, i: int) -> tuple[float, int, dict | None]:
    body, ctype = body_for(kind, qs, i)
    start = time.perf_counter()
    status, data = request(port, "POST", "/api/search", body, ctype)
    return (time.perf_counter() - start) * 1000.0, status, data


def latency(run: Run, log_dir: Path) -> dict:
    qs = querysets.build(max(run.queries, 1))
    out: dict = {}
    for mode, extra in modes(run):
        base = "query" + (f".{mode}" if mode else "")
        with ExitStack() as stack:
            server = serving(stack, run, mode, extra, log_dir)
            out[f"{base}.server"] = f"gunicorn, {server.workers} workers x {server.torch_threads} torch threads"
            say(f"{base}.server", out[f"{base}.server"])
            for kind in KINDS:
                out.update(latency_of(server.port, kind, qs, run, f"{base}.{kind}"))
    return out


def latency_of(port: int, kind: str, qs, run: Run, prefix: str) -> dict:
    out: dict = {}
    data = None
    for i in range(max(run.warmup, 1)):
        _, status, data = one(port, kind, qs, i)
        reason = check(kind, status, data)
        if reason:
            say(f"{prefix}", f"{UNAVAILABLE}: {reason}")
            return {f"{prefix}.status": f"{UNAVAILABLE}: {reason}"}
    totals, stages, errors = [], defaultdict(list), 0
    if ".redis." in prefix and "queue" not in (data or {}).get("timings_ms", {}):
        out[f"{prefix}.note"] = "no 'queue' stage in timings_ms: the models ran in the web process, not a worker"
    for i in range(run.queries):
        ms, status, data = one(port, kind, qs, i)
        if check(kind, status, data):
            errors += 1
            continue
        totals.append(ms)
        for stage, value in data["timings_ms"].items():
            stages[stage].append(value)
    out[f"{prefix}.status"] = "ok"
    out[f"{prefix}.n"] = len(totals)
    out[f"{prefix}.errors"] = errors
    percentiles(totals, prefix, out)
    for stage, values in stages.items():
        percentiles(values, f"{prefix}.stage.{stage}", out)
    for key in (f"{prefix}.p50_ms", f"{prefix}.p99_ms"):
        if key in out:
            say(key, out[key])
    return out


def throughput(run: Run, log_dir: Path, kind: str = "sketch") -> dict:
    qs = querysets.build(max(min(run.queries, 200), 1), seed=1)
    out: dict = {}
    for mode, extra in modes(run):
        base = "throughput" + (f".{mode}" if mode else "")
        with ExitStack() as stack:
            server = serving(stack, run, mode, extra, log_dir)
            out[f"{base}.server"] = f"gunicorn, {server.workers} workers x {server.torch_threads} torch threads"
            out[f"{base}.kind"] = kind
            for i in range(run.warmup):
                one(server.port, kind, qs, i)
            for clients in THROUGHPUT_CLIENTS:
                out.update(load(server.port, kind, qs, clients, run, f"{base}.c{clients}"))
    return out


def load(port: int, kind: str, qs, clients: int, run: Run, prefix: str) -> dict:
    """``clients`` threads send queries back to back until the count or the time is used up."""
    lock = threading.Lock()
    issued = [0]
    latencies: list[float] = []
    errors = [0]
    deadline = time.monotonic() + run.throughput_seconds

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                if issued[0] >= run.throughput_requests:
                    return
                i = issued[0]
                issued[0] += 1
            try:
                ms, status, data = one(port, kind, qs, i)
            except OSError:
                status = 0
            with lock:
                if status == 200:
                    latencies.append(ms)
                else:
                    errors[0] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(run.throughput_seconds + 120)
    elapsed = time.perf_counter() - started
    out = {f"{prefix}.qps": len(latencies) / elapsed if elapsed else 0.0, f"{prefix}.n": len(latencies),
           f"{prefix}.errors": errors[0]}
    if latencies:
        out[f"{prefix}.p50_ms"] = float(np.percentile(latencies, 50))
        out[f"{prefix}.p99_ms"] = float(np.percentile(latencies, 99))
    say(f"{prefix}.qps / p99_ms", f"{out[f'{prefix}.qps']:.1f} / {out.get(f'{prefix}.p99_ms', float('nan')):.1f}")
    return out
