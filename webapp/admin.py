from django.contrib import admin, messages
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html

from webapp.models import IndexVersion, Item, Job


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["thumbnail", "sku", "title", "category", "gender", "colour", "source", "hidden"]
    list_display_links = ["thumbnail", "sku"]
    list_filter = ["hidden", "source", "master_category", "gender", "category"]
    search_fields = ["sku", "title", "category"]
    list_per_page = 50
    readonly_fields = ["thumbnail", "created", "updated"]
    actions = ["hide", "unhide"]

    @admin.display(description="image")
    def thumbnail(self, obj):
        return format_html('<img src="{}" alt="" style="height:80px;background:#fff">', obj.image_url) if obj.pk else ""

    @admin.action(description="Hide from search and browsing")
    def hide(self, request, queryset):
        queryset.update(hidden=True)

    @admin.action(description="Show again")
    def unhide(self, request, queryset):
        from webapp.indexing import add_live_item

        items = list(queryset.filter(hidden=True))
        queryset.update(hidden=False)
        for item in items:  # a hidden item was left out of the last reindex: make it searchable now
            add_live_item(item)


@admin.register(IndexVersion)
class IndexVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "status", "count", "encoder_version", "backend", "parameters", "created"]
    readonly_fields = [f.name for f in IndexVersion._meta.fields]
    change_list_template = "admin/webapp/indexversion/change_list.html"

    @admin.display(description="backend")
    def backend(self, obj):
        return obj.manifest.get("backend", "annoy")

    @admin.display(description="search parameters")
    def parameters(self, obj):
        if obj.manifest.get("backend") == "ivf":
            return f"nlist {obj.manifest.get('nlist')}, nprobe {obj.manifest.get('nprobe')}"
        return f"{obj.n_trees} trees, search_k {obj.search_k}"

    def has_add_permission(self, request):
        return False

    def get_urls(self):
        return [path("reindex/", self.admin_site.admin_view(self.start_reindex), name="webapp_reindex"),
                *super().get_urls()]

    def start_reindex(self, request):
        if request.method != "POST":
            return redirect("admin:webapp_indexversion_changelist")
        from workers.tasks import start_reindex

        job, created = start_reindex()
        if not created:
            messages.info(request, f"A reindex is already {job.status}; showing its progress.")
        return redirect(reverse("job", args=[job.pk]))


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["pk", "kind", "status", "stage", "done", "total", "created", "finished"]
    list_filter = ["kind", "status"]
    readonly_fields = [f.name for f in Job._meta.fields]

    def has_add_permission(self, request):
        return False
