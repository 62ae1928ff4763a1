"""Who may write: staff users by session (pages, with CSRF) or by bearer token (API).

A request that brings a bearer token is judged by that token alone: an unknown, expired or non-staff token is
a 401 that says which (``TokenRefused``), never a fall back to the session and its CSRF check.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from ninja.security import APIKeyCookie, HttpBearer

from webapp.models import ApiToken

UNAUTHORIZED_DESCRIPTION = ("Not authenticated: no staff session and no `Authorization: Bearer <token>` header, "
                            "or a token that is unknown (mistyped or deleted), expired, or whose user is not "
                            "active staff. The `error` says which.")


class TokenRefused(Exception):
    """A bearer token was given and is not good (HTTP 401); the message says why."""


class StaffToken(HttpBearer):
    def authenticate(self, request, token: str):
        found = ApiToken.objects.select_related("user").filter(key=ApiToken.digest(token)).first()
        if found is None:
            raise TokenRefused("the API token is not valid (mistyped, or deleted): check the Authorization header "
                               "or ask a staff member for a new token")
        if found.expired:
            raise TokenRefused(f"the API token expired on {found.expires:%Y-%m-%d %H:%M} UTC: ask a staff member "
                               "for a new token")
        if not (found.user.is_active and found.user.is_staff):
            raise TokenRefused(f"the API token's user {found.user.get_username()!r} is not active staff")
        request.user = found.user
        return found.user


class StaffSession(APIKeyCookie):
    """Django's session cookie; CSRF is checked (ninja's APIKeyCookie csrf=True)."""

    param_name = "sessionid"

    def authenticate(self, request, key):
        user = getattr(request, "user", AnonymousUser())
        return user if user.is_authenticated and user.is_staff else None


STAFF = [StaffToken(), StaffSession()]
