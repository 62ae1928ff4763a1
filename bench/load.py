"""Section ``load`` (issue 7): a bounded load test on loopback, and memory over a long run of queries.

One gunicorn server on 127.0.0.1 (embedded search, as the other HTTP sections;
``SEARCH_RATE_LIMIT=0`` so the per-IP limiter, which would see every client as
one address, does not answer 429 to the benchmark). Then:

1. **Load**: ``LOAD_CLIENTS`` threads send a fixed mix of photo, sketch and text
   searches and ``GET /api/items/<id>/similar`` back to back for
   ``LOAD_SECONDS`` (bounded also by a request count). Recorded: requests,
   errors (any answer other than 2xx, or no answer; a 429 would be counted
   apart as rate-limited, and 503s are also counted on their own), p50/p95/p99
   latency at the client and queries/s.
2. **Memory**: ``MEMORY_CLIENTS`` threads send ``MEMORY_QUERIES`` queries of the
   same mix; the resident memory of the server (gunicorn master plus its
   workers, psutil RSS) is sampled before, at every tenth of the run (every
   1,000 queries for 10,000) and after. The growth from the second sample
   (after warm-up: the 2,000th query) to the last is the leak check: ``flat``
   when under 5 %.

A kind the API refuses on the warm-up probe (e.g. text when there is no text
model) is left out of the mix and reported as unavailable, not as errors.
Clients run on the same machine as the server and share its cores.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from bench import querysets
from bench.common import UNAVAILABLE, Run, percentiles, say, setup_django
from bench.http_queries import body_for, check, web_workers
from bench.server import request, running_server

# (clients, seconds, request cap) for the load phase; (queries, clients, time cap s) for the memory phase.
FULL = {"clients": 20, "seconds": 30.0, "cap": 20_000, "memory_queries": 10_000, "memory_clients": 8,
        "memory_seconds": 300.0}
QUICK = {**FULL, "seconds": 15.0, "memory_queries": 4_000}
TINY = {"clients": 3, "seconds": 3.0, "cap": 2_000, "memory_queries": 200, "memory_clients": 3,
        "memory_seconds": 60.0}
# The mix, cycled: 3 photo, 3 sketch, 2 text, 2 similar in every 10 queries.
MIX = ("photo", "sketch", "text", "similar", "photo", "sketch", "text", "photo", "sketch", "similar")
FLAT_PCT = 5.0
SAMPLES = 10  # memory samples during the run (every MEMORY_QUERIES / SAMPLES queries)


def sizes(run: Run) -> dict:
    size = dict(TINY if run.tiny else QUICK if run.quick else FULL)
    if getattr(run, "load_queries", None):  # --load-queries: the memory run's length
        size["memory_queries"] = run.load_queries
    return size


def item_ids(n: int, seed: int = 0) -> list[str]:
    """Up to ``n`` visible items' catalog ids (for /api/items/<id>/similar), a fixed random sample."""
    from urllib.parse import quote

    setup_django()
    from webapp.models import Item

    skus = list(Item.objects.filter(hidden=False).order_by("pk").values_list("sku", flat=True))
    if not skus:
        raise RuntimeError("no visible items in the database: import a catalog first")
    rng = np.random.default_rng(seed)
    return [quote(skus[i], safe="") for i in rng.permutation(len(skus))[:n]]


class Traffic:
    """The queries: ``send(i)`` sends the i-th of the mix and returns (ms, status, JSON or None)."""

    def __init__(self, port: int, qs: querysets.QuerySet, ids: list[str], kinds: tuple[str, ...]):
        self.port, self.qs, self.ids, self.kinds = port, qs, ids, kinds

    def kind(self, i: int) -> str:
        return self.kinds[i % len(self.kinds)]

    def send(self, i: int, kind: str | None = None) -> tuple[float, int, dict | None]:
        kind = kind or self.kind(i)
        if kind == "similar":
            method, path, body, ctype = "GET", f"/api/items/{self.ids[i % len(self.ids)]}/similar?k=12", None, None
        else:
            body, ctype = body_for(kind, self.qs, i)
            method, path = "POST", "/api/search"
        start = time.perf_counter()
        try:
            status, data = request(self.port, method, path, body, ctype, timeout=120)
        except OSError:  # refused, reset or timed out: no answer at all
            status, data = 0, None
        return (time.perf_counter() - start) * 1000.0, status, data


def probe(traffic: Traffic, out: dict, rounds: int = 3) -> tuple[str, ...]:
    """Warm the server with each kind; returns the mix without the kinds the API refuses."""
    refused = {}
    for kind in dict.fromkeys(MIX):
        for i in range(rounds):
            _, status, data = traffic.send(i, kind)
            reason = check("photo" if kind == "similar" else kind, status, data)
            if reason:
                refused[kind] = reason
                break
    for kind, reason in refused.items():
        out[f"load.{kind}.status"] = f"{UNAVAILABLE}: {reason}"
        say(f"load.{kind}", out[f"load.{kind}.status"])
    kinds = tuple(k for k in MIX if k not in refused)
    if not kinds:
        raise RuntimeError(f"the API refused every kind of query: {refused}")
    out["load.mix"] = ", ".join(f"{k} {kinds.count(k) * 100 // len(kinds)}%" for k in dict.fromkeys(kinds))
    return kinds


