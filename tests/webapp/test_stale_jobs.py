"""A reindex whose workers all died (or that no worker ever took) does not block the next one forever."""

from datetime import timedelta

import pytest
from django.utils import timezone

from webapp.indexing import add_progress, claim, expire_if_stale, request_reindex, set_progress
from webapp.models import Job


@pytest.fixture
def stale_after(settings):
    settings.REINDEX_STALE_SECONDS = 600
    return settings.REINDEX_STALE_SECONDS


def age(job: Job, seconds: float) -> Job:
    past = timezone.now() - timedelta(seconds=seconds)
    Job.objects.filter(pk=job.pk).update(created=past, started=past if job.started else None,
                                         heartbeat=past if job.heartbeat else None)
    job.refresh_from_db()
    return job


def test_progress_is_a_heartbeat_and_a_live_job_is_reused(db, stale_after):
    job, created = request_reindex()
    assert created and job.heartbeat is None
    assert claim(job.pk)
    set_progress(job.pk, "embedding", 0, 10)
    add_progress(job.pk, 3)
    job.refresh_from_db()
    assert job.heartbeat is not None and job.done == 3
    age(job, stale_after - 60)  # quiet, but not for long
    again, created = request_reindex()
    assert not created and again.pk == job.pk and again.status == Job.Status.RUNNING


def test_a_silent_running_job_is_failed_and_a_new_one_starts(db, stale_after, admin_client):
    job, _ = request_reindex()
    claim(job.pk)
    set_progress(job.pk, "embedding", 2, 10)
    age(job, stale_after + 60)
    new, created = request_reindex()
    assert created and new.pk != job.pk and new.status == Job.Status.PENDING
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and job.finished is not None
    assert "its workers were lost" in job.message and "'embedding'" in job.message
    # the progress page of the old job says why
    body = admin_client.get(f"/jobs/{job.pk}.json").json()
    assert body["status"] == "failed" and "no progress for" in body["message"]


def test_a_pending_job_no_worker_took_expires_when_polled(db, stale_after, admin_client):
    job, _ = request_reindex()
    age(job, stale_after + 5)
    body = admin_client.get(f"/jobs/{job.pk}.json").json()
    assert body["status"] == "failed" and "no index worker took it" in body["message"]
    # a late worker finds it failed and does nothing
    assert not claim(job.pk)


def test_finished_jobs_are_never_expired(db, stale_after):
    job = Job.objects.create(kind=Job.Kind.REINDEX, status=Job.Status.DONE)
    assert expire_if_stale(age(job, 10 * stale_after)).status == Job.Status.DONE
    other = Job.objects.create(kind=Job.Kind.IMPORT, status=Job.Status.RUNNING)
    assert expire_if_stale(age(other, 10 * stale_after)).status == Job.Status.RUNNING
