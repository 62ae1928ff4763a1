from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from search.catalog import CatalogError
from webapp.catalog_import import import_catalog


class Command(BaseCommand):
    help = "Import a catalog (Kaggle styles.csv + images/, or catalog.csv) into the database. Safe to re-run."

    def add_arguments(self, parser):
        parser.add_argument("path", nargs="?", default=None, help="catalog directory (default: CATALOG_DIR)")
        parser.add_argument("--no-verify", action="store_true", help="only check image files exist, do not decode")
        parser.add_argument("--show-problems", type=int, default=20, help="how many skipped rows to list")

    def handle(self, *args, path=None, no_verify=False, show_problems=20, **opts):
        path = path or settings.CATALOG_DIR
        self.stdout.write(f"Importing catalog from {path}")
        bar = tqdm(total=0, desc="checking images", unit="img", disable=opts.get("verbosity", 1) < 1)

        def progress(done, total):
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            summary = import_catalog(path, verify_images=not no_verify, progress=progress)
        except CatalogError as exc:
            raise CommandError(f"{exc}. Nothing was imported.") from None
        finally:
            bar.close()
        for lineno, reason in summary.problems[:show_problems]:
            where = f"line {lineno}: " if lineno else ""
            self.stdout.write(self.style.WARNING(f"  skipped {where}{reason}"))
        if summary.skipped > show_problems:
            self.stdout.write(self.style.WARNING(f"  ... and {summary.skipped - show_problems} more skipped rows"))
        self.stdout.write(self.style.SUCCESS(
            f"{summary.layout} catalog: {summary.rows} rows, {summary.created} created, {summary.updated} updated, "
            f"{summary.unchanged} unchanged, {summary.skipped} skipped"))
