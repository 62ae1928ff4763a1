"""Who may write: one test per write or staff-only action, for an anonymous visitor and for a
logged-in user without staff rights; and CSRF on session-authenticated writes."""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from PIL import Image

from tests.conftest import jpeg_upload
from webapp.models import ApiToken, IndexVersion, Item, Job

pytestmark = pytest.mark.django_db


@dataclass
class World:
    item: Item
    job: Job
    token: str  # a staged upload's token, its file really on disk
    staged: Path


@pytest.fixture
def world(artifacts, settings, tmp_path) -> World:
    image = tmp_path / "item.jpg"
    Image.new("RGB", (60, 80), "red").save(image)
    item = Item.objects.create(sku="a1", title="Red thing", category="Tshirts", image_path=str(image))
    job = Job.objects.create(kind=Job.Kind.REINDEX)
    token = secrets.token_hex(16)
    staged = Path(settings.MEDIA_ROOT) / "staging" / f"{token}.jpg"
    staged.parent.mkdir(parents=True)
    Image.new("RGB", (60, 80), "blue").save(staged)
    return World(item, job, token, staged)


# name -> (method, url of the world, data of the world); every one needs staff rights
ACTIONS = {
    "item-new-page": ("get", lambda w: "/items/new/", None),
    "item-new-suggest": ("post", lambda w: "/items/new/", lambda w: {"action": "suggest", "image": jpeg_upload()}),
    "item-new-save": ("post", lambda w: "/items/new/", lambda w: {"action": "save", "token": w.token, "title": "x",
                                                                  "category": "Tshirts"}),
    "staged-image": ("get", lambda w: f"/items/staged/{w.token}.jpg", None),
    "api-items": ("post", lambda w: "/api/items", lambda w: {"image": jpeg_upload(), "title": "x", "category": "Tshirts"}),
    "api-items-suggest": ("post", lambda w: "/api/items/suggest", lambda w: {"image": jpeg_upload()}),
    "admin-item-change-page": ("get", lambda w: f"/admin/webapp/item/{w.item.pk}/change/", None),
    "admin-item-change": ("post", lambda w: f"/admin/webapp/item/{w.item.pk}/change/",
                          lambda w: {"sku": "a1", "title": "Defaced", "category": "Tshirts",
                                     "image_path": "/etc/passwd", "source": "catalog"}),
    "admin-item-delete": ("post", lambda w: f"/admin/webapp/item/{w.item.pk}/delete/", lambda w: {"post": "yes"}),
    "admin-item-hide-action": ("post", lambda w: "/admin/webapp/item/",
                               lambda w: {"action": "hide", "_selected_action": [w.item.pk]}),
    "admin-reindex-get": ("get", lambda w: reverse("admin:webapp_reindex"), None),
    "admin-reindex": ("post", lambda w: reverse("admin:webapp_reindex"), lambda w: {}),
    "job-page": ("get", lambda w: f"/jobs/{w.job.pk}/", None),
    "job-status-json": ("get", lambda w: f"/jobs/{w.job.pk}.json", None),
    "report-page": ("get", lambda w: reverse("report"), None),
    "report-embedding": ("get", lambda w: reverse("report-embedding"), None),
    "report-curves": ("get", lambda w: reverse("report-curves", args=["encoder"]), None),
    "report-image": ("get", lambda w: reverse("report-image", args=["gan-samples"]), None),
}


@pytest.fixture(params=["anonymous", "logged-in-not-staff"])
def outsider(request, client, django_user_model):
    if request.param == "logged-in-not-staff":
        client.force_login(django_user_model.objects.create_user("shopper", password="pw-for-tests-only"))
    return client


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_outsiders_cannot_reach_staff_actions(action, outsider, world):
    method, url, data = ACTIONS[action]
    kwargs = {"data": data(world)} if data else {}
    res = getattr(outsider, method)(url(world), **kwargs)
    if url(world).startswith("/api/"):
        assert res.status_code == 401 and "staff" in res.json()["error"]
    else:
        assert res.status_code == 302 and res["Location"].startswith("/admin/login/"), (res.status_code, res)
    world.item.refresh_from_db()
    assert (world.item.title, world.item.hidden, world.item.image_path) == ("Red thing", False,
                                                                           world.item.image_path)
    assert Item.objects.count() == 1 and Job.objects.count() == 1 and IndexVersion.objects.count() == 0
    assert world.staged.exists()


def test_reading_is_public(client, world):
    for url in ("/", "/browse/", f"/items/{world.item.sku}/", f"/items/{world.item.sku}/image", "/api/health"):
        assert client.get(url).status_code == 200, url


def csrf_client(django_user_model) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(django_user_model.objects.create_user("boss", password="pw-for-tests-only", is_staff=True,
                                                             is_superuser=True))
    return client


def not_an_image() -> io.BytesIO:
    f = io.BytesIO(b"<html>not a picture</html>")
    f.name = "x.jpg"
    return f


@pytest.mark.parametrize("url", ["/api/items", "/api/items/suggest"])
def test_session_api_writes_need_the_csrf_token(url, django_user_model, world):
    client = csrf_client(django_user_model)
    refused = client.post(url, {"image": not_an_image(), "title": "x"})
    assert refused.status_code in (401, 403) and Item.objects.count() == 1
    client.get("/items/new/")  # the page sets the CSRF cookie, as a browser would get it
    token = client.cookies["csrftoken"].value
    passed = client.post(url, {"image": not_an_image(), "title": "x"}, HTTP_X_CSRFTOKEN=token)
    assert passed.status_code == 400 and "not a readable image" in passed.json()["error"]  # past auth and CSRF


def test_bearer_token_writes_need_no_csrf(django_user_model, world):
    user = django_user_model.objects.create_user("bot", is_staff=True)
    _, token = ApiToken.issue(user)
    res = Client(enforce_csrf_checks=True).post("/api/items", {"image": not_an_image()},
                                                HTTP_AUTHORIZATION="Bearer " + token)
    assert res.status_code == 400 and "not a readable image" in res.json()["error"]
    wrong = Client(enforce_csrf_checks=True).post("/api/items", {"image": not_an_image()},
                                                  HTTP_AUTHORIZATION="Bearer " + "u" * 40)
    assert wrong.status_code == 401 and "not valid" in wrong.json()["error"] and Item.objects.count() == 1


@pytest.mark.parametrize("action", ["item-new-save", "admin-item-delete", "admin-reindex"])
def test_staff_page_writes_need_the_csrf_token(action, django_user_model, world):
    client = csrf_client(django_user_model)
    method, url, data = ACTIONS[action]
    assert client.post(url(world), data(world)).status_code == 403
    assert Item.objects.count() == 1 and Job.objects.count() == 1
