"""Evaluate every model on the test split and print/write the figures as JSON.

Shape (scripts read it): {"photo": {"p_at_5","p_at_10","n"}, "ann": {"recall_at_10"}, "sketch": {"<road>":
{"p_at_5","p_at_10"}, "default"}, "text": {"r_at_10","p_at_5"}, "combined": {...}, "classifier": {"image_only":
{"accuracy"}, "fused": {"accuracy"}}, "captions": {"<method>": {"bleu4", "bleu4_as_shown"}, "winner", "in_use"}, "queries": {"<kind>":
{"<category_level>": {"p_at_5","n"}, "expected_item": {"r_at_10","n"}}, "n_errors", "errors"}, "human": {"groups":
{"<drawn kind (source)>": {"p_at_5","n","found_instead"}}, "macro_p_at_5", "min_p_at_5",
"macro_p_at_5_kinds_not_trained_on", ...}, "models": {...}}

``human``: the drawings by people in HUMAN_SKETCHES_DIR (``../shared/data/human-sketches``), reported by default
when the folder is there; ``reports/human-sketches.png`` shows the weakest kinds' drawings with what they found.
"""

import json
import time
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from search.captions import brands_of, draft_without_brand, strip_brand
from search.catalog import split_of
from search.categories import picture_categories, vote_weight
from search.evaluation import (
    ann_recall,
    bleu4,
    guess_accuracy,
    neighbour_categories,
    precision_at_ks,
    recall_of_items,
    text_query_figures,
)
from search.fusion import fuse_scores
from search.pipeline import SKETCH_ROADS, embed_sketches
from webapp.evaluation_queries import evaluate_query_file
from webapp.models import Item
from webapp.services import SearchUnavailable, active_store, get_models, title_index


def encode_texts(texts: list[str]) -> np.ndarray:
    """Queries -> the text model's vectors, 512 at a time."""
    model = get_models().text()
    return np.concatenate([model.encode(texts[i : i + 512]) for i in range(0, len(texts), 512)])


def category_guesses(vectors: np.ndarray, photos: np.ndarray | None = None,
                     drawn: bool = False) -> list[dict[str, float]]:
    """The search's likeliest categories of picture queries (``search.categories.picture_categories``), 512 at a
    time; ``drawn``: the vectors are of sketches on the direct road, as a sketch query's are."""
    models = get_models()
    return [c for i in range(0, len(vectors), 512)
            for c in picture_categories(models, vectors[i : i + 512], None if photos is None else photos[i : i + 512],
                                        drawn=drawn)]


