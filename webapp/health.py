"""``/healthz``: database, broker, workers seen, the active index. 200 when search can answer, else 503.

Each check has a short timeout (``HEALTH_TIMEOUT``) so a load balancer probe never hangs on a dead Redis.
"""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


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
    from workers.celery_app import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=settings.HEALTH_TIMEOUT)
        transport = conn.transport_cls if isinstance(conn.transport_cls, str) else conn.transport.driver_name
    return {"transport": transport}


def check_workers() -> dict:
    """Workers that answer a broadcast, by queue; only our queues count."""
    from workers.celery_app import app

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


def health_report() -> tuple[dict, bool]:
    checks = {"database": _timed(check_database), "broker": _timed(check_broker)}
    checks["workers"] = _timed(check_workers) if checks["broker"]["ok"] else {"ok": False, "error": "broker down"}
    checks["index"] = _timed(check_index) if checks["database"]["ok"] else {"ok": False, "error": "database down"}
    # Search needs the database and an index; through workers it also needs the broker and an inference worker.
    needed = ["database", "index"]
    if settings.SEARCH_IN_WORKERS:
        needed.append("broker")
        if checks["workers"]["ok"] and not checks["workers"]["queues"].get(settings.CELERY_INFERENCE_QUEUE):
            checks["workers"]["ok"] = False
            checks["workers"]["error"] = f"no worker consumes the '{settings.CELERY_INFERENCE_QUEUE}' queue"
        needed.append("workers")
    healthy = all(checks[name]["ok"] for name in needed)
    return {"status": "ok" if healthy else "unavailable", "search_in_workers": settings.SEARCH_IN_WORKERS,
            "checks": checks}, healthy


@never_cache
@require_GET
def healthz(request):
    report, healthy = health_report()
    return JsonResponse(report, status=200 if healthy else 503)
