"""/healthz: database, broker, workers, active index; 200 when search can answer, else 503."""

import pytest

pytestmark = pytest.mark.django_db


def test_healthy_with_an_index(client, searchable, settings):
    settings.HEALTH_TIMEOUT = 0.3
    res = client.get("/healthz")
    body = res.json()
    assert res.status_code == 200, body
    assert body["status"] == "ok"
    checks = body["checks"]
    assert checks["database"]["ok"] and checks["broker"]["ok"]
    assert checks["index"]["items"] == 160 and checks["index"]["bytes"] > 0 and checks["index"]["version"]
    assert checks["index"]["backend"] == "annoy"
    assert "count" in checks["workers"] or "error" in checks["workers"]


def test_unavailable_without_an_index(client, db, artifacts, settings):
    settings.HEALTH_TIMEOUT = 0.3
    res = client.get("/healthz")
    assert res.status_code == 503
    body = res.json()
    assert body["status"] == "unavailable" and "reindex" in body["checks"]["index"]["error"]


def test_through_workers_needs_an_inference_worker(client, searchable, settings):
    settings.HEALTH_TIMEOUT = 0.3
    settings.SEARCH_IN_WORKERS = True
    settings.CELERY_INFERENCE_QUEUE = "no-such-queue-for-health-test"
    res = client.get("/healthz")
    assert res.status_code == 503
    assert "no-such-queue-for-health-test" in res.json()["checks"]["workers"]["error"]
