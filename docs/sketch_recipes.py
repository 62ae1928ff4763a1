"""Compare encoder recipes on the drawings by people, in minutes (the "What was tried" tables of docs/drawings.md):

    python docs/sketch_recipes.py NAME '{"pool_fraction": 0.03}' [--epochs 8] [--doodles 0.2]
    python docs/sketch_recipes.py NAME --measure-only      # measure a recipe trained before, again

Trains Image2Vec with the cpu profile's recipe, the given profile fields changed, for a few epochs (8 take about
eight minutes on 2 cores) into ``artifacts/recipes/NAME/encoder.pt``; ``--doodles`` is the share of its training
sketches drawn as doodles (``search.sketches.DOODLE_P``); the pool's share is ``models.train_encoder.pool_share``'s
(``pool_fraction`` up to the profile's ``pool_epochs``, 8, and less in a longer run). It then measures the
encoder without a database or an index: an exact search of every catalog photo (mirror-averaged, as the index
holds them) with the served re-ranking (``search.rerank``; a sketch's guess corrected as ``search.trained``
does), for

- the drawings by people (``HUMAN_SKETCHES_DIR``): P@5 per kind at its category level, the macro average and the
  macro over the kinds the training pool does not show;
- synthetic framed sketches and the photos of 1,500 test items (articleType P@5, the item itself left out).

The figures go to stdout and to ``artifacts/recipes/NAME/figures.json``. ``python manage.py evaluate`` measures the
models ``make train`` leaves through the served path itself (ANN index, database, filters); the two agree within
a point or two.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search import rerank, sketches  # noqa: E402
from search import train as training  # noqa: E402
from search.categories import top_categories  # noqa: E402
from search.drawings import pool_files  # noqa: E402
from search.images import decode_image  # noqa: E402
from search.sketches import normalise_sketch  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
CATALOG = Path(os.environ.get("CATALOG_DIR", SHARED / "fashion-product-images-small"))
HUMAN = Path(os.environ.get("HUMAN_SKETCHES_DIR", SHARED / "human-sketches"))
POOL = Path(os.environ.get("HUMAN_SKETCHES_TRAIN_DIR", SHARED / "human-sketches-train"))
ARTIFACTS = ROOT / "artifacts"
LEVELS = {"articleType": "category", "subCategory": "sub_category", "masterCategory": "master_category"}


def train(data, out: Path, overrides: dict, epochs: int, doodles: float) -> None:
    from models.train_encoder import PROFILES, train_encoder, training_subset

    prof = training.resolve_profile(PROFILES, "cpu", {"budget_seconds": None, "epochs": epochs, **overrides})
    sketches.DOODLE_P = doodles
    cache = ARTIFACTS / "recipes" / f"sketches-{doodles}-{prof.sketch_variants}.npz"
    if cache.is_file():
        drawn = np.load(cache)
        train_sketches, val_sketches = drawn["train"], drawn["val"]
    else:
        only = training_subset(len(data.train.images), prof)
        train_sketches, val_sketches = training.training_sketches(data, prof.sketch_variants, only)
        np.savez(cache, train=train_sketches, val=val_sketches)
    pool = training.training_pool(POOL, ARTIFACTS, data.class_names) if prof.pool_fraction > 0 else None
    train_encoder(data.train.images, data.train.labels, data.val.images, data.val.labels, data.class_names,
                  out / "encoder.pt", profile=prof, train_sketches=train_sketches, val_sketches=val_sketches,
                  pool=pool, resume=False)


def top5(encoder, vectors: np.ndarray, sims: np.ndarray, categories: np.ndarray, drawn: bool,
         exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the top 5 gallery items for each query vector, from its similarities ``sims`` to the gallery,
    re-ranked among its nearest as served (the query's guess from ``vectors``; ``categories``: the gallery's)."""
    guesses = top_categories(encoder.category_probs(vectors, drawn=drawn), encoder.class_names)
    if exclude is not None:
        sims[np.arange(len(vectors)), exclude] = -np.inf
    nearest = np.argpartition(-sims, rerank.RERANK_CANDIDATES, axis=1)[:, : rerank.RERANK_CANDIDATES]
    return np.stack([cand[np.argsort(-rerank.rerank_scores(sims[i, cand], categories[cand], guess))[:5]]
                     for i, (cand, guess) in enumerate(zip(nearest, guesses, strict=True))])


