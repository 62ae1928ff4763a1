"""People's drawings as training data: framed as queries are, labelled by the kind's articleType, never the
validation set."""

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
