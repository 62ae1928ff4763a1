"""The web app's door to the search domain: loaded models, the active index, and the catalog's items.

Each process keeps one set of loaded models and one loaded VectorStore per index version. The active
version is read from the database on every query (one indexed row), so a reindex done elsewhere is
picked up on the next query, no restart. The ranking itself is ``search.pipeline``'s; this module gives
it the index (``active_index``) and the items (``CatalogItems``, its ``ItemSource`` on the ORM).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np
from django.conf import settings

from search import pipeline
from search.index import IndexFileError, VectorStore
from search.lexical import TitleIndex
from search.pipeline import ActiveIndex, Encoded, Filters, Hit, Ranked
from search.timing import timed
from search.trained import TrainedModels, resolve_device
from webapp.models import IndexEntry, IndexVersion, Item, LiveVector

__all__ = ["Filters", "Hit", "SearchResult", "SearchUnavailable", "active_index", "active_store", "follow_index",
           "get_models",
           "search_combined", "search_vector", "similar_items", "visible_items"]

log = logging.getLogger(__name__)
_lock = threading.Lock()
_models: TrainedModels | None = None
_stores: dict[int, tuple[VectorStore, np.ndarray]] = {}
_titles: dict[int, TitleIndex | None] = {}
SearchResult = Ranked  # what the views and the API render


class SearchUnavailable(RuntimeError):
    """No usable index (never built, or its files are gone); the message says what to run."""


def models_dir():
    return settings.ARTIFACTS_DIR / "models"


def get_models() -> TrainedModels:
    """This process's trained models (``search.trained``), loaded on first use."""
    global _models
    with _lock:
        if _models is None:
            _models = TrainedModels(models_dir(), device=resolve_device(settings.TORCH_DEVICE),
                                    threads=settings.TORCH_THREADS,
                                    int8=settings.ENCODER_INT8)
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


def follow_index(version: IndexVersion | None) -> None:
    """Models and index switch together: forget this process's loaded models when the active index was built
    by another encoder than the one in memory (``make train`` and its reindex, while the app runs); the next
    query loads the checkpoints from disk, which the reindex embedded the catalog with."""
    global _models
    if version is None or not version.encoder_version:
        return
    with _lock:
        in_memory = _models.version_in_memory("encoder") if _models is not None else None
        if in_memory is not None and in_memory != version.encoder_version:
            log.info("index %s was built by encoder %s; loading it in place of %s", version.name,
                     version.encoder_version, in_memory)
            _models = None


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
    follow_index(version)
    store, item_of = load_store(version)
    return version, store, item_of


def active_index() -> ActiveIndex:
    """The active version as the pipeline reads it: store, id mapping and title index."""
    version, store, item_of = active_store()
    return ActiveIndex(version.name, store, item_of, title_index(version))


def visible_items(filters: Filters):
    """The visible items passing ``filters``, as a queryset."""
    qs = Item.objects.filter(hidden=False)
    if filters.category:
        qs = qs.filter(category=filters.category)
    if filters.gender:
        qs = qs.filter(gender=filters.gender)
    if filters.colour:
        qs = qs.filter(colour__iexact=filters.colour)
    return qs


class CatalogItems:
    """``search.pipeline.ItemSource`` on the database: items, filters and the live buffer."""

    # What ranking, the API, the result pages and ``evaluate`` read of a hit: a query fetches ~60 candidates, and
    # leaving out the rest (timestamps above all, which SQLite's converters parse) takes it from 2.6 to 1.8 ms
    # (docs/benchmarks.md).
    HIT_FIELDS = ("sku", "title", "category", "sub_category", "master_category", "gender", "colour", "hidden",
                  "image_path")

    def rows(self, pks: Sequence[int]) -> dict[int, Item]:
        return {item.pk: item for item in Item.objects.filter(pk__in=list(pks)).order_by().only(*self.HIT_FIELDS)}

    def passing(self, filters: Filters, among: Sequence[int] | None = None) -> np.ndarray:
        qs = visible_items(filters)
        if among is not None:
            qs = qs.filter(pk__in=list(among))
        return np.fromiter(qs.values_list("pk", flat=True), dtype=np.int64)

    def hidden(self) -> np.ndarray:
        return np.fromiter(Item.objects.filter(hidden=True).values_list("pk", flat=True), dtype=np.int64)

    def live_vectors(self, space: str) -> tuple[np.ndarray, np.ndarray]:
        """In the ``text`` space only rows with a text-space vector count: the others keep their indexed
        text vector (or, when new, are found by words after the next reindex)."""
        if space == "text":
            rows = list(LiveVector.objects.exclude(text_vector=None).values_list("item_id", "text_vector"))
        else:
            rows = list(LiveVector.objects.values_list("item_id", "vector"))
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        pks = np.array([pk for pk, _ in rows], dtype=np.int64)
        return pks, np.stack([np.frombuffer(bytes(v), dtype=np.float32) for _, v in rows])


def search_vector(encoded: Encoded, k: int, filters: Filters | None = None, exclude_item: int | None = None,
                  text: str = "", index: ActiveIndex | None = None) -> Ranked:
    """``search.pipeline.search_vector`` on the active index (``index``: the one a query looked up when it
    began, so that its models and its index are of one moment), with the weights of the settings."""
    return pipeline.search_vector(encoded, k, index or active_index(), CatalogItems(), filters, exclude_item, text,
                                  rerank_weight=settings.RERANK_WEIGHT, lexical_weight=settings.LEXICAL_WEIGHT)


def search_combined(picture: Encoded, words: Encoded, k: int, filters: Filters | None = None,
                    picture_weight: float = 0.5, text: str = "", index: ActiveIndex | None = None) -> Ranked:
    """``search.pipeline.search_combined`` on the active index (or ``index``): a picture and words ranked together."""
    return pipeline.search_combined(picture, words, k, index or active_index(), CatalogItems(), filters,
                                    picture_weight, text, lexical_weight=settings.LEXICAL_WEIGHT)


def similar_items(item: Item, k: int, filters: Filters | None = None) -> Ranked:
    """Nearest neighbours of a catalog item: its live vector, else its indexed one, else its image encoded here."""
    index = active_index()
    timings: dict[str, float] = {}
    positions = np.flatnonzero(index.item_of == item.pk)
    live = LiveVector.objects.filter(item=item).first()
    if live is not None:
        vector = live.as_array()
    elif len(positions):
        vector = np.asarray(index.store.vectors("image")[positions[0]])
    else:
        from search.images import image_bytes_to_array

        with timed(timings, "decode"):
            image = image_bytes_to_array(open(item.image_path, "rb").read())
        encoded = pipeline.encode_photo(get_models(), image, categories=False)
        vector, timings = encoded.vector, {**timings, **encoded.timings_ms}
    return pipeline.search_vector(Encoded(vector, "image", timings), k, index, CatalogItems(), filters,
                                  exclude_item=item.pk, rerank_weight=settings.RERANK_WEIGHT,
                                  lexical_weight=settings.LEXICAL_WEIGHT)
