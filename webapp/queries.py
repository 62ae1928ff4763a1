"""One place that validates a search query (API and pages alike) and runs it."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from PIL import Image

from search import pipeline
from search.images import ImageInputError, decode_image
from search.pipeline import SKETCH_ROADS, Encoded
from search.timing import timed
from webapp.encoding import encode_query
from webapp.services import Filters, SearchResult, active_index, get_models, search_combined, search_vector


class QueryError(ValueError):
    """The query itself is wrong (message for the user, HTTP 400)."""


def clamp_k(k: int | None) -> int:
    if k is None:
        return settings.SEARCH_DEFAULT_K
    if not 1 <= k <= settings.SEARCH_MAX_K:
        raise QueryError(f"k must be between 1 and {settings.SEARCH_MAX_K}")
    return k


def read_upload(upload, what: str) -> bytes:
    """The upload's bytes, refused over ``UPLOAD_MAX_BYTES``: the one size check of every upload."""
    limit = settings.UPLOAD_MAX_BYTES
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise QueryError(f"the {what} is larger than {limit // (1024 * 1024)} MB")
    return data


def decode_upload(upload, what: str, keep_alpha: bool = False) -> Image.Image:
    data = read_upload(upload, what)
    try:
        return decode_image(data, max_bytes=settings.UPLOAD_MAX_BYTES, max_pixels=settings.UPLOAD_MAX_PIXELS,
                            keep_alpha=keep_alpha)
    except ImageInputError as exc:
        raise QueryError(f"the {what} cannot be used: {exc}") from None


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 (H, W, 3) -> PNG file bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return buf.getvalue()


def png_data_uri(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()


@dataclass
class Query:
    photo: object | None = None
    sketch: object | None = None
    text: str = ""
    road: str = ""
    k: int = 12
    filters: Filters = field(default_factory=Filters)

    def kind(self) -> str:
        parts = [name for name in ("photo", "sketch") if getattr(self, name) is not None]
        if self.text.strip():
            parts.append("text")
        return "+".join(parts) or "empty"

    def describe(self) -> dict:
        out = {"kind": self.kind(), "k": self.k, "filters": {k: v for k, v in vars(self.filters).items() if v}}
        if self.sketch is not None:
            out["road"] = self.road or settings.SKETCH_ROAD
        return out


@dataclass
class Outcome:
    result: SearchResult
    generated_image: str | None = None  # data URI of the GAN's picture for a sketch


MAX_TEXT = 500


def encode_picture(upload, kind: str, road: str) -> Encoded:
    """A photo or sketch upload -> vector (``webapp.encoding``: in this process or an inference worker)."""
    data = read_upload(upload, kind)
    try:
        return encode_query(data, kind, road)
    except ImageInputError as exc:
        raise QueryError(f"the {kind} cannot be used: {exc}") from None


def encode_words(text: str) -> Encoded:
    """Words -> the text model's vector, in this process (the text model is small; docs/architecture.md, where torch runs)."""
    return pipeline.encode_text(get_models(), text)


def run(query: Query) -> Outcome:
    text = " ".join((query.text or "").split())
    if len(text) > MAX_TEXT:
        raise QueryError(f"the text is longer than {MAX_TEXT} characters")
    if query.photo is None and query.sketch is None and not text:
        raise QueryError("send a photo, a sketch or some words to search with")
    if query.photo is not None and query.sketch is not None:
        raise QueryError("send either a photo or a sketch, not both")
    road = query.road or settings.SKETCH_ROAD
    if road not in SKETCH_ROADS:
        raise QueryError(f"road must be one of {', '.join(SKETCH_ROADS)}")
    # Fail fast (503) before decoding and encoding when there is no index. The version looked up here is the one
    # searched: follow_index has just matched this process's models to it, so vector and index are of one moment.
    index = active_index()
    picture = None
    if query.sketch is not None:
        picture = encode_picture(query.sketch, "sketch", road)
    elif query.photo is not None:
        picture = encode_picture(query.photo, "photo", road)
    words = encode_words(text) if text else None
    if picture is not None and words is not None:
        result = search_combined(picture, words, query.k, query.filters, text=text, index=index)
    else:
        result = search_vector(picture or words, query.k, query.filters, text=text, index=index)
    generated = None
    if picture is not None and picture.generated is not None:
        with timed(result.timings_ms, "serialise"):
            generated = png_data_uri(picture.generated)
    return Outcome(result, generated)
