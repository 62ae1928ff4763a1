import io
import re

import numpy as np
import pytest
from PIL import Image

from tests.conftest import COLOURS, draw_item, jpeg_bytes
from webapp.models import Item

pytestmark = pytest.mark.django_db


def test_empty_states_say_what_to_run(client, artifacts):
    home = client.get("/").content.decode()
    assert "No catalog imported yet" in home and "import_catalog" in home
    assert "no catalog imported yet" in client.get("/browse/").content.decode()


def test_home_photo_search_renders_results(client, searchable):
    f = io.BytesIO(jpeg_bytes(draw_item("Watches", COLOURS["Green"], np.random.default_rng(5))))
    f.name = "watch.jpg"
    res = client.post("/", {"photo": f})
    html = res.content.decode()
    assert res.status_code == 200 and html.count('class="card"') == 12
    assert "Watches" in html


def test_result_cards_show_no_scores_and_the_api_says_what_its_score_is(client, searchable):
    """A ranking score (a cosine plus a category bonus, 1.48 on every card of a photo search) tells a shopper
    nothing: the cards leave it out; the API keeps it and its schema says what it is."""
    f = io.BytesIO(jpeg_bytes(draw_item("Watches", COLOURS["Green"], np.random.default_rng(5))))
    f.name = "watch.jpg"
    html = client.post("/", {"photo": f}).content.decode()
    cards = html[html.index('<ul class="grid">'):]
    assert cards.count('class="card"') == 12
    assert 'class="score"' not in cards and not re.search(r"\b-?\d\.\d\d\b", cards), "a score on a card"
    similar = client.get(f"/items/{Item.objects.first().sku}/").content.decode()
    assert 'class="score"' not in similar and "Similar items" in similar
    schema = client.get("/api/openapi.json").json()
    score = schema["components"]["schemas"]["HitOut"]["properties"]["score"]
    assert "cosine" in score["description"] and "RERANK_WEIGHT" in score["description"]


def test_the_search_page_offers_no_gan_road_and_the_api_explains_it(client, searchable):
    html = client.get("/").content.decode()
    assert 'name="road"' not in html and "through the GAN" not in html
    schema = client.get("/api/openapi.json").json()
    form = schema["paths"]["/api/search"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    road = form["properties"]["road"]
    assert "`direct`" in road["description"] and "`gan`" in road["description"]


def test_home_bad_upload_shows_form_error(client, searchable):
    f = io.BytesIO(b"%PDF-1.4 nope")
    f.name = "doc.pdf"
    res = client.post("/", {"photo": f})
    assert res.status_code == 400 and "not a readable image" in res.content.decode()


def test_thumbnails_hold_their_place_the_first_rows_load_first_and_there_is_a_favicon(client, searchable):
    html = client.get("/browse/").content.decode()
    thumbs = re.findall(r'<span class="thumb"><img [^>]*>', html)  # the 3:4 box that holds each photo's place
    assert len(thumbs) == 48 and all('width="120" height="160"' in t for t in thumbs)  # twice the 60x80 photos
    assert not any("lazy" in t for t in thumbs[:16]) and all('loading="lazy"' in t for t in thumbs[16:])
    results = client.get(f"/items/{Item.objects.first().sku}/").content.decode()
    assert results.count('<span class="thumb"><img') == 12 and 'loading="lazy"' not in results.split("Similar items")[1]

    icon = client.get("/favicon.ico")  # browsers ask for it on every page, the admin's and the API docs' too
    assert icon.status_code == 200 and icon["Content-Type"] == "image/vnd.microsoft.icon"
    with Image.open(io.BytesIO(b"".join(icon.streaming_content))) as ico:
        assert ico.format == "ICO" and {(16, 16), (32, 32)} <= set(ico.info["sizes"])
    assert '<link rel="icon" href="/favicon.ico"' in html


def test_browse_filters_and_paginates(client, searchable):
    res = client.get("/browse/?category=Watches&colour=Red")
    html = res.content.decode()
    assert res.status_code == 200 and "10 items" in html
    page2 = client.get("/browse/?page=2").content.decode()
    assert "page 2 of 4" in page2


def test_item_page_shows_similar_items_and_image(client, searchable):
    item = Item.objects.filter(category="Tshirts").first()
    html = client.get(f"/items/{item.sku}/").content.decode()
    assert item.title in html and "Similar items" in html
    img = client.get(f"/items/{item.sku}/image")
    assert img.status_code == 200 and img["Content-Type"] == "image/jpeg"
    Item.objects.filter(pk=item.pk).update(hidden=True)
    assert client.get(f"/items/{item.sku}/").status_code == 404
    assert client.get(f"/items/{item.sku}/image").status_code == 404
