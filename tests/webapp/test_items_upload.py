"""Staff upload with tag suggestions: the page flow and POST /api/items, good and bad input."""

import io

import numpy as np
import pytest

from tests.conftest import COLOURS, draw_item, jpeg_bytes
from webapp.models import ApiToken, Item

pytestmark = pytest.mark.django_db


def photo(category="Watches", seed=3, name="p.jpg"):
    f = io.BytesIO(jpeg_bytes(draw_item(category, COLOURS["Red"], np.random.default_rng(seed))))
    f.name = name
    return f


def test_anonymous_users_cannot_write(client, searchable):
    assert client.post("/api/items", {"image": photo(), "title": "x"}).status_code == 401
    assert client.post("/api/items/suggest", {"image": photo()}).status_code == 401
    res = client.get("/items/new/")
    assert res.status_code == 302 and "/admin/login/" in res["Location"]
    assert client.post("/items/new/", {"image": photo(), "title": "x"}).status_code == 302
    assert Item.objects.count() == 160


def test_token_upload_suggests_tags_and_saves(client, searchable, django_user_model):
    user = django_user_model.objects.create_user("bot", is_staff=True)
    _, key = ApiToken.issue(user)
    res = client.post("/api/items", {"image": photo("Watches"), "title": "Acme Men Red Watches 99"},
                      HTTP_AUTHORIZATION=f"Bearer {key}")
    assert res.status_code == 201, res.content
    body = res.json()
    tags = body["suggestion"]["tags"]
    assert {"category", "gender", "colour"} <= tags.keys()
    assert abs(sum(t["confidence"] for t in tags["category"]) - 1) < 0.5  # top-3 of a softmax
    assert body["suggestion"]["model"] == "fused"
    assert body["suggestion"]["heatmap"].startswith("data:image/png;base64,")
    item = Item.objects.get(sku=body["item"]["id"])
    assert item.source == "upload" and item.category == tags["category"][0]["label"]
    assert item.image_path.endswith(".jpg") and "staging" not in item.image_path
    assert client.get(f"/items/{item.sku}/image").status_code == 200


def test_non_staff_token_is_refused(client, searchable, django_user_model):
    user = django_user_model.objects.create_user("shopper")
    _, key = ApiToken.issue(user)
    res = client.post("/api/items", {"image": photo(), "title": "x"}, HTTP_AUTHORIZATION="Bearer " + key)
    assert res.status_code == 401 and "staff" in res.json()["error"]


@pytest.mark.parametrize("payload,message", [
    ({"title": "no image"}, "image"),
    ({"image": io.BytesIO(b"GIF89a not really"), "title": "x"}, "not a readable image"),
    ({"image": "photo", "title": "t" * 300}, "longer than 200"),
])
def test_bad_uploads_are_400_and_store_nothing(staff_client, searchable, settings, payload, message):
    if payload.get("image") == "photo":
        payload["image"] = photo()
    elif "image" in payload:
        payload["image"].name = "x.gif"
    res = staff_client.post("/api/items", payload)
    assert res.status_code == 400 and message in res.json()["error"]
    assert Item.objects.count() == 160
    staging = settings.MEDIA_ROOT / "staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_page_flow_suggest_then_confirm(staff_client, searchable):
    res = staff_client.post("/items/new/", {"action": "suggest", "image": photo("Handbags")})
    html = res.content.decode()
    assert res.status_code == 200 and 'name="token"' in html and "data:image/png;base64," in html
    assert "image-only" in html  # no title: the image-only twin answered
    assert html.count('class="card"') == 10 and "Nearest catalog items" in html  # ... and the nearest items voted
    assert html.count("% of the vote</span>") == 10 and 'class="score"' not in html  # their shares, not cosines
    token = html.split('name="token" value="')[1].split('"')[0]
    res = staff_client.post("/items/new/", {"action": "save", "token": token, "title": "New bag",
                                             "category": "Handbags", "gender": "Women", "colour": "Red"})
    assert res.status_code == 302
    item = Item.objects.get(title="New bag")
    assert (item.category, item.gender, item.colour) == ("Handbags", "Women", "Red")


def test_page_errors_are_plain_words(staff_client, searchable):
    res = staff_client.post("/items/new/", {"action": "suggest"})
    assert res.status_code == 400 and "choose a product photo" in res.content.decode()
    res = staff_client.post("/items/new/", {"action": "save", "token": "../../etc/passwd", "title": "x",
                                             "category": "Tshirts"})
    assert res.status_code == 400 and "invalid" in res.content.decode()


