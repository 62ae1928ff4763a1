import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from search.trained import ModelMissingError
from webapp.indexing import claim, reindex, request_reindex
from webapp.models import Job


class Command(BaseCommand):
    help = ("Embed the catalog and build a new search index version, then switch to it atomically. "
            "Runs on the index workers when one answers (progress at /jobs/<id>/), else in this process.")

    def add_arguments(self, parser):
        parser.add_argument("--no-reuse", action="store_true",
                            help="re-embed every item, even those unchanged since the active index")
        parser.add_argument("--shards", type=int, default=None,
                            help=f"Annoy files per index version (default INDEX_SHARDS={settings.INDEX_SHARDS})")
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--local", action="store_true", help="run in this process, not on the workers")
        where.add_argument("--workers", action="store_true",
                           help="queue the job for the index workers even if none answers now")
        parser.add_argument("--no-wait", action="store_true", help="with workers: queue the job and return")

    def handle(self, *args, no_reuse=False, shards=None, local=False, workers=False, no_wait=False, **opts):
        if not local and (workers or self.index_workers_answer()):
            return self.through_workers(not no_reuse, shards, wait=not no_wait)
        self.in_process(not no_reuse, shards)

    def index_workers_answer(self) -> bool:
        from webapp.health import check_workers

        try:
            return bool(check_workers()["queues"].get(settings.CELERY_INDEX_QUEUE))
        except Exception:  # no broker: run here
            return False

    def through_workers(self, reuse: bool, shards: int | None, wait: bool) -> None:
        from webapp.indexing import start_reindex

        try:
            job, created = start_reindex(reuse=reuse, shards=shards)
        except Exception as exc:
            raise CommandError(f"cannot queue the reindex: {exc}") from None
        self.stdout.write(f"{'queued' if created else 'already ' + job.status} reindex job #{job.pk} on the "
                          f"'{settings.CELERY_INDEX_QUEUE}' workers; progress at /jobs/{job.pk}/")
        if not wait:
            return
        bar = tqdm(total=max(job.total, 1), desc=job.stage or "waiting", unit="img")
        while job.status in (Job.Status.PENDING, Job.Status.RUNNING):
            time.sleep(0.5)
            job.refresh_from_db()
            bar.set_description(job.stage or job.status)
            bar.total, bar.n = max(job.total, 1), job.done
            bar.refresh()
        bar.close()
        if job.status == Job.Status.FAILED:
            raise CommandError(f"reindex job #{job.pk} failed: {job.message}")
        self.report(job)

    def in_process(self, reuse: bool, shards: int | None) -> None:
        job, created = request_reindex()
        if not created or not claim(job.pk):
            raise CommandError(f"a reindex is already {job.status} (job #{job.pk}); wait for it to finish")
        bars: dict[str, tqdm] = {}

        def progress(stage, done, total):
            bar = bars.get(stage)
            if bar is None:
                for other in bars.values():
                    other.close()
                bar = bars[stage] = tqdm(total=total, desc=stage, unit="img" if "embed" in stage else "step")
            bar.total, bar.n = total, done
            bar.refresh()

        try:
            reindex(job.pk, reuse=reuse, shards=shards, progress=progress)
        except (ModelMissingError, RuntimeError) as exc:
            raise CommandError(str(exc)) from None
        finally:
            for bar in bars.values():
                bar.close()
        job.refresh_from_db()
        self.report(job)

    def report(self, job: Job) -> None:
        r = job.result
        self.stdout.write(self.style.SUCCESS(
            f"index {r.get('version')} active: {r.get('count')} items ({r.get('embedded')} embedded, "
            f"{r.get('reused')} reused, {r.get('chunks')} chunks) in {r.get('seconds')}s"))
