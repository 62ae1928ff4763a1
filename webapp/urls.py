from django.contrib import admin
from django.urls import path

from webapp.api import api
from webapp.views import catalog, search

urlpatterns = [
    path("", search.home, name="home"),
    path("browse/", catalog.browse, name="browse"),
    path("items/<int:pk>/", catalog.item_detail, name="item"),
    path("items/<int:pk>/image", catalog.item_image, name="item-image"),
    path("jobs/<int:pk>/", catalog.job_page, name="job"),
    path("jobs/<int:pk>.json", catalog.job_status, name="job-status"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
]
