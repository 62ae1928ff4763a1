"""Staff upload of a new product: photo + title -> suggested tags (with where the model looked) -> confirm."""

from django.contrib.admin.views.decorators import staff_member_required
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from search.categories import neighbour_vote
from search.trained import ModelMissingError
from webapp import uploads
from webapp.queries import QueryError
from webapp.views.search import facets


@staff_member_required
@require_http_methods(["GET", "POST"])
def new_item(request):
    context = {"step": "upload", **facets()}
    if request.method == "GET":
        return render(request, "webapp/item_new.html", context)
    action = request.POST.get("action", "suggest")
    try:
        if action == "save":
            staged = uploads.load_staged(request.POST.get("token", ""))
            def choice(head):  # a typed "other" value wins over the suggested options
                return request.POST.get(f"{head}_other", "").strip() or request.POST.get(head, "")

            item = uploads.save_item(staged, title=request.POST.get("title", ""), category=choice("category"),
                                     gender=choice("gender"), colour=choice("colour"), sku=request.POST.get("sku", ""))
            return redirect(item.get_absolute_url() + "?added=1")
        title = uploads.clean_title(request.POST.get("title", ""))
        if not request.FILES.get("image"):
            raise QueryError("choose a product photo to upload")
        staged = uploads.stage_upload(request.FILES["image"])
        suggestion, heatmap, draft, nearest = uploads.suggest(staged, title)
        # each nearest item's share of the vote on the category (its weight in search.tagging), not a raw cosine
        shares = neighbour_vote([(str(i), score) for i, (_item, score) in enumerate(nearest)])
        context.update(step="confirm", token=staged.token, title=title or draft, title_draft=draft,
                       suggestion=suggestion, heatmap=heatmap,
                       nearest=[(item, shares.get(str(i), 0.0)) for i, (item, _score) in enumerate(nearest)])
        return render(request, "webapp/item_new.html", context)
    except (QueryError, ModelMissingError) as exc:
        context["error"] = str(exc)
        if action == "save":
            context.update(step="confirm", token=request.POST.get("token", ""), title=request.POST.get("title", ""))
        return render(request, "webapp/item_new.html", context, status=400)


@staff_member_required
def staged_image(request, token: str):
    try:
        staged = uploads.load_staged(token)
    except QueryError:
        raise Http404 from None
    return FileResponse(open(staged.path, "rb"), content_type="image/jpeg")
