import numpy as np
import pytest

from search import categories, rerank
from search.evaluation import precision_at_ks
from search.index import VectorStore, build_index


def test_top_categories_keeps_the_likeliest_in_order():
    probs = np.array([[0.1, 0.6, 0.05, 0.25], [0.7, 0.1, 0.1, 0.1]])
    top = categories.top_categories(probs, ["a", "b", "c", "d"], n=2)
    assert [list(t) for t in top] == [["b", "d"], ["a", "b"]]
    assert top[0] == {"b": 0.6, "d": 0.25}


def test_rerank_scores_add_the_probability_of_each_candidates_category():
    scores = rerank.rerank_scores([0.9, 0.8, 0.7], ["Tops", "Tshirts", None], {"Tshirts": 0.6, "Tops": 0.1}, 0.5)
    np.testing.assert_allclose(scores, [0.95, 1.1, 0.7])
    assert np.argmax(scores) == 1  # the nearer Top loses to a Tshirt the query very likely shows
    np.testing.assert_allclose(rerank.rerank_scores([0.9, 0.8], ["Tops", "Tshirts"], None), [0.9, 0.8])
    np.testing.assert_allclose(rerank.rerank_scores([0.9, 0.8], ["Tops", "Tshirts"], {"Tshirts": 1.0}, 0.0),
                               [0.9, 0.8])


def test_depth_fetches_more_candidates_only_when_re_ranking():
    assert rerank.depth(12, {"a": 1.0}) == rerank.RERANK_CANDIDATES
    assert rerank.depth(100, {"a": 1.0}) == 100
    assert rerank.depth(12, None) == 12 and rerank.depth(12, {"a": 1.0}, weight=0.0) == 12


@pytest.fixture
def two_kinds(tmp_path):
    """A query's 5 nearest items are 3 of the wrong kind, then 5 of the right kind a little farther."""
    rng = np.random.default_rng(0)
    query = np.zeros(16, np.float32)
    query[0] = 1.0

    def around(cos, n):
        v = rng.normal(size=(n, 16)).astype(np.float32)
        v[:, 0] = 0
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        return cos * query + np.sqrt(1 - cos**2) * v

    vectors = np.concatenate([query[None], around(0.95, 3), around(0.9, 5), around(0.2, 50)]).astype(np.float32)
    labels = ["Tshirts"] + ["Tops"] * 3 + ["Tshirts"] * 5 + ["Watches"] * 50
    build_index(tmp_path / "v", {"image": vectors}, version="v")
    return VectorStore(tmp_path / "v"), vectors, labels


def test_precision_with_categories_reranks_as_the_search_does(two_kinds):
    store, vectors, labels = two_kinds
    plain = precision_at_ks(store, vectors[:1], labels[:1], labels, ks=(5,), exclude=[0])
    assert plain["p_at_5"] == pytest.approx(0.4)
    confident = precision_at_ks(store, vectors[:1], labels[:1], labels, ks=(5,), exclude=[0],
                                categories=[{"Tshirts": 0.8, "Tops": 0.2}])
    assert confident["p_at_5"] == pytest.approx(1.0)
    unsure = precision_at_ks(store, vectors[:1], labels[:1], labels, ks=(5,), exclude=[0],
                             categories=[{"Tshirts": 0.5, "Tops": 0.5}])
    assert unsure["p_at_5"] == pytest.approx(0.4)  # no preference: the cosine order stands


def test_a_photos_nearest_items_vote_before_re_ranking(two_kinds):
    """The vote of the nearest candidates joins the guess: an unsure guess among 3 Tops and 5 Tshirts leans
    to the nearer Tops (similarity-weighted, ``search.tagging``), and ``precision_at_ks(vote=True)`` ranks so."""
    store, vectors, labels = two_kinds
    hits = store.query(vectors[0], 20)[1:]
    probs = rerank.with_vote({"Tshirts": 0.5, "Tops": 0.5}, [s for _, s in hits], [labels[h] for h, _ in hits])
    assert probs["Tops"] > probs["Tshirts"] and sum(probs.values()) == pytest.approx(1.0)
    assert rerank.with_vote(None, [0.9], ["Tops"]) is None
    # the candidates' order does not matter: the nearest NEIGHBOURS vote
    assert rerank.with_vote({"Tshirts": 0.5, "Tops": 0.5}, [s for _, s in hits][::-1],
                            [labels[h] for h, _ in hits][::-1]) == pytest.approx(probs)
    voted = precision_at_ks(store, vectors[:1], labels[:1], labels, ks=(5,), exclude=[0],
                            categories=[{"Tshirts": 0.5, "Tops": 0.5}], vote=True)
    assert voted["p_at_5"] == pytest.approx(0.4)  # the 3 Tops stay on top, as their cosines already put them
