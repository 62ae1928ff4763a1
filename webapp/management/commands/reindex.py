from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from search.engine import ModelMissingError
from webapp.indexing import claim, reindex, request_reindex


class Command(BaseCommand):
    help = "Embed the catalog and build a new search index version, then switch to it atomically."

    def add_arguments(self, parser):
        parser.add_argument("--no-reuse", action="store_true",
                            help="re-embed every item, even those unchanged since the active index")
        parser.add_argument("--shards", type=int, default=1, help="split the index into this many Annoy files")

    def handle(self, *args, no_reuse=False, shards=1, **opts):
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
            version = reindex(job.pk, reuse=not no_reuse, shards=shards, progress=progress)
        except (ModelMissingError, RuntimeError) as exc:
            raise CommandError(str(exc)) from None
        finally:
            for bar in bars.values():
                bar.close()
        job.refresh_from_db()
        self.stdout.write(self.style.SUCCESS(
            f"index {version.name} active: {version.count} items ({job.result.get('embedded')} embedded, "
            f"{job.result.get('reused')} reused) in {job.result.get('seconds')}s"))
