"""Evaluate search quality on the test split and print/write every figure as JSON."""

import json
import time
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from search.catalog import split_of
from search.engine import SKETCH_ROADS
from search.evaluation import ann_recall, precision_at_ks
from webapp.evaluation_queries import evaluate_query_file
from webapp.models import Item
from webapp.services import SearchUnavailable, active_store, get_models


class Command(BaseCommand):
    help = "Photo-query P@5/P@10 and Annoy recall@10 on the test split (plus --queries CSV); JSON to stdout/--json."

    def add_arguments(self, parser):
        parser.add_argument("--json", dest="json_path", default=None, help="also write the figures to this file")
        parser.add_argument("--queries", default=None, help="external query CSV (query_image,kind,text,...)")
        parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N test queries")

    def sketch_figures(self, store, labels, test_ids, image_paths) -> dict:
        """Sketches made from the held-out test photos, searched by each road."""
        from search.images import load_image_array
        from search.train import sketches_of

        photos, _ok = load_image_array([Path(p) for p in image_paths], settings.ARTIFACTS_DIR / "cache")
        sketches = sketches_of(np.asarray(photos), seed=7)
        models = get_models()
        out: dict = {"n": len(test_ids), "default": settings.SKETCH_ROAD}
        for road in SKETCH_ROADS:
            if road == "gan" and not models.available("sketch2image"):
                out[road] = {"unavailable": "the sketch2image model is not trained"}
                continue
            self.stdout.write(f"Evaluating {len(test_ids)} synthetic sketch queries by the {road} road...")
            vectors = np.concatenate([models.embed_sketches(sketches[i : i + 512], road)
                                      for i in range(0, len(sketches), 512)])
            out[road] = precision_at_ks(store, vectors, [labels[i] for i in test_ids], labels, exclude=test_ids)
        return out

    def handle(self, *args, json_path=None, queries=None, limit=None, **opts):
        started = time.perf_counter()
        try:
            version, store, item_of = active_store()
        except SearchUnavailable as exc:
            raise CommandError(str(exc)) from None
        items = {pk: (sku, cat, path) for pk, sku, cat, path in
                 Item.objects.values_list("pk", "sku", "category", "image_path")}
        labels = [items.get(int(pk), ("", "", ""))[1] for pk in item_of]
        test_ids = [i for i, pk in enumerate(item_of) if pk in items and split_of(items[int(pk)][0]) == "test"]
        if limit:
            test_ids = test_ids[:limit]
        if not test_ids:
            raise CommandError("no test-split items are in the index")
        vectors = np.asarray(store.vectors("image")[np.array(test_ids)])
        self.stdout.write(f"Evaluating {len(test_ids)} test photo queries against {store.count} indexed items...")
        photo = precision_at_ks(store, vectors, [labels[i] for i in test_ids], labels, exclude=test_ids)
        recall_sample = vectors[:: max(1, len(vectors) // 1000)]
        report = {
            "photo": {**photo, "n": len(test_ids)},
            "ann": {"recall_at_10": ann_recall(store, recall_sample), "n": len(recall_sample),
                    "n_trees": version.n_trees, "search_k": store.search_k},
            "index": {"version": version.name, "count": version.count},
            "models": {"encoder": get_models().version("encoder")},
        }
        models = get_models()
        report["sketch"] = self.sketch_figures(store, labels, test_ids, [items[int(item_of[i])][2] for i in test_ids])
        if models.available("sketch2image"):
            report["models"]["sketch2image"] = models.version("sketch2image")
        if queries:
            report["queries"] = evaluate_query_file(Path(queries))
        report["seconds"] = round(time.perf_counter() - started, 1)
        report["command"] = "python manage.py evaluate" + (f" --limit {limit}" if limit else "")
        text = json.dumps(report, indent=2)
        self.stdout.write(text)
        if json_path:
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(json_path).write_text(text + "\n")
