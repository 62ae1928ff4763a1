"""The fixed-window rate limit per client IP of every search and heatmap path (``RateLimitMiddleware``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from webapp import ratelimit

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(monkeypatch):
    now = [60 * 16_000 + 20.0]  # 20 s into a minute
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: now[0]))
    return now


def search(client, ip="10.0.0.1", **extra):
    return client.post("/api/search", {"text": ""}, REMOTE_ADDR=ip, **extra)


def test_over_the_limit_is_a_429_with_retry_after(client, settings, clock):
    settings.SEARCH_RATE_LIMIT = "3/m"
    assert [search(client).status_code for _ in range(3)] == [400, 400, 400]  # counted, then validated
    res = search(client)
    assert res.status_code == 429
    assert res.json() == {"error": "too many searches: try again in 40 s"} and res["Retry-After"] == "40"
    assert search(client, ip="10.0.0.2").status_code == 400  # another client has its own count
    clock[0] += 40  # the next window
    assert search(client).status_code == 400


def test_zero_disables_the_limit(client, settings, clock):
    settings.SEARCH_RATE_LIMIT = "0"
    assert all(search(client).status_code == 400 for _ in range(20))


def test_forwarded_for_is_used_only_behind_trusted_proxies(client, settings, clock):
    settings.SEARCH_RATE_LIMIT = "1/h"
    assert search(client, HTTP_X_FORWARDED_FOR="1.1.1.1").status_code == 400
    assert search(client, HTTP_X_FORWARDED_FOR="2.2.2.2").status_code == 429  # spoofed header ignored
    settings.TRUSTED_PROXIES = 1
    assert search(client, HTTP_X_FORWARDED_FOR="6.6.6.6, 3.3.3.3").status_code == 400  # the proxy saw 3.3.3.3
    assert search(client, HTTP_X_FORWARDED_FOR="7.7.7.7, 3.3.3.3").status_code == 429


def test_other_endpoints_are_not_limited(client, settings, clock):
    settings.SEARCH_RATE_LIMIT = "1/m"
    assert all(client.get("/api/health").status_code == 200 for _ in range(5))


def test_a_broken_cache_lets_searches_through(client, settings, clock, monkeypatch):
    settings.SEARCH_RATE_LIMIT = "1/m"

    def down(*args, **kwargs):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(ratelimit.cache, "add", down)
    assert [search(client).status_code for _ in range(3)] == [400, 400, 400]


@pytest.mark.parametrize("rate,parsed", [("120/m", (120, 60)), ("10/s", (10, 1)), ("5/10s", (5, 10)),
                                         ("1000/h", (1000, 3600)), ("7/d", (7, 86400)), ("30", (30, 60)),
                                         ("0", None), ("", None), (0, None), ("0/m", None)])
def test_parse_rate(rate, parsed):
    assert ratelimit.parse_rate(rate) == parsed


@pytest.mark.parametrize("rate", ["lots", "10/x", "-1/m", "10/0m"])
def test_bad_rates_are_explained(rate):
    with pytest.raises(ValueError, match="120/m"):
        ratelimit.parse_rate(rate)


def test_settings_configure_a_cache(settings):
    from django.conf import settings as live

    assert "default" in live.CACHES and live.SEARCH_RATE_LIMIT


def test_heatmaps_are_counted_too(client, settings, clock, searchable):
    """Each heatmap is a forward pass of the encoder: the same limit, counted apart from searches."""
    from webapp.models import Item

    settings.SEARCH_RATE_LIMIT = "2/m"
    sku = Item.objects.first().sku
    assert [client.get(f"/items/{sku}/heatmap.png").status_code for _ in range(2)] == [200, 200]
    res = client.get(f"/items/{sku}/heatmap.png")
    assert res.status_code == 429 and res["Retry-After"] == "40" and "too many heatmaps" in res.content.decode()
    assert search(client).status_code == 400  # searches have their own count


def test_the_html_search_and_item_pages_share_the_searches_count(client, settings, clock, searchable):
    """One limit for every path that searches: the search form, item pages (their similar items) and the API."""
    from webapp.models import Item

    settings.SEARCH_RATE_LIMIT = "3/m"
    sku = Item.objects.first().sku
    assert client.get("/").status_code == 200  # the page alone runs no search: not counted
    assert client.post("/", {"text": ""}).status_code == 400  # counted, then validated
    assert client.get(f"/items/{sku}/").status_code == 200
    assert client.get(f"/api/items/{sku}/similar").status_code == 200
    res = client.post("/", {"text": ""})
    assert res.status_code == 429 and res["Retry-After"] == "40" and "too many searches" in res.content.decode()
    assert client.get(f"/items/{sku}/").status_code == 429
    assert client.post("/api/search", {"text": ""}).json() == {"error": "too many searches: try again in 40 s"}
    assert client.get("/").status_code == 200 and client.get("/browse/").status_code == 200
