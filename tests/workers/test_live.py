"""Live additions and deletions: visible in search at once, folded in by the next reindex."""

import dataclasses

import numpy as np
import pytest

from tests.conftest import COLOURS, draw_item
from webapp.models import IndexEntry, Item, LiveVector

pytestmark = pytest.mark.django_db


def search_by_file(path, k=5, **filters):
    from webapp.encoding import encode_query
    from webapp.services import Filters, search_vector

    return [h.item.pk for h in search_vector(encode_query(path.read_bytes(), "photo"), k, Filters(**filters)).hits]


def test_live_add_hide_delete_and_fold(searchable, tmp_path):
    from webapp.indexing import add_live_item, reindex
    from webapp.services import similar_items

    path = tmp_path / "new.jpg"
    draw_item("Handbags", COLOURS["Red"], np.random.default_rng(123)).save(path, quality=95)
    item = Item.objects.create(sku="new-1", title="new bag", category="Handbags", colour="Red", gender="Women",
                               image_path=str(path), source=Item.Source.UPLOAD)
    assert item.pk not in search_by_file(path)
    add_live_item(item)
    assert search_by_file(path)[0] == item.pk  # its own picture finds it first, before any reindex
    assert search_by_file(path, category="Handbags")[0] == item.pk
    assert item.pk not in search_by_file(path, category="Watches")
    assert similar_items(item, 5).hits and item.pk not in [h.item.pk for h in similar_items(item, 5).hits]

    Item.objects.filter(pk=item.pk).update(hidden=True)
    assert item.pk not in search_by_file(path, k=20)
    Item.objects.filter(pk=item.pk).update(hidden=False)

    reindex()  # folds the live vector into the new version
    assert not LiveVector.objects.exists()
    assert IndexEntry.objects.filter(version__is_active=True, item=item).exists()
    assert search_by_file(path)[0] == item.pk

    indexed = Item.objects.filter(category="Watches").first()
    indexed.delete()
    assert indexed.pk not in search_by_file(tmp_path / "new.jpg", k=160)


def test_changed_item_supersedes_its_indexed_vector(searchable, tmp_path):
    from webapp.indexing import add_live_item

    item = Item.objects.filter(category="Watches").first()
    path = tmp_path / "now-a-shoe.jpg"
    draw_item("Casual Shoes", COLOURS["Green"], np.random.default_rng(5)).save(path, quality=95)
    item.image_path, item.category = str(path), "Casual Shoes"
    item.save()
    add_live_item(item)
    hits = search_by_file(path, k=10)
    assert hits[0] == item.pk and hits.count(item.pk) == 1  # once, with its new vector


def test_live_item_is_found_by_words_before_the_next_reindex(searchable_with_text, tmp_path):
    from search.pipeline import Encoded, encode_text
    from webapp.indexing import add_live_item, reindex
    from webapp.models import IndexVersion
    from webapp.services import get_models, search_vector

    assert "text" in IndexVersion.objects.get(is_active=True).manifest["spaces"]
    path = tmp_path / "new.jpg"
    draw_item("Handbags", COLOURS["Red"], np.random.default_rng(321)).save(path, quality=95)
    item = Item.objects.create(sku="new-t", title="Acme Women Red Handbags new", category="Handbags", colour="Red",
                               gender="Women", image_path=str(path), source=Item.Source.UPLOAD)

    def by_words(k=200):
        return [h.item.pk for h in search_vector(encode_text(get_models(), "Acme Women Red Handbags"), k).hits]

    assert item.pk not in by_words()  # not indexed, no live vector: words cannot find it
    live = add_live_item(item)
    assert live.text_version == get_models().text().version and live.text_vector is not None
    text_vec = np.frombuffer(bytes(live.text_vector), np.float32)
    assert text_vec.shape == (get_models().text().dim,) and abs(np.linalg.norm(text_vec) - 1) < 1e-3
    assert item.pk in by_words()  # the live buffer answers in the text space too
    own = search_vector(Encoded(text_vec, "text", {}), 5).hits
    assert own[0].item.pk == item.pk and own[0].score > 0.99
    # an indexed item that changed is answered once, with its new text vector
    other = Item.objects.filter(category="Watches").first()
    other.image_path = str(path)
    other.save()
    add_live_item(other)
    hits = [h.item.pk for h in search_vector(Encoded(text_vec, "text", {}), 10).hits]
    assert hits.count(other.pk) == 1 and set(hits[:2]) == {item.pk, other.pk}

    reindex()  # folds both into the new version's text space
    assert not LiveVector.objects.exists()
    assert item.pk in by_words()


