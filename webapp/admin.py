import secrets

from django.contrib import admin, messages
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from webapp.models import ApiToken, IndexVersion, Item, Job


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
        from webapp.indexing import start_reindex

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


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens for the write API. The token is made on save and shown on the next page only: the database keeps
    its SHA-256, so it cannot be shown again (delete it and make a new one). To revoke one, delete it or set
    ``expires`` to now."""

    list_display = ["name", "user", "created", "expires", "state"]
    list_filter = ["user"]
    search_fields = ["name", "user__username"]
    fields = ["user", "name", "expires"]
    readonly_fields = ["created"]

    @admin.display(description="state")
    def state(self, obj):
        if obj.expired:
            return "expired"
        if not (obj.user.is_active and obj.user.is_staff):
            return "refused: the user is not active staff"
        return "valid"

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user":
            kwargs["queryset"] = db_field.related_model.objects.filter(is_active=True, is_staff=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_fields(self, request, obj=None):
        return ["user", "name", "expires"] if obj is None else ["user", "name", "created", "expires"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["user", "created"]

    def save_model(self, request, obj, form, change):
        if not change:
            token = secrets.token_urlsafe(32)
            obj.key = ApiToken.digest(token)
            obj._token = token  # for response_add only; never stored
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        """The one page that shows the token."""
        context = {**self.admin_site.each_context(request), "title": "API token created", "token": obj._token,
                   "object": obj, "opts": self.model._meta,
                   "changelist_url": reverse("admin:webapp_apitoken_changelist")}
        return TemplateResponse(request, "admin/webapp/apitoken/created.html", context)
