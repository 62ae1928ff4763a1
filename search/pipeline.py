"""One query, top to bottom: upload bytes in, ranked items out.

    decode -> normalise -> encode -> nearest items -> live merge -> filters -> re-rank

Each stage is a function below, in that order. The first three (``decode``, ``encode``) turn bytes into an
``Encoded`` vector; they may run in an inference worker, so they take and return plain arrays. The rest
(``search_vector``, and ``search_combined`` for a picture with words) rank the catalog for that vector.

Nothing here knows Django. The index comes in as an ``ActiveIndex`` (the store, its Annoy-id -> item map and
the title index); what the catalog knows of items (which are visible, their category and title, the live
buffer of items added since the build) comes through ``ItemSource``, which the web app implements on its
ORM (``webapp.services.CatalogItems``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from models.training import match_thread_count
from search import rerank
from search.categories import picture_categories, reads_encoder, vote_weight
from search.fusion import fuse_scores
from search.images import decode_image, fit_to_model
from search.index import VectorStore
from search.lexical import TitleIndex, hybrid_rank
from search.timing import timed
from search.trained import ModelMissingError, TrainedModels

QUERY_KINDS = ("photo", "sketch", "photo_text")  # photo_text: a catalog photo into the text model's joint space
SKETCH_ROADS = ("direct", "gan")  # how a sketch reaches the index; the API's ``road`` (webapp.api.ROAD)

# The index is asked for this many nearest items beyond the ``k`` wanted (plus one per item in the live
# buffer, whose indexed vector is stale): items hidden since the build are dropped after the index answers,
# and a few spare ones usually make up for them. When they do not (many hidden among the nearest), a second
# pass asks the index again with an explicit mask of the visible items, which is exact but slower.
HIDDEN_SLACK = 8


@dataclass
class Encoded:
    """A query as the index sees it."""

    vector: np.ndarray
    space: str  # the index space to search: ``image`` (Image2Vec) or ``text`` (the text model's own)
    timings_ms: dict[str, float]
    generated: np.ndarray | None = None  # the GAN's picture of a sketch, uint8 (80, 60, 3)
    categories: dict[str, float] | None = None  # the query's likeliest articleTypes (``search.categories``)
    neighbour_vote: float = 0.0  # a photo: the weight with which its nearest items' vote joins ``categories``


@dataclass
class Filters:
    category: str = ""
    gender: str = ""
    colour: str = ""  # matched without regard to case

    def any(self) -> bool:
        return bool(self.category or self.gender or self.colour)


class ItemInfo(Protocol):
    """What ranking reads of one item (the web app's ``Item`` rows are these)."""

    pk: int
    hidden: bool
    category: str
    title: str


class ItemSource(Protocol):
    """The catalog as the pipeline sees it; the web app implements it on the database."""

    def rows(self, pks: Sequence[int]) -> Mapping[int, ItemInfo]:
        """The items of these pks that exist (hidden ones included: ranking drops them)."""

    def passing(self, filters: Filters, among: Sequence[int] | None = None) -> np.ndarray:
        """pks of the visible items that pass ``filters`` (only those in ``among`` when given)."""

    def hidden(self) -> np.ndarray:
        """pks of the hidden items (few)."""

    def live_vectors(self, space: str) -> tuple[np.ndarray, np.ndarray]:
        """(pks, vectors) of the live buffer in ``space``: items added or changed since the index was built."""


@dataclass
class ActiveIndex:
    name: str
    store: VectorStore
    item_of: np.ndarray  # Annoy id -> item pk (-1: none)
    titles: TitleIndex | None  # None for versions built before title indexes existed


@dataclass
class Hit:
    item: ItemInfo
    score: float


@dataclass
class Ranked:
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    index_version: str = ""


# ---- 1. decode and normalise: bytes -> the array a model takes (cheap, torch-free: runs in the web process) ----

def decode(data: bytes, kind: str, *, max_bytes: int, max_pixels: int) -> tuple[np.ndarray, dict[str, float]]:
    """Upload bytes -> photo uint8 (80, 60, 3) or sketch uint8 (80, 60), and the stages' timings.

    A bad upload raises ``search.images.ImageInputError`` here, before any model runs."""
    if kind not in QUERY_KINDS:
        raise ValueError(f"kind must be one of {', '.join(QUERY_KINDS)}")
    timings: dict[str, float] = {}
    if kind in ("photo", "photo_text"):
        with timed(timings, "decode"):
            return fit_to_model(decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)), timings
    from search.sketches import normalise_sketch

    with timed(timings, "decode"):
        img = decode_image(data, keep_alpha=True, max_bytes=max_bytes, max_pixels=max_pixels)
    with timed(timings, "normalise"):
        return normalise_sketch(img), timings