def test_live_item_without_a_text_space_keeps_words_for_the_reindex(searchable, tmp_path):
    from webapp.indexing import add_live_item

    path = tmp_path / "new.jpg"
    draw_item("Watches", COLOURS["Blue"], np.random.default_rng(9)).save(path, quality=95)
    item = Item.objects.create(sku="new-w", title="a watch", category="Watches", colour="Blue", gender="Men",
                               image_path=str(path), source=Item.Source.UPLOAD)
    live = add_live_item(item)
    assert live.text_vector is None and live.text_version == ""


def test_picture_queries_are_re_ranked_by_their_likeliest_category(searchable, settings):
    """A photo query carries its likeliest categories (the encoder's head with the image-only classifier);
    among its nearest items, those of a likely category gain ``RERANK_WEIGHT`` times its probability."""
    from search import rerank
    from search.categories import vote_weight
    from search.pipeline import Encoded
    from tests.conftest import jpeg_bytes
    from webapp.encoding import encode_query
    from webapp.services import get_models, search_vector

    photo = jpeg_bytes(draw_item("Watches", COLOURS["Blue"], np.random.default_rng(5)))
    encoded = encode_query(photo, "photo")
    assert encoded.categories and abs(sum(encoded.categories.values()) - 1.0) < 0.05
    assert list(encoded.categories) == sorted(encoded.categories, key=lambda c: -encoded.categories[c])
    assert encoded.neighbour_vote == vote_weight(get_models())  # a photo: its nearest items vote, as the twin chose
    encoded = dataclasses.replace(encoded, neighbour_vote=2.0)  # a vote that counts, whatever the tiny twin chose
    plain = Encoded(encoded.vector, "image", {})
    settings.RERANK_WEIGHT = 0.5
    ranked = search_vector(encoded, 8).hits
    nearest = search_vector(plain, 60).hits
    cosine = {h.item.pk: h.score for h in nearest}
    probs = rerank.with_vote(encoded.categories, [h.score for h in nearest], [h.item.category for h in nearest],
                             2.0)
    assert probs != encoded.categories and sum(probs.values()) == pytest.approx(1.0)
    for hit in ranked:  # each score is its cosine plus the bonus of its category
        bonus = 0.5 * probs.get(hit.item.category, 0.0)
        assert hit.score == pytest.approx(cosine[hit.item.pk] + bonus, abs=1e-4)
    assert [h.score for h in ranked] == sorted((h.score for h in ranked), reverse=True)
    # A made-up certainty about another category among the candidates lifts its nearest item by 0.5.
    top = max(cosine, key=cosine.get)
    others = {h.item.pk: h.item.category for h in search_vector(plain, 50).hits}
    other = next(c for c in others.values() if c != others[top])
    forced = Encoded(encoded.vector, "image", {}, categories={other: 1.0})
    first = search_vector(forced, 1).hits[0]
    assert first.item.category == other and first.score == pytest.approx(cosine[first.item.pk] + 0.5, abs=1e-4)
    settings.RERANK_WEIGHT = 0.0
    assert [h.item.pk for h in search_vector(forced, 8).hits] == [h.item.pk for h in search_vector(plain, 8).hits]


def test_re_ranking_off_skips_the_category_models(searchable, settings):
    """RERANK_WEIGHT=0: queries carry no categories, and no classifier runs for them."""
    from tests.conftest import jpeg_bytes
    from webapp.encoding import encode_query
    from webapp.services import reset_caches

    settings.RERANK_WEIGHT = 0.0
    reset_caches()
    photo = jpeg_bytes(draw_item("Watches", COLOURS["Blue"], np.random.default_rng(5)))
    encoded = encode_query(photo, "photo")
    assert encoded.categories is None and "classifier" not in encoded.timings_ms
    from PIL import Image, ImageDraw

    drawing = Image.new("RGB", (300, 400), "white")
    ImageDraw.Draw(drawing).rectangle((60, 80, 240, 320), outline="black", width=4)
    assert encode_query(jpeg_bytes(drawing, "PNG"), "sketch").categories is None
