"""Everything `make demo` needs before serving, each step skipped when already done."""

import io
import json
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from search.catalog import split_of
from search.trained import MODEL_FILES, read_checkpoint
from webapp.models import IndexVersion, Item

# What the demo needs; the captioner is left to `make train` (until then draft titles come from the suggested tags).
DEMO_ROLES = ["encoder", "sketch2image", "text", "classifier", "classifier_image"]
# The model report's figures: `manage.py evaluate` on this many test items (and as many validation items in its
# sweeps), about a minute on a laptop CPU; the whole test split is `manage.py evaluate` without --limit.
DEMO_EVALUATION_SAMPLE = 300


class Command(BaseCommand):
    help = "Migrate, import the sample catalog, train missing models (quick profile) and build the index if needed."

    def step(self, text):
        self.stdout.write(self.style.MIGRATE_HEADING(f"==> {text}"))

    @staticmethod
    def text_is_stale(models_dir) -> bool:
        encoder = read_checkpoint(models_dir, "encoder")["version"]
        return read_checkpoint(models_dir, "text")["config"].get("encoder_version") != encoder

    def evaluate_sample(self) -> None:
        """Real figures for the model report: an evaluation on a sample of the test split, unless the report already
        has one of the active index (a second `make demo` skips it)."""
        active = IndexVersion.objects.get(is_active=True)
        path = settings.ARTIFACTS_DIR / "reports" / "evaluate.json"
        try:
            evaluated = json.loads(path.read_text()).get("index", {}).get("version")
        except (OSError, ValueError, AttributeError):
            evaluated = None
        if evaluated == active.name:
            self.step(f"evaluation: the model report has figures of index {active.name} ({path})")
            return
        n_test = sum(split_of(sku) == "test" for sku in Item.objects.filter(hidden=False).values_list("sku", flat=True))
        sample = DEMO_EVALUATION_SAMPLE if n_test > DEMO_EVALUATION_SAMPLE else None  # else the whole test split
        self.step(f"evaluation: {min(n_test, DEMO_EVALUATION_SAMPLE)} of the {n_test} test items for the model report "
                  f"(about a minute; all of them: manage.py evaluate --json {path})")
        try:
            call_command("evaluate", limit=sample, json=str(path), stdout=io.StringIO())
        except CommandError as exc:  # e.g. a catalog too small for a test split: the demo still serves
            self.stderr.write(f"   no evaluation: {exc}")
            return
        report = json.loads(path.read_text())
        sketch = report.get("sketch", {}).get(report.get("sketch", {}).get("default", ""), {})
        self.stdout.write(f"   photo P@5 {report['photo']['p_at_5']:.3f}, sketch P@5 {sketch.get('p_at_5', 0):.3f} "
                          f"on n = {report['photo']['n']} in {report['seconds']} s: /report/#evaluation")

    def handle(self, *args, **opts):
        self.step("database: applying migrations")
        call_command("migrate", verbosity=0)

        if Item.objects.exists():
            self.step(f"catalog: {Item.objects.count()} items already imported (re-import: manage.py import_catalog)")
        else:
            if not settings.CATALOG_DIR.exists():
                raise CommandError(f"catalog not found at {settings.CATALOG_DIR}: set CATALOG_DIR to a catalog directory")
            self.step(f"catalog: importing {settings.CATALOG_DIR}")
            call_command("import_catalog", str(settings.CATALOG_DIR))

        from webapp.services import models_dir

        models_dir = models_dir()
        missing = [role for role in DEMO_ROLES if not (models_dir / MODEL_FILES[role]).is_file()]
        if "encoder" not in missing and "text" not in missing and self.text_is_stale(models_dir):
            self.step("models: the text model was trained against another encoder; it is trained again")
            missing.append("text")
        if missing:
            self.step(f"models: training {', '.join(missing)} with the quick profile (a few minutes on a laptop CPU)")
            call_command("train", *missing, profile="quick")
        else:
            self.step("models: all trained (full quality: make train)")

        from webapp.services import get_models

        active = IndexVersion.objects.filter(is_active=True).first()
        models = get_models()
        wants_text = models.available("text") and models.text().index_space == "text"
        if (active is None or active.encoder_version != models.encoder().version
                or (wants_text and (active.manifest or {}).get("models", {}).get("text") != models.text().version)):
            self.step("index: building the search index")
            call_command("reindex")
        else:
            self.step(f"index: {active.name} is active with {active.count} items")
        self.evaluate_sample()

        user_model = get_user_model()
        if not user_model.objects.filter(is_superuser=True).exists():
            password = secrets.token_urlsafe(12)
            user_model.objects.create_superuser("admin", "admin@example.com", password)
            path = settings.VAR_DIR / "admin-password.txt"
            path.write_text(password + "\n")
            self.step(f"admin: created user 'admin' with password {password} (also in {path})")
