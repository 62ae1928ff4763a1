"""Section ``health``: latency of the probes over HTTP, against gunicorn on loopback.

``/healthz`` is liveness (the web process alone: a load balancer may poll it often); ``/readyz`` is readiness
(database, active index, and through Redis the broker and an inference worker's round trip). Each is asked
``run.health_requests`` times on one keep-alive connection after a short warm-up; embedded defaults always, and
Redis with an inference worker when ``REDIS_URL`` is set (as the ``query`` section does).
"""

from __future__ import annotations

import http.client
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from bench.common import Run, percentiles, say
from bench.http_queries import modes, serving
from bench.server import HOST, request

PROBES = {"healthz": "/healthz", "readyz": "/readyz"}


def health(run: Run, log_dir: Path) -> dict:
    out: dict = {}
    for mode, extra in modes(run):
        base = "health" + (f".{mode}" if mode else "")
        with ExitStack() as stack:
            server = serving(stack, run, mode, extra, log_dir)
            conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
            stack.callback(conn.close)
            for name, path in PROBES.items():
                out.update(probe_latency(conn, path, run, f"{base}.{name}"))
    return out


def probe_latency(conn: http.client.HTTPConnection, path: str, run: Run, prefix: str) -> dict:
    for _ in range(max(run.warmup // 4, 2)):
        request(0, "GET", path, conn=conn)
    times, codes = [], Counter()
    for _ in range(run.health_requests):
        started = time.perf_counter()
        status, _ = request(0, "GET", path, conn=conn)
        times.append((time.perf_counter() - started) * 1000.0)
        codes[status] += 1
    out: dict = {f"{prefix}.n": len(times),
                 f"{prefix}.status": "ok" if set(codes) == {200} else f"HTTP {dict(codes)}"}
    percentiles(times, prefix, out)
    for key in (f"{prefix}.status", f"{prefix}.p50_ms", f"{prefix}.p99_ms"):
        say(key, out[key])
    return out
