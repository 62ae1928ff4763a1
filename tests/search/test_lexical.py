"""Titles as an idf-weighted index, and text queries ranked by the joint space and the title match together."""

import numpy as np
import pytest

from search.index import VectorStore, build_index
from search.lexical import TitleIndex, hybrid_rank

TITLES = ["Puma Men Black Sneakers", "Nike Women Blue Running Shoes", "Titan Men Silver Watch",
          "Fastrack Unisex Black Sunglasses", "Café Coffee Day Women Red Tshirt", "", "Puma Women Red Tshirt"]


def test_title_match_folds_case_accents_plurals_and_punctuation():
    titles = TitleIndex.build(TITLES)
    scores = titles.scores("PUMA men black sneakers!")
    assert scores.argmax() == 0 and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert titles.scores("cafe")[4] > 0  # the accent folded on both sides
    assert scores[5] == 0.0  # an item without a title matches nothing
    assert not titles.scores("qwerty zxcv").any()  # words the catalog never used
    assert not titles.scores("").any()
    long = titles.scores("puma " * 5000)  # very long and repetitive: still a cosine
    assert 0 < long.max() <= 1.0 + 1e-6


def test_a_title_with_every_query_word_wins_however_long_and_rare_words_weigh_more():
    titles = TitleIndex.build(["Basics Men Black Casual Shoes", "Puma Men Neo Low Black Casual Shoes",
                               "Puma Men Black Sneakers", "Roadster Men Black Jeans", "Nike Men Black Shorts"] * 3)
    scores = titles.scores("puma black casual shoes")
    # every word (and two more of its own: no penalty) beats the brand alone and the other brand's shoes
    assert scores[1] > max(scores[0], scores[2]) > scores[3] > 0
    assert min(scores[0], scores[2]) > scores[3] == pytest.approx(scores[4])  # "black" alone matters least
    assert titles.scores("Puma Men Neo Low Black Casual Shoes")[1] == pytest.approx(1.0, abs=1e-5)


def test_a_saved_title_index_scores_the_same(tmp_path):
    titles = TitleIndex.build(TITLES)
    titles.save(tmp_path)
    loaded = TitleIndex.load(tmp_path)
    assert len(loaded) == len(TITLES)
    for query in ("puma red tshirt", "watch", "Sunglasses Black"):
        np.testing.assert_allclose(loaded.scores(query), titles.scores(query), atol=1e-6)
    assert TitleIndex.load(tmp_path / "elsewhere") is None  # a version built before titles were indexed
    new = loaded.scores_for("puma red tshirt", ["Puma Kids Red Tshirt", "Lego bricks"])
    assert new[0] > 0 and new[1] == 0


def test_a_catalog_without_any_title_words_still_builds():
    titles = TitleIndex.build(["", "", "!!"])
    assert len(titles) == 3 and not titles.scores("anything").any()


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(TITLES), 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    build_index(tmp_path / "v", {"image": vectors, "text": vectors}, version="t", n_trees=4)
    return VectorStore(tmp_path / "v"), vectors


def test_hybrid_rank_lets_a_matching_title_win_and_weight_zero_is_the_joint_space(store):
    store, vectors = store
    titles = TitleIndex.build(TITLES)
    query = vectors[1]  # the joint space says item 1 ...
    lexical = titles.scores("titan silver watch")  # ... the words say item 2
    dense = hybrid_rank(store, query, None, 3, weight=0.5)
    assert [i for i, _ in dense] == [i for i, _ in store.query(query, 3, space="text")]
    assert hybrid_rank(store, query, lexical, 3, weight=0.0) == dense
    fused = hybrid_rank(store, query, lexical, 3, weight=5.0)
    assert fused[0][0] == 2
    cosine = float(vectors[2] @ query)
    assert fused[0][1] == pytest.approx(cosine + 5.0 * lexical[2], rel=1e-4)
    assert [s for _, s in fused] == sorted((s for _, s in fused), reverse=True)


def test_hybrid_rank_keeps_to_the_allowed_items(store):
    store, vectors = store
    titles = TitleIndex.build(TITLES)
    allowed = np.zeros(len(TITLES), dtype=bool)
    allowed[[0, 6]] = True  # e.g. only Puma's items pass a filter
    ranked = hybrid_rank(store, vectors[2], titles.scores("titan silver watch"), 5, weight=5.0, allowed=allowed)
    assert {i for i, _ in ranked} <= {0, 6}


def test_matched_words_cut_the_title_where_the_query_words_are():
    from search.lexical import matched_words

    pieces = matched_words("Nike Men Black Running Shoes", "black SHOE")
    assert pieces == [("Nike Men ", False), ("Black", True), (" Running ", False), ("Shoes", True)]
    assert "".join(t for t, _ in pieces) == "Nike Men Black Running Shoes"
    assert matched_words("Café Dress", "cafe dresses") == [("Café", True), (" ", False), ("Dress", True)]
    assert matched_words("Red Bag", "") == [("Red Bag", False)] and matched_words("", "red") == []