def test_without_a_title_the_nearest_items_vote(searchable, monkeypatch):
    """An untitled upload asks the index once for its nearest items: they vote on the category."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from webapp import uploads
    from webapp.services import get_models

    staged = uploads.stage_upload(SimpleUploadedFile("bag.jpg", photo("Handbags").read(), "image/jpeg"))
    vector = get_models().encoder().embed(staged.image[None])[0]
    nearest = uploads.nearest_items(vector)
    assert len(nearest) == uploads.NEIGHBOURS and all(isinstance(i, Item) for i, _ in nearest)
    assert [s for _, s in nearest] == sorted((s for _, s in nearest), reverse=True)
    seen = {}
    real = uploads.suggest_tags

    def spy(models, image, title="", **kw):
        seen.update(kw)
        return real(models, image, title, **kw)

    monkeypatch.setattr(uploads, "suggest_tags", spy)
    suggestion, _heatmap, draft, shown = uploads.suggest(staged, "")
    assert shown == nearest
    assert seen["neighbours"] == [(i.category, s) for i, s in nearest]
    np.testing.assert_allclose(seen["vector"], vector, atol=1e-6)  # embedded once, for the search and the tags
    assert suggestion.model == "image-only" and draft == suggestion.title_draft
    uploads.suggest(staged, "Red bag")
    assert seen["neighbours"] is None


def test_api_suggest_lists_the_voting_neighbours_only_without_a_title(client, searchable, django_user_model):
    user = django_user_model.objects.create_user("bot2", is_staff=True)
    _, key = ApiToken.issue(user)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    body = client.post("/api/items/suggest", {"image": photo("Handbags")}, **auth).json()
    near = body["neighbours"]
    assert len(near) == 10 and body["model"] == "image-only"
    assert [n["similarity"] for n in near] == sorted((n["similarity"] for n in near), reverse=True)
    assert all(Item.objects.get(sku=n["id"]).category == n["category"] for n in near)
    assert client.get(near[0]["image_url"]).status_code == 200
    titled = client.post("/api/items/suggest", {"image": photo("Handbags"), "title": "Red bag"}, **auth).json()
    assert titled["neighbours"] == [] and titled["model"] == "fused"


def test_an_untitled_upload_gets_a_draft_that_names_no_brand(staff_client, searchable, settings):
    """Every synthetic title names the brand "Acme", which no photo shows. By default the draft is the nearest
    catalog item's title without its brand; with ``CAPTION_METHOD=tags`` it says the gender, colour and kind the
    tags suggest. The page and the API call it a draft."""
    from search.captions import draft_from_tags, strip_brand

    body = staff_client.post("/api/items/suggest", {"image": photo("Handbags")}).json()
    nearest = Item.objects.get(sku=body["neighbours"][0]["id"])
    assert body["title_draft_method"] == "neighbour" and nearest.title.startswith("Acme ")
    assert body["title_draft"] == strip_brand(nearest.title) and "Acme" not in body["title_draft"]

    settings.CAPTION_METHOD = "tags"
    body = staff_client.post("/api/items/suggest", {"image": photo("Handbags")}).json()
    assert body["title_draft_method"] == "tags" and "Acme" not in body["title_draft"]
    best = {head: [(o["label"], o["confidence"]) for o in options[:1]] for head, options in body["tags"].items()}
    assert body["title_draft"] == draft_from_tags(best)
    assert body["title_draft"].split()[-1] == body["tags"]["category"][0]["label"].split()[-1]
    assert staff_client.post("/api/items/suggest", {"image": photo(), "title": "Red bag"}).json()["title_draft"] == ""

    html = staff_client.post("/items/new/", {"action": "suggest", "image": photo("Handbags")}).content.decode()
    draft = html.split('name="title" maxlength="200" value="')[1].split('"')[0]
    assert draft and "Acme" not in draft and 'class="badge draft"' in html

    created = staff_client.post("/api/items", {"image": photo("Handbags")})
    assert created.status_code == 201, created.content
    assert created.json()["title_is_draft"] is True and "Acme" not in created.json()["item"]["title"]
    titled = staff_client.post("/api/items", {"image": photo("Handbags"), "title": "Acme Women Red Handbags 7"})
    assert titled.json()["title_is_draft"] is False


def test_auto_drafts_with_what_evaluate_measured_better_for_the_captioner_in_use(staff_client, searchable, settings,
                                                                                  synthetic_catalog):
    """``CAPTION_METHOD=auto`` (the default) drafts with the LSTM only where the last ``evaluate`` report measured
    this very captioner and found it better as shown; a report of another captioner, an unreadable report or
    none at all leaves the neighbour's title, which needs no training."""
    import json
    from pathlib import Path

    import torch

    from search.dataset import load_dataset
    from search.train import train_role
    from webapp.services import reset_caches

    artifacts = Path(settings.ARTIFACTS_DIR)
    train_role("captioner", load_dataset(synthetic_catalog, artifacts / "cache"), artifacts, profile="tiny",
               device="cpu")
    reset_caches()
    version = torch.load(artifacts / "models" / "captioner.pt", map_location="cpu", weights_only=False)["version"]
    report = artifacts / "reports" / "evaluate.json"
    report.parent.mkdir(parents=True, exist_ok=True)

    def method() -> str:
        body = staff_client.post("/api/items/suggest", {"image": photo("Handbags")}).json()
        assert "Acme" not in body["title_draft"]
        return body["title_draft_method"]

    assert settings.CAPTION_METHOD == "auto" and method() == "neighbour"  # no report yet
    report.write_text(json.dumps({"models": {"captioner": version}, "captions": {"winner": "lstm"}}))
    assert method() in ("lstm", "tags")  # the LSTM's draft (the tags where the tiny captioner writes only a brand)
    report.write_text(json.dumps({"models": {"captioner": "captioner-another"}, "captions": {"winner": "lstm"}}))
    assert method() == "neighbour"
    report.write_text(json.dumps({"models": {"captioner": version}, "captions": {"winner": "neighbour"}}))
    assert method() == "neighbour"
    report.write_text("{not json")
    assert method() == "neighbour"
