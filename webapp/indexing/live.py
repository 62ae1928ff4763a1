"""Live additions: an item searchable at once, before the next reindex folds it into the index."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from webapp.models import Item, LiveVector
from webapp.services import active_version

log = logging.getLogger(__name__)


def add_live_item(item: Item) -> LiveVector:
    """Make ``item`` searchable now: embed its image into the live buffer (replacing an older vector).

    Runs the encoder where queries run (an inference worker when SEARCH_IN_WORKERS, else here).
    Raises ``search.images.ImageInputError`` for an unreadable image and ``SearchUnavailable``
    when the workers cannot be reached."""
    from webapp.encoding import encode_with_version

    data = Path(item.image_path).read_bytes()
    encoded, encoder_version = encode_with_version(data, "photo")
    text_vector, text_version = None, ""
    active = active_version()
    if active is not None and "text" in active.manifest.get("spaces", {}):  # words search a space of their own
        from search.trained import ModelMissingError

        try:
            text, text_version = encode_with_version(data, "photo_text")
            text_vector = np.ascontiguousarray(text.vector, np.float32).tobytes()
        except ModelMissingError as exc:  # still found by picture now, by words after the next reindex
            log.warning("item %s: no text-space vector for the live buffer: %s", item.pk, exc)
    live, _ = LiveVector.objects.update_or_create(
        item=item, defaults={"vector": np.ascontiguousarray(encoded.vector, np.float32).tobytes(),
                             "encoder_version": encoder_version, "text_vector": text_vector,
                             "text_version": text_version})
    return live
