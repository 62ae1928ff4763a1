import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from search.catalog import CatalogError
from search.train import PROFILE_NAMES, ROLES, load_for_training, train_all
from webapp.services import reset_caches


class Command(BaseCommand):
    help = ("Train models on the catalog (resumable; progress bars). One self-describing checkpoint per model under "
            "ARTIFACTS_DIR/models; each model's time and the total in ARTIFACTS_DIR/reports/training.json.")

    def add_arguments(self, parser):
        parser.add_argument("roles", nargs="+", choices=ROLES + ["all"], help="which models to train")
        parser.add_argument("--profile", default="auto", choices=PROFILE_NAMES,
                            help="auto (default): full on a CUDA GPU, cpu without one; quick: the demo's")
        parser.add_argument("--device", default=None, help="cpu, cuda or auto (default)")
        parser.add_argument("--catalog", default=None, help="catalog directory (default: CATALOG_DIR)")
        parser.add_argument("--limit", type=int, default=None, help="use only the first N catalog rows")
        parser.add_argument("--missing-only", action="store_true", help="skip models that already have a checkpoint")
        parser.add_argument("--restart", action="store_true", help="ignore a .partial checkpoint and start over")
        parser.add_argument("--drawings", default=None,
                            help="people's drawings the encoder trains on (default: HUMAN_SKETCHES_TRAIN_DIR if present)")

    def handle(self, *args, roles, profile, device, catalog, limit, missing_only, restart, drawings, **opts):
        roles = ROLES if "all" in roles else roles
        models_dir = settings.ARTIFACTS_DIR / "models"
        from search.trained import MODEL_FILES

        if missing_only:
            roles = [r for r in roles if not (models_dir / MODEL_FILES[r]).is_file()]
            if not roles:
                self.stdout.write("All models are trained.")
                return
        start = time.perf_counter()
        try:
            data = load_for_training(catalog or settings.CATALOG_DIR, settings.ARTIFACTS_DIR, limit)
        except CatalogError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Catalog: {len(data.train.rows)} train / {len(data.val.rows)} val / "
                          f"{len(data.test.rows)} test items, {len(data.class_names)} classes")
        try:
            train_all(data, settings.ARTIFACTS_DIR, roles, profile=profile, device=device, resume=not restart,
                      drawings=drawings or settings.HUMAN_SKETCHES_TRAIN_DIR, load_seconds=time.perf_counter() - start,
                      log=self.stdout.write)
        except (RuntimeError, ValueError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from None
        reset_caches()
