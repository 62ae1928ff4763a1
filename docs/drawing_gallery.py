"""Does a drawing find its kind better against drawings of the catalog than against its photos? (docs/drawings.md,
"A gallery of drawings"):

    python docs/drawing_gallery.py artifacts/models/encoder.pt      # about 7 minutes on 2 cores

Every catalog item is drawn as a doodle and in the clean style (``search.sketches``, the wearer left out, framed as a
query is) and embedded by the encoder; a drawing's score for an item is its cosine to the item's photo plus
lambda x its cosine to the item's drawings (their normalised sum), re-ranked as served and searched exactly, as
``docs/sketch_recipes.py`` measures a recipe. Prints the human set's macro P@5 (19 kinds, and the 15 the training
pool does not show) and the synthetic sketch P@5 of 1,500 test items for each gallery.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sketch_recipes as recipes  # noqa: E402

from search import sketches  # noqa: E402
from search import train as training  # noqa: E402
from search.catalog import is_worn  # noqa: E402

GALLERIES = [("photos (as served)", 0.0, 1.0), ("doodles only", 1.0, 0.0), ("clean drawings only", 1.0, 0.0),
             ("photos + both drawings, 0.5", 0.5, 1.0), ("photos + both drawings, 1", 1.0, 1.0),
             ("photos + both drawings, 2", 2.0, 1.0)]


def drawings_of(photos: np.ndarray, worn: np.ndarray, style: str) -> np.ndarray:
    """Every photo drawn in one style, ``doodle`` or ``clean`` (seeded)."""
    clean_p = sketches.CLEAN_P
    sketches.CLEAN_P = 1.0 if style == "clean" else clean_p  # the clean style for every drawing
    try:
        return training.sketches_of(photos, seed=11 if style == "doodle" else 12, framed=True, worn=worn,
                                    doodles=1.0 if style == "doodle" else 0.0)
    finally:
        sketches.CLEAN_P = clean_p


def similarities(vectors: np.ndarray, sides: tuple[tuple[float, np.ndarray], ...]) -> np.ndarray:
    """The weighted mean of the queries' cosines to each side of the gallery (weight, vectors per item)."""
    score = sum(weight * (vectors @ side.T) for weight, side in sides if weight)
    return score / sum(weight for weight, _ in sides)


def main() -> None:
    encoder = recipes.load(Path(sys.argv[1]))
    data = training.load_for_training(recipes.CATALOG, recipes.ARTIFACTS)
    rows, photos, level = recipes.catalog_levels(data)
    worn = np.array([is_worn(r) for r in rows], dtype=bool)
    gallery = recipes.embed(encoder, photos)
    doodles = recipes.embed(encoder, drawings_of(photos, worn, "doodle"))
    clean = recipes.embed(encoder, drawings_of(photos, worn, "clean"))
    both = doodles + clean
    both /= np.linalg.norm(both, axis=1, keepdims=True)
    queries, drawings = recipes.human_drawings()
    human = recipes.embed(encoder, drawings)
    items, drawn = recipes.synthetic_queries(data)
    synthetic = recipes.embed(encoder, drawn)
    truth = level["articleType"][items][:, None]
    for name, weight, photo_weight in GALLERIES:
        drawn_side = doodles if name.startswith("doodles") else clean if name.startswith("clean") else both
        sides = ((photo_weight, gallery), (weight, drawn_side))
        people = recipes.human_figures(queries, recipes.top5(encoder, human, similarities(human, sides),
                                                             level["articleType"], True), level)
        hits = recipes.top5(encoder, synthetic, similarities(synthetic, sides), level["articleType"], True,
                            exclude=items)
        print(f"{name:30s} macro {people['human_macro']:.3f}  15 kinds {people['human_kinds_not_in_pool']:.3f}  "
              f"synthetic {(level['articleType'][hits] == truth).mean():.3f}", flush=True)


if __name__ == "__main__":
    main()
