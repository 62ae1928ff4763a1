"""Thin Celery tasks: they take primary keys (or a decoded query), call ``search`` and ``webapp``, return.

The web app sends them by name (``webapp.celery_app.send``) and never imports this module. Models load
lazily inside the worker child (``webapp.services.get_models``), never at import time or in the worker's
parent process; ``webapp`` is imported inside the tasks, once Django is set up. Queue names are settings: ``CELERY_INFERENCE_QUEUE`` for query encoding,
``CELERY_INDEX_QUEUE`` for reindex work.
"""

from __future__ import annotations

import logging

from celery import Task, group, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

log = logging.getLogger(__name__)


# ---- interactive queries -------------------------------------------------------------------------------------------

@shared_task(name="workers.encode_query", acks_late=False)
def encode_query_task(packed: dict, kind: str, road: str) -> dict:
    """A decoded query array in, its vector (and GAN image) out: ``webapp.encoding.encode_with_version``'s
    worker side. Not acks_late: a query nobody waits for any more must not be run again after a crash."""
    from webapp.encoding import encode_here, encoded_out, unpack  # here: the ORM is ready once the worker runs

    encoded, model_version = encode_here(unpack(packed), kind, road)
    return encoded_out(encoded, model_version)


@shared_task(name="workers.echo", acks_late=False)
def echo(value):
    """A round trip through broker, worker and result backend (tests, latency figures)."""
    return value


# ---- reindex -------------------------------------------------------------------------------------------------------

TRANSIENT = (OperationalError, InterfaceError, ConnectionError)


@shared_task(name="workers.reindex", acks_late=True)
def reindex_task(job_id: int, reuse: bool = True, shards: int | None = None) -> dict:
    """Claim the job, plan it, and fan the chunks out as a group; the last chunk to finish starts the build."""
    from webapp.indexing import claim, fail_job, plan_reindex

    if not claim(job_id):
        log.info("reindex job %s already claimed or gone", job_id)
        return {"skipped": True}
    try:
        chunks = plan_reindex(job_id, reuse=reuse)
    except Exception as exc:
        log.exception("reindex %s failed while planning", job_id)
        fail_job(job_id, str(exc))
        return {"failed": str(exc)}
    queue = settings.CELERY_INDEX_QUEUE
    if chunks:
        group(embed_chunk_task.si(job_id, i, chunk, shards).set(queue=queue)
              for i, chunk in enumerate(chunks)).apply_async()
    else:
        finish_reindex_task.apply_async((job_id, shards), queue=queue)
    return {"chunks": len(chunks)}


class ReindexStep(Task):
    """A step of a reindex (a chunk, the build). A transient database or broker error is retried with backoff
    (2, 4, 8 s; a retry keeps the task id, so a build claim stays its own); any other error, or the last
    retry's, fails the job at once with the reason, and the active index keeps serving."""

    autoretry_for = TRANSIENT
    retry_backoff = 2
    retry_jitter = False
    max_retries = 3
    acks_late = True

    def what(self, args: tuple) -> str:
        return f"chunk {args[1]}" if self.name == "workers.embed_chunk" else "the build"

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        from webapp.indexing import fail_job

        tries = f" {self.request.retries + 1} times" if isinstance(exc, TRANSIENT) else ""
        log.error("reindex %s: %s failed%s: %s: %s", args[0], self.what(args), tries, type(exc).__name__, exc)
        fail_job(args[0], f"{self.what(args)} failed{tries}: {type(exc).__name__}: {exc}")


def _job_running(job_id: int) -> bool:
    from webapp.models import Job

    return Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).exists()


@shared_task(name="workers.embed_chunk", bind=True, base=ReindexStep)
def embed_chunk_task(self, job_id: int, index: int, item_ids: list[int], shards: int | None = None) -> int:
    """Embed one chunk; the chunk that completes the plan (or its redelivery) asks for the build.
    A chunk that fails for good fails the job (the active index keeps serving)."""
    from webapp.indexing import chunks_complete, embed_chunk

    if not _job_running(job_id):
        return 0  # failed meanwhile (another chunk, or stale): nothing to add to
    embedded = embed_chunk(job_id, index, item_ids)
    if chunks_complete(job_id):
        finish_reindex_task.apply_async((job_id, shards), queue=settings.CELERY_INDEX_QUEUE)
    return embedded


@shared_task(name="workers.finish_reindex", bind=True, base=ReindexStep)
def finish_reindex_task(self, job_id: int, shards: int | None = None) -> dict:
    """Build and switch. Asked for by every chunk that saw the plan complete; one of them builds."""
    from webapp.indexing import claim_build, finish_reindex
    from webapp.models import Job

    if not _job_running(job_id) or not claim_build(job_id, self.request.id or "local"):
        return {"skipped": True}  # failed meanwhile, already built, or another task builds it
    finish_reindex(job_id, shards=shards)
    return Job.objects.get(pk=job_id).result