# ---- 2. encode: the array -> a vector in an index space (the models; an inference worker's job) ---------------

def encode(models: TrainedModels, array: np.ndarray, kind: str, road: str,
           categories: bool = True) -> tuple[Encoded, str]:
    """A decoded query -> (its ``Encoded``, the version of the model that made the vector).

    ``categories``: picture queries carry their likeliest categories, for re-ranking (off when
    ``RERANK_WEIGHT`` is 0)."""
    if kind == "photo_text":
        return encode_photo_text_space(models, array), models.text().version
    if kind == "photo":
        return encode_photo(models, array, categories), models.encoder().version
    return encode_sketch(models, array, road, categories=categories), models.encoder().version


def encode_photo(models: TrainedModels, image: np.ndarray, categories: bool = True) -> Encoded:
    timings: dict[str, float] = {}
    descriptors = None
    with timed(timings, "encoder"):  # one pass over the CNN per view, for the vector and the classifier
        if categories and reads_encoder(models):
            vectors, descriptors = models.encoder().embed_and_describe(image[None])
            vec = vectors[0]
        else:
            vec = models.encoder().embed(image[None])[0]
    guess = None
    if categories:
        with timed(timings, "classifier"):
            guess = picture_categories(models, vec[None], image[None], descriptors=descriptors)[0]
    vote = vote_weight(models) if guess is not None else 0.0
    return Encoded(vec, "image", timings, categories=guess, neighbour_vote=vote)


def embed_sketches(models: TrainedModels, sketches: np.ndarray, road: str) -> np.ndarray:
    """Image2Vec vectors of sketches uint8 (N, 80, 60) by one road: ``direct`` (the encoder saw sketches in
    training) or ``gan`` (sketch -> pix2pix picture -> encoder)."""
    if road == "gan":
        return models.encoder().embed(models.sketch2image().generate(sketches))
    return models.encoder().embed(np.repeat(sketches[..., None], 3, axis=-1))


def encode_sketch(models: TrainedModels, sketch: np.ndarray, road: str, imagine: bool = True,
                  categories: bool = True) -> Encoded:
    """A normalised sketch (80, 60) -> vector; ``imagine`` also returns the GAN's picture of it (once trained)."""
    if road not in SKETCH_ROADS:
        raise ValueError(f"unknown sketch road {road!r}; choose from {', '.join(SKETCH_ROADS)}")
    timings: dict[str, float] = {}
    generated = None
    drawing = None  # on the direct road the picture is only shown: the GAN draws it beside the encoder

    def imagined() -> np.ndarray:
        with timed(timings, "gan"):
            return models.sketch2image().generate(sketch[None])[0]

    if road == "gan":
        generated = imagined()
    elif imagine and models.available("sketch2image"):
        # one per query: nothing is left running in a forked worker; sized as the worker's torch (else its
        # convolutions take every core, beside the encoder's)
        pool = ThreadPoolExecutor(max_workers=1, initializer=match_thread_count)
        drawing = pool.submit(imagined)
        pool.shutdown(wait=False)
    with timed(timings, "encoder"):
        source = generated if road == "gan" else np.repeat(sketch[..., None], 3, axis=-1)
        vec = models.encoder().embed(source[None])[0]
        # the encoder's own head: it saw sketches, the classifier did not
        guess = picture_categories(models, vec[None], drawn=road == "direct")[0] if categories else None
    if drawing is not None:
        generated = drawing.result()
    return Encoded(vec, "image", timings, generated, guess)


