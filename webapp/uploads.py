"""Staff uploads of new products: safe storage, tag suggestions, caption drafts, saving the item."""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max
from PIL import Image

from search.captions import brands_of, draft_from_tags, draft_without_brand, strip_brand
from search.categories import NEIGHBOURS
from search.images import fit_to_model
from search.pipeline import Encoded
from search.tagging import Suggestion, suggest_tags
from webapp.models import Item
from webapp.queries import QueryError, decode_upload, png_data_uri
from webapp.services import get_models

TOKEN = re.compile(r"^[0-9a-f]{32}$")
MAX_TITLE = 200
RESERVED_SKUS = {"new"}  # /items/new/ is the upload page: an item of that catalog id could not be reached


@dataclass
class StagedUpload:
    token: str
    path: Path
    image: np.ndarray  # model-sized uint8 (80, 60, 3)


def staging_dir() -> Path:
    path = Path(settings.MEDIA_ROOT) / "staging"
    path.mkdir(parents=True, exist_ok=True)
    return path


def stage_upload(upload) -> StagedUpload:
    """Decode (refusing non-images), re-encode as JPEG under a random name. User bytes are never stored."""
    img = decode_upload(upload, "product photo")
    token = uuid.uuid4().hex
    path = staging_dir() / f"{token}.jpg"
    img.thumbnail((1200, 1600))
    img.save(path, "JPEG", quality=92)
    return StagedUpload(token, path, fit_to_model(img))


def load_staged(token: str) -> StagedUpload:
    if not TOKEN.match(token or ""):
        raise QueryError("the upload reference is invalid: upload the photo again")
    path = staging_dir() / f"{token}.jpg"
    if not path.is_file():
        raise QueryError("the uploaded photo has expired: upload it again")
    with Image.open(path) as img:
        return StagedUpload(token, path, fit_to_model(img.convert("RGB")))


def clean_title(title: str) -> str:
    title = " ".join((title or "").split())
    if len(title) > MAX_TITLE:
        raise QueryError(f"the title is longer than {MAX_TITLE} characters")
    return title


def nearest_items(vector: np.ndarray, k: int = NEIGHBOURS) -> list[tuple[Item, float]]:
    """The nearest catalog items of a photo's vector and their cosines (no category re-ranking; live additions
    included, hidden items left out), or none while there is no index."""
    from webapp.services import SearchUnavailable, search_vector

    try:
        result = search_vector(Encoded(vector, "image", {}), k)
    except SearchUnavailable:
        return []
    return [(hit.item, hit.score) for hit in result.hits]


def catalog_brands() -> frozenset[str]:
    """The catalog's brands (``search.captions.brands_of`` its titles), worked out again when items are added or
    removed (an edited title alone keeps the brands worked out before it)."""
    state = Item.objects.aggregate(n=Count("pk"), last=Max("pk"))
    return _brands_of_catalog(state["n"], state["last"])


@functools.lru_cache(maxsize=1)
def _brands_of_catalog(_count: int, _last: int | None) -> frozenset[str]:
    return frozenset(brands_of(Item.objects.values_list("title", flat=True).iterator()))


def caption_method() -> str:
    """``settings.CAPTION_METHOD``, with ``auto`` (the default) resolved: the method the latest ``evaluate`` judged
    better as a draft is shown (``captions.winner`` in ``reports/evaluate.json``), when that report measured the
    captioner now in use; otherwise ``neighbour``, which needs no training. Which wins depends on how many epochs
    the captioner's budget held on the training machine's cores (docs/experiments.md)."""
    if settings.CAPTION_METHOD != "auto":
        return settings.CAPTION_METHOD
    models = get_models()
    if not models.available("captioner"):
        return "neighbour"
    try:
        report = json.loads((Path(settings.ARTIFACTS_DIR) / "reports" / "evaluate.json").read_text())
        measured, winner = report["models"]["captioner"], report["captions"]["winner"]
    except (OSError, ValueError, KeyError, TypeError):
        return "neighbour"
    return "lstm" if winner == "lstm" and measured == models.captioner().version else "neighbour"


def caption_draft(image: np.ndarray, suggestion: Suggestion,
                  nearest: Sequence[tuple[Item, float]] = ()) -> tuple[str, str]:
    """A draft title for a photo without one: (text, method). It never names a brand. By ``caption_method()``:
    ``neighbour`` copies the title of the nearest catalog item, its brand taken off; ``lstm`` has the captioner,
    when trained, write one, its brand taken off. Either falls back to ``tags``: gender, colour and kind from the
    suggested tags ("Women Blue Jackets")."""
    method = caption_method()
    if method == "neighbour" and nearest:
        draft = strip_brand(nearest[0][0].title)
        if draft:
            return draft, "neighbour"
    models = get_models()
    if method == "lstm" and models.available("captioner"):
        draft = draft_without_brand(models.captioner().caption(image), catalog_brands())
        if draft:
            return draft, "lstm"
    draft = draft_from_tags(suggestion.tags)
    return draft, "tags" if draft else ""


def suggest(staged: StagedUpload, title: str) -> tuple[Suggestion, str, str, list[tuple[Item, float]]]:
    """Suggestions, their heatmap as a data URI, a draft title when there is none, and the nearest
    catalog items with their cosines. Without a title those items vote on the category
    (``search.categories.blend_guess``), so the page shows them beside the suggestion; the photo is embedded once
    for both."""
    models = get_models()
    vector = None if title or not models.available("encoder") else models.encoder().embed(staged.image[None])[0]
    nearest = [] if vector is None else nearest_items(vector)
    neighbours = [(item.category, score) for item, score in nearest] or None
    suggestion = suggest_tags(models, staged.image, title, neighbours=neighbours, vector=vector)
    heatmap = png_data_uri(suggestion.heatmap) if suggestion.heatmap is not None else ""
    if not title:
        suggestion.title_draft, suggestion.title_draft_method = caption_draft(staged.image, suggestion, nearest)
    return suggestion, heatmap, suggestion.title_draft, nearest


def save_item(staged: StagedUpload, *, title: str, category: str, gender: str = "", colour: str = "",
              sku: str = "") -> Item:
    """Move the staged photo into the catalog's media and create the item (searchable at once)."""
    title = clean_title(title)
    if not title:
        raise QueryError("a title is required")
    category = (category or "").strip()
    if not category or len(category) > 100:
        raise QueryError("a category is required (at most 100 characters)")
    sku = (sku or "").strip() or f"u{staged.token[:12]}"
    if len(sku) > 64 or not re.match(r"^[\w.-]+$", sku) or sku in (".", ".."):
        raise QueryError("the catalog id may use letters, digits, '.', '-' and '_' (at most 64)")
    if sku in RESERVED_SKUS:
        raise QueryError(f"the catalog id {sku!r} is the name of a page of the site: choose another")
    if Item.objects.filter(sku=sku).exists():
        raise QueryError(f"an item with catalog id {sku} already exists")
    items_dir = Path(settings.MEDIA_ROOT) / "items"
    items_dir.mkdir(parents=True, exist_ok=True)
    final = items_dir / f"{staged.token}.jpg"
    with transaction.atomic():
        item = Item.objects.create(sku=sku, title=title, category=category, gender=(gender or "").strip()[:40],
                                   colour=(colour or "").strip()[:60], image_path=str(final),
                                   source=Item.Source.UPLOAD)
        staged.path.replace(final)
    make_searchable(item)
    return item


def make_searchable(item: Item) -> None:
    """Live addition: searchable by picture at once; the next reindex folds it into the index."""
    from webapp.indexing import add_live_item

    add_live_item(item)
