"""The home page in a real browser: draw a sketch, upload a photo, search by words, open an item;
the phone layout with a touch; the form without JavaScript."""

from __future__ import annotations

import io
import itertools
import re

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.conftest import COLOURS, draw_item, jpeg_bytes
from tests.e2e.conftest import PHONE, skip_without_browser

pytestmark = [pytest.mark.e2e, skip_without_browser]

# A T-shirt outline in canvas fractions (0..1), drawn as three strokes.
TSHIRT = [
    [(0.15, 0.30), (0.35, 0.18), (0.45, 0.24), (0.55, 0.24), (0.65, 0.18), (0.85, 0.30), (0.76, 0.44), (0.68, 0.39)],
    [(0.68, 0.39), (0.68, 0.85), (0.32, 0.85), (0.32, 0.39)],
    [(0.32, 0.39), (0.24, 0.44), (0.15, 0.30)],
]


def draw(page, strokes, selector="#sketch-canvas"):
    box = page.locator(selector).bounding_box()
    at = lambda p: (box["x"] + p[0] * box["width"], box["y"] + p[1] * box["height"])  # noqa: E731
    for stroke in strokes:
        page.mouse.move(*at(stroke[0]))
        page.mouse.down()
        for p in stroke[1:]:
            page.mouse.move(*at(p), steps=6)
        page.mouse.up()


