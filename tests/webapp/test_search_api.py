"""The photo search path end to end on a really trained (tiny) encoder."""

import io

import pytest
from PIL import Image

from tests.conftest import COLOURS, draw_item, jpeg_bytes
from webapp.models import IndexVersion, Item

pytestmark = pytest.mark.django_db


def upload(data: bytes, name="q.jpg"):
    f = io.BytesIO(data)
    f.name = name
    return f


def test_photo_search_returns_items_of_the_same_kind(client, searchable):
    import numpy as np

    rng = np.random.default_rng(99)
    precisions = []
    for category in ["Watches", "Handbags", "Tshirts", "Casual Shoes"]:
        photo = jpeg_bytes(draw_item(category, COLOURS["Blue"], rng))
        res = client.post("/api/search", {"photo": upload(photo), "k": 5})
        assert res.status_code == 200, res.content
        body = res.json()
        assert len(body["results"]) == 5
        hit = body["results"][0]
        assert {"id", "title", "category", "score", "image_url"} <= hit.keys()
        assert {"decode", "encoder", "ann", "total"} <= body["timings_ms"].keys()
        precisions.append(sum(r["category"] == category for r in body["results"]) / 5)
    assert sum(precisions) / len(precisions) >= 0.75, precisions


def test_filters_restrict_results(client, searchable):
    import numpy as np

    photo = jpeg_bytes(draw_item("Watches", COLOURS["Red"], np.random.default_rng(1)))
    res = client.post("/api/search", {"photo": upload(photo), "k": 8, "category": "Handbags", "gender": "Men"})
    body = res.json()
    assert res.status_code == 200 and body["results"]
    assert all(r["category"] == "Handbags" and r["gender"] == "Men" for r in body["results"])


def test_hidden_items_never_appear(client, searchable):
    import numpy as np

    Item.objects.filter(category="Watches").update(hidden=True)
    photo = jpeg_bytes(draw_item("Watches", COLOURS["Red"], np.random.default_rng(2)))
    body = client.post("/api/search", {"photo": upload(photo), "k": 10}).json()
    assert body["results"] and all(r["category"] != "Watches" for r in body["results"])


@pytest.mark.parametrize("payload,message", [
    ({}, "send a photo"),
    ({"photo": upload(b"<svg></svg>", "x.svg")}, "not a readable image"),
    ({"photo": upload(b"", "empty.jpg")}, "empty"),
    ({"k": 0}, "k: Input should be greater than or equal to 1"),
    ({"k": "lots"}, "k"),
])
def test_bad_input_is_a_400_with_an_error(client, searchable, payload, message):
    res = client.post("/api/search", payload)
    assert res.status_code == 400
    assert message in res.json()["error"]


def test_enormous_image_is_refused(client, searchable, settings):
    settings.UPLOAD_MAX_PIXELS = 1_000_000
    buf = io.BytesIO()
    Image.new("L", (2000, 2000)).save(buf, "PNG")
    res = client.post("/api/search", {"photo": upload(buf.getvalue(), "big.png")})
    assert res.status_code == 400 and "pixels" in res.json()["error"]


def test_no_index_is_a_503_with_advice(client, db, artifacts):
    photo = jpeg_bytes(Image.new("RGB", (60, 80), "white"))
    res = client.post("/api/search", {"photo": upload(photo)})
    assert res.status_code == 503 and "reindex" in res.json()["error"]


def test_similar_items_and_openapi(client, searchable):
    item = Item.objects.filter(category="Handbags").first()
    res = client.get(f"/api/items/{item.sku}/similar?k=5")
    body = res.json()
    assert res.status_code == 200 and len(body["results"]) == 5
    assert item.sku not in [r["id"] for r in body["results"]]
    assert sum(r["category"] == "Handbags" for r in body["results"]) >= 4
    assert client.get("/api/items/999999/similar").status_code == 404
    schema = client.get("/api/openapi.json").json()
    assert "/api/search" in schema["paths"] and "/api/items/{item_id}/similar" in schema["paths"]


def test_one_public_id_the_catalog_id_in_pages_and_the_api(client, searchable):
    """The page shows "Catalog id 1001" at /items/1001/, and the API takes and gives that id; a row number is
    not an id: it is a 404, never the neighbours of whichever item has that row."""
    item = Item.objects.filter(category="Handbags").order_by("pk")[3]
    assert item.sku != str(item.pk)
    html = client.get(f"/items/{item.sku}/").content.decode()
    assert item.title in html and f"<dt>Catalog id</dt><dd>{item.sku}</dd>" in html
    assert client.get(f"/items/{item.sku}/image").status_code == 200
    body = client.get(f"/api/items/{item.sku}/similar?k=5").json()
    assert body["query"] == {"kind": "similar", "item": item.sku}
    for hit in body["results"]:
        found = Item.objects.get(sku=hit["id"])
        assert hit["url"].endswith(f"/items/{found.sku}/") and hit["image_url"].endswith(f"/items/{found.sku}/image")
        assert f'href="/items/{found.sku}/"' in html  # the page's similar items link by the same id
        assert "sku" not in hit  # one id, not two
    assert Item.objects.filter(sku=str(item.pk)).count() == 0
    for url in (f"/items/{item.pk}/", f"/api/items/{item.pk}/similar"):
        res = client.get(url)
        assert res.status_code == 404, url
    assert "error" in client.get(f"/api/items/{item.pk}/similar").json()

    schema = client.get("/api/openapi.json").json()
    parameter = next(p for p in schema["paths"]["/api/items/{item_id}/similar"]["get"]["parameters"]
                     if p["name"] == "item_id")
    assert "catalog id" in parameter["description"] and parameter["schema"]["type"] == "string"
    item_out = schema["components"]["schemas"]["HitOut"]["properties"]
    assert "catalog id" in item_out["id"]["description"] and "sku" not in item_out


def test_reindex_switches_versions_and_prunes(searchable, settings):
    from webapp.indexing import reindex

    first = IndexVersion.objects.get(is_active=True)
    second = reindex()
    third = reindex(reuse=False)
    assert IndexVersion.objects.filter(is_active=True).get() == third
    assert second.count == third.count == 160
    first.refresh_from_db()
    assert first.status == IndexVersion.Status.PRUNED
    from pathlib import Path

    assert not Path(first.path).exists() and Path(third.path).exists()


def test_ivf_backend_serves_the_same_searches(searchable, settings, client):
    from webapp.indexing import reindex

    settings.INDEX_BACKEND = "ivf"
    version = reindex(reuse=False)
    assert version.manifest["backend"] == "ivf" and version.manifest["nprobe"] == settings.INDEX_NPROBE
    item = Item.objects.filter(category="Handbags").first()
    body = client.get(f"/api/items/{item.sku}/similar?k=5").json()
    assert sum(r["category"] == "Handbags" for r in body["results"]) >= 4


def test_a_search_looks_up_the_active_index_once(client, searchable):
    """The version a query looks up when it begins is the one it searches: one lookup, not one per stage."""
    import numpy as np
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    photo = jpeg_bytes(draw_item("Watches", COLOURS["Red"], np.random.default_rng(3)))
    client.post("/api/search", {"photo": upload(photo), "k": 5})  # models and index loaded
    with CaptureQueriesContext(connection) as queries:
        res = client.post("/api/search", {"photo": upload(photo), "k": 5})
    assert res.status_code == 200
    lookups = [q["sql"] for q in queries.captured_queries if IndexVersion._meta.db_table in q["sql"]]
    assert len(lookups) == 1, lookups
