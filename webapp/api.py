"""JSON API (django-ninja). OpenAPI schema at /api/openapi.json, docs at /api/docs."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import OperationalError
from django.http import Http404
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import get_object_or_404
from ninja import File, Form, NinjaAPI, Path, Query, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.files import UploadedFile
from pydantic import Field

from search.trained import ModelMissingError
from webapp import queries, uploads
from webapp.auth import STAFF, UNAUTHORIZED_DESCRIPTION, TokenRefused
from webapp.models import Item
from webapp.services import Filters, SearchUnavailable, similar_items

api = NinjaAPI(title="Sketch search API", version="1.0", urls_namespace="api",
               description="Search a fashion catalog by photo, sketch or words.")


class ErrorOut(Schema):
    error: str


CATALOG_ID = ("the item's catalog id: the product id of the catalog it came from (\"Catalog id\" on its page, "
              "/items/<id>/ in its URL), or the one given when it was added")


class ItemOut(Schema):
    id: str = Field(description=CATALOG_ID)
    title: str
    category: str
    gender: str
    colour: str
    image_url: str
    url: str


SCORE = ("The ranking score (higher ranks first): it orders the hits of one answer and means nothing across "
         "answers; it is no probability or percentage. A photo or sketch: the cosine similarity of the query's "
         "and the item's Image2Vec vectors (-1 to 1) plus RERANK_WEIGHT (default 0.5) x the query's probability "
         "of showing the item's category, so it may pass 1. Words alone: the cosine in the text model's space plus "
         "LEXICAL_WEIGHT (default 1.25) x the title match (0 to 1). A picture and words: the weighted sum of each "
         "part's cosines standardised over the candidates (z-scores, so around 0). Similar items: the cosine.")


class HitOut(ItemOut):
    score: float = Field(description=SCORE)
    heatmap_url: str = Field(description="PNG: where Image2Vec looked in this item's photo for its category")


class SearchOut(Schema):
    results: list[HitOut]
    timings_ms: dict[str, float]
    index_version: str
    query: dict
    generated_image: str | None = None


@api.exception_handler(ValidationError)
def validation_error(request, exc: ValidationError):
    parts = []
    for err in exc.errors:
        loc = ".".join(str(p) for p in err.get("loc", []) if p not in ("body", "query", "form", "file"))
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return api.create_response(request, {"error": "; ".join(parts) or "invalid request"}, status=400)


@api.exception_handler(AuthenticationError)
def not_authenticated(request, exc):
    response = api.create_response(request, {"error": "staff login or an API token (Authorization: Bearer ...) "
                                                      "is required"}, status=401)
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(TokenRefused)  # a bad or expired token says so (not a 403 "CSRF check Failed")
def token_refused(request, exc: TokenRefused):
    response = api.create_response(request, {"error": str(exc)}, status=401)
    response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


WRITE_DOCS = {"responses": {401: {"description": UNAUTHORIZED_DESCRIPTION}}}


@api.exception_handler(HttpError)
def http_error(request, exc: HttpError):
    return api.create_response(request, {"error": str(exc)}, status=exc.status_code)


@api.exception_handler(Http404)  # the same {"error": ...} body as every other error (an API fuzzer checks it)
def not_found(request, exc: Http404):
    return api.create_response(request, {"error": str(exc) or "not found"}, status=404)


@api.exception_handler(queries.QueryError)
def query_error(request, exc: queries.QueryError):
    return api.create_response(request, {"error": str(exc)}, status=400)


@api.exception_handler(MultiPartParserError)  # a form Django cannot parse (e.g. a 5,000-byte file name)
def unreadable_form(request, exc: MultiPartParserError):
    return api.create_response(request, {"error": f"the upload cannot be read: {exc}"}, status=400)


@api.exception_handler(OperationalError)  # a locked or unreachable database is a 503, not a traceback
def database_unavailable(request, exc: OperationalError):
    return api.create_response(request, {"error": f"the database is busy or unreachable ({exc}); try again in a "
                                                  "moment"}, status=503)


@api.exception_handler(SearchUnavailable)
@api.exception_handler(ModelMissingError)
def unavailable(request, exc: Exception):
    return api.create_response(request, {"error": str(exc)}, status=503)


ROAD = ("How a sketch reaches the index. `direct` (the default, setting SKETCH_ROAD): the image encoder, which saw "
        "sketches in training, reads the sketch itself. `gan`: the sketch-to-image GAN (pix2pix) first draws a photo "
        "of the sketch, and the encoder reads that photo. `direct` finds more items of the drawn kind (sketch P@5 on "
        "the test split: 0.58 against 0.20 with the demo's quick models; docs/experiments.md), so the search "
        "page offers no choice; `gan` is kept for comparison and for better GANs. Ignored without a sketch.")


def hit_out(request, hit) -> dict:
    return {**item_out(request, hit.item), "score": round(hit.score, 4),
            "heatmap_url": request.build_absolute_uri(hit.item.heatmap_url)}


def search_out(request, result, query: dict, started: float, generated_image: str | None = None) -> dict:
    body = {"results": [hit_out(request, h) for h in result.hits], "index_version": result.index_version,
            "query": query, "generated_image": generated_image}
    timings = {k: round(v, 2) for k, v in result.timings_ms.items()}
    timings["total"] = round((time.perf_counter() - started) * 1000.0, 2)
    body["timings_ms"] = timings
    return body


@api.post("/search", response={200: SearchOut, 400: ErrorOut, 429: ErrorOut, 503: ErrorOut},
          summary="Search by photo, sketch or words (or a picture and words together), with optional filters",
          description="Multipart form. `photo` or `sketch` (PNG/JPEG/GIF/WebP; a canvas PNG with a transparent "
                      "background works) and/or `text`; `road` picks the sketch road (`direct` or `gan`); `k` "
                      "1-100. A picture plus words ranks by fused scores (\"this shape, but red\"). A sketch "
                      "query also returns `generated_image`: the GAN's picture of the sketch as a data URI (by "
                      "either road, once the GAN is trained).")
def search(request, photo: File[UploadedFile] = None, sketch: File[UploadedFile] = None, text: Form[str] = "",
           road: str = Form("", description=ROAD), k: int = Form(None, ge=1, le=settings.SEARCH_MAX_K), category: Form[str] = "", gender: Form[str] = "",
           colour: Form[str] = ""):
    started = time.perf_counter()
    k = queries.clamp_k(k)
    filters = Filters(category=category.strip(), gender=gender.strip(), colour=colour.strip())
    query = queries.Query(photo=photo, sketch=sketch, text=text, road=road.strip(), k=k, filters=filters)
    outcome = queries.run(query)
    return search_out(request, outcome.result, query.describe(), started, outcome.generated_image)


# Any catalog id but "." and ".." (a URL path segment cannot be those) and nothing with a "/" (no catalog id has one).
CATALOG_ID_PATTERN = r"^(?:[^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)$"


@api.get("/items/{item_id}/similar", response={200: SearchOut, 400: ErrorOut, 404: ErrorOut, 429: ErrorOut,
                                               503: ErrorOut},
         summary="Items most similar to a catalog item",
         description="`item_id` is the item's catalog id, the `id` of every result (404 for an id no visible "
                     "item has).")
def similar(request, item_id: str = Path(..., description=CATALOG_ID, max_length=64, pattern=CATALOG_ID_PATTERN),
            k: int = Query(None, ge=1, le=settings.SEARCH_MAX_K), category: str = "", gender: str = "",
            colour: str = ""):
    started = time.perf_counter()
    item = get_object_or_404(Item, sku=item_id, hidden=False)  # -> 404 {"error": ...} (``not_found``)
    result = similar_items(item, queries.clamp_k(k), Filters(category, gender, colour))
    return search_out(request, result, {"kind": "similar", "item": item.sku}, started)


class TagOut(Schema):
    label: str
    confidence: float


class NeighbourOut(Schema):
    id: str = Field(description=CATALOG_ID)
    category: str
    similarity: float
    image_url: str


class SuggestionOut(Schema):
    model: str
    tags: dict[str, list[TagOut]]
    heatmap: str
    title_draft: str = Field(description="without a title: a draft title that says only what the photo shows, "
                                         "never a brand (e.g. \"Women Blue Jackets\"); a person completes it. "
                                         "Empty when a title was sent")
    title_draft_method: str = Field("", description="how the draft was made: `neighbour` (the nearest "
                                                    "catalog item's title, its brand taken off), `lstm` (the "
                                                    "captioner, its brand taken off), `tags` (gender, colour and "
                                                    "kind from the suggested tags), or empty (no draft)")
    timings_ms: dict[str, float]
    neighbours: list[NeighbourOut] = Field(
        default_factory=list, description="without a title: the nearest catalog items, which voted on the category")


class ItemCreatedOut(Schema):
    item: ItemOut
    suggestion: SuggestionOut
    title_is_draft: bool = Field(description="no title was sent, so the item's title is the suggestion's draft "
                                             "(`title_draft`): check it and add the brand")


def suggestion_out(request, suggestion, heatmap: str, nearest=()) -> dict:
    return {"model": suggestion.model, "heatmap": heatmap, "title_draft": suggestion.title_draft,
            "title_draft_method": suggestion.title_draft_method,
            "timings_ms": {k: round(v, 2) for k, v in suggestion.timings_ms.items()},
            "tags": {h: [{"label": lab, "confidence": round(p, 4)} for lab, p in opts]
                     for h, opts in suggestion.tags.items()},
            "neighbours": [{"id": item.sku, "category": item.category, "similarity": round(score, 4),
                            "image_url": request.build_absolute_uri(item.image_url)} for item, score in nearest]}


def item_out(request, item: Item) -> dict:
    return {"id": item.sku, "title": item.title, "category": item.category, "gender": item.gender,
            "colour": item.colour, "image_url": request.build_absolute_uri(item.image_url),
            "url": request.build_absolute_uri(item.get_absolute_url())}


@api.post("/items/suggest", auth=STAFF, response={200: SuggestionOut, 400: ErrorOut, 401: ErrorOut, 403: ErrorOut,
                                                      503: ErrorOut},
          summary="Suggest category, gender and colour for a product photo (+ title), staff only",
          openapi_extra=WRITE_DOCS)
def suggest_item(request, image: File[UploadedFile], title: Form[str] = ""):
    title = uploads.clean_title(title)
    staged = uploads.stage_upload(image)
    try:
        suggestion, heatmap, _draft, nearest = uploads.suggest(staged, title)
    finally:
        staged.path.unlink(missing_ok=True)
    return suggestion_out(request, suggestion, heatmap, nearest)


@api.post("/items", auth=STAFF, response={201: ItemCreatedOut, 400: ErrorOut, 401: ErrorOut, 403: ErrorOut,
                                                503: ErrorOut},
          summary="Add a product: photo + title; tags not given are taken from the classifier's suggestion",
          description="Without a title the item is saved with the suggestion's draft title (`title_is_draft`).",
          openapi_extra=WRITE_DOCS)
def create_item(request, image: File[UploadedFile], title: Form[str] = "", category: Form[str] = "",
                gender: Form[str] = "", colour: Form[str] = "",
                sku: str = Form("", description="the new item's catalog id, its `id` from then on (letters, digits, "
                                                 "'.', '-', '_'); default: a generated one")):
    title = uploads.clean_title(title)
    staged = uploads.stage_upload(image)
    try:
        suggestion, heatmap, draft, nearest = uploads.suggest(staged, title)
        item = uploads.save_item(staged, title=title or draft, category=category or suggestion.best("category"),
                                 gender=gender or suggestion.best("gender"), colour=colour or suggestion.best("colour"),
                                 sku=sku)
    finally:
        staged.path.unlink(missing_ok=True)
    return 201, {"item": item_out(request, item), "suggestion": suggestion_out(request, suggestion, heatmap, nearest),
                 "title_is_draft": not title}


@api.get("/health", summary="Liveness probe for the API")
def health(request):
    return {"status": "ok", "debug": settings.DEBUG}