def encode_text(models: TrainedModels, text: str) -> Encoded:
    if not models.available("text"):
        raise ModelMissingError("text search needs the text model: run `python manage.py train text`")
    timings: dict[str, float] = {}
    text_model = models.text()
    with timed(timings, "text_encoder"):
        vec = text_model.encode([text])[0]
    return Encoded(vec, text_model.index_space, timings)


def encode_photo_text_space(models: TrainedModels, image: np.ndarray) -> Encoded:
    """One catalog photo in the text model's joint space: how words find a newly added item."""
    timings: dict[str, float] = {}
    with timed(timings, "text_image_encoder"):
        vec = models.text().encode_images(image[None])[0]
    return Encoded(np.asarray(vec, np.float32), "text", timings)


# ---- 3. rank: nearest items, live merge, filters, re-rank ------------------------------------------------------

def search_vector(encoded: Encoded, k: int, index: ActiveIndex, items: ItemSource, filters: Filters | None = None,
                  exclude_item: int | None = None, text: str = "", *, rerank_weight: float = rerank.RERANK_WEIGHT,
                  lexical_weight: float = 0.0) -> Ranked:
    """The top ``k`` items for a vector: the index's nearest merged with an exact search of the live buffer.

    A picture query that carries its likeliest categories (``encoded.categories``) is re-ranked among its
    nearest ``rerank.RERANK_CANDIDATES`` items (``rerank_weight``); the hits' scores are then the re-ranking
    scores. A text query with its ``text`` is ranked by the joint space and the titles together
    (``search.lexical.hybrid_rank``, ``lexical_weight``); live items by their live vector and current title."""
    filters = filters or Filters()
    timings = dict(encoded.timings_ms)
    categories = encoded.categories if encoded.space == "image" else None
    depth = rerank.depth(k, categories, rerank_weight)
    lexical = title_scores(index, text, lexical_weight, timings)

    def nearest(n: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        if lexical is None:
            return index.store.query(encoded.vector, n, space=encoded.space, allowed=allowed)
        return hybrid_rank(index.store, encoded.vector, lexical, n, weight=lexical_weight, space=encoded.space,
                           allowed=allowed)

    # live merge, part 1: the live buffer's own nearest (exact), and the items whose indexed vector it replaces
    with timed(timings, "live"):
        live = items.live_vectors(encoded.space)
        superseded = set(live[0].tolist())
        fresh = live_nearest(encoded.vector, depth, items, filters, exclude_item, live) if len(live[0]) else []
    # nearest items with filters: a mask for the filters, hidden ones dropped after the index answers
    with timed(timings, "database"):
        allowed = np.isin(index.item_of, items.passing(filters)) if filters.any() else None
    asked = depth + HIDDEN_SLACK + len(superseded)
    with timed(timings, "ann"):
        raw = nearest(asked, allowed)
    with timed(timings, "database"):
        pks = [int(index.item_of[i]) for i, _ in raw]
        rows = dict(items.rows([pk for pk in pks if pk >= 0] + [pk for pk, _ in fresh]))
        hits = [Hit(rows[pk], score) for (_, score), pk in zip(raw, pks, strict=True)
                if pk in rows and not rows[pk].hidden and pk != exclude_item and pk not in superseded]
        if len(hits) < depth and len(raw) >= asked:  # the slack was not enough: ask again with an exact mask
            visible = np.isin(index.item_of, items.passing(filters))
            if exclude_item is not None:
                visible &= index.item_of != exclude_item
            if superseded:
                visible &= ~np.isin(index.item_of, np.fromiter(superseded, dtype=np.int64))
            raw = nearest(depth, visible)
            rows.update(items.rows([int(index.item_of[i]) for i, _ in raw]))
            hits = [Hit(rows[int(index.item_of[i])], s) for i, s in raw if int(index.item_of[i]) in rows]
        # live merge, part 2: live items join with their live vector (and their current title's match)
        fresh = [(pk, score) for pk, score in fresh if pk in rows]
        if lexical is not None and fresh:
            bonus = lexical_weight * index.titles.scores_for(text, [rows[pk].title for pk, _ in fresh])
            fresh = [(pk, score + float(b)) for (pk, score), b in zip(fresh, bonus, strict=True)]
        hits.extend(Hit(rows[pk], score) for pk, score in fresh)
        hits = rerank_hits(hits, categories, encoded.neighbour_vote, rerank_weight)
    return Ranked(hits=hits[:k], timings_ms=timings, index_version=index.name)


def title_scores(index: ActiveIndex, text: str, weight: float, timings: dict[str, float]) -> np.ndarray | None:
    """Each indexed item's title match for ``text`` (``search.lexical``), or None when words do not count."""
    if not (text and weight and index.titles is not None and len(index.titles) == len(index.item_of)):
        return None
    with timed(timings, "lexical"):
        return index.titles.scores(text)


def live_nearest(vector: np.ndarray, k: int, items: ItemSource, filters: Filters, exclude_item: int | None,
                 live: tuple[np.ndarray, np.ndarray]) -> list[tuple[int, float]]:
    """Exact search over the live buffer's visible items passing ``filters``: (item pk, cosine) best first."""
    pks, vectors = live
    if not len(pks) or vectors.shape[1] != len(vector):
        return []
    visible = set(items.passing(filters, among=pks.tolist()).tolist())
    keep = np.array([int(pk) in visible and int(pk) != exclude_item for pk in pks])
    if not keep.any():
        return []
    sims = vectors[keep] @ np.asarray(vector, dtype=np.float32)
    order = np.argsort(-sims)[:k]
    return [(int(pks[keep][i]), float(sims[i])) for i in order]


def rerank_hits(hits: list[Hit], categories: dict[str, float] | None, vote: float, weight: float) -> list[Hit]:
    """Best first; with the query's ``categories``, by cosine + ``weight`` x P(the item's category)
    (``search.rerank``), a photo's categories first taking in its nearest hits' vote (``vote``: its weight)."""
    if categories and hits:
        cats = [h.item.category for h in hits]
        if vote:
            categories = rerank.with_vote(categories, [h.score for h in hits], cats, vote)
        scores = rerank.rerank_scores([h.score for h in hits], cats, categories, weight)
        hits = [Hit(h.item, float(s)) for h, s in zip(hits, scores, strict=True)]
    return sorted(hits, key=lambda h: -h.score)


def search_combined(picture: Encoded, words: Encoded, k: int, index: ActiveIndex, items: ItemSource,
                    filters: Filters | None = None, picture_weight: float = 0.5, text: str = "", *,
                    lexical_weight: float = 0.0) -> Ranked:
    """"This shape, but red": a photo/sketch vector and a text vector ranked together by score fusion
    (``search.fusion``); the words bring their title match too (``text``, ``lexical_weight``), as in a
    text search. Items in the live buffer join after the next reindex."""
    filters = filters or Filters()
    timings = {**picture.timings_ms, **words.timings_ms}
    with timed(timings, "database"):
        allowed = (np.isin(index.item_of, items.passing(filters)) if filters.any()
                   else ~np.isin(index.item_of, items.hidden()))
    lexical = title_scores(index, text, lexical_weight, timings)
    bonus = None if lexical is None else (1, lexical_weight * lexical)
    with timed(timings, "ann"):
        ranked = fuse_scores(index.store, [(picture.vector, picture.space, picture_weight),
                                           (words.vector, words.space, 1.0 - picture_weight)], k, allowed=allowed,
                             bonus=bonus)
    with timed(timings, "database"):
        rows = items.rows([int(index.item_of[i]) for i, _ in ranked])
        hits = [Hit(rows[int(index.item_of[i])], score) for i, score in ranked if int(index.item_of[i]) in rows]
    return Ranked(hits=hits, timings_ms=timings, index_version=index.name)
