"""Draft titles that say only what a photo shows, and catalog titles without their brand.

Catalog titles read "<Brand> <Gender> <rest>" ("Nike Women As The Windru Blue Jackets"). A photo shows the
kind, colour and cut of a product, not who made it, so a draft title for an uploaded photo must not name a
brand: ``draft_from_tags`` composes one from the suggested tags ("Women Blue Jackets"), and ``strip_brand``
takes the brand off a title (what a captioner should learn to write, and what its output is cleaned with).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

# The words that open the "<Gender> <rest>" part of a title, as the catalog spells them.
GENDER_WORDS = frozenset({"men", "men's", "mens", "women", "women's", "womens", "woman", "boys", "boy's", "boy",
                          "girls", "girl's", "girl", "unisex", "kids"})
MAX_BRAND_WORDS = 5  # "U.S. Polo Assn. Denim Co. Men ..."; a gender word further on is part of the name


def brand_length(words: Sequence[str], brands: Iterable[str] = (), whole: bool = False) -> int:
    """How many leading ``words`` are the brand: those before the first gender word among the first
    ``MAX_BRAND_WORDS`` + 1 words, when more words follow it (a brand has at least one word, so "Kids Ville Girls
    ..." is the brand "Kids Ville"); else the longest of the known ``brands`` the title opens with, leaving a word
    after it unless ``whole`` (a draft that is only a brand); else 0."""
    for i, word in enumerate(words[1 : MAX_BRAND_WORDS + 1], start=1):
        if word.lower() in GENDER_WORDS:
            if i < len(words) - 1:
                return i
            break  # "Davidoff Cool Water Men": the gender word ends the title, it opens no "<rest>"
    known = {b.lower() for b in brands}
    for n in range(min(MAX_BRAND_WORDS, len(words) - (0 if whole else 1)), 0, -1):
        if " ".join(words[:n]).lower() in known:
            return n
    return 0


def strip_brand(title: str, brands: Iterable[str] = ()) -> str:
    """A catalog title without its brand: "Nike Women As The Windru Blue Jackets" -> "Women As The Windru Blue
    Jackets". A title with no gender word loses a leading brand only when it is one of ``brands`` (e.g.
    ``brands_of`` the catalog's titles); one that opens with its gender, or names no known brand, is kept."""
    words = title.split()
    return " ".join(words[brand_length(words, brands):])


def draft_without_brand(draft: str, brands: Iterable[str]) -> str:
    """A drafted title (a captioner's) that opens with no brand: ``strip_brand`` with the catalog's ``brands``,
    again while the draft still opens with one, and nothing left of a draft that is only a brand ("Acme" -> "",
    "Acme Acme Women Bags" -> "Women Bags"). A brand word further on stays: some brands are also the words of
    other titles ("Denim", "And")."""
    known = {b.lower() for b in brands}
    words = draft.split()
    while n := brand_length(words, known, whole=True):
        words = words[n:]
    return " ".join(words)


def brands_of(titles: Iterable[str], min_count: int = 2) -> set[str]:
    """The brands of a catalog: the words before the gender word of its "<Brand> <Gender> <rest>" titles, those
    seen at least ``min_count`` times (so that one odd title does not make its first word a brand)."""
    counts: Counter = Counter()
    for title in titles:
        words = title.split()
        n = brand_length(words)
        if n:
            counts[" ".join(words[:n])] += 1
    return {brand for brand, count in counts.items() if count >= min_count}


def draft_from_tags(tags: Mapping[str, Sequence[tuple[str, float]]]) -> str:
    """A draft title from the best suggested label of each head, in the catalog's order: gender, colour, kind
    ({"gender": [("Women", .9)], "colour": [("Blue", .7)], "category": [("Jackets", .8)]} -> "Women Blue
    Jackets"). Heads with no label are left out; a word already said is not repeated."""
    words: list[str] = []
    for head in ("gender", "colour", "category"):
        options = tags.get(head) or []
        label = str(options[0][0]).strip() if options else ""
        for word in label.split():
            if word.lower() not in {w.lower() for w in words}:
                words.append(word)
    return " ".join(words)