def save_confusion(truth: np.ndarray, predicted: np.ndarray, path: Path, title: str, top: int = 25) -> None:
    """Row-normalised confusion matrix of the ``top`` most frequent true classes (the rest pooled as "other")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes, counts = np.unique(truth, return_counts=True)
    keep = list(classes[np.argsort(-counts)[:top]])
    index = {c: i for i, c in enumerate(keep)}
    other = len(keep)
    matrix = np.zeros((other + 1, other + 1))
    for t, p in zip(truth, predicted):
        matrix[index.get(t, other), index.get(p, other)] += 1
    matrix = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    labels = keep + ["other"]
    fig, ax = plt.subplots(figsize=(9, 8))
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def human_figures(queries: Path, pool_dir: Path, sheet: Path, weakest: int = 6) -> dict:
    """P@5 of each kind people drew, the macro average, the worst kind, and the macro average over the kinds
    the encoder never saw people draw (not in the training pool ``pool_dir``); a sheet of the weakest kinds."""
    from search.drawings import pool_files

    out = evaluate_query_file(queries)
    out.pop("rows", None)
    groups = out.get("groups", {})
    trained = {kind for _path, kind in pool_files(pool_dir)} if pool_dir.is_dir() else set()
    unseen = [g["p_at_5"] for name, g in groups.items() if name.split(" (")[0] not in trained]
    out["kinds_trained_on"] = sorted(trained)
    if unseen:
        out["macro_p_at_5_kinds_not_trained_on"] = sum(unseen) / len(unseen)
    rows = [(name, g.pop("examples")) for name, g in groups.items()]
    if rows:
        save_drawing_sheet(rows[:weakest], sheet)
        out["sheet"] = sheet.name
    return out


def save_drawing_sheet(rows: list[tuple[str, list[dict]]], path: Path, thumb: int = 64) -> None:
    """One line per drawing: the kind, the drawing, and the top 5 it found, framed green (right kind) or red."""
    from PIL import Image, ImageDraw, ImageOps

    lines = [(name, ex) for name, examples in rows for ex in examples[:2]]
    label_w, cell = 170, thumb + 8
    sheet = Image.new("RGB", (label_w + cell * 6, cell * len(lines) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, ex) in enumerate(lines):
        y = 4 + r * cell
        draw.text((4, y + thumb // 2 - 6), name, fill="black")
        pictures = [(ex["query"], None)] + list(zip(ex["found"], ex["hits"]))
        for c, (file, hit) in enumerate(pictures):
            x = label_w + c * cell
            try:
                with Image.open(file) as img:
                    pic = ImageOps.pad(img.convert("RGB"), (thumb, thumb), color="white")
            except OSError:
                pic = Image.new("RGB", (thumb, thumb), (230, 230, 230))
            sheet.paste(pic, (x + 2, y + 2))
            if hit is not None:
                draw.rectangle([x, y, x + thumb + 3, y + thumb + 3], outline="#1a7f37" if hit else "#cf222e",
                               width=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


class Command(BaseCommand):
    help = "Every quality figure on the test split (plus --queries CSV); JSON to stdout and --json."

    def add_arguments(self, parser):
        parser.add_argument("--json", dest="json_path", default=None, help="also write the figures to this file")
        parser.add_argument("--queries", default=None, help="external query CSV (query_image,kind,text,...)")
        parser.add_argument("--no-human", action="store_true",
                            help="skip the drawings by people (HUMAN_SKETCHES_DIR/queries.csv)")
        parser.add_argument("--human-only", action="store_true",
                            help="only the drawings by people (a quick comparison of sketch recipes)")
        parser.add_argument("--limit", type=int, default=None,
                            help="evaluate only the first N test queries (and N validation queries in the sweeps)")

    def say(self, text):
        self.stdout.write(text)
        self.stdout.flush()

    def handle(self, *args, json_path=None, queries=None, limit=None, no_human=False, human_only=False, **opts):
        started = time.perf_counter()
        if human_only:
            report = {"models": {"encoder": get_models().encoder().version}, **self.human()}
            return self.write(report, json_path, started, "python manage.py evaluate --human-only")
        self.limit = limit  # the validation sweeps take a sample of this size too
        try:
            version, store, item_of = active_store()
        except SearchUnavailable as exc:
            raise CommandError(str(exc)) from None
        rows = {pk: row for pk, *row in Item.objects.values_list("pk", "sku", "category", "image_path", "title")}
        labels = [rows.get(int(pk), ("", "", "", ""))[1] for pk in item_of]
        test_ids = [i for i, pk in enumerate(item_of) if pk in rows and split_of(rows[int(pk)][0]) == "test"]
        if limit:
            test_ids = test_ids[:limit]
        if not test_ids:
            raise CommandError("no test-split items are in the index")
        test_rows = [rows[int(item_of[i])] for i in test_ids]
        test_labels = [labels[i] for i in test_ids]
        models = get_models()
        report: dict = {"models": {"encoder": models.encoder().version},
                        "index": {"version": version.name, "count": version.count}}

        from search.images import load_image_array

        photos, _ok = load_image_array([Path(r[2]) for r in test_rows], settings.ARTIFACTS_DIR / "cache")
        photos = np.asarray(photos)
        vectors = np.asarray(store.vectors("image")[np.array(test_ids)])
        self.say(f"Photo queries: {len(test_ids)} test items against {store.count} indexed items...")
        # the search's category guess for each photo: re-ranks photo queries, and is scored as a classifier below
        guesses = category_guesses(vectors, photos) if settings.RERANK_WEIGHT or models.available("classifier_image") else None
        report["photo"] = {**self.ranked(store, vectors, test_labels, labels, test_ids, categories=guesses,
                                         vote=vote_weight(models)),
                           "n": len(test_ids)}
        sample = vectors[:: max(1, len(vectors) // 1000)]
        report["ann"] = {"recall_at_10": ann_recall(store, sample), "n": len(sample), "backend": store.backend,
                         "parameters": store.describe(), "n_trees": version.n_trees, "search_k": store.search_k}
        sketch_vectors = self.sketch_figures(report, store, labels, test_ids, test_labels, photos)
        if models.available("text"):
            self.text_figures(report, version, store, labels, test_ids, test_labels, [r[3] for r in test_rows],
                              sketch_vectors)
        if models.available("classifier") or models.available("classifier_image"):
            self.classifier_figures(report, photos, test_rows, guesses)
            if guesses is not None and "image_only" in report["classifier"]:
                self.neighbour_figures(report["classifier"]["image_only"], store, labels, test_ids, vectors, guesses,
                                       test_labels, rows, item_of)
        self.caption_figures(report, store, item_of, rows, test_ids, photos, [r[3] for r in test_rows])
        if queries:
            report["queries"] = evaluate_query_file(Path(queries))
        if not no_human:
            report.update(self.human())
        self.write(report, json_path, started, "python manage.py evaluate" + (f" --limit {limit}" if limit else ""))

    def human(self) -> dict:
        """``{"human": figures}`` of the drawings by people, when HUMAN_SKETCHES_DIR/queries.csv is there."""
        human = Path(settings.HUMAN_SKETCHES_DIR) / "queries.csv"
        if not human.is_file():
            return {}
        self.say(f"Drawings by people: {human}...")
        return {"human": human_figures(human, Path(settings.HUMAN_SKETCHES_TRAIN_DIR),
                                       settings.ARTIFACTS_DIR / "reports" / "human-sketches.png")}

    def write(self, report: dict, json_path, started: float, command: str) -> None:
        report["seconds"] = round(time.perf_counter() - started, 1)
        report["command"] = command
        text = json.dumps(report, indent=2)
        self.say(text)
        if json_path:
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(json_path).write_text(text + "\n")

    @staticmethod
    def ranked(store, vectors, test_labels, labels, test_ids, categories=None, vote=None) -> dict:
        """P@5/P@10 of picture queries as the search ranks them (re-ranked by category when
        ``RERANK_WEIGHT`` > 0; ``categories``: the queries' guesses, else from their vectors alone; ``vote``:
        photos, the weight with which their nearest items' vote joins the guess), and the same without re-ranking
        (and, for photos, without the vote)."""
        weight = settings.RERANK_WEIGHT
        plain = precision_at_ks(store, vectors, test_labels, labels, exclude=test_ids)
        if not weight:
            return {**plain, "rerank_weight": 0.0}
        categories = category_guesses(vectors) if categories is None else categories
        reranked = precision_at_ks(store, vectors, test_labels, labels, exclude=test_ids, categories=categories,
                                   weight=weight, vote=vote or 0.0)
        out = {**reranked, "rerank_weight": weight, "without_rerank": plain}
        if vote is not None:
            out["vote_weight"] = vote
            out["without_vote"] = precision_at_ks(store, vectors, test_labels, labels, exclude=test_ids,
                                                  categories=categories, weight=weight)
        return out

    def sketch_figures(self, report, store, labels, test_ids, test_labels, photos) -> np.ndarray | None:
        """Sketches made from the held-out test photos, searched by each road. Returns the default road's vectors.

        Each sketch is cropped to its strokes and redrawn as an uploaded drawing is, so the query tells the
        product's shape only, not its size or place in the photo (which a person's drawing cannot tell).
        """
        from search.train import sketches_of

        sketches = sketches_of(photos, seed=7, framed=True)
        models = get_models()
        out: dict = {"n": len(test_ids), "default": settings.SKETCH_ROAD}
        default_vectors = None
        for road in SKETCH_ROADS:
            if road == "gan" and not models.available("sketch2image"):
                out[road] = {"unavailable": "the sketch2image model is not trained"}
                continue
            self.say(f"Sketch queries by the {road} road: {len(test_ids)} synthetic sketches of test photos...")
            vecs = np.concatenate([embed_sketches(models, sketches[i : i + 512], road)
                                   for i in range(0, len(sketches), 512)])
            guesses = category_guesses(vecs, drawn=road == "direct") if settings.RERANK_WEIGHT else None
            out[road] = self.ranked(store, vecs, test_labels, labels, test_ids, categories=guesses)
            if road == settings.SKETCH_ROAD:
                default_vectors = vecs
        if models.available("sketch2image"):
            report["models"]["sketch2image"] = models.sketch2image().version
        report["sketch"] = out
        return default_vectors

    def text_figures(self, report, version, store, labels, test_ids, test_labels, titles, sketch_vectors) -> None:
        """Held-out titles as queries: R@10 of their own item among all items, P@5 by articleType; and a
        combined sketch + title query (score fusion, as the API does) against either alone."""
        models = get_models()
        space = models.text().index_space
        if not store.has_space(space):
            report["text"] = {"unavailable": f"the index has no {space!r} space: run `python manage.py reindex`"}
            return
        self.say(f"Text queries: {len(titles)} held-out titles against {store.count} items ({space} space)...")
        tvecs = encode_texts(titles)
        report["models"]["text"] = models.text().version
        titles_index = title_index(version)
        weight = settings.LEXICAL_WEIGHT if titles_index is not None else 0.0
        figures = text_query_figures(store, tvecs, titles, titles_index, test_ids, test_labels, labels,
                                     weights=sorted({0.0, weight}), space=space)
        report["text"] = {**figures[weight], "space": space, "n": len(titles), "lexical_weight": weight,
                          "joint_space_alone": figures[0.0]}
        if titles_index is not None:
            self.say("Text queries: choosing the title-match weight on the validation split...")
            report["text"]["lexical_sweep_validation"] = self.lexical_sweep(store, labels, titles_index, space,
                                                                            n=min(self.limit or 1500, 1500))
        self.say("Text queries as a shopper types them: '<brand> <colour> <articleType>'...")
        report["text"]["brand_queries"] = self.brand_queries(store, test_ids, space, titles_index, weight)
        if sketch_vectors is None:
            return
        self.say("Combined queries: synthetic sketch + title...")
        hits = plain = 0
        for i, (svec, tvec) in enumerate(zip(sketch_vectors, tvecs)):
            ranked = fuse_scores(store, [(svec, "image", 0.5), (tvec, space, 0.5)], 10)
            plain += test_ids[i] in [h for h, _ in ranked]
            if weight:
                bonus = (1, weight * titles_index.scores(titles[i]))
                ranked = fuse_scores(store, [(svec, "image", 0.5), (tvec, space, 0.5)], 10, bonus=bonus)
            hits += test_ids[i] in [h for h, _ in ranked]
        sketch_alone = recall_of_items(store, sketch_vectors, test_ids, k=10, space="image")
        report["combined"] = {"sketch_plus_title_r_at_10": hits / len(test_ids), "lexical_weight": weight,
                              "sketch_plus_title_joint_space_alone_r_at_10": plain / len(test_ids),
                              "sketch_alone_r_at_10": sketch_alone["r_at_10"],
                              "title_alone_r_at_10": report["text"]["r_at_10"],
                              "title_alone_joint_space_r_at_10": report["text"]["joint_space_alone"]["r_at_10"],
                              "weights": [0.5, 0.5]}

    @staticmethod
    def lexical_sweep(store, labels, titles_index, space, weights=(0.0, 0.5, 1.0, 1.25, 1.5, 2.0), n=1500) -> dict:
        """R@10 and P@5 of validation titles for several title-match weights (how LEXICAL_WEIGHT was chosen)."""
        _version, _store, item_of = active_store()
        rows = dict(Item.objects.values_list("pk", "sku"))
        val_ids = [i for i, pk in enumerate(item_of) if int(pk) in rows and split_of(rows[int(pk)]) == "val"]
        val_ids = val_ids[:: max(1, len(val_ids) // n)][:n]
        titles = dict(Item.objects.filter(pk__in=[int(item_of[i]) for i in val_ids]).values_list("pk", "title"))
        texts = [titles[int(item_of[i])] for i in val_ids]
        vecs = encode_texts(texts)
        figures = text_query_figures(store, vecs, texts, titles_index, val_ids, [labels[i] for i in val_ids], labels,
                                     weights=weights, space=space)
        return {"n": len(val_ids), **{str(w): f for w, f in figures.items()}}

    @staticmethod
    def brand_queries(store, test_ids, space, titles_index, weight, n=1500) -> dict:
        """'<brand> <colour> <articleType>' of test items (the brand: the title's first word), as a shopper would
        type them; a hit is an item of that brand and that articleType. P@5 as served and by the joint space alone."""
        from search.lexical import hybrid_rank

        _version, _store, item_of = active_store()
        info = {pk: ((title.split() or [""])[0].lower(), category, colour)
                for pk, title, category, colour in Item.objects.values_list("pk", "title", "category", "colour")}
        kinds = [info.get(int(pk), ("", "", ""))[:2] for pk in item_of]
        sample = [i for i in test_ids if kinds[i][0]][:: max(1, len(test_ids) // n)][:n]
        texts = [" ".join(filter(None, (kinds[i][0], info[int(item_of[i])][2], kinds[i][1]))) for i in sample]
        vecs = encode_texts(texts)
        out = {"n": len(sample), "query": "<brand> <colour> <articleType>", "lexical_weight": weight}
        for name, w in (("p_at_5", weight), ("joint_space_alone_p_at_5", 0.0)):
            total = 0.0
            for j, i in enumerate(sample):
                lexical = titles_index.scores(texts[j]) if titles_index is not None and w else None
                ids = [h for h, _ in hybrid_rank(store, vecs[j], lexical, 5, weight=w, space=space)]
                total += sum(kinds[h] == kinds[i] for h in ids) / 5
            out[name] = total / max(len(sample), 1)
        return out

    def classifier_figures(self, report, photos, test_rows, guesses) -> None:
        """Accuracy of the fused classifier and its image-only twin (same budget), and of the category guess
        the search makes for a photo (``picture_categories``: the twin averaged with Image2Vec's own head, with
        the weight the twin's training chose on validation)."""
        models = get_models()
        out = {}
        for role, name in (("classifier_image", "image_only"), ("classifier", "fused")):
            if not models.available(role):
                continue
            self.say(f"Classifier ({name}) on {len(test_rows)} test items...")
            classifier = models.loaded(role)
            names = classifier.label_names["category"]
            titles = [r[3] for r in test_rows] if name == "fused" else None
            probs = classifier.predict(photos, titles)["category"]
            truth = np.array([r[1] for r in test_rows])
            out[name] = {"accuracy": float((np.array(names)[probs.argmax(1)] == truth).mean()), "n": len(test_rows)}
            if name == "fused":
                blind = classifier.predict(photos, None)["category"]
                out[name]["accuracy_without_title"] = float((np.array(names)[blind.argmax(1)] == truth).mean())
            path = settings.ARTIFACTS_DIR / "reports" / ("confusion.png" if name == "fused" else "confusion-image.png")
            save_confusion(truth, np.array(names)[probs.argmax(1)], path, f"{name} classifier, test split")
            report["models"][role] = models.loaded(role).version
        if "image_only" in out and guesses is not None:
            best = np.array([max(c, key=c.get) for c in guesses])
            truth = np.array([r[1] for r in test_rows])
            out["image_only"]["with_image2vec_head"] = {"accuracy": float((best == truth).mean())}
        report["classifier"] = out

    def neighbour_figures(self, out, store, labels, test_ids, vectors, guesses, test_labels, rows, item_of) -> None:
        """The category of a photo uploaded without a title: the search's guess blended with the vote of its
        nearest catalog items (``search.tagging``), at the served k and weight, and a sweep of both on the
        validation split (how they were chosen)."""
        from search.tagging import NEIGHBOUR_TEMPERATURE, NEIGHBOURS

        ks, weights, temperatures = (5, 10, 20), (1.0, 2.0, 4.0), (0.02, 0.05, 0.0)
        served = {"k": NEIGHBOURS, "weight": vote_weight(get_models()), "temperature": NEIGHBOUR_TEMPERATURE}
        self.say(f"Classifier (image-only) with the votes of the {NEIGHBOURS} nearest catalog items...")
        near = neighbour_categories(store, vectors, labels, max(ks + (NEIGHBOURS,)), exclude=test_ids)
        out["with_neighbours"] = {
            "accuracy": guess_accuracy(guesses, test_labels, near, **served), **served,
            "vote_alone_accuracy": guess_accuracy([{} for _ in test_ids], test_labels, near, k=NEIGHBOURS,
                                                  weight=1.0, temperature=NEIGHBOUR_TEMPERATURE)}
        val_ids = [i for i, pk in enumerate(item_of) if int(pk) in rows and split_of(rows[int(pk)][0]) == "val"]
        if self.limit:
            val_ids = val_ids[:: max(1, len(val_ids) // self.limit)][: self.limit]
        if not val_ids:
            return
        self.say(f"Classifier (image-only): choosing k and weight of the neighbours' vote on {len(val_ids)} "
                 "validation photos...")
        from search.images import load_image_array

        val_photos, _ok = load_image_array([Path(rows[int(item_of[i])][2]) for i in val_ids],
                                           settings.ARTIFACTS_DIR / "cache")
        val_vectors = np.asarray(store.vectors("image")[np.array(val_ids)])
        val_guesses = category_guesses(val_vectors, np.asarray(val_photos))
        val_labels = [labels[i] for i in val_ids]
        val_near = neighbour_categories(store, val_vectors, labels, max(ks), exclude=val_ids)
        sweep = {"n": len(val_ids), "0": guess_accuracy(val_guesses, val_labels)}
        for k in ks:
            for t in temperatures:
                for w in weights:
                    sweep[f"k={k} temperature={t} weight={w}"] = guess_accuracy(
                        val_guesses, val_labels, val_near, k=k, weight=w, temperature=t)
        out["with_neighbours"]["sweep_validation"] = sweep

    def caption_figures(self, report, store, item_of, rows, test_ids, photos, titles) -> None:
        """Caption drafts against the true titles (corpus BLEU-4): the LSTM vs copying the nearest item's title."""
        models = get_models()
        out: dict = {"n": len(titles)}
        neighbour = []
        for i in test_ids:
            hits = [h for h, _ in store.query(np.asarray(store.vectors("image")[i]), 2) if h != i]
            neighbour.append(rows[int(item_of[hits[0]])][3] if hits else "")
        # "as shown": an upload's draft is shown without a brand (``webapp.uploads``), against the title without it;
        # an LSTM draft loses every brand of the catalog it opens with, as an upload's does
        shown = [strip_brand(t) for t in titles]
        brands = brands_of(row[3] for row in rows.values())
        out["neighbour"] = {"bleu4": bleu4(neighbour, titles),
                            "bleu4_as_shown": bleu4([strip_brand(t) for t in neighbour], shown)}
        if models.available("captioner"):
            self.say(f"Caption drafts: LSTM (beam 3) on {len(titles)} test photos...")
            drafts = models.captioner().captions(photos)
            out["lstm"] = {"bleu4": bleu4(drafts, titles), "bleu4_as_shown": bleu4([draft_without_brand(d, brands) for d in drafts], shown),
                           "examples": list(zip(drafts[:5], titles[:5]))}
            report["models"]["captioner"] = models.captioner().version
        # the better of the two on what an upload's draft shows (its brand taken off)
        out["winner"] = max((m for m in ("neighbour", "lstm") if m in out), key=lambda m: out[m]["bleu4_as_shown"])
        # what uploads use (webapp.uploads.caption_method): the method asked for where it can run, else the tags;
        # ``auto`` takes this report's winner once it is written
        asked = out["winner"] if settings.CAPTION_METHOD == "auto" else settings.CAPTION_METHOD
        out["in_use"] = asked if asked in out else "tags"
        report["captions"] = out