def human_drawings() -> tuple[list[dict], np.ndarray]:
    """The rows of HUMAN_SKETCHES_DIR/queries.csv and their drawings, normalised as a query is."""
    with (HUMAN / "queries.csv").open(newline="", encoding="utf-8-sig") as fh:
        queries = list(csv.DictReader(fh))
    return queries, np.stack([normalise_sketch(decode_image((HUMAN / q["query_image"]).read_bytes(), keep_alpha=True))
                              for q in queries])


def human_figures(queries: list[dict], hits: np.ndarray, level: dict) -> dict:
    """P@5 per drawn kind at each row's category level, the macro, the macro over the kinds the pool does not
    show, and the worst kind."""
    kinds: dict[str, list[float]] = {}
    for q, found in zip(queries, hits, strict=True):
        right = level[q["category_level"]][found] == q["expected_category"]
        kinds.setdefault(f"{q['drawn_as']} ({q['source']})", []).append(float(right.mean()))
    per_kind = {k: float(np.mean(v)) for k, v in sorted(kinds.items(), key=lambda kv: np.mean(kv[1]))}
    pooled = {kind for _path, kind in pool_files(POOL)} if POOL.is_dir() else set()
    return {"human_macro": float(np.mean(list(per_kind.values()))),
            "human_kinds_not_in_pool": float(np.mean([v for k, v in per_kind.items()
                                                      if k.split(" (")[0] not in pooled])),
            "human_worst": min(per_kind.values()), "kinds": per_kind}


def catalog_levels(data) -> tuple[list, np.ndarray, dict]:
    """Every catalog row (train, val, test), their photos, and each category level's labels."""
    rows = data.train.rows + data.val.rows + data.test.rows
    photos = np.concatenate([data.train.images, data.val.images, data.test.images])
    return rows, photos, {name: np.array([getattr(r, field) for r in rows]) for name, field in LEVELS.items()}


def synthetic_queries(data) -> tuple[np.ndarray, np.ndarray]:
    """1,500 test items (their indices among every catalog row) and their framed sketches, as evaluate draws them."""
    chosen = np.sort(np.random.default_rng(0).permutation(len(data.test.rows))[:1500])
    items = len(data.train.rows) + len(data.val.rows) + chosen
    return items, training.sketches_of(data.test.images[chosen], seed=7, framed=True)


def load(path: Path):
    import torch

    from models.train_encoder import load_encoder
    from search.trained import Image2Vec

    payload = torch.load(path, map_location="cpu", weights_only=False)
    return Image2Vec(load_encoder(payload), payload)


def embed(encoder, images: np.ndarray) -> np.ndarray:
    """Vectors of photos (N, 80, 60, 3) or sketches (N, 80, 60), in chunks."""
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    return np.concatenate([encoder.embed(images[i : i + 2048]) for i in range(0, len(images), 2048)])


def measure(data, out: Path) -> dict:
    encoder = load(out / "encoder.pt")
    _rows, photos, level = catalog_levels(data)
    gallery = embed(encoder, photos)
    queries, drawings = human_drawings()
    vectors = embed(encoder, drawings)
    human = human_figures(queries, top5(encoder, vectors, vectors @ gallery.T, level["articleType"], True), level)
    items, drawn = synthetic_queries(data)
    sketched = embed(encoder, drawn)
    sketch_hits = top5(encoder, sketched, sketched @ gallery.T, level["articleType"], True, exclude=items)
    photo_hits = top5(encoder, gallery[items], gallery[items] @ gallery.T, level["articleType"], False, exclude=items)
    truth = level["articleType"][items][:, None]
    figures = {
        **{k: v for k, v in human.items() if k != "kinds"},
        "synthetic_sketch_p_at_5": float((level["articleType"][sketch_hits] == truth).mean()),
        "photo_p_at_5": float((level["articleType"][photo_hits] == truth).mean()),
        "kinds": human["kinds"],
    }
    (out / "figures.json").write_text(json.dumps(figures, indent=1) + "\n")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("overrides", nargs="?", type=json.loads, default={})
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--doodles", type=float, default=sketches.DOODLE_P)
    parser.add_argument("--measure-only", action="store_true")
    args = parser.parse_args()
    out = ARTIFACTS / "recipes" / args.name
    out.mkdir(parents=True, exist_ok=True)
    data = training.load_for_training(CATALOG, ARTIFACTS)
    if not args.measure_only:
        train(data, out, args.overrides, args.epochs, args.doodles)
    figures = measure(data, out)
    print(json.dumps({k: round(v, 3) for k, v in figures.items() if k != "kinds"}))
    print("  ".join(f"{k} {v:.2f}" for k, v in figures["kinds"].items()))


if __name__ == "__main__":
    main()
