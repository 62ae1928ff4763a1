"""The worker's entry point: ``celery -A workers.celery_app worker``. The app itself is ``webapp.celery_app``
(Django settings configure it); its workers register the tasks of ``workers.tasks``."""

from webapp.celery_app import app

__all__ = ["app"]
