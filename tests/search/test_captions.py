"""Draft titles from tags, and catalog titles without their brand (``search.captions``)."""

import pytest

from search.captions import brands_of, draft_from_tags, draft_without_brand, strip_brand


@pytest.mark.parametrize("title,stripped", [
    ("Nike Women As The Windru Blue Jackets", "Women As The Windru Blue Jackets"),
    ("Puma Men Grey T-shirt", "Men Grey T-shirt"),
    ("United Colors of Benetton Men Solid Pink Polo T-shirts", "Men Solid Pink Polo T-shirts"),
    ("U.S. Polo Assn. Denim Co. Men Navy Blue T-Shirt", "Men Navy Blue T-Shirt"),
    ("Inkfruit Mens Chain Reaction T-shirt", "Mens Chain Reaction T-shirt"),
    ("Gini and Jony Boy's Kaleb White Brown Kidswear", "Boy's Kaleb White Brown Kidswear"),
    ("Kids Ville Girls Turquoise Blue Top", "Girls Turquoise Blue Top"),  # the brand's own word "Kids" is no gender
    ("Arrow Woman Olive Top", "Woman Olive Top"),
    ("Men Black Formal Shoes", "Men Black Formal Shoes"),  # no brand to take off
    ("Davidoff Cool Water Men", "Davidoff Cool Water Men"),  # the gender word ends it: not the form
    ("Lotus Herbals Safe Sun Sunscreen for Men", "Lotus Herbals Safe Sun Sunscreen for Men"),  # too far in
    ("Bwitch Beige Full-Coverage Bra", "Bwitch Beige Full-Coverage Bra"),  # no gender word, no known brand
    ("", ""),
])
def test_strip_brand(title, stripped):
    assert strip_brand(title) == stripped


def test_known_brands_strip_titles_without_a_gender_word():
    catalog = ["Bwitch Women Black Bra", "Bwitch Women Red Briefs", "Lakme Women Lipstick 12", "Lakme Women Kajal",
               "Odd Brand Men Shirt"]
    brands = brands_of(catalog)
    assert brands == {"Bwitch", "Lakme"}  # seen once is not enough
    assert strip_brand("Bwitch Beige Full-Coverage Bra", brands) == "Beige Full-Coverage Bra"
    assert strip_brand("lakme Absolute Matte Lipstick 45", brands) == "Absolute Matte Lipstick 45"
    assert strip_brand("Nike Women Blue Jackets", brands) == "Women Blue Jackets"  # the gender word still decides
    assert strip_brand("Bwitch", brands) == "Bwitch"  # nothing would be left


def test_a_drafted_title_never_opens_with_a_brand():
    """A captioner can write a brand alone, or twice: a draft keeps no brand at its start, and the brand words
    that are also other titles' words stay where they describe."""
    brands = {"Acme", "Lakme", "Denim"}
    assert draft_without_brand("Acme", brands) == ""
    assert draft_without_brand("Acme Acme Women Red Bags", brands) == "Women Red Bags"
    assert draft_without_brand("Lakme Acme Kajal", brands) == "Kajal"
    assert draft_without_brand("Men Blue Denim Jeans", brands) == "Men Blue Denim Jeans"
    assert draft_without_brand("Nike Women Blue Jackets", brands) == "Women Blue Jackets"


def test_draft_from_tags_says_gender_colour_and_kind():
    tags = {"category": [("Jackets", 0.8), ("Tshirts", 0.1)], "gender": [("Women", 0.9)],
            "colour": [("Blue", 0.7), ("Navy Blue", 0.2)], "sub_category": [("Topwear", 0.9)]}
    assert draft_from_tags(tags) == "Women Blue Jackets"
    assert draft_from_tags({"category": [("Watches", 0.6)], "gender": [], "colour": [("Black", 0.5)]}) == \
        "Black Watches"
    assert draft_from_tags({"category": [("Black Tshirts", 1.0)], "colour": [("Black", 1.0)]}) == "Black Tshirts"
    assert draft_from_tags({}) == ""
