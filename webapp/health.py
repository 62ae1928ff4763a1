"""Health probes: ``/healthz`` (liveness) and ``/readyz`` (readiness).

``/healthz`` answers from the web process alone: no database, no broker. It says the process is up and
serving requests, in well under a millisecond, so a container healthcheck or a load balancer can poll it
often, and an outage of PostgreSQL or Redis never gets a healthy web process restarted.

``/readyz`` says whether a search can be answered now: the database, an active index with its files, and
with ``SEARCH_IN_WORKERS`` the broker and an inference worker, checked by a round trip of a tiny task
through the inference queue and the result store (it returns as soon as a worker answers). 200 when ready,
503 with the failing checks otherwise. ``/readyz?details=1`` also lists every worker by queue (a broadcast
that waits the whole ``HEALTH_TIMEOUT`` for replies): for people, not for probes.

Each check waits at most ``HEALTH_TIMEOUT`` seconds, so a probe never hangs on a dead Redis.
"""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        out = {"ok": True, **(check() or {})}
    except Exception as exc:  # every failure is reported, none raised
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    out["ms"] = round((time.perf_counter() - started) * 1000.0, 1)
    return out


def check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"vendor": connection.vendor}


def check_broker() -> dict:
    from webapp.celery_app import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=settings.HEALTH_TIMEOUT)
        transport = conn.transport_cls if isinstance(conn.transport_cls, str) else conn.transport.driver_name
    return {"transport": transport}


def check_inference_worker() -> dict:
    """A round trip through the inference queue, a worker and the result store: what a search needs."""
    from webapp.celery_app import send
    from webapp.encoding import is_connection_error

    queue = settings.CELERY_INFERENCE_QUEUE
    timeout = settings.HEALTH_TIMEOUT
    try:
        send("workers.echo", ("ready",), queue=queue, expires=timeout).get(timeout=timeout, interval=0.01)
    except Exception as exc:
        if is_connection_error(exc):
            raise
        raise RuntimeError(f"no worker on the '{queue}' queue answered within {timeout:g} s") from None
    return {"queue": queue}


def check_workers() -> dict:
    """Workers that answer a broadcast, by queue; only our queues count. Waits the whole HEALTH_TIMEOUT."""
    from webapp.celery_app import app

    wanted = {settings.CELERY_INFERENCE_QUEUE, settings.CELERY_INDEX_QUEUE}
    replies = app.control.inspect(timeout=settings.HEALTH_TIMEOUT).active_queues() or {}
    by_queue: dict[str, list[str]] = {q: [] for q in sorted(wanted)}
    for worker, queues in replies.items():
        for queue in queues or []:
            if queue.get("name") in wanted:
                by_queue[queue["name"]].append(worker)
    return {"count": len({w for ws in by_queue.values() for w in ws}), "queues": by_queue}


def check_index() -> dict:
    from webapp.models import IndexVersion, LiveVector

    version = IndexVersion.objects.filter(is_active=True).first()
    if version is None:
        raise RuntimeError("no active index: run `python manage.py reindex`")
    path = Path(version.path)
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file()) if path.is_dir() else 0
    if not size:
        raise RuntimeError(f"the files of index {version.name} are missing at {path}")
    return {"version": version.name, "items": version.count, "bytes": size,
            "backend": version.manifest.get("backend", "annoy"), "shards": version.manifest.get("shards", 1),
            "live_items": LiveVector.objects.count()}


def readiness_report(details: bool = False) -> tuple[dict, bool]:
    checks = {"database": _timed(check_database)}
    checks["index"] = _timed(check_index) if checks["database"]["ok"] else {"ok": False, "error": "database down"}
    needed = ["database", "index"]
    # Search needs the database and an index; through workers it also needs the broker and an inference worker.
    if settings.SEARCH_IN_WORKERS:
        checks["broker"] = _timed(check_broker)
        checks["inference_worker"] = (_timed(check_inference_worker) if checks["broker"]["ok"]
                                      else {"ok": False, "error": "broker down"})
        needed += ["broker", "inference_worker"]
    if details:
        checks.setdefault("broker", _timed(check_broker))
        checks["workers"] = _timed(check_workers) if checks["broker"]["ok"] else {"ok": False, "error": "broker down"}
    ready = all(checks[name]["ok"] for name in needed)
    return {"status": "ok" if ready else "unavailable", "search_in_workers": settings.SEARCH_IN_WORKERS,
            "checks": checks}, ready


@never_cache
@require_safe
def healthz(request):
    """Liveness: this process serves requests. Nothing outside it is asked."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request):
    """Readiness: a search can be answered now (200), or which check fails (503)."""
    details = request.GET.get("details", "") not in ("", "0", "false", "no")
    report, ready = readiness_report(details)
    return JsonResponse(report, status=200 if ready else 503)


class HealthProbeMiddleware:
    """Answers ``/healthz`` and ``/readyz`` before any other middleware, so a probe is answered whatever its
    Host header (a container healthcheck asks for 127.0.0.1, which ALLOWED_HOSTS need not list) and over plain
    HTTP inside the network (no redirect to HTTPS, which only the proxy in front speaks)."""

    PROBES = {"/healthz": healthz, "/readyz": readyz}

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        probe = self.PROBES.get(request.path_info)
        return probe(request) if probe is not None else self.get_response(request)