def touch_draw(page, strokes, selector="#sketch-canvas"):
    """Finger strokes through the DevTools protocol (Playwright's touchscreen only taps)."""
    box = page.locator(selector).bounding_box()
    cdp = page.context.new_cdp_session(page)
    for stroke in strokes:
        points = [{"x": box["x"] + x * box["width"], "y": box["y"] + y * box["height"]} for x, y in stroke]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [points[0]]})
        for a, b in itertools.pairwise(points):
            for t in np.linspace(0.2, 1.0, 5):
                cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [
                    {"x": a["x"] + t * (b["x"] - a["x"]), "y": a["y"] + t * (b["y"] - a["y"])}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def ink(page) -> int:
    """How many pixels of the canvas are drawn on."""
    return page.evaluate("""() => {
        const c = document.getElementById('sketch-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""")


def search_requests(page) -> list:
    seen = []
    page.on("request", lambda r: seen.append(r) if r.url.endswith("/api/search") and r.method == "POST" else None)
    return seen


def wait_for_results(page, at_least: int = 1):
    page.wait_for_function(f"document.querySelectorAll('#results .results .card').length >= {at_least}")
    page.wait_for_function("document.getElementById('results').getAttribute('aria-busy') === 'false'")
    return page.locator("#results .results .card")


def wait_until_settled(page):
    """The search ended with results or with an error message: never silence."""
    page.wait_for_function("document.getElementById('results').getAttribute('aria-busy') === 'false' && "
                           "(document.querySelector('#results .card') || "
                           "!document.getElementById('search-error').hidden)")


def test_drawing_searches_as_you_draw(web, searchable):
    page = web.open("/")
    requests = search_requests(page)
    assert page.locator("#results-empty").is_visible()
    draw(page, TSHIRT)
    cards = wait_for_results(page)
    assert cards.count() == 12
    # Three quick strokes, one search: the debounce waits for the pause after the last stroke.
    assert len(requests) == 1
    # The canvas went as a PNG in the `sketch` field (the API says what it received).
    assert requests[0].response().json()["query"] == {"kind": "sketch", "k": 12, "filters": {}, "road": "direct"}
    assert requests[0].headers.get("x-csrftoken")
    assert page.locator("#query-source").inner_text() == "Searching with your sketch"
    # No GAN is trained in the tests: the figure says so instead of staying blank.
    imagined = page.locator("#imagined")
    assert page.locator("#imagined-img").is_visible() or "not trained" in imagined.inner_text()
    web.shot(page, "01-sketch-results")

    drawn = ink(page)
    page.get_by_role("button", name="Undo").click()
    assert 0 < ink(page) < drawn
    page.get_by_role("button", name="Clear").click()
    assert ink(page) == 0 and page.locator("#canvas-hint").is_visible()
    page.keyboard.press("Control+z")  # undoing the clear brings the drawing back
    assert ink(page) > 0


def test_eraser_and_search_on_demand(web, searchable):
    page = web.open("/")
    requests = search_requests(page)
    page.locator("#live-search").uncheck()
    draw(page, TSHIRT)
    drawn = ink(page)
    page.get_by_role("button", name="Eraser").click()
    assert page.get_by_role("button", name="Eraser").get_attribute("aria-pressed") == "true"
    draw(page, [[(0.1, 0.6), (0.9, 0.6)]])
    assert ink(page) < drawn
    page.wait_for_timeout(600)
    assert requests == []  # live search is off: nothing is sent until asked
    page.get_by_role("button", name="Search", exact=True).click()
    wait_for_results(page)
    assert len(requests) == 1
    web.shot(page, "02-search-on-demand")


def test_the_page_offers_no_gan_road(web, searchable):
    """The GAN road is far worse than the direct one: the page offers no choice, and its sketches take the
    server's default road; the road stays an API parameter."""
    page = web.open("/")
    assert page.locator("[name=road]").count() == 0 and page.get_by_text("through the GAN").count() == 0
    requests = search_requests(page)
    draw(page, TSHIRT)
    wait_for_results(page)
    assert requests[0].response().json()["query"]["road"] == "direct"


def test_sketch_file_lands_on_the_canvas_and_searches(web, searchable):
    page = web.open("/")
    sketch = Image.new("L", (300, 400), 255)
    ImageDraw.Draw(sketch).ellipse((60, 120, 240, 300), outline=0, width=8)  # a watch face...
    ImageDraw.Draw(sketch).rectangle((130, 10, 170, 120), outline=0, width=8)  # ...and its strap
    page.locator("#sketch-input").set_input_files({"name": "watch.png", "mimeType": "image/png",
                                                   "buffer": jpeg_bytes(sketch, "PNG")})
    wait_for_results(page)
    assert ink(page) > 0 and not page.locator("#canvas-hint").is_visible()
    web.shot(page, "03a-sketch-file")
    draw(page, [[(0.1, 0.1), (0.2, 0.1)]])  # the uploaded sketch can be drawn on
    page.get_by_role("button", name="Undo").click()
    page.get_by_role("button", name="Undo").click()
    assert ink(page) == 0  # and undone like a stroke


def test_photo_upload_then_item_with_similar_items(web, searchable):
    page = web.open("/")
    photo = jpeg_bytes(draw_item("Watches", COLOURS["Green"], np.random.default_rng(5)))
    page.locator("#photo-input").set_input_files({"name": "watch.jpg", "mimeType": "image/jpeg", "buffer": photo})
    cards = wait_for_results(page)
    assert page.locator("#photo-preview").is_visible()
    assert page.locator("#query-source").inner_text() == "Searching with your photo"
    categories = page.locator("#results .card .meta").all_inner_texts()
    assert sum("Watches" in c for c in categories) >= len(categories) // 2, categories
    assert not any(re.search(r"\d\.\d", c) for c in categories), categories  # no score a shopper cannot read
    web.shot(page, "03-photo-results")

    # A filter re-runs the search in place.
    page.locator("select[name=category]").select_option("Handbags")
    page.wait_for_function("[...document.querySelectorAll('#results .card .meta')]"
                           ".every(m => m.textContent.includes('Handbags'))")

    # "heatmap" shows where the model looked in that hit's photo, in place of the photo, and back.
    first_img = cards.first.locator("img")
    photo_src = first_img.get_attribute("src")
    cards.first.locator("a.heatmap-link").click()
    page.wait_for_function("(() => { const i = document.querySelector('#results .card img');"
                           " return i.src.includes('/heatmap.png') && i.complete && i.naturalWidth === 60; })()")
    web.shot(page, "03b-hit-heatmap")
    cards.first.locator("a.heatmap-link").click()
    assert first_img.get_attribute("src") == photo_src

    title = cards.first.locator(".title").inner_text()
    cards.first.locator(":scope > a").click()
    page.wait_for_url("**/items/*/")
    assert page.locator("h1").inner_text() == title
    assert page.get_by_role("heading", name="Similar items").is_visible()
    assert page.locator(".results .card").count() > 0
    heroes = page.locator("img.hero")
    assert heroes.count() == 2  # the photo and where the model looked
    page.wait_for_function("[...document.querySelectorAll('img.hero')].every(i => i.complete && i.naturalWidth > 0)")
    web.shot(page, "04-item-similar")


def test_thumbnails_are_crisp_and_hold_their_place(web, searchable):
    """The 60x80 photos are drawn at twice their size pixel for pixel (each photo pixel a 2x2 block: no smear),
    in a 3:4 placeholder that holds their place while they load; the first rows load at once."""
    page = web.open("/browse/")
    page.wait_for_load_state("load")
    boxes = page.evaluate("""() => [...document.querySelectorAll('.card .thumb')].map((thumb, i) => {
        const img = thumb.querySelector('img'), style = getComputedStyle(thumb);
        return {i, ratio: style.aspectRatio, background: style.backgroundColor, w: thumb.clientWidth,
                h: thumb.clientHeight, rendering: getComputedStyle(img).imageRendering, loading: img.loading,
                complete: img.complete, natural: [img.naturalWidth, img.naturalHeight]}; })""")
    assert len(boxes) == 48
    for box in boxes:
        assert (box["w"], box["h"]) == (120, 160) and box["ratio"] == "3 / 4", box
        assert box["background"] not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)"), box  # a visible placeholder
        assert box["rendering"] == "pixelated", box
        assert box["loading"] == ("auto" if box["i"] < 16 else "lazy"), box
    assert all(b["complete"] and b["natural"] == [60, 80] for b in boxes[:16])  # loaded with the page

    # The photo as drawn on the screen (device pixel 1:1); it sits at a fractional CSS position, snapped to the
    # pixel grid, so look for it in a frame one pixel wider all round.
    box = page.locator(".card .thumb img").first.bounding_box()
    x, y = int(box["x"]) - 1, int(box["y"]) - 1
    shot = page.screenshot(clip={"x": x, "y": y, "width": 122, "height": 162})
    frame = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"), dtype=np.int16)
    def blockiness(dx, dy):  # the largest difference inside the 2x2 blocks of the photo drawn at (dx, dy)
        blocks = frame[dy : dy + 160, dx : dx + 120].reshape(80, 2, 60, 2, 3)[4:-4, :, 4:-4]  # not the round corners
        return np.abs(blocks - blocks[:, :1, :, :1]).max()
    assert min(blockiness(dx, dy) for dx in range(3) for dy in range(3)) <= 2  # every 2x2 block: one photo pixel
    assert frame.std() > 10  # and it is a photo, not a blank box
    web.shot(page, "09-browse-thumbnails")


