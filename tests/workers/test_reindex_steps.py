"""The reindex's tasks without a broker: the last chunk starts the build, one build runs, a failed chunk fails the job."""

from webapp.indexing import chunks_complete, claim_build, embed_chunk, plan_reindex
from webapp.models import IndexVersion, Job


def running_job() -> Job:
    return Job.objects.create(kind=Job.Kind.REINDEX, status=Job.Status.RUNNING, stage="starting")


def test_the_plan_is_complete_only_when_every_chunk_is_marked_done(searchable):
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
    Job.objects.filter(pk=job.pk).update(status=Job.Status.DONE)
    assert not chunks_complete(job.pk)  # built: a late chunk asks for no second build


def test_one_build_claim_per_job_and_its_own_redelivery_keeps_it(searchable):
    job = running_job()
    plan_reindex(job.pk, reuse=False)
    assert claim_build(job.pk, "task-a")
    assert not claim_build(job.pk, "task-b")  # a second chunk that also saw the plan complete
    assert claim_build(job.pk, "task-a")  # the same task redelivered after its worker died
    job.refresh_from_db()
    assert job.builder == "task-a"
    assert not claim_build("local-run", "task-c")  # an in-process reindex has no row to claim


def test_whole_reindex_through_the_tasks_builds_once(searchable, settings, eager_celery):
    from webapp.indexing import start_reindex
    from workers.tasks import finish_reindex_task

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


def steps_of(client, job) -> dict[str, dict]:
    return {step["name"]: step for step in client.get(f"/jobs/{job.pk}.json").json()["steps"]}


def test_progress_shows_each_step_with_its_counts_and_the_done_page_what_was_built(searchable, staff_client,
                                                                                   monkeypatch):
    import webapp.indexing.jobs
    from webapp.indexing import finish_reindex

    job = running_job()
    chunks = plan_reindex(job.pk, reuse=False, chunk_size=50)
    steps = steps_of(staff_client, job)
    assert steps["snapshot"] == {"name": "snapshot", "label": "Snapshot", "state": "done",
                                 "detail": "160 items: 0 vectors reused, 160 images to embed"}
    assert steps["embedding"]["state"] == "current"
    assert steps["embedding"]["detail"] == "0 of 4 chunks done · 0 of 160 images"
    assert steps["build"]["state"] == steps["switch"]["state"] == "waiting"
    embed_chunk(job.pk, 2, chunks[2])  # chunk by chunk, in any order
    assert steps_of(staff_client, job)["embedding"]["detail"] == "1 of 4 chunks done · 50 of 160 images"
    for i in (0, 1, 3):
        embed_chunk(job.pk, i, chunks[i])
    assert steps_of(staff_client, job)["embedding"]["detail"] == "4 of 4 chunks done · 160 of 160 images"

    stages, real = [], webapp.indexing.jobs.set_stage
    monkeypatch.setattr(webapp.indexing.jobs, "set_stage", lambda job_id, stage: (stages.append(stage), real(job_id, stage)))
    finish_reindex(job.pk)
    version = IndexVersion.objects.get(is_active=True)
    assert stages == ["build: the annoy index of 160 vectors", "build: the title index", "build: the id mapping",
                      f"switch: to {version.name}"]
    body = staff_client.get(f"/jobs/{job.pk}.json").json()
    assert [step["state"] for step in body["steps"]] == ["done"] * 4
    assert body["steps"][3]["detail"] == f"{version.name} is the active index"
    assert body["summary"].startswith(f"Index {version.name} is active with 160 items, built in ")
    assert body["summary"].endswith(" s: 0 vectors reused, 160 images embedded.")
    html = staff_client.get(f"/jobs/{job.pk}/").content.decode()
    assert body["summary"] in html and html.count('class="step done"') == 4


def test_a_reindex_that_reuses_every_vector_says_so(searchable, staff_client):
    from webapp.indexing import finish_reindex

    job = running_job()
    assert plan_reindex(job.pk) == []  # nothing changed since the active index was built
    steps = steps_of(staff_client, job)
    assert steps["snapshot"]["detail"] == "160 items: 160 vectors reused, 0 images to embed"
    assert steps["embedding"]["detail"] == "nothing to embed: every vector was reused"
    finish_reindex(job.pk)
    summary = staff_client.get(f"/jobs/{job.pk}.json").json()["summary"]
    assert "160 items" in summary and summary.endswith(": 160 vectors reused, 0 images embedded.")
