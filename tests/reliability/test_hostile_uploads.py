"""The hostile corpus (tests/reliability/corpus.py) against the decoder and every upload door.

Each door must answer every specimen without a server error; a refusal is a 400 with
a message (JSON for the API, the form's error on pages) and leaves MEDIA_ROOT and the
database as they were; an accepted picture is stored re-encoded under a random name.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from search.images import ImageInputError, decode_image, image_bytes_to_array
from search.sketches import normalise_sketch
from tests.reliability.corpus import MULTIPART, Specimen, corpus, multipart
from webapp.models import Item

CORPUS = corpus()
STORED_NAME = re.compile(r"^[0-9a-f]{32}\.jpg$")
PAGE_ERROR = re.compile(r'<p class="error" id="search-error" role="alert" >([^<]+)</p>')


def files_under(root: Path) -> set[Path]:
    return {p for p in Path(root).rglob("*") if p.is_file()} if Path(root).exists() else set()


def test_corpus_is_big_and_small_on_disk():
    assert len(CORPUS) >= 40
    bomb = next(s for s in CORPUS if s.name == "png-bomb-50000x50000")
    assert bomb.data[16:24] == (50_000).to_bytes(4, "big") * 2 and len(bomb.data) < 1_000_000


@pytest.mark.parametrize("spec", CORPUS, ids=lambda s: s.name)
def test_decoder_refuses_or_accepts_as_expected(spec: Specimen):
    outcomes = []
    for attempt in (lambda: decode_image(spec.data), lambda: image_bytes_to_array(spec.data),
                    lambda: normalise_sketch(decode_image(spec.data, keep_alpha=True))):
        try:
            attempt()
            outcomes.append("ok")
        except ImageInputError as exc:  # the only exception allowed out (it becomes a 400)
            assert str(exc), "a refusal needs a message"
            outcomes.append("refused")
    if spec.expect == "refuse":
        assert outcomes == ["refused"] * 3
    elif spec.expect == "accept":
        assert outcomes[:2] == ["ok", "ok"]  # the sketch road may still find nothing drawn (a 400 too)


def post_raw(client, url: str, fields: dict, files: dict, **extra):
    return client.post(url, data=multipart(fields, files), content_type=MULTIPART, **extra)


def check_refusal(res, spec: Specimen, door: str, problems: list[str]) -> None:
    if res.status_code >= 500:
        problems.append(f"{door} {spec.name}: {res.status_code}")
    elif spec.refuse and res.status_code != 400:
        problems.append(f"{door} {spec.name}: expected 400, got {res.status_code}")
    elif res.status_code == 400:
        if res["Content-Type"].startswith("application/json"):
            message = res.json().get("error", "")
        else:
            html = res.content.decode()
            found = PAGE_ERROR.search(html)
            message = found.group(1).strip() if found else ""
            if spec.name == "name-very-long" and "Bad Request (400)" in html:
                message = "Django refused the form before the view"  # its multipart header limit (1 KB)
        if not message:
            problems.append(f"{door} {spec.name}: 400 without a message")


@pytest.mark.django_db
def test_search_api_and_page_survive_the_corpus(client, searchable, settings):
    """POST /api/search (photo, sketch) and the home page form (photo, sketch): no 5xx, refusals are 400s."""
    before = files_under(settings.MEDIA_ROOT)
    problems: list[str] = []
    statuses: dict[int, int] = {}
    for spec in CORPUS:
        for field in ("photo", "sketch"):
            for door in ("/api/search", "/"):
                res = post_raw(client, door, {"k": "3"} if door != "/" else {}, {field: spec})
                statuses[res.status_code] = statuses.get(res.status_code, 0) + 1
                check_refusal(res, spec, f"{door}[{field}]", problems)
                if spec.expect == "accept" and field == "photo" and res.status_code != 200:
                    problems.append(f"{door}[photo] {spec.name}: a valid picture got {res.status_code}")
    assert not problems, "\n".join(problems)
    assert files_under(settings.MEDIA_ROOT) == before  # a search stores nothing
    assert statuses.get(400, 0) >= 4 * sum(s.refuse for s in CORPUS)


@pytest.mark.django_db
def test_staff_item_upload_survives_the_corpus(staff_client, searchable, settings):
    """POST /api/items and the /items/new/ page as staff: refusals store nothing, accepted pictures are
    re-encoded JPEGs under random names inside MEDIA_ROOT/items (never the client's name or bytes)."""
    media = Path(settings.MEDIA_ROOT)
    outside = Path("/tmp/owned.jpg")
    existed = outside.exists()
    problems: list[str] = []
    created = 0
    for i, spec in enumerate(CORPUS):
        before_files, before_items = files_under(media), Item.objects.count()
        staged_before = files_under(media / "staging")
        res = post_raw(staff_client, "/api/items", {"title": f"Hostile {i}", "category": "Tshirts",
                                                    "sku": f"hostile-{i}"}, {"image": spec})
        check_refusal(res, spec, "/api/items", problems)
        if res.status_code == 400:
            if files_under(media) != before_files or Item.objects.count() != before_items:
                problems.append(f"/api/items {spec.name}: a refusal left something behind")
        elif res.status_code == 201:
            created += 1
            item = Item.objects.get(sku=res.json()["item"]["id"])
            stored = Path(item.image_path)
            if stored.parent != media / "items" or not STORED_NAME.match(stored.name):
                problems.append(f"/api/items {spec.name}: stored as {stored}")
            data = stored.read_bytes()
            if not data.startswith(b"\xff\xd8") or b"<html" in data or b"PK\x03\x04" in data or b"A" * 1000 in data:
                problems.append(f"/api/items {spec.name}: stored bytes are not a clean re-encoded JPEG")
            if files_under(media / "staging") != staged_before:
                problems.append(f"/api/items {spec.name}: left a staged file")
        elif spec.expect == "accept":
            problems.append(f"/api/items {spec.name}: a valid picture got {res.status_code}")

        if spec.expect == "accept":
            continue  # the page's accepted path is the same stage_upload as above; its model call costs time
        before_files = files_under(media)
        res = post_raw(staff_client, "/items/new/", {"action": "suggest"}, {"image": spec})
        if res.status_code >= 500 or (spec.refuse and res.status_code != 400):
            problems.append(f"/items/new/ {spec.name}: {res.status_code}")
        elif res.status_code == 400:
            html = res.content.decode()
            if 'class="error"' not in html and not (spec.name == "name-very-long" and "Bad Request" in html):
                problems.append(f"/items/new/ {spec.name}: 400 without a form error")
            if files_under(media) != before_files:
                problems.append(f"/items/new/ {spec.name}: a refusal left something behind")
    assert not problems, "\n".join(problems)
    assert created >= sum(s.expect == "accept" for s in CORPUS)
    assert outside.exists() == existed
    every = files_under(media)
    assert all(p.parent.name in ("items", "staging") and STORED_NAME.match(p.name) for p in every), every