def test_text_search_shows_results_or_the_apis_message(web, searchable):
    page = web.open("/")
    page.get_by_label("Describe it in words").fill("red t-shirt")
    page.keyboard.press("Enter")
    wait_until_settled(page)
    error = page.locator("#search-error")
    if error.is_visible():
        assert error.inner_text().startswith("Search failed: ") and len(error.inner_text()) > len("Search failed: ")
    else:
        assert page.locator("#results .card").count() > 0
    web.shot(page, "05-text-search")


def test_words_find_the_item_by_its_title_and_the_matching_words_are_marked(web, searchable_with_text, settings):
    from webapp.models import Item

    settings.LEXICAL_WEIGHT = 0.5
    item = Item.objects.filter(category="Watches").order_by("pk")[13]
    page = web.open("/")
    page.get_by_label("Describe it in words").fill(item.title.lower())
    page.keyboard.press("Enter")
    wait_until_settled(page)
    first = page.locator("#results .card").first
    assert first.locator(":scope > a").get_attribute("href").endswith(f"/items/{item.sku}/")
    marked = first.locator(".title mark").all_inner_texts()
    assert marked == item.title.split()  # every word of the title is one the query has
    web.shot(page, "05b-text-search-title-match")


def test_empty_search_asks_for_input(web, searchable):
    page = web.open("/")
    page.get_by_role("button", name="Search", exact=True).click()
    assert "Draw a sketch, choose a photo or type some words" in page.locator("#search-error").inner_text()


def test_phone_layout_and_touch(web, searchable):
    page = web.open("/", viewport=PHONE, has_touch=True, is_mobile=True)
    canvas = page.locator("#sketch-canvas").bounding_box()
    assert canvas["width"] >= 250 and canvas["x"] + canvas["width"] <= PHONE["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    touch_draw(page, TSHIRT)
    assert ink(page) > 0
    wait_for_results(page)
    web.shot(page, "06-phone")


def test_without_javascript_the_form_still_searches(web, searchable):
    page = web.open("/", java_script_enabled=False)
    assert not page.locator("#sketch-canvas").is_visible()
    photo = jpeg_bytes(draw_item("Handbags", COLOURS["Red"], np.random.default_rng(3)))
    page.locator("#photo-input").set_input_files({"name": "bag.jpg", "mimeType": "image/jpeg", "buffer": photo})
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_load_state()
    assert page.locator(".results .card").count() == 12
    web.shot(page, "07-no-javascript")


def test_generated_image_and_server_trouble_are_shown(web, db):
    """The API answered through a stub: a GAN picture is shown beside the canvas; a broken server is told."""
    import base64
    import json

    picture = "data:image/png;base64," + base64.b64encode(jpeg_bytes(Image.new("RGB", (60, 80), "red"), "PNG")).decode()
    answers = [
        {"status": 200, "content_type": "application/json", "body": json.dumps(
            {"results": [], "timings_ms": {"total": 5.0}, "index_version": "v1", "generated_image": picture,
             "query": {"kind": "sketch", "k": 12, "filters": {}, "road": "gan"}})},
        {"status": 500, "content_type": "text/html", "body": "<h1>Server Error</h1>"},
    ]
    page = web.open("/")
    page.route("**/api/search", lambda route: route.fulfill(**answers.pop(0)))
    draw(page, TSHIRT)
    page.wait_for_function("document.getElementById('imagined-img').complete && "
                           "document.getElementById('imagined-img').naturalWidth === 60")
    assert page.get_by_role("img", name="What the model imagined from the sketch").is_visible()
    assert "Nothing matched." in page.locator("#results").inner_text()  # the empty state of a search
    web.shot(page, "08-imagined-stub")
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_function("!document.getElementById('search-error').hidden")
    assert page.locator("#search-error").inner_text() == (
        "The server had a problem (HTTP 500). Try again in a moment.")
