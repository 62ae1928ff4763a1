"""People's drawings replayed on the canvas: Quick, Draw! strokes drawn with pointer events at the canvas's scale
and with its default brush. The page sends the drawing the human set holds (so ``evaluate``'s per-kind figures are
what a shopper drawing it gets) and shows the kinds the API finds for it, for a few kinds; a screenshot of each is
kept in test-artifacts/e2e/."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from PIL import Image

from search.drawings import CANVAS, canvas_strokes, read_ndjson, render_strokes
from search.sketches import normalise_sketch
from tests.e2e.conftest import skip_without_browser
from tests.e2e.test_e2e_search import wait_for_results

pytestmark = [pytest.mark.e2e, skip_without_browser]

NDJSON = Path(settings.BASE_DIR).parent / "shared" / "data" / "human-sketches" / "quickdraw" / "ndjson"
KINDS = ["t-shirt", "eyeglasses", "purse"]
# the page's own export of the canvas (static/js/sketch.js sketchBlob): the strokes on white, as a PNG
EXPORT = """() => { const c = document.getElementById('sketch-canvas'); const o = document.createElement('canvas');
    o.width = c.width; o.height = c.height; const x = o.getContext('2d'); x.fillStyle = '#fff';
    x.fillRect(0, 0, o.width, o.height); x.drawImage(c, 0, 0); return o.toDataURL('image/png'); }"""


def replay(page, strokes) -> None:
    """Each stroke as a pointer's down, moves and up, in the canvas's own pixels mapped to the screen."""
    box = page.locator("#sketch-canvas").bounding_box()
    for points in canvas_strokes(strokes):
        at = [(box["x"] + x * box["width"] / CANVAS, box["y"] + y * box["height"] / CANVAS) for x, y in points]
        page.mouse.move(*at[0])
        page.mouse.down()
        for p in at[1:]:
            page.mouse.move(*p, steps=2)
        page.mouse.up()


def canvas_ink(page) -> np.ndarray:
    data = page.evaluate("""() => {
        const c = document.getElementById('sketch-canvas');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data.filter((_, i) => i % 4 === 3)); }""")
    return np.asarray(data, np.uint8).reshape(CANVAS, CANVAS) > 127


@pytest.mark.skipif(not NDJSON.is_dir(), reason=f"the Quick, Draw! strokes are not at {NDJSON}")
@pytest.mark.parametrize("kind", KINDS)
def test_a_replayed_doodle_finds_what_the_same_drawing_finds_through_the_api(web, searchable, kind):
    strokes = read_ndjson(NDJSON / f"{kind}.ndjson")[0]["drawing"]
    page = web.open("/")
    assert page.locator("#brush-size").input_value() == "7"  # the default brush the set was rendered with
    replay(page, strokes)
    cards = wait_for_results(page, at_least=5)
    web.shot(page, f"replay-{kind}")

    # what reached the canvas is the drawing as the human set renders it (same scale, same stroke) ...
    rendered = np.asarray(render_strokes(strokes)) < 128
    drawn = canvas_ink(page)
    assert (drawn & rendered).sum() / (drawn | rendered).sum() > 0.7
    # ... and the query the page sends is, once normalised, the query evaluate makes of the set's picture
    sent = Image.open(io.BytesIO(base64.b64decode(page.evaluate(EXPORT).split(",")[1])))
    ours, theirs = normalise_sketch(sent).astype(float), normalise_sketch(render_strokes(strokes)).astype(float)
    assert np.abs(ours - theirs).mean() < 4.0  # of 255: a few edge pixels of anti-aliasing
    assert abs(int((ours < 128).sum()) - int((theirs < 128).sum())) <= 0.1 * (theirs < 128).sum()

    # the kinds of the top results shown are the API's for that query
    shown = [t.split("\n")[0].strip() for t in page.locator("#results .card .meta").all_inner_texts()[:5]]
    assert cards.count() >= 5
    png = io.BytesIO()
    sent.save(png, "PNG")
    csrf = {c["name"]: c["value"] for c in page.context.cookies()}.get("csrftoken", "")
    api = page.request.post("/api/search", multipart={
        "sketch": {"name": "doodle.png", "mimeType": "image/png", "buffer": png.getvalue()}, "k": "5"},
        headers={"X-CSRFToken": csrf})
    assert api.ok, api.text()
    assert shown == [hit["category"] for hit in api.json()["results"]]
