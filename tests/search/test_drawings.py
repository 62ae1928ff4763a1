"""People's drawings as training data: framed as queries are, labelled by the kind's articleType, never the
validation set."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from search.drawings import KIND_CATEGORY, read_pool


def doodle(path, size=64, offset=0):
    img = Image.new("L", (size, size), 255)
    pen = ImageDraw.Draw(img)
    pen.line([(8 + offset, 10), (size - 10, 12 + offset), (size // 2, size - 8), (8 + offset, 10)], fill=0, width=3)
    img.save(path)


def test_a_pool_is_read_by_kind_folders_and_framed_as_a_query(tmp_path):
    for kind in ("hat", "sock", "dragon"):
        (tmp_path / "quickdraw" / kind).mkdir(parents=True)
        for i in range(2):
            doodle(tmp_path / "quickdraw" / kind / f"{i}.png", size=64 + 20 * i, offset=4 * i)
    (tmp_path / "quickdraw" / "sock" / "broken.png").write_bytes(b"not an image")
    Image.new("L", (64, 64), 255).save(tmp_path / "quickdraw" / "sock" / "blank.png")
    pool = read_pool(tmp_path, tmp_path / "cache")
    assert pool.sketches.shape == (6, 80, 60) and pool.sketches.dtype == np.uint8
    assert sorted(pool.kinds) == ["dragon"] * 2 + ["hat"] * 2 + ["sock"] * 2
    assert len(pool.skipped) == 2 and any("broken.png" in s for s in pool.skipped)
    # framed as a query: strokes reach the frame's margin whatever the drawing's size on its paper
    ink = pool.sketches < 128
    assert all(ink[i].any(axis=1).sum() > 50 for i in range(6))
    sketches, labels = pool.labels(["Caps", "Socks", "Tshirts"])
    assert len(sketches) == 4 and sorted(labels.tolist()) == [0, 0, 1, 1]  # a dragon is not sold here
    again = read_pool(tmp_path, tmp_path / "cache")  # from the cache file
    assert np.array_equal(again.sketches, pool.sketches) and again.kinds == pool.kinds


def test_a_manifest_names_the_files_and_kinds(tmp_path):
    doodle(tmp_path / "a.png")
    doodle(tmp_path / "b.png")
    (tmp_path / "manifest.csv").write_text("path,source,kind\na.png,quickdraw,t-shirt\nb.png,quickdraw,pants\n")
    pool = read_pool(tmp_path)
    assert pool.kinds == ["t-shirt", "pants"]
    assert KIND_CATEGORY["pants"] == "Trousers"


def test_the_validation_set_is_never_a_training_pool(tmp_path):
    doodle(tmp_path / "a.png")
    (tmp_path / "queries.csv").write_text("query_image,kind\na.png,sketch\n")
    with pytest.raises(ValueError, match="validation"):
        read_pool(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_pool(tmp_path / "missing")


def test_ndjson_strokes_render_at_the_canvas_size_with_its_stroke(tmp_path):
    from search.drawings import CANVAS, CANVAS_STROKE, DRAWING_SPAN, read_ndjson, render_strokes

    path = tmp_path / "line.ndjson"
    path.write_text('{"word": "belt", "drawing": [[[0, 255], [100, 100]], [[0, 255], [160, 160]]]}\n'
                    "not json\n" '{"word": "empty", "drawing": []}\n')
    drawings = read_ndjson(path)
    assert [d["word"] for d in drawings] == ["belt"]  # the broken lines are skipped
    img = np.asarray(render_strokes(drawings[0]["drawing"])) < 128
    assert img.shape == (CANVAS, CANVAS)
    column = img[:, CANVAS // 2]
    runs = np.flatnonzero(np.diff(np.concatenate([[0], column.astype(int), [0]])))
    widths = runs[1::2] - runs[::2]
    assert list(widths) == [CANVAS_STROKE, CANVAS_STROKE]  # two lines, each the brush's width
    xs = np.flatnonzero(img.any(axis=0))
    assert abs((xs[-1] - xs[0]) - (DRAWING_SPAN + CANVAS_STROKE)) <= 2  # scaled to the span, with round caps
    assert abs((xs[0] + xs[-1]) / 2 - CANVAS / 2) <= 1  # and centred


HUMAN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "human-sketches" / "quickdraw"


@pytest.mark.skipif(not HUMAN.is_dir(), reason="the human sketches are not beside the checkout")
def test_rendered_strokes_match_the_human_sets_pictures():
    from PIL import Image

    from search.drawings import read_ndjson, render_strokes

    record = read_ndjson(HUMAN / "ndjson" / "t-shirt.ndjson")[0]
    with Image.open(HUMAN / "png" / "t-shirt" / f"{record['key_id']}.png") as png:
        theirs = np.asarray(png.convert("L")) < 128
    ours = np.asarray(render_strokes(record["drawing"])) < 128
    assert ours.shape == theirs.shape
    assert (ours & theirs).sum() / (ours | theirs).sum() > 0.8


HUMAN_SET = HUMAN.parent


@pytest.mark.skipif(not (HUMAN_SET / "queries.csv").is_file(), reason="the human sketches are not beside the checkout")
def test_the_human_sets_csv_loads_and_every_row_is_a_readable_drawing():
    import csv

    from search.images import decode_image
    from search.sketches import normalise_sketch

    with (HUMAN_SET / "queries.csv").open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 400
    assert {"query_image", "kind", "expected_category", "category_level", "source", "drawn_as"} <= set(rows[0])
    assert {r["kind"] for r in rows} == {"sketch"}
    assert {r["category_level"] for r in rows} <= {"articleType", "subCategory", "masterCategory"}
    assert len({r["drawn_as"] for r in rows}) >= 15
    for row in rows[::25]:  # every 25th drawing decodes and frames as a query
        path = HUMAN_SET / row["query_image"]
        assert path.is_file(), path
        sketch = normalise_sketch(decode_image(path.read_bytes(), keep_alpha=True))
        assert sketch.shape == (80, 60) and (sketch < 128).sum() > 20
    assert all((HUMAN_SET / r["query_image"]).is_file() for r in rows)
