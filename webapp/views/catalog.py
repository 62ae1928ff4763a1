"""Browsing the catalog, item pages with similar items, item images, job progress."""

from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from search.categories import picture_categories
from search.images import ImageInputError, image_bytes_to_array
from webapp.indexing import STEPS, expire_if_stale
from webapp.models import Item, Job
from webapp.queries import png_bytes
from webapp.services import Filters, SearchUnavailable, get_models, similar_items, visible_items
from webapp.views.report import duration
from webapp.views.search import facets

PAGE_SIZE = 48


@require_GET
def browse(request):
    filters = Filters(category=request.GET.get("category", ""), gender=request.GET.get("gender", ""),
                      colour=request.GET.get("colour", ""))
    page = Paginator(visible_items(filters).order_by("pk"), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "webapp/browse.html", {"page": page, "filters": filters, "querystring": query.urlencode(),
                                                  **facets()})


@require_GET
def item_detail(request, sku: str):
    item = get_object_or_404(Item, sku=sku, hidden=False)
    context = {"item": item, "heatmap": get_models().available("encoder")}
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
def item_heatmap(request, sku: str):
    """PNG: where Image2Vec looked in an item's photo for ``?category=`` (default: the item's own category), its
    class activation map over the photo. Results and item pages show it on demand."""
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
    heatmap, category = heatmap_of(models, image, request.GET.get("category", "") or item.category)
    response = HttpResponse(png_bytes(heatmap), content_type="image/png")
    response["X-Heatmap-Category"] = category
    return response


def heatmap_of(models, image, category: str):
    """Where Image2Vec looked in a photo for ``category`` (else for its own likeliest articleType): the
    heatmap, and the category it was drawn for."""
    encoder = models.encoder()
    if category not in encoder.class_names:
        probs = picture_categories(models, encoder.embed(image[None]))[0]
        category = max(probs, key=probs.get)
    return encoder.heatmap(image, category), category


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def step_detail(name: str, state: str, job: Job, detail: str) -> str:
    """What one step of a reindex did, or is doing, in counts."""
    plan = job.result or {}
    if state == "waiting":
        return ""
    if name == "snapshot":
        items = plan.get("items", plan.get("count"))  # a job done before "items" was recorded has its count
        if items is None or "reused" not in plan:
            return detail or job.stage  # "waiting for a worker", "starting", reading the catalog
        return (f"{plural(items, 'item')}: {plural(plan['reused'], 'vector')} reused, "
                f"{plural(plan['embedded'], 'image')} to embed")
    if name == "embedding":
        if not plan.get("chunks"):
            return "nothing to embed: every vector was reused"
        if state == "done":
            return f"{plural(plan['embedded'], 'image')} in {plural(plan['chunks'], 'chunk')}"
        return f"{detail} · {job.done:,} of {plural(job.total, 'image')}"
    if name == "build" and state == "done":
        shards = plan.get("shards", 1)
        return f"{plural(plan.get('count', 0), 'vector')} indexed" + (f" in {shards} shards" if shards > 1 else "")
    if name == "switch" and state == "done":
        return f"{plan.get('version', '')} is the active index"
    return detail


def reindex_steps(job: Job) -> list[dict]:
    """A reindex's steps for its progress page (snapshot, embedding, build, switch): each done, current, failed
    or waiting, with its counts. Every stage a reindex reports starts with its step ("build: the title index")."""
    step, _, detail = job.stage.partition(": ")
    reached = len(STEPS) if job.status == Job.Status.DONE else STEPS.index(step) if step in STEPS else 0
    steps = []
    for i, name in enumerate(STEPS):
        state = "done" if i < reached else "waiting"
        if i == reached:
            state = "failed" if job.status == Job.Status.FAILED else "current"
        steps.append({"name": name, "label": name.capitalize(), "state": state,
                      "detail": step_detail(name, state, job, detail)})
    return steps


def reindex_summary(job: Job) -> str:
    """The outcome of a finished reindex in one sentence: the new version, its items, the time, the reuse."""
    r = job.result or {}
    if job.status != Job.Status.DONE or "version" not in r:
        return ""
    seconds = r.get("seconds") or 0.0
    took = f"{seconds:.1f} s" if seconds < 60 else duration(seconds)
    return (f"Index {r['version']} is active with {plural(r['count'], 'item')}, built in {took}: "
            f"{plural(r['reused'], 'vector')} reused, {plural(r['embedded'], 'image')} embedded.")


def job_json(job: Job) -> dict:
    body = {"id": job.pk, "kind": job.kind, "status": job.status, "stage": job.stage, "done": job.done,
            "total": job.total, "percent": job.percent, "message": job.message, "result": job.result}
    if job.kind == Job.Kind.REINDEX:
        body.update(steps=reindex_steps(job), summary=reindex_summary(job))
    return body


@staff_member_required
@require_GET
def job_status(request, pk: int):
    return JsonResponse(job_json(expire_if_stale(get_object_or_404(Job, pk=pk))))


@staff_member_required
@require_GET
def job_page(request, pk: int):
    job = expire_if_stale(get_object_or_404(Job, pk=pk))
    body = job_json(job)
    return render(request, "webapp/job.html", {"job": job, "steps": body.get("steps"), "summary": body.get("summary")})
