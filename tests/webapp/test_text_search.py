"""Words through the API: the joint text space and the titles together, on a really trained (tiny) text model."""

import numpy as np
import pytest

from tests.conftest import COLOURS, draw_item
from webapp.models import IndexVersion, Item

pytestmark = pytest.mark.django_db


def search(client, text, k=5, **filters):
    res = client.post("/api/search", {"text": text, "k": k, **filters})
    assert res.status_code == 200, res.content
    return res.json()


def test_the_index_version_carries_a_title_index(searchable_with_text):
    from webapp.services import title_index

    version = IndexVersion.objects.get(is_active=True)
    titles = title_index(version)
    assert titles is not None and len(titles) == version.count == 160


def test_an_items_own_title_finds_it_first(client, searchable_with_text, settings):
    settings.LEXICAL_WEIGHT = 0.5
    ranks = []
    for item in Item.objects.order_by("pk")[::16]:  # ten items of all four kinds
        body = search(client, item.title, k=10)
        ids = [r["id"] for r in body["results"]]
        ranks.append(ids.index(item.sku) if item.sku in ids else None)
        assert "lexical" in body["timings_ms"]
    # Titles differ only by a number a 60x80 photo cannot show: the title match ranks the item first.
    assert ranks == [0] * len(ranks), ranks


def test_words_alone_still_find_the_right_kind_and_filters_and_hidden_items_hold(client, searchable_with_text,
                                                                                 settings):
    settings.LEXICAL_WEIGHT = 0.5
    body = search(client, "red handbags", k=5, gender="Women")
    assert [r["category"] for r in body["results"]] == ["Handbags"] * 5
    assert all(Item.objects.get(sku=r["id"]).gender == "Women" for r in body["results"])
    first = Item.objects.get(sku=body["results"][0]["id"])
    first.hidden = True
    first.save()
    again = search(client, first.title, k=10)
    assert first.sku not in [r["id"] for r in again["results"]]


def test_weight_zero_is_the_joint_space_alone(client, searchable_with_text, settings):
    from search.pipeline import encode_text
    from webapp.services import get_models, search_vector

    settings.LEXICAL_WEIGHT = 0.0
    body = search(client, "Acme Men Blue Watches 13", k=8)
    dense = search_vector(encode_text(get_models(), "Acme Men Blue Watches 13"), 8)
    assert [r["id"] for r in body["results"]] == [h.item.sku for h in dense.hits]
    assert "lexical" not in body["timings_ms"]


def test_a_live_item_is_found_by_its_new_title(client, searchable_with_text, settings, tmp_path):
    from webapp.indexing import add_live_item

    settings.LEXICAL_WEIGHT = 0.5
    path = tmp_path / "zephyr.jpg"
    draw_item("Handbags", COLOURS["Red"], np.random.default_rng(5)).save(path, quality=95)
    item = Item.objects.create(sku="zephyr-1", title="Zephyr Women Red Handbags", category="Handbags",
                               colour="Red", gender="Women", image_path=str(path), source=Item.Source.UPLOAD)
    add_live_item(item)
    body = search(client, "zephyr handbag", k=5)
    assert body["results"][0]["id"] == item.sku  # "zephyr" is in no indexed title: only the live title has it


def test_a_photo_with_words_brings_the_title_match_too(client, searchable_with_text, settings):
    import io

    from tests.conftest import jpeg_bytes

    target = Item.objects.filter(category="Watches").order_by("pk")[7]
    photo = io.BytesIO(jpeg_bytes(draw_item("Watches", COLOURS[target.colour], np.random.default_rng(11))))
    photo.name = "watch.jpg"
    settings.LEXICAL_WEIGHT = 0.5
    res = client.post("/api/search", {"photo": photo, "text": target.title, "k": 5})
    assert res.status_code == 200, res.content
    body = res.json()
    assert body["results"][0]["id"] == target.sku and "lexical" in body["timings_ms"]
    assert all(r["category"] == "Watches" for r in body["results"])
    target.hidden = True
    target.save()
    photo.seek(0)
    again = client.post("/api/search", {"photo": photo, "text": target.title, "k": 20}).json()
    assert target.sku not in [r["id"] for r in again["results"]] and len(again["results"]) == 20


def test_the_page_without_javascript_marks_the_words_a_title_shares(client, searchable_with_text):
    item = Item.objects.order_by("pk").first()
    word = item.title.split()[0]
    res = client.post("/", {"text": f"{word} <script>"})
    html = res.content.decode()
    assert res.status_code == 200 and f"<mark>{word}</mark>" in html
    assert "<script>" not in html.split('class="results"')[1]  # the query is escaped, never markup
    plain = client.get(f"/items/{item.sku}/").content.decode()  # similar items: no words, no marks
    assert "<mark>" not in plain


def test_a_reindex_runs_the_cnn_once_per_view_for_both_spaces(searchable_with_text):
    """The text space's photo side reads the encoder's frozen descriptors: one CNN pass (photo and mirror image)
    gives both spaces' vectors, the same as each space's own pass gave."""
    from models.training import inference_batch
    from webapp.indexing.vectors import embed_items
    from webapp.services import get_models

    models = get_models()
    assert models.text().reads_descriptors_of(models.encoder())
    item_ids = list(Item.objects.order_by("pk").values_list("pk", flat=True)[:40])
    passes: list[int] = []
    text_passes: list[int] = []  # the text model keeps its own copy of the frozen encoder for encode_images
    hooks = [net.features[0].register_forward_hook(lambda m, args, out, seen=seen: seen.append(len(args[0])))
             for net, seen in ((models.encoder().net, passes), (models.text().net.encoder, text_passes))]
    try:
        vectors = embed_items(item_ids, spaces=("image", "text"))
    finally:
        for hook in hooks:
            hook.remove()
    # each photo and its mirror image once, in chunks that stay in cache (``models.training.inference_batch``)
    assert sum(passes) == 2 * len(item_ids)
    assert max(passes) == 2 * inference_batch("cpu", flip_average=True) and len(passes) > 1
    assert text_passes == []

    from search.images import load_image_array

    images, _ok = load_image_array([Item.objects.get(pk=pk).image_path for pk in item_ids])
    np.testing.assert_allclose(vectors["image"], models.encoder().embed(images), atol=1e-5)
    np.testing.assert_allclose(vectors["text"], models.text().encode_images(images), atol=2e-3)
