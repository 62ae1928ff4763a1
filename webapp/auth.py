"""Who may write: staff users by session (pages, with CSRF) or by bearer token (API)."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from ninja.security import APIKeyCookie, HttpBearer

from webapp.models import ApiToken


class StaffToken(HttpBearer):
    def authenticate(self, request, token: str):
        found = ApiToken.objects.select_related("user").filter(key=token).first()
        if found and found.user.is_active and found.user.is_staff:
            request.user = found.user
            return found.user
        return None


class StaffSession(APIKeyCookie):
    """Django's session cookie; CSRF is checked (ninja's APIKeyCookie csrf=True)."""

    param_name = "sessionid"

    def authenticate(self, request, key):
        user = getattr(request, "user", AnonymousUser())
        return user if user.is_authenticated and user.is_staff else None


STAFF = [StaffToken(), StaffSession()]
