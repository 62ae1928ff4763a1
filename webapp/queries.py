"""One place that validates a search query (API and pages alike) and runs it."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

from search.engine import timed
from search.images import ImageInputError, image_bytes_to_array
from webapp.services import Filters, SearchResult, active_store, get_models, search_vector


class QueryError(ValueError):
    """The query itself is wrong (message for the user, HTTP 400)."""


def clamp_k(k: int | None) -> int:
    if k is None:
        return settings.SEARCH_DEFAULT_K
    if not 1 <= k <= settings.SEARCH_MAX_K:
        raise QueryError(f"k must be between 1 and {settings.SEARCH_MAX_K}")
    return k


def read_upload(upload, what: str) -> bytes:
    if upload.size is not None and upload.size > settings.UPLOAD_MAX_BYTES:
        raise QueryError(f"the {what} is larger than {settings.UPLOAD_MAX_BYTES // (1024 * 1024)} MB")
    data = upload.read(settings.UPLOAD_MAX_BYTES + 1)
    if len(data) > settings.UPLOAD_MAX_BYTES:
        raise QueryError(f"the {what} is larger than {settings.UPLOAD_MAX_BYTES // (1024 * 1024)} MB")
    return data


def decode_upload(upload, what: str):
    data = read_upload(upload, what)
    try:
        return image_bytes_to_array(data, max_bytes=settings.UPLOAD_MAX_BYTES, max_pixels=settings.UPLOAD_MAX_PIXELS)
    except ImageInputError as exc:
        raise QueryError(f"the {what} cannot be used: {exc}") from None


@dataclass
class Query:
    photo: object | None = None
    k: int = 12
    filters: Filters = field(default_factory=Filters)

    def kind(self) -> str:
        return "photo"

    def describe(self) -> dict:
        return {"kind": self.kind(), "k": self.k, "filters": {k: v for k, v in vars(self.filters).items() if v}}


def run(query: Query) -> SearchResult:
    if query.photo is None:
        raise QueryError("send a photo to search with")
    active_store()  # fail fast (503) before decoding and encoding when there is no index
    timings: dict[str, float] = {}
    with timed(timings, "decode"):
        image = decode_upload(query.photo, "photo")
    encoded = get_models().encode_photo(image)
    encoded.timings_ms = {**timings, **encoded.timings_ms}
    return search_vector(encoded, query.k, query.filters)
