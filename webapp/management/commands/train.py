import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from search.catalog import CatalogError
from search.train import ROLES, load_for_training, train_role
from webapp.services import reset_caches


class Command(BaseCommand):
    help = "Train models on the catalog (resumable). One self-describing checkpoint per model under ARTIFACTS_DIR/models."

    def add_arguments(self, parser):
        parser.add_argument("roles", nargs="+", choices=ROLES + ["all"], help="which models to train")
        parser.add_argument("--profile", default="quick", choices=["quick", "full", "tiny"])
        parser.add_argument("--device", default=None, help="cpu, cuda or auto (default)")
        parser.add_argument("--catalog", default=None, help="catalog directory (default: CATALOG_DIR)")
        parser.add_argument("--limit", type=int, default=None, help="use only the first N catalog rows")
        parser.add_argument("--missing-only", action="store_true", help="skip models that already have a checkpoint")
        parser.add_argument("--restart", action="store_true", help="ignore a .partial checkpoint and start over")

    def handle(self, *args, roles, profile, device, catalog, limit, missing_only, restart, **opts):
        roles = ROLES if "all" in roles else roles
        models_dir = settings.ARTIFACTS_DIR / "models"
        from search.engine import MODEL_FILES

        if missing_only:
            roles = [r for r in roles if not (models_dir / MODEL_FILES[r]).is_file()]
            if not roles:
                self.stdout.write("All models are trained.")
                return
        try:
            data = load_for_training(catalog or settings.CATALOG_DIR, settings.ARTIFACTS_DIR, limit)
        except CatalogError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Catalog: {len(data.train.rows)} train / {len(data.val.rows)} val / "
                          f"{len(data.test.rows)} test items, {len(data.class_names)} classes")
        for role in roles:
            self.stdout.write(f"Training {role} ({profile} profile)...")
            start = time.perf_counter()
            try:
                payload = train_role(role, data, settings.ARTIFACTS_DIR, profile=profile, device=device,
                                     resume=not restart)
            except RuntimeError as exc:
                raise CommandError(str(exc)) from None
            metrics = ", ".join(f"{k} {v:.3f}" for k, v in payload["metrics"].items() if isinstance(v, float))
            self.stdout.write(self.style.SUCCESS(
                f"{role} trained in {time.perf_counter() - start:.0f}s: {payload['version']} ({metrics})"))
        reset_caches()
