"""``manage.py prepare_demo`` (what `make demo` runs first) leaves a model report with real figures: an evaluation
on a sample of the test split, its n shown; a second run leaves it as it is."""

import json
import shutil

from django.core.management import call_command

from search.catalog import split_of
from webapp.models import IndexVersion, Item


def test_the_demo_leaves_a_report_with_real_figures(db, artifacts, settings, synthetic_catalog, demo_models_dir,
                                                     admin_client, tmp_path, monkeypatch):
    from webapp.management.commands import prepare_demo

    monkeypatch.setattr(prepare_demo, "DEMO_EVALUATION_SAMPLE", 5)  # the synthetic test split has about 16
    settings.CATALOG_DIR, settings.VAR_DIR = synthetic_catalog, tmp_path
    shutil.copytree(demo_models_dir, artifacts / "models")
    call_command("prepare_demo")

    path = artifacts / "reports" / "evaluate.json"
    report = json.loads(path.read_text())
    n_test = sum(split_of(sku) == "test" for sku in Item.objects.values_list("sku", flat=True))
    assert n_test > 5 and report["photo"]["n"] == 5 and 0 <= report["photo"]["p_at_5"] <= 1
    assert report["index"]["version"] == IndexVersion.objects.get(is_active=True).name
    assert "p_at_5" in report["sketch"]["direct"] and "p_at_5" in report["sketch"]["gan"]
    html = admin_client.get("/report/").content.decode()
    assert "No evaluation yet" not in html and "Not available yet" not in html  # figures and the confusion matrix
    assert "n = 5 test items, a sample" in html and 'id="evaluation-scope"' in html
    assert "Photo search: items of the same kind among the top 5" in html  # the figures in words, first
    assert "The active index is" not in html  # the evaluation is of the active index

    before = path.stat().st_mtime_ns
    call_command("prepare_demo")  # a second run: the index is the same, so is its evaluation
    assert path.stat().st_mtime_ns == before
