"""The reindex's tasks without a broker: the last chunk starts the build, one build runs, a failed chunk fails the job."""

from webapp.indexing import chunks_complete, claim_build, embed_chunk, job_dir, plan_reindex
from webapp.models import IndexVersion, Job


def running_job() -> Job:
    return Job.objects.create(kind=Job.Kind.REINDEX, status=Job.Status.RUNNING, stage="starting")


def test_the_plan_is_complete_only_when_every_chunk_is_on_disk(searchable):
    job = running_job()
    chunks = plan_reindex(job.pk, reuse=False, chunk_size=50)
    assert len(chunks) == 4
    for i in (3, 0, 2):  # out of order, as several workers finish them
        embed_chunk(job.pk, i, chunks[i])
        assert not chunks_complete(job.pk)
    embed_chunk(job.pk, 1, chunks[1])
    assert chunks_complete(job.pk)
    assert embed_chunk(job.pk, 1, chunks[1]) == 0  # a redelivered chunk does nothing, the plan stays complete
    assert chunks_complete(job.pk)
    assert not chunks_complete("never-planned")


def test_one_build_claim_per_job_and_its_own_redelivery_keeps_it(searchable):
    job = running_job()
    plan_reindex(job.pk, reuse=False)
    assert claim_build(job.pk, "task-a")
    assert not claim_build(job.pk, "task-b")  # a second chunk that also saw the plan complete
    assert claim_build(job.pk, "task-a")  # the same task redelivered after its worker died
    assert (job_dir(job.pk) / "build.claim").read_text() == "task-a"
    assert not list(job_dir(job.pk).glob("*.tmp"))
    assert not claim_build("cleaned-up", "task-c")  # the job's folder is gone: built already


def test_whole_reindex_through_the_tasks_builds_once(searchable, settings, eager_celery):
    from workers.tasks import finish_reindex_task, start_reindex

    settings.REINDEX_CHUNK_SIZE = 30
    old = IndexVersion.objects.get(is_active=True)
    job, created = start_reindex(reuse=False)
    job.refresh_from_db()
    assert created and job.status == Job.Status.DONE, job.message
    assert job.result["chunks"] == 6 and job.result["embedded"] == 160
    active = IndexVersion.objects.get(is_active=True)
    assert active.pk != old.pk and active.count == 160
    # A late duplicate of the build request (another chunk saw the plan complete too) changes nothing.
    assert finish_reindex_task.apply((job.pk,)).get() == {"skipped": True}
    assert IndexVersion.objects.get(is_active=True).pk == active.pk


def test_a_chunk_that_fails_for_good_fails_the_job_and_the_old_index_serves(searchable, eager_celery, monkeypatch):
    import webapp.indexing
    from workers.tasks import embed_chunk_task, reindex_task

    old = IndexVersion.objects.get(is_active=True)
    job = Job.objects.create(kind=Job.Kind.REINDEX)

    def broken(job_id, index, item_ids):
        raise ValueError("the image store is not mounted")

    monkeypatch.setattr(webapp.indexing, "embed_chunk", broken)
    assert reindex_task.apply((job.pk, False)).get() == {"chunks": 1}  # the chunk ran inline, and failed
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "chunk 0 failed: ValueError: the image store is not mounted" in job.message
    assert IndexVersion.objects.get(is_active=True).pk == old.pk
    # The other chunks, delivered after the failure, do nothing.
    assert embed_chunk_task.apply((job.pk, 1, [1, 2])).get() == 0
