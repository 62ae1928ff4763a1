"""A fixed-window rate limit per client IP on Django's cache (LocMem per process, Redis when shared).

``RateLimitMiddleware`` is the one place it is applied: every view that runs the models or the index for a
client (``LIMITED``: the JSON API's search and similar items, the HTML search form, item pages with their
similar items, and heatmaps) is counted before it runs; no view calls it by hand.

``SEARCH_RATE_LIMIT = "120/m"`` allows 120 searches per client IP in each clock-aligned
minute; ``"0"`` (or empty) turns the limit off. The client IP is ``REMOTE_ADDR``, or with
``TRUSTED_PROXIES = n`` the address the n-th proxy in front of us saw (``X-Forwarded-For``
from the right), so clients cannot pick their own key. When the cache is down the
request is let through: a broken limiter must not take search down with it.
"""

from __future__ import annotations

import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpResponse, JsonResponse

log = logging.getLogger(__name__)
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class RateLimited(Exception):
    """Too many requests in this window; ``retry_after`` seconds until the next one."""

    def __init__(self, what: str, retry_after: int):
        super().__init__(f"too many {what}: try again in {retry_after} s")
        self.retry_after = retry_after


def parse_rate(rate: str | int | None) -> tuple[int, int] | None:
    """``"120/m"`` -> (120, 60); ``"10/5s"`` -> (10, 5); ``0``, ``""`` or ``"0/m"`` -> None (no limit)."""
    text = str(rate or "").strip().lower()
    if text in ("", "0", "off", "none"):
        return None
    count, _, period = text.partition("/")
    period = period or "m"
    multiple = period[:-1] or "1"
    if not count.isdigit() or period[-1] not in PERIODS or not multiple.isdigit() or int(multiple) < 1:
        raise ValueError(f"rate limit {rate!r} should look like '120/m' (per s, m, h or d), or 0 for none")
    return (int(count), int(multiple) * PERIODS[period[-1]]) if int(count) else None


def client_ip(request) -> str:
    proxies = settings.TRUSTED_PROXIES
    if proxies > 0:
        hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
        if len(hops) >= proxies:
            return hops[-proxies]
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def check(request, scope: str, rate: str | int | None, what: str) -> None:
    """Count this request; raise ``RateLimited`` when the client went over ``rate`` in this window."""
    limit = parse_rate(rate)
    if limit is None:
        return
    allowed, period = limit
    now = time.time()
    window = int(now // period)
    key = f"ratelimit:{scope}:{client_ip(request)}:{period}:{window}"
    try:
        cache.add(key, 0, timeout=period + 1)
        count = cache.incr(key)
    except ValueError:  # the key expired between add and incr: this is the window's first request
        return
    except Exception as exc:  # cache server unreachable: fail open
        log.warning("rate limit not applied, the cache failed: %s: %s", type(exc).__name__, exc)
        return
    if count > allowed:
        raise RateLimited(what, max(1, math.ceil((window + 1) * period - now)))


# URL name -> (the count it adds to, its name in the message, the methods counted; None: all).
# Searches of every kind share one count; heatmaps (a forward pass each) have their own, at the same rate.
LIMITED: dict[str, tuple[str, str, frozenset[str] | None]] = {
    "api:search": ("search", "searches", None),
    "api:similar": ("search", "searches", None),
    "home": ("search", "searches", frozenset({"POST"})),  # the page itself (GET) runs no search
    "item": ("search", "searches", None),  # an item page shows its similar items
    "item-heatmap": ("heatmap", "heatmaps", None),
}


class RateLimitMiddleware:
    """Counts the requests of ``LIMITED`` views per client and answers 429 (with ``Retry-After``) over
    ``SEARCH_RATE_LIMIT``: JSON ``{"error": ...}`` under /api/, plain text elsewhere."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        match = request.resolver_match
        limited = LIMITED.get(match.view_name if match else "")
        if limited is None or (limited[2] is not None and request.method not in limited[2]):
            return None
        scope, what, _methods = limited
        try:
            check(request, scope, settings.SEARCH_RATE_LIMIT, what)
        except RateLimited as exc:
            if request.path.startswith("/api/"):
                response = JsonResponse({"error": str(exc)}, status=429)
            else:
                response = HttpResponse(str(exc), status=429, content_type="text/plain")
            response["Retry-After"] = str(exc.retry_after)
            return response
        return None