def rss_mb(pid: int) -> float:
    """Resident memory of the process and all its descendants, MiB."""
    import psutil

    parent = psutil.Process(pid)
    total = 0
    for proc in [parent, *parent.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def drive(traffic: Traffic, clients: int, seconds: float, cap: int, every: int = 0, on_every=None) -> dict:
    """``clients`` threads send queries back to back until ``cap`` are sent or ``seconds`` are up.

    ``on_every(n)`` is called by the client that completes the n-th query, for each multiple n of ``every``."""
    lock = threading.Lock()
    issued, done = [0], [0]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                if issued[0] >= cap:
                    return
                i = issued[0]
                issued[0] += 1
            ms, status, _ = traffic.send(i)
            with lock:
                done[0] += 1
                n = done[0]
                statuses[status] = statuses.get(status, 0) + 1
                if 200 <= status < 300:
                    latencies.append(ms)
            if every and on_every and n % every == 0:
                on_every(n)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, daemon=True, name=f"load-client-{k}") for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:  # a request times out after 120 s: every thread ends by then
        t.join(max(0.0, deadline - time.monotonic()) + 130)
    elapsed = time.perf_counter() - started
    ok = sum(v for s, v in statuses.items() if 200 <= s < 300)
    limited = statuses.get(429, 0)
    return {"requests": done[0], "ok": ok, "errors": done[0] - ok - limited, "rate_limited_429": limited,
            "errors_503": statuses.get(503, 0), "errors_no_answer": statuses.get(0, 0),
            "statuses": ", ".join(f"{s or 'none'}: {v}" for s, v in sorted(statuses.items())),
            "seconds": elapsed, "qps": ok / elapsed if elapsed else 0.0, "latencies": latencies}


def load(run: Run, log_dir: Path) -> dict:
    size = sizes(run)
    out: dict = {}
    qs = querysets.build(20 if run.tiny else 200, seed=7)
    ids = item_ids(200, seed=7)
    workers, threads = web_workers(run)
    env = {**run.env, "SEARCH_IN_WORKERS": "0", "REDIS_URL": "", "SEARCH_RATE_LIMIT": "0"}
    with running_server(workers, threads, env, log_dir) as server:
        out["load.server"] = f"gunicorn, {server.workers} workers x {server.torch_threads} torch threads, 127.0.0.1"
        say("load.server", out["load.server"])
        traffic = Traffic(server.port, qs, ids, MIX)
        traffic.kinds = probe(traffic, out)

        # 1. Bounded load: many clients, mixed queries.
        res = drive(traffic, size["clients"], size["seconds"], size["cap"])
        out["load.clients"], out["load.seconds"] = size["clients"], res["seconds"]
        for key in ("requests", "ok", "errors", "rate_limited_429", "errors_503", "errors_no_answer", "statuses",
                    "qps"):
            out[f"load.{key}"] = res[key]
        percentiles(res["latencies"], "load", out)
        for key in ("requests", "errors", "errors_503", "qps", "p50_ms", "p99_ms"):
            say(f"load.{key}", out.get(f"load.{key}"))

        # 2. Memory over a long run.
        n = size["memory_queries"]
        every = max(1, n // SAMPLES)
        pid = server.process.pid
        pids_before = sorted(server.worker_pids())
        series: list[tuple[int, float]] = [(0, rss_mb(pid))]
        series_lock = threading.Lock()

        def sample(done: int) -> None:
            value = rss_mb(pid)
            with series_lock:
                series.append((done, value))
            say(f"load.memory.rss_mb at {done}", value)

        say("load.memory.rss_mb at 0", series[0][1])
        res = drive(traffic, size["memory_clients"], size["memory_seconds"], n, every, sample)
        after = rss_mb(pid)
        series.sort()
        out["load.memory.clients"], out["load.memory.queries"] = size["memory_clients"], res["requests"]
        out["load.memory.seconds"], out["load.memory.qps"] = res["seconds"], res["qps"]
        out["load.memory.errors"], out["load.memory.errors_503"] = res["errors"], res["errors_503"]
        out["load.memory.sample_every"] = every
        out["load.memory.rss_mb_series"] = [round(v, 1) for _, v in series] + [round(after, 1)]
        out["load.memory.rss_mb_at"] = [q for q, _ in series] + ["after"]
        out["load.memory.rss_mb_before"], out["load.memory.rss_mb_after"] = series[0][1], after
        out["load.memory.worker_restarts"] = len(set(pids_before) - set(server.worker_pids()))
        baseline = next((v for q, v in series if q == 2 * every), None)
        last = series[-1]
        if baseline is None or last[0] <= 2 * every:
            out["load.memory.status"] = (f"too few queries ({res['requests']} of {n}) to compare after warm-up "
                                         f"(query {2 * every})")
            say("load.memory", out["load.memory.status"])
        else:
            growth = last[1] - baseline
            out["load.memory.growth_from"], out["load.memory.growth_to"] = 2 * every, last[0]
            out["load.memory.growth_mb"] = growth
            out["load.memory.growth_pct"] = 100.0 * growth / baseline
            out["load.memory.verdict"] = "flat" if out["load.memory.growth_pct"] < FLAT_PCT else "growing"
            if last[0] < n:
                out["load.memory.note"] = f"stopped at {last[0]} of {n} queries (the {size['memory_seconds']:g} s cap)"
            say(f"load.memory growth {2 * every}->{last[0]} MiB / %",
                f"{growth:.1f} / {out['load.memory.growth_pct']:.2f} ({out['load.memory.verdict']})")
    out["load.how"] = (f"{size['clients']} client threads for {size['seconds']:g} s (at most {size['cap']} requests), "
                       f"then {size['memory_clients']} clients for {n} queries with the server's RSS (gunicorn master "
                       f"+ workers) sampled every {every}; errors = answers other than 2xx (429 apart) or none; "
                       f"latency in ms at the client, successful requests only; SEARCH_RATE_LIMIT=0")
    return out
