"""The home page: search by photo (sketch and words join it), results as a grid of pictures."""

from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from search.trained import ModelMissingError
from webapp.models import IndexVersion, Item
from webapp.queries import Query, QueryError, clamp_k, run
from webapp.services import Filters, SearchUnavailable


def facets() -> dict:
    visible = Item.objects.filter(hidden=False)
    return {
        "categories": visible.values_list("category", flat=True).distinct().order_by("category"),
        "genders": visible.values_list("gender", flat=True).distinct().order_by("gender"),
        "colours": visible.values_list("colour", flat=True).distinct().order_by("colour"),
    }


@require_http_methods(["GET", "POST"])
def home(request):
    context = {"item_count": Item.objects.filter(hidden=False).count(), "query_text": "",
               "index": IndexVersion.objects.filter(is_active=True).first(), **facets()}
    if request.method == "POST":
        filters = Filters(category=request.POST.get("category", ""), gender=request.POST.get("gender", ""),
                          colour=request.POST.get("colour", ""))
        context["filters"] = filters
        context["query_text"] = request.POST.get("text", "")
        try:
            query = Query(photo=request.FILES.get("photo"), sketch=request.FILES.get("sketch"),
                          text=request.POST.get("text", ""), k=clamp_k(None),
                          filters=filters)
            outcome = run(query)
            context["result"], context["generated_image"] = outcome.result, outcome.generated_image
        except (QueryError, SearchUnavailable, ModelMissingError) as exc:
            context["error"] = str(exc)
        status = 400 if "error" in context else 200
        return render(request, "webapp/home.html", context, status=status)
    return render(request, "webapp/home.html", context)
