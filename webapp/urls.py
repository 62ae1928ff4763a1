from django.contrib import admin
from django.urls import path

from webapp.api import api
from webapp.health import healthz, readyz
from webapp.views import catalog, items, report, search

urlpatterns = [
    path("", search.home, name="home"),
    path("browse/", catalog.browse, name="browse"),
    path("items/<int:pk>/", catalog.item_detail, name="item"),
    path("items/<int:pk>/image", catalog.item_image, name="item-image"),
    path("items/<int:pk>/looked.png", catalog.item_looked, name="item-looked"),
    path("items/new/", items.new_item, name="item-new"),
    path("items/staged/<str:token>.jpg", items.staged_image, name="staged-image"),
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
]
