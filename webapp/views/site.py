"""What every page of the site shares: the favicon browsers ask every page's server for."""

from django.conf import settings
from django.http import FileResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

FAVICON = settings.BASE_DIR / "static" / "favicon.ico"


@require_GET
@cache_control(max_age=7 * 24 * 3600, public=True)
def favicon(request):
    """/favicon.ico: browsers fetch it for any page (the admin's and the API docs' too), not only ours."""
    return FileResponse(open(FAVICON, "rb"), content_type="image/vnd.microsoft.icon")
