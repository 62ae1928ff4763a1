"""``manage.py cleanup_media [--dry-run] [--staging-hours N]``: remove media files that nothing uses any more."""

import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from webapp.models import Item


class Command(BaseCommand):
    help = ("Remove files under MEDIA_ROOT that nothing uses: item photos whose item is gone (deleting an item "
            "removes its photo; this catches those deleted before that, or by hand in the database) and staged "
            "uploads nobody saved. Catalog images are never touched.")

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
        parser.add_argument("--staging-hours", type=float, default=24.0,
                            help="staged uploads older than this are abandoned (default 24)")

    def handle(self, *args, dry_run=False, staging_hours=24.0, **opts):
        if staging_hours < 0:
            raise CommandError("--staging-hours must be 0 or more")
        media = Path(settings.MEDIA_ROOT)
        used = {str(Path(p).resolve()) for p in Item.objects.values_list("image_path", flat=True)}
        orphans = [f for f in sorted((media / "items").glob("*")) if f.is_file() and str(f.resolve()) not in used]
        cutoff = time.time() - staging_hours * 3600
        stale = [f for f in sorted((media / "staging").glob("*")) if f.is_file() and f.stat().st_mtime < cutoff]
        freed = 0
        for f in orphans + stale:
            freed += f.stat().st_size
            self.stdout.write(f"{'would remove' if dry_run else 'removed'} {f}")
            if not dry_run:
                f.unlink(missing_ok=True)
        self.stdout.write(f"{len(orphans)} orphaned item photos, {len(stale)} abandoned staged uploads, "
                          f"{freed / 1e6:.1f} MB{' (dry run: nothing removed)' if dry_run else ''}")
