"""Tag suggestions: the fused classifier with a title; without one the search's own category guess."""

import numpy as np
import pytest
from PIL import Image

from search.categories import (
    VOTE_WEIGHTS,
    blend_guess,
    choose_vote_weight,
    neighbour_vote,
    picture_categories,
    vote_weight,
)
from search.tagging import suggest_tags


@pytest.fixture
def models(searchable):
    from webapp.services import get_models

    return get_models()


def photo() -> np.ndarray:
    return np.asarray(Image.new("RGB", (60, 80), "red"))


def test_without_a_title_the_category_is_the_searchs_photo_guess(models):
    image = photo()
    suggestion = suggest_tags(models, image)
    assert suggestion.model == "image-only"
    guess = picture_categories(models, models.encoder().embed(image[None]), image[None])[0]
    expected = sorted(guess.items(), key=lambda kv: -kv[1])[:3]
    assert suggestion.tags["category"] == expected
    assert [p for _, p in expected] == sorted((p for _, p in expected), reverse=True)
    assert suggestion.tags["gender"] and suggestion.tags["colour"]  # the twin's other heads as before
    assert suggestion.heatmap.shape == (80, 60, 3) and suggestion.heatmap.dtype == np.uint8


def test_without_a_title_the_twin_runs_once(models, monkeypatch):
    """Its mirror-averaged prediction serves both its own heads and the search's guess."""
    import models.classifier as classifier_module

    calls = []
    real = classifier_module.predict

    def counting(model, *args, **kwargs):
        calls.append(kwargs.get("flip_average", False))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(classifier_module, "predict", counting)
    image = photo()
    suggestion = suggest_tags(models, image, vector=models.encoder().embed(image[None])[0])
    assert calls == [True]
    calls.clear()
    guess = picture_categories(models, models.encoder().embed(image[None]), image[None])[0]  # made here: a second run
    assert calls == [True] and suggestion.tags["category"] == sorted(guess.items(), key=lambda kv: -kv[1])[:3]


def test_a_photos_guess_weighs_the_encoders_head_as_the_twin_chose(models, monkeypatch):
    """``encoder_head_weight`` from the twin's training: 0 is the twin alone, 1 the encoder's head alone."""
    from search.categories import top_categories

    image = photo()
    vectors = models.encoder().embed(image[None])
    names = models.encoder().class_names
    twin = models.classifier(image_only=True)
    alone = {"twin": twin.predict(image[None], flip_average=True)["category"],
             "head": models.encoder().category_probs(vectors)}
    train = dict(twin.payload.get("train", {}))
    monkeypatch.setitem(twin.payload, "train", train)
    for weight, source in ((0.0, "twin"), (1.0, "head")):
        train["encoder_head_weight"] = weight
        guess = picture_categories(models, vectors, image[None])[0]
        expected = top_categories(alone[source], names)[0]
        assert list(guess) == list(expected)
        np.testing.assert_allclose(list(guess.values()), list(expected.values()), atol=1e-5)


def test_the_twins_training_chose_the_votes_weight_and_the_search_uses_it(models, monkeypatch):
    """``search.train`` trained the twin (tiny) and chose the vote's weight on the validation photos."""
    twin = models.classifier(image_only=True)
    train = twin.payload["train"]
    assert train["neighbour_weight"] in VOTE_WEIGHTS and set(train["neighbour_sweep"]) == {str(w) for w in VOTE_WEIGHTS}
    assert train["neighbour_sweep"][str(train["neighbour_weight"])] == max(train["neighbour_sweep"].values())
    assert vote_weight(models) == train["neighbour_weight"]
    # an untitled upload's category: the guess blended with its neighbours' vote at that weight
    image = photo()
    near = [("Handbags", 0.9), ("Handbags", 0.89), ("Wallets", 0.5)]
    monkeypatch.setitem(twin.payload, "train", {**train, "neighbour_weight": 0.0})
    assert suggest_tags(models, image, neighbours=near).tags["category"] == suggest_tags(models, image).tags["category"]
    monkeypatch.setitem(twin.payload, "train", {**train, "neighbour_weight": 4.0})
    assert suggest_tags(models, image, neighbours=near).tags["category"][0][0] == "Handbags"
    assert vote_weight(models) == 4.0


def test_the_votes_weight_is_the_smallest_that_gets_most_photos_right():
    near = [[("Bags", 0.9), ("Bags", 0.88)]]
    # a confident, right guess: the vote only costs
    assert choose_vote_weight([{"Shoes": 0.9, "Bags": 0.1}], ["Shoes"], near)["neighbour_weight"] == 0.0
    # an unsure, wrong guess: the smallest weight that lets the vote turn it
    chosen = choose_vote_weight([{"Shoes": 0.6, "Bags": 0.4}], ["Bags"], near)
    assert chosen["neighbour_weight"] == 0.5 and chosen["neighbour_sweep"]["0.0"] == 0.0
    assert chosen["neighbour_sweep"]["0.5"] == 1.0


def test_with_a_title_the_fused_classifier_answers(models):
    suggestion = suggest_tags(models, photo(), "Red leather handbag")
    assert suggestion.model == "fused"
    assert len(suggestion.tags["category"]) == 3


def test_neighbour_vote_weighs_the_nearest_items_by_similarity():
    near = [("Wallets", 0.95), ("Handbags", 0.90), ("Handbags", 0.90), ("", 0.99)]
    assert neighbour_vote(near, temperature=0) == pytest.approx({"Handbags": 2 / 3, "Wallets": 1 / 3})
    vote = neighbour_vote(near, temperature=0.02)  # 0.05 closer outweighs two votes: e^2.5 > 2
    assert vote["Wallets"] == pytest.approx(1 / (1 + 2 * np.exp(-2.5))) and sum(vote.values()) == pytest.approx(1)
    assert neighbour_vote([]) == {} and neighbour_vote([("", 0.5)]) == {}


def test_blend_adds_the_vote_to_the_guess_and_renormalises():
    guess = {"Wallets": 0.6, "Handbags": 0.4}
    mixed = blend_guess(guess, {"Handbags": 1.0}, weight=0.5)
    assert mixed == pytest.approx({"Wallets": 0.4, "Handbags": 0.6})
    assert max(mixed, key=mixed.get) == "Handbags"
    assert blend_guess(guess, {}, weight=0.5) == guess and blend_guess(guess, {"Handbags": 1.0}, weight=0) == guess
    # a category only the neighbours name still counts
    assert blend_guess({"Wallets": 1.0}, {"Clutches": 1.0}, weight=1.0) == {"Wallets": 0.5, "Clutches": 0.5}


def test_without_a_title_the_neighbours_vote_moves_the_category(models, monkeypatch):
    twin = models.classifier(image_only=True)
    monkeypatch.setitem(twin.payload, "train", {**twin.payload["train"], "neighbour_weight": 2.0})
    image = photo()
    plain = suggest_tags(models, image)
    other = next(c for c in models.classifier(image_only=True).label_names["category"]
                 if c != plain.best("category"))
    voted = suggest_tags(models, image, neighbours=[(other, 0.9)] * 10)
    guess = dict(plain.tags["category"])
    probs = dict(voted.tags["category"])  # a unanimous vote (weight 2) lifts `other` to at least 2/3: the top
    assert voted.best("category") == other and probs[other] >= 2 / 3 - 1e-9 > guess.get(other, 0.0)
    # with a title the fused classifier answers alone
    assert suggest_tags(models, image, "Red leather handbag", neighbours=[(other, 0.9)] * 10).model == "fused"
