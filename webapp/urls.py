from django.contrib import admin
from django.urls import path

from webapp.api import api
from webapp.health import healthz, readyz
from webapp.views import catalog, items, report, search, site

urlpatterns = [
    path("", search.home, name="home"),
    path("browse/", catalog.browse, name="browse"),
    path("items/new/", items.new_item, name="item-new"),  # before items/<sku>/: "new" is no catalog id
    path("items/staged/<str:token>.jpg", items.staged_image, name="staged-image"),
    # Items by their catalog id (Item.sku), the one id pages and the API show.
    path("items/<str:sku>/", catalog.item_detail, name="item"),
    path("items/<str:sku>/image", catalog.item_image, name="item-image"),
    path("items/<str:sku>/heatmap.png", catalog.item_heatmap, name="item-heatmap"),
    path("jobs/<int:pk>/", catalog.job_page, name="job"),
    path("jobs/<int:pk>.json", catalog.job_status, name="job-status"),
    path("report/", report.model_report, name="report"),
    path("report/curves/<str:name>.png", report.report_curves, name="report-curves"),
    path("report/images/<slug:name>.png", report.report_image, name="report-image"),
    path("report/embedding.json", report.report_embedding, name="report-embedding"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    # Probes (webapp.health): liveness and readiness. HealthProbeMiddleware answers them first; these routes
    # name them for reverse() and serve them should the middleware be left out.
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("favicon.ico", site.favicon, name="favicon"),
]
