"""Celery's task routes name only tasks that exist (a route to a task nobody defines is a silent no-op)."""

from django.conf import settings


def test_every_routed_task_is_registered():
    from workers.celery_app import app

    app.loader.import_default_modules()  # what a worker does at start: the autodiscovered task modules
    registered = {name for name in app.tasks if name.startswith("workers.")}
    assert settings.CELERY_TASK_ROUTES, "encode_query must be routed to the inference queue"
    missing = set(settings.CELERY_TASK_ROUTES) - registered
    assert not missing, f"routes for tasks that do not exist: {missing}"
    assert settings.CELERY_TASK_ROUTES["workers.encode_query"] == {"queue": settings.CELERY_INFERENCE_QUEUE}
