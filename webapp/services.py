"""The web app's door to the search domain: models, the active index, and items for hits.

Each process keeps one ModelSet and one loaded VectorStore per index version.
The active version is read from the database on every query (one indexed
row), so a reindex done elsewhere is picked up on the next query, no restart.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings

from search.engine import Encoded, ModelSet
from search.index import IndexFileError, VectorStore
from search.lexical import TitleIndex
from webapp.models import IndexEntry, IndexVersion, Item, LiveVector

log = logging.getLogger(__name__)
_lock = threading.Lock()
_models: ModelSet | None = None
_stores: dict[int, tuple[VectorStore, np.ndarray]] = {}
_titles: dict[int, TitleIndex | None] = {}


class SearchUnavailable(RuntimeError):
    """No usable index (never built, or its files are gone); the message says what to run."""


def models_dir():
    return settings.ARTIFACTS_DIR / "models"


def torch_device() -> str:
    if settings.TORCH_DEVICE != "auto":
        return settings.TORCH_DEVICE
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def get_models() -> ModelSet:
    global _models
    with _lock:
        if _models is None:
            _models = ModelSet(models_dir(), device=torch_device(), threads=settings.TORCH_THREADS,
                               categories=settings.RERANK_WEIGHT > 0)
        return _models


def reset_caches() -> None:
    """Forget loaded models and indexes (tests, after training)."""
    global _models
    with _lock:
        _models = None
        _stores.clear()
        _titles.clear()


def active_version() -> IndexVersion | None:
    return IndexVersion.objects.filter(is_active=True).first()


def load_store(version: IndexVersion) -> tuple[VectorStore, np.ndarray]:
    """The memory-mapped index of ``version`` and its annoy id -> item pk array."""
    with _lock:
        cached = _stores.get(version.pk)
    if cached is not None:
        return cached
    try:
        store = VectorStore(version.path, search_k=version.search_k or None)
    except IndexFileError as exc:
        raise SearchUnavailable(f"index {version.name} cannot be used: {exc}. Run `python manage.py reindex`.") from exc
    item_of = np.full(store.count, -1, dtype=np.int64)
    for annoy_id, item_id in IndexEntry.objects.filter(version=version).values_list("annoy_id", "item_id").iterator(
            chunk_size=10000):
        item_of[annoy_id] = item_id
    with _lock:
        for pk in [pk for pk in _stores if pk != version.pk]:
            del _stores[pk]  # older versions: let their mmaps go
            _titles.pop(pk, None)
        _stores[version.pk] = (store, item_of)
    return store, item_of


def title_index(version: IndexVersion) -> TitleIndex | None:
    """The title index (idf-weighted terms) of ``version``'s items (``search.lexical``); None for versions built
    before it existed (their text queries rank by the joint space alone)."""
    with _lock:
        if version.pk in _titles:
            return _titles[version.pk]
    try:
        titles = TitleIndex.load(version.path)
    except (OSError, ValueError) as exc:
        log.warning("index %s: its title index cannot be read (%s); words use the joint space alone", version.name, exc)
        titles = None
    with _lock:
        _titles[version.pk] = titles
    return titles


def active_store() -> tuple[IndexVersion, VectorStore, np.ndarray]:
    version = active_version()
    if version is None:
        raise SearchUnavailable("no search index yet: import a catalog and run `python manage.py reindex`")
    store, item_of = load_store(version)
    return version, store, item_of


@dataclass
class Filters:
    category: str = ""
    gender: str = ""
    colour: str = ""

    def queryset(self):
        qs = Item.objects.filter(hidden=False)
        if self.category:
            qs = qs.filter(category=self.category)
        if self.gender:
            qs = qs.filter(gender=self.gender)
        if self.colour:
            qs = qs.filter(colour__iexact=self.colour)
        return qs

    def any(self) -> bool:
        return bool(self.category or self.gender or self.colour)


@dataclass
class Hit:
    item: Item
    score: float


@dataclass
class SearchResult:
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    index_version: str = ""


def live_vectors(space: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """(item pks, vectors) of the live buffer in ``space``: items added or changed since the active index was built.

    In the ``text`` space only rows with a text-space vector count: the others keep their indexed
    text vector (or, when new, are found by words after the next reindex)."""
    if space == "text":
        rows = list(LiveVector.objects.exclude(text_vector=None).values_list("item_id", "text_vector"))
    else:
        rows = list(LiveVector.objects.values_list("item_id", "vector"))
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    pks = np.array([pk for pk, _ in rows], dtype=np.int64)
    return pks, np.stack([np.frombuffer(bytes(v), dtype=np.float32) for _, v in rows])


def live_hits(vector: np.ndarray, k: int, filters: Filters, exclude_item: int | None,
              live: tuple[np.ndarray, np.ndarray]) -> list[tuple[int, float]]:
    """Exact search over the live buffer's visible items: (item pk, cosine) best first."""
    pks, vectors = live
    if not len(pks) or vectors.shape[1] != len(vector):
        return []
    visible = set(filters.queryset().filter(pk__in=pks.tolist()).values_list("pk", flat=True))
    keep = np.array([int(pk) in visible and int(pk) != exclude_item for pk in pks])
    if not keep.any():
        return []
    sims = vectors[keep] @ np.asarray(vector, dtype=np.float32)
    order = np.argsort(-sims)[:k]
    return [(int(pks[keep][i]), float(sims[i])) for i in order]


