"""Browsing the catalog, item pages with similar items, item images, job progress."""

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from search.images import ImageInputError, image_bytes_to_array
from webapp import ratelimit
from webapp.indexing import expire_if_stale
from webapp.models import Item, Job
from webapp.queries import png_bytes
from webapp.services import Filters, SearchUnavailable, get_models, similar_items
from webapp.views.search import facets

PAGE_SIZE = 48


@require_GET
def browse(request):
    filters = Filters(category=request.GET.get("category", ""), gender=request.GET.get("gender", ""),
                      colour=request.GET.get("colour", ""))
    page = Paginator(filters.queryset().order_by("pk"), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "webapp/browse.html", {"page": page, "filters": filters, "querystring": query.urlencode(),
                                                  **facets()})


@require_GET
def item_detail(request, sku: str):
    item = get_object_or_404(Item, sku=sku, hidden=False)
    context = {"item": item, "looked": get_models().available("encoder")}
    try:
        context["result"] = similar_items(item, 12)
    except SearchUnavailable as exc:
        context["error"] = str(exc)
    return render(request, "webapp/item.html", context)


def visible_item(request, sku: str) -> Item:
    """The item of a catalog id, or 404; a hidden one only for staff."""
    item = get_object_or_404(Item, sku=sku)
    if item.hidden and not request.user.is_staff:
        raise Http404
    return item


@require_GET
@cache_control(max_age=3600)
def item_image(request, sku: str):
    item = visible_item(request, sku)
    try:
        return FileResponse(open(item.image_path, "rb"), content_type="image/jpeg")
    except OSError:
        raise Http404("image file missing") from None


@require_GET
@cache_control(max_age=3600)
def item_looked(request, sku: str):
    """PNG: where Image2Vec looked in an item's photo for ``?category=`` (default: the item's own category), its
    class activation map over the photo. Results and item pages show it on demand."""
    try:  # a forward pass per picture: counted like searches, per client
        ratelimit.check(request, "heatmap", settings.SEARCH_RATE_LIMIT, "heatmaps")
    except ratelimit.RateLimited as exc:
        response = HttpResponse(str(exc), status=429, content_type="text/plain")
        response["Retry-After"] = str(exc.retry_after)
        return response
    item = visible_item(request, sku)
    models = get_models()
    if not models.available("encoder"):
        return HttpResponse("no image encoder is trained yet: run `python manage.py train encoder`", status=503,
                            content_type="text/plain")
    try:
        with open(item.image_path, "rb") as fh:
            image = image_bytes_to_array(fh.read())
    except (OSError, ImageInputError):
        raise Http404("image file missing or unreadable") from None
    heatmap, category = models.looked_at(image, request.GET.get("category", "") or item.category)
    response = HttpResponse(png_bytes(heatmap), content_type="image/png")
    response["X-Heatmap-Category"] = category
    return response


def job_json(job: Job) -> dict:
    return {"id": job.pk, "kind": job.kind, "status": job.status, "stage": job.stage, "done": job.done,
            "total": job.total, "percent": job.percent, "message": job.message, "result": job.result}


@staff_member_required
@require_GET
def job_status(request, pk: int):
    return JsonResponse(job_json(expire_if_stale(get_object_or_404(Job, pk=pk))))


@staff_member_required
@require_GET
def job_page(request, pk: int):
    return render(request, "webapp/job.html", {"job": expire_if_stale(get_object_or_404(Job, pk=pk))})
