"""/healthz (liveness: the process alone, no database, no broker) and /readyz (readiness: can a search be answered
now). Readiness through workers, with a real worker on Redis: tests/workers/test_health_workers.py."""

import pytest

pytestmark = pytest.mark.django_db


def test_liveness_asks_nothing_outside_the_process(client, db, artifacts, settings, django_assert_num_queries):
    settings.SEARCH_IN_WORKERS = True  # through workers, on a broker nobody runs: liveness does not care
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:9/0"
    with django_assert_num_queries(0):
        res = client.get("/healthz")
    assert res.status_code == 200 and res.json() == {"status": "ok"}
    assert "no-cache" in res["Cache-Control"]


def test_probes_answer_any_host_over_plain_http_in_production(client, db, settings):
    """A container healthcheck asks http://127.0.0.1:8000/...: no HTTPS redirect, no ALLOWED_HOSTS refusal."""
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["shop.example.com"]
    assert client.get("/", HTTP_HOST="127.0.0.1:8000").status_code == 400  # what any other page gets
    assert client.get("/", HTTP_HOST="shop.example.com").status_code == 301  # to https://
    assert client.get("/healthz", HTTP_HOST="127.0.0.1:8000").status_code == 200
    assert client.get("/readyz", HTTP_HOST="127.0.0.1:8000").status_code in (200, 503)


def test_ready_with_an_index(client, searchable, settings):
    settings.SEARCH_IN_WORKERS = False
    res = client.get("/readyz")
    body = res.json()
    assert res.status_code == 200, body
    assert body["status"] == "ok" and not body["search_in_workers"]
    checks = body["checks"]
    assert checks["database"]["ok"] and checks["database"]["vendor"]
    assert checks["index"]["items"] == 160 and checks["index"]["bytes"] > 0 and checks["index"]["version"]
    assert checks["index"]["backend"] == "annoy"
    assert "broker" not in checks  # in-process search needs no broker


def test_not_ready_without_an_index(client, db, artifacts, settings):
    settings.SEARCH_IN_WORKERS = False
    res = client.get("/readyz")
    assert res.status_code == 503
    body = res.json()
    assert body["status"] == "unavailable" and "reindex" in body["checks"]["index"]["error"]
    assert client.get("/healthz").status_code == 200  # alive all the same


def test_not_ready_through_workers_when_the_broker_is_down(client, searchable, settings):
    from tests.workers.conftest import free_port, reset_connections
    from workers.celery_app import app

    settings.SEARCH_IN_WORKERS = True
    settings.HEALTH_TIMEOUT = 0.5
    before = app.conf.broker_url
    app.conf.broker_url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    reset_connections(app)
    try:
        res = client.get("/readyz")
    finally:
        app.conf.broker_url = before
        reset_connections(app)
    body = res.json()
    assert res.status_code == 503, body
    assert not body["checks"]["broker"]["ok"] and body["checks"]["inference_worker"]["error"] == "broker down"
    assert body["checks"]["index"]["ok"]


def test_probes_answer_head_as_load_balancers_send_it(client, db):
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405