def visible_mask(item_of: np.ndarray) -> np.ndarray:
    """Which index ids are not hidden: asks only for the (few) hidden items, not every visible one."""
    hidden = Item.objects.filter(hidden=True).values_list("pk", flat=True)
    return ~np.isin(item_of, np.fromiter(hidden, dtype=np.int64))


def filter_mask(filters: Filters, item_of: np.ndarray) -> np.ndarray:
    """Which index ids are visible items passing ``filters``."""
    return np.isin(item_of, np.fromiter(filters.queryset().values_list("pk", flat=True), dtype=np.int64))


def search_vector(encoded: Encoded, k: int, filters: Filters | None = None, exclude_item: int | None = None,
                  text: str = "") -> SearchResult:
    """The index's hits on the active version merged with an exact search over the live buffer.

    A picture query that carries its likeliest categories (``encoded.categories``) is re-ranked among
    its nearest ``search.rerank.RERANK_CANDIDATES`` items (``RERANK_WEIGHT``); the hits' scores are
    then the re-ranking scores. A text query with its ``text`` is ranked by the joint space and the
    items' titles together (``search.lexical.hybrid_rank``, ``LEXICAL_WEIGHT``); live items by their live
    vector and current title."""
    from search import rerank
    from search.engine import timed
    from search.lexical import hybrid_rank

    filters = filters or Filters()
    categories = encoded.categories if encoded.space == "image" else None
    final_k, k = k, rerank.depth(k, categories, settings.RERANK_WEIGHT)
    timings = dict(encoded.timings_ms)
    version, store, item_of = active_store()
    weight, titles, lexical = settings.LEXICAL_WEIGHT, None, None
    if text and weight and (titles := title_index(version)) is not None and len(titles) == len(item_of):
        with timed(timings, "lexical"):
            lexical = titles.scores(text)

    def ranked(n: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        if lexical is None:
            return store.query(encoded.vector, n, space=encoded.space, allowed=allowed)
        return hybrid_rank(store, encoded.vector, lexical, n, weight=weight, space=encoded.space, allowed=allowed)

    with timed(timings, "live"):
        live = live_vectors(encoded.space)
        superseded = set(live[0].tolist())  # their indexed vectors are stale (or they are new)
        fresh = live_hits(encoded.vector, k, filters, exclude_item, live) if len(live[0]) else []
    extra = 8 + len(superseded)
    with timed(timings, "database"):
        allowed = filter_mask(filters, item_of) if filters.any() else None
    with timed(timings, "ann"):
        raw = ranked(k + extra, allowed)
    with timed(timings, "database"):
        pks = [int(item_of[i]) for i, _ in raw]
        items = Item.objects.in_bulk([pk for pk in pks if pk >= 0] + [pk for pk, _ in fresh])
        hits = []
        for (_annoy_id, score), pk in zip(raw, pks, strict=True):
            item = items.get(pk)
            if item is None or item.hidden or pk == exclude_item or pk in superseded:
                continue
            hits.append(Hit(item, score))
        if len(hits) < k and len(raw) >= k + extra:
            # Many hidden items among the nearest: search again with an explicit mask.
            visible = filter_mask(filters, item_of)
            if exclude_item is not None:
                visible &= item_of != exclude_item
            if superseded:
                visible &= ~np.isin(item_of, np.fromiter(superseded, dtype=np.int64))
            raw = ranked(k, visible)
            items.update(Item.objects.in_bulk([int(item_of[i]) for i, _ in raw]))
            hits = [Hit(items[int(item_of[i])], s) for i, s in raw if int(item_of[i]) in items]
        fresh = [(pk, score) for pk, score in fresh if pk in items]
        if lexical is not None and fresh:
            bonus = weight * titles.scores_for(text, [items[pk].title for pk, _ in fresh])
            fresh = [(pk, score + float(b)) for (pk, score), b in zip(fresh, bonus, strict=True)]
        hits.extend(Hit(items[pk], score) for pk, score in fresh)
        if categories and hits:
            if encoded.neighbour_vote:
                categories = rerank.with_vote(categories, [h.score for h in hits], [h.item.category for h in hits])
            scores = rerank.rerank_scores([h.score for h in hits], [h.item.category for h in hits], categories,
                                          settings.RERANK_WEIGHT)
            hits = [Hit(h.item, float(s)) for h, s in zip(hits, scores, strict=True)]
        hits.sort(key=lambda h: -h.score)
    return SearchResult(hits=hits[:final_k], timings_ms=timings, index_version=version.name)


def similar_items(item: Item, k: int, filters: Filters | None = None) -> SearchResult:
    """Nearest neighbours of a catalog item: its stored vector when indexed, else its image."""
    version, store, item_of = active_store()
    timings: dict[str, float] = {}
    positions = np.flatnonzero(item_of == item.pk)
    live = LiveVector.objects.filter(item=item).first()
    if live is not None:
        vector = live.as_array()
    elif len(positions):
        vector = np.asarray(store.vectors("image")[positions[0]])
    else:
        from search.engine import timed
        from search.images import image_bytes_to_array

        with timed(timings, "decode"):
            image = image_bytes_to_array(open(item.image_path, "rb").read())
        encoded = get_models().encode_photo(image)
        vector, timings = encoded.vector, {**timings, **encoded.timings_ms}
    return search_vector(Encoded(vector, "image", timings), k, filters, exclude_item=item.pk)


def search_combined(picture: Encoded, words: Encoded, k: int, filters: Filters | None = None,
                    picture_weight: float = 0.5, text: str = "") -> SearchResult:
    """"This shape, but red": a photo/sketch vector and a text vector ranked together by score fusion
    (``search.fusion``); the words bring their title match too (``text``, ``LEXICAL_WEIGHT``), as in a
    text search. Items in the live buffer join after the next reindex."""
    from search.engine import timed
    from search.fusion import fuse_scores

    filters = filters or Filters()
    timings = {**picture.timings_ms, **words.timings_ms}
    version, store, item_of = active_store()
    with timed(timings, "database"):
        allowed = filter_mask(filters, item_of) if filters.any() else visible_mask(item_of)
    bonus = None
    titles = title_index(version) if text and settings.LEXICAL_WEIGHT else None
    if titles is not None and len(titles) == len(item_of):
        with timed(timings, "lexical"):
            bonus = (1, settings.LEXICAL_WEIGHT * titles.scores(text))
    with timed(timings, "ann"):
        ranked = fuse_scores(store, [(picture.vector, picture.space, picture_weight),
                                     (words.vector, words.space, 1.0 - picture_weight)], k, allowed=allowed,
                             bonus=bonus)
    with timed(timings, "database"):
        items = Item.objects.in_bulk([int(item_of[i]) for i, _ in ranked])
        hits = [Hit(items[int(item_of[i])], score) for i, score in ranked if int(item_of[i]) in items]
    return SearchResult(hits=hits, timings_ms=timings, index_version=version.name)
