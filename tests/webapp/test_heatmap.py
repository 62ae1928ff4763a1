"""Where the model looked, for a search hit: Image2Vec's class activation map over the hit's photo."""

import io

import numpy as np
import pytest
from PIL import Image

from tests.conftest import COLOURS, draw_item, jpeg_bytes
from webapp.models import Item

pytestmark = pytest.mark.django_db


def png(res) -> np.ndarray:
    assert res.status_code == 200 and res["Content-Type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(b"".join(res.streaming_content) if res.streaming else res.content)))


def test_the_heatmap_is_drawn_over_the_photo_for_a_category(searchable):
    from webapp.services import get_models
    from webapp.views.catalog import heatmap_of

    models = get_models()
    photo = np.asarray(draw_item("Watches", COLOURS["Green"], np.random.default_rng(1)))
    heat, category = heatmap_of(models, photo, "Watches")
    assert category == "Watches" and heat.shape == (80, 60, 3) and heat.dtype == np.uint8
    assert not np.array_equal(heat, photo)  # blended with the map
    other, _ = heatmap_of(models, photo, "Tshirts")
    assert not np.array_equal(heat, other)  # another class, another map
    _, guessed = heatmap_of(models, photo, "no such category")  # falls back on the model's own likeliest class
    names = models.encoder().class_names
    assert guessed in names


def test_heatmap_page_for_an_item_and_its_category(client, searchable):
    item = Item.objects.filter(category="Handbags").first()
    res = client.get(f"/items/{item.sku}/heatmap.png")
    assert res["X-Heatmap-Category"] == "Handbags" and png(res).shape == (80, 60, 3)
    res = client.get(f"/items/{item.sku}/heatmap.png?category=Watches")
    assert res["X-Heatmap-Category"] == "Watches"
    assert f"/items/{item.sku}/heatmap.png" in client.get(f"/items/{item.sku}/").content.decode()
    Item.objects.filter(pk=item.pk).update(hidden=True)
    assert client.get(f"/items/{item.sku}/heatmap.png").status_code == 404
    assert client.get("/items/999999/heatmap.png").status_code == 404


def test_heatmap_without_an_encoder_says_what_to_run(client, searchable, artifacts):
    from webapp.services import reset_caches

    item = Item.objects.first()
    (artifacts / "models" / "encoder.pt").unlink()
    reset_caches()
    res = client.get(f"/items/{item.sku}/heatmap.png")
    assert res.status_code == 503 and "train encoder" in res.content.decode()


def test_every_hit_links_its_heatmap(client, searchable):
    f = io.BytesIO(jpeg_bytes(draw_item("Watches", COLOURS["Green"], np.random.default_rng(5))))
    f.name = "watch.jpg"
    hits = client.post("/api/search", {"photo": f, "k": 3}).json()["results"]
    assert len(hits) == 3
    for hit in hits:
        assert png(client.get(hit["heatmap_url"])).shape == (80, 60, 3)
    f.seek(0)
    html = client.post("/", {"photo": f}).content.decode()
    assert html.count('class="heatmap-link"') == 12
