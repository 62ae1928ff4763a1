"""Thin Celery tasks. Models load lazily inside the worker child (``webapp.services``), never here."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

log = logging.getLogger(__name__)


@shared_task(name="workers.reindex", queue=settings.CELERY_INDEX_QUEUE, acks_late=True)
def reindex_task(job_id: int) -> dict:
    from webapp.indexing import claim, reindex
    from webapp.models import Job

    if not claim(job_id):
        log.info("reindex job %s already claimed or gone", job_id)
        return {"skipped": True}
    reindex(job_id)
    return Job.objects.get(pk=job_id).result


def start_reindex():
    """Ask for a reindex; returns (job, created). A pending/running one is reused, never doubled."""
    from webapp.indexing import request_reindex

    job, created = request_reindex()
    if created:
        reindex_task.delay(job.pk)
    return job, created
