"""API tokens: made in the admin (shown once) or by `manage.py create_token USER`, stored as a SHA-256 only; a bad,
expired or non-staff token is a 401 that says which, listed in the OpenAPI schema."""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from webapp.models import ApiToken, Item

pytestmark = pytest.mark.django_db


def not_an_image() -> io.BytesIO:
    f = io.BytesIO(b"<html>not a picture</html>")
    f.name = "x.jpg"
    return f


def upload(token: str):
    """An upload as a script behind gunicorn sends it: no session, CSRF enforced, the token in the header."""
    return Client(enforce_csrf_checks=True).post("/api/items", {"image": not_an_image(), "title": "x"},
                                                 HTTP_AUTHORIZATION=f"Bearer {token}")


def past_auth(res) -> bool:
    return res.status_code == 400 and "not a readable image" in res.json()["error"]


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("feed", is_staff=True)


def test_create_token_prints_a_token_that_works_and_is_stored_hashed(staff, capsys):
    call_command("create_token", "feed", "--name", "catalog feed")
    out = capsys.readouterr()
    token = out.out.strip()
    assert len(token) >= 40 and "shown only now" in out.err
    row = ApiToken.objects.get()
    assert row.user == staff and row.name == "catalog feed" and row.expires is None
    assert row.key == ApiToken.digest(token) and token not in row.key
    assert past_auth(upload(token))


def test_create_token_with_days_expires(staff, capsys):
    call_command("create_token", "feed", "--days", "30")
    token = capsys.readouterr().out.strip()
    row = ApiToken.objects.get()
    assert timedelta(days=29) < row.expires - timezone.now() <= timedelta(days=30)
    assert past_auth(upload(token))
    ApiToken.objects.update(expires=timezone.now() - timedelta(minutes=1))
    res = upload(token)
    assert res.status_code == 401 and "expired" in res.json()["error"]


@pytest.mark.parametrize("user,message", [("nobody", "no user 'nobody'"), ("shopper", "not active staff")])
def test_create_token_refuses_unknown_and_non_staff_users(user, message, django_user_model):
    django_user_model.objects.create_user("shopper")
    with pytest.raises(CommandError, match=message):
        call_command("create_token", user)
    assert not ApiToken.objects.exists()


def test_a_wrong_token_is_a_401_that_says_so_not_a_csrf_403(staff):
    ApiToken.issue(staff)
    res = upload("not-the-token")
    assert res.status_code == 401, res.content
    assert "API token is not valid" in res.json()["error"]
    assert res["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert Item.objects.count() == 0


def test_a_token_of_a_user_no_longer_staff_is_refused(staff):
    _, token = ApiToken.issue(staff)
    staff.is_staff = False
    staff.save()
    res = upload(token)
    assert res.status_code == 401 and "not active staff" in res.json()["error"]


def test_no_credentials_is_a_401_with_a_challenge(client):
    res = client.post("/api/items", {"image": not_an_image()})
    assert res.status_code == 401 and res["WWW-Authenticate"] == "Bearer"


def test_the_schema_lists_the_401_with_what_it_means(client):
    schema = client.get("/api/openapi.json").json()
    for path in ("/api/items", "/api/items/suggest"):
        response = schema["paths"][path]["post"]["responses"]["401"]
        assert "expired" in response["description"] and "token" in response["description"]
        assert response["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    assert any(s.get("scheme") == "bearer" for s in schema["components"]["securitySchemes"].values())


def test_the_admin_makes_a_token_and_shows_it_once(client, django_user_model, staff):
    boss = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw-for-tests-only")
    client.force_login(boss)
    assert client.get("/admin/webapp/apitoken/").status_code == 200
    form = client.get("/admin/webapp/apitoken/add/")
    assert form.status_code == 200 and b'name="key"' not in form.content
    res = client.post("/admin/webapp/apitoken/add/", {"user": staff.pk, "name": "feed", "expires_0": "",
                                                      "expires_1": ""})
    assert res.status_code == 200, res.content[:2000]
    row = ApiToken.objects.get()
    page = res.content.decode()
    token = page.split('id="api-token" type="text" readonly value="')[1].split('"')[0]
    assert row.key == ApiToken.digest(token) and "shown only this once" in page
    assert "no-store" in res["Cache-Control"]
    assert past_auth(upload(token))
    later = client.get(f"/admin/webapp/apitoken/{row.pk}/change/").content.decode()
    assert token not in later and row.key not in later
    listing = client.get("/admin/webapp/apitoken/").content.decode()
    assert token not in listing and "valid" in listing


def test_tokens_made_before_hashing_keep_working(staff):
    """Migration 0006 stores the SHA-256 of every existing token."""
    from importlib import import_module

    from django.apps import apps

    ApiToken.objects.create(key="t" * 40, user=staff)  # as 0003 stored them
    import_module("webapp.migrations.0006_api_token_hashed_expires").hash_existing_keys(apps, None)
    assert past_auth(upload("t" * 40))
