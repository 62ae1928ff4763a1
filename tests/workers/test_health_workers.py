"""/readyz through workers: a real inference worker on a real Redis answers the readiness round trip."""

import pytest

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_not_ready_until_an_inference_worker_answers(workers, searchable, settings, client):
    settings.SEARCH_IN_WORKERS = True
    settings.HEALTH_TIMEOUT = 0.5
    res = client.get("/readyz")
    body = res.json()
    assert res.status_code == 503, body
    assert body["checks"]["broker"]["ok"]
    assert f"no worker on the '{settings.CELERY_INFERENCE_QUEUE}' queue" in body["checks"]["inference_worker"]["error"]

    workers.start("infer", [settings.CELERY_INFERENCE_QUEUE])
    settings.HEALTH_TIMEOUT = 5.0
    res = client.get("/readyz")
    body = res.json()
    assert res.status_code == 200, body
    assert body["checks"]["inference_worker"]["ok"] and "workers" not in body["checks"]

    detailed = client.get("/readyz?details=1").json()["checks"]["workers"]
    assert detailed["ok"] and len(detailed["queues"][settings.CELERY_INFERENCE_QUEUE]) == 1
    assert detailed["queues"][settings.CELERY_INDEX_QUEUE] == []
