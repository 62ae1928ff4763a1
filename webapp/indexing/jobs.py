"""Reindex jobs on their ``Job`` row: asked for once, claimed once, progress and outcome, failure, expiry.

Every change is a conditional update on the row, so several workers can report at once and only one of
them wins a claim (``claim``: PENDING -> RUNNING; ``claim_build``: the one task that builds the index).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from webapp.celery_app import send
from webapp.models import Job, ReindexChunk

log = logging.getLogger(__name__)


def request_reindex() -> tuple[Job, bool]:
    """The pending/running reindex job, or a new one. Returns (job, created)."""
    with transaction.atomic():
        current = Job.objects.select_for_update().filter(
            kind=Job.Kind.REINDEX, status__in=[Job.Status.PENDING, Job.Status.RUNNING]).first()
        if current and expire_if_stale(current).status in (Job.Status.PENDING, Job.Status.RUNNING):
            return current, False
        return Job.objects.create(kind=Job.Kind.REINDEX, stage="waiting for a worker"), True


def expire_if_stale(job: Job) -> Job:
    """A reindex that reported nothing for ``REINDEX_STALE_SECONDS`` is failed: its workers were lost.

    (Every worker that held its tasks died, or none ever took it.) Its late
    tasks, should they run, find it failed and do nothing; a new reindex can
    start. Returns the job, refreshed when it was expired.
    """
    if job.kind != Job.Kind.REINDEX or job.status not in (Job.Status.PENDING, Job.Status.RUNNING):
        return job
    silent = (timezone.now() - job.last_sign_of_life).total_seconds()
    if silent < settings.REINDEX_STALE_SECONDS:
        return job
    waiting = "no index worker took it" if job.status == Job.Status.PENDING else "its workers were lost"
    message = (f"no progress for {silent / 60:.0f} min (last at stage '{job.stage}'): {waiting}. "
               f"Start a new reindex; the active index kept serving.")
    Job.objects.filter(pk=job.pk, status=job.status, heartbeat=job.heartbeat).update(
        status=Job.Status.FAILED, message=message, finished=timezone.now())
    job.refresh_from_db()
    if job.status == Job.Status.FAILED:
        log.warning("reindex job %s expired: %s", job.pk, message)
    return job


def claim(job_id: int) -> bool:
    """PENDING -> RUNNING by one conditional update: exactly one worker wins."""
    now = timezone.now()
    return Job.objects.filter(pk=job_id, status=Job.Status.PENDING).update(
        status=Job.Status.RUNNING, started=now, heartbeat=now, stage="starting") == 1


# The steps a reindex's progress page shows, in order; every stage of a reindex starts with one ("build: ...").
STEPS = ("snapshot", "embedding", "build", "switch")


def set_progress(job_id: int | None, stage: str, done: int = 0, total: int = 0) -> None:
    if job_id is not None:
        Job.objects.filter(pk=job_id).update(stage=stage, done=done, total=total, heartbeat=timezone.now())


def set_stage(job_id: int | None, stage: str) -> None:
    """A new stage, the counts kept (the images embedded stay on the page while the index builds)."""
    if job_id is not None:
        Job.objects.filter(pk=job_id).update(stage=stage, heartbeat=timezone.now())


def chunks_embedded(job_id: int, chunks: int) -> None:
    """After a chunk: "embedding: k of N chunks done", k the chunks marked done. The update only raises k, so two
    workers finishing at once cannot set it back."""
    k = ReindexChunk.objects.filter(job_id=job_id, done=True).count()
    Job.objects.filter(pk=job_id, status=Job.Status.RUNNING, stage__startswith="embedding").exclude(
        stage__in=[f"embedding: {j} of {chunks} chunks done" for j in range(k, chunks + 1)]).update(
        stage=f"embedding: {k} of {chunks} chunks done", heartbeat=timezone.now())


def add_progress(job_id: int | None, n: int) -> None:
    """Chunks on several workers count into one row without overwriting each other."""
    if job_id is not None:
        Job.objects.filter(pk=job_id).update(done=F("done") + n, heartbeat=timezone.now())


def fail_job(job_id: int, message: str) -> None:
    Job.objects.filter(pk=job_id).exclude(status=Job.Status.DONE).update(
        status=Job.Status.FAILED, message=message[:2000], finished=timezone.now())


def start_reindex(reuse: bool = True, shards: int | None = None) -> tuple[Job, bool]:
    """Ask the index workers for a reindex (the task ``workers.reindex``, sent by name); returns (job, created).
    A pending/running one is reused, never doubled. If the broker cannot take the task, the job is marked
    failed and the error raised."""
    job, created = request_reindex()
    if created:
        try:
            send("workers.reindex", (job.pk, reuse, shards), queue=settings.CELERY_INDEX_QUEUE)
        except Exception as exc:
            fail_job(job.pk, f"the task broker cannot be reached: {exc}")
            raise
    return job, created


def claim_build(job_id: int | str, token: str) -> bool:
    """One builder per job: the first finish task to claim it wins, and so does its own redelivery.

    Several chunk tasks may each see the plan complete and ask for a build; a conditional update writes the
    winner's task id on the job row. A task redelivered after its worker died carries the same id and may
    build again; any other gets False (as does a job without a row: an in-process reindex needs no claim)."""
    job_pk = job_pk_of(job_id)
    if job_pk is None:
        return False
    if Job.objects.filter(pk=job_pk, builder="").update(builder=token) == 1:
        return True
    return Job.objects.filter(pk=job_pk, builder=token).exists()


def job_pk_of(job_id: int | str) -> int | None:
    """The Job row's pk of a reindex key (an in-process reindex without a row has a string key)."""
    return job_id if isinstance(job_id, int) else None

