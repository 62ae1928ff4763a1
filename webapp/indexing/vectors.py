"""The vectors of a reindex: embedding items, and reusing the active index's vectors of unchanged items."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from search.images import load_image_array
from webapp.models import Item
from webapp.services import active_version, get_models, load_store

EMBED_BATCH = 512


def text_space_model() -> str | None:
    """The text model's version when it has a joint space of its own (a second index space), else None."""
    models = get_models()
    if models.available("text") and models.text().index_space == "text":
        return models.text().version
    return None


def embed_items(item_ids: Sequence[int], on_batch: Callable[[int], None] | None = None,
                spaces: Sequence[str] = ("image",)) -> dict[str, np.ndarray]:
    """Vectors of items per index space (``image``: Image2Vec; ``text``: the text model's joint space),
    in the order given (the unit of work a worker does)."""
    paths = dict(Item.objects.filter(pk__in=item_ids).values_list("pk", "image_path"))
    models = get_models()
    encoder = models.encoder()
    text = models.text() if "text" in spaces else None
    one_pass = text is not None and text.reads_descriptors_of(encoder)
    out: dict[str, list[np.ndarray]] = {space: [] for space in spaces}
    for start in range(0, len(item_ids), EMBED_BATCH):
        chunk = item_ids[start : start + EMBED_BATCH]
        images, _ok = load_image_array([Path(paths[pk]) for pk in chunk])
        if one_pass:  # one pass over the CNN per view gives both spaces: the text side reads its descriptors
            vectors, descriptors = encoder.embed_and_describe(images)
            out["image"].append(vectors)
            out["text"].append(text.encode_descriptors(descriptors[0]))
        else:
            out["image"].append(encoder.embed(images))
            if text is not None:
                out["text"].append(text.encode_images(images))
        if on_batch:
            on_batch(len(chunk))
    dims = {"image": encoder.dim, "text": text.dim if text is not None else 0}
    return {space: np.concatenate(v) if v else np.zeros((0, dims[space]), np.float32) for space, v in out.items()}


def reusable_vectors(item_ids: list[int], encoder_version: str) -> tuple[np.ndarray, np.ndarray]:
    """Vectors from the active index for items unchanged since it was built with the same encoder.

    Returns (mask of reusable positions, their vectors)."""
    active = active_version()
    mask = np.zeros(len(item_ids), dtype=bool)
    if active is None or active.encoder_version != encoder_version:
        return mask, np.zeros((0, 0), np.float32)
    try:
        store, item_of = load_store(active)
    except Exception:  # a broken active index is simply not reused
        return mask, np.zeros((0, 0), np.float32)
    position = {int(pk): i for i, pk in enumerate(item_of)}
    changed = set(Item.objects.filter(updated__gt=active.created).values_list("pk", flat=True))
    rows = []
    for j, pk in enumerate(item_ids):
        i = position.get(pk)
        if i is not None and pk not in changed:
            mask[j] = True
            rows.append(i)
    vectors = np.asarray(store.vectors("image")[np.array(rows, dtype=np.int64)]) if rows else np.zeros((0, 0))
    return mask, vectors


def reusable_text_vectors(item_ids: list[int], text_version: str) -> tuple[np.ndarray, np.ndarray]:
    """Text-space vectors from the active index for items unchanged since it was built with the same text model.

    Returns (mask of reusable positions, vectors of every position: zeros where not reusable)."""
    dim = get_models().text().dim
    vectors = np.zeros((len(item_ids), dim), np.float32)
    mask = np.zeros(len(item_ids), dtype=bool)
    active = active_version()
    if active is None or (active.manifest or {}).get("models", {}).get("text") != text_version:
        return mask, vectors
    try:
        store, item_of = load_store(active)
    except Exception:  # a broken active index is simply not reused
        return mask, vectors
    if not store.has_space("text"):
        return mask, vectors
    position = {int(pk): i for i, pk in enumerate(item_of)}
    changed = set(Item.objects.filter(updated__gt=active.created).values_list("pk", flat=True))
    for j, pk in enumerate(item_ids):
        i = position.get(pk)
        if i is not None and pk not in changed:
            vectors[j] = store.vectors("text")[i]
            mask[j] = True
    return mask, vectors
