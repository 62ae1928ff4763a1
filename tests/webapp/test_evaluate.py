"""``manage.py evaluate`` end to end on the synthetic catalog: the JSON shape scripts read, figures in range."""

import json

from django.core.management import call_command

from search.catalog import split_of
from webapp.models import Item


def test_evaluate_writes_every_figure_it_can_measure(searchable, settings, tmp_path):
    from webapp.indexing import reindex

    settings.INDEX_BACKEND = "ivf"
    reindex(reuse=False)
    out = tmp_path / "evaluate.json"
    call_command("evaluate", json=str(out))
    report = json.loads(out.read_text())
    n_test = sum(split_of(sku) == "test" for sku in Item.objects.values_list("sku", flat=True))
    assert report["photo"]["n"] == n_test > 0
    assert 0.5 < report["photo"]["p_at_5"] <= 1 and 0 <= report["photo"]["p_at_10"] <= 1
    # the search re-ranks picture queries by category; the report also gives the figures without
    assert report["photo"]["rerank_weight"] == settings.RERANK_WEIGHT > 0
    assert 0.5 < report["photo"]["without_rerank"]["p_at_5"] <= 1
    assert 0.5 < report["photo"]["without_vote"]["p_at_5"] <= 1  # photos: re-ranked with the neighbours' vote
    assert "without_vote" not in report["sketch"]["direct"]
    assert "without_rerank" in report["sketch"]["direct"]
    assert report["ann"]["backend"] == "ivf" and report["ann"]["parameters"].startswith("ivf nlist=")
    assert 0.9 <= report["ann"]["recall_at_10"] <= 1
    assert report["sketch"]["default"] == "direct" and 0 <= report["sketch"]["direct"]["p_at_5"] <= 1
    for head in ("image_only", "fused"):
        assert 0 <= report["classifier"][head]["accuracy"] <= 1
    # the search's own category guess for a photo (the image-only twin with Image2Vec's head)
    assert 0 <= report["classifier"]["image_only"]["with_image2vec_head"]["accuracy"] <= 1
    # ... blended with its nearest items' vote (what an upload without a title gets), with the validation sweep
    near = report["classifier"]["image_only"]["with_neighbours"]
    assert 0 <= near["accuracy"] <= 1 and 0 <= near["vote_alone_accuracy"] <= 1
    n_val = sum(split_of(sku) == "val" for sku in Item.objects.values_list("sku", flat=True))
    assert near["sweep_validation"]["n"] == n_val and "k=10 temperature=0.02 weight=2.0" in near["sweep_validation"]
    # no captioner was trained: uploads copy the nearest item's title (the default), and the report says so
    assert "lstm" not in report["captions"] and report["captions"]["in_use"] == "neighbour"
    assert report["captions"]["winner"] == "neighbour" and 0 <= report["captions"]["neighbour"]["bleu4_as_shown"] <= 1
    assert report["models"]["encoder"].startswith("encoder-")


def test_evaluate_runs_an_external_query_file(searchable, tmp_path):
    from PIL import Image, ImageDraw

    bag = Item.objects.filter(category="Handbags").order_by("pk").first()
    folder = tmp_path / "queries"
    folder.mkdir()
    (folder / "bag.jpg").write_bytes(open(bag.image_path, "rb").read())
    drawing = Image.new("RGBA", (400, 300), (0, 0, 0, 0))  # thin strokes off-centre on a transparent canvas
    pen = ImageDraw.Draw(drawing)
    pen.rectangle((230, 150, 330, 230), outline=(0, 0, 0, 255), width=3)
    pen.arc((255, 110, 305, 170), 180, 360, fill=(0, 0, 0, 255), width=3)
    drawing.save(folder / "bag-drawn.png")
    (folder / "q.csv").write_text(
        "query_image,kind,text,expected_category,category_level,expected_item_id\n"
        f"bag.jpg,photo,,Handbags,articleType,{bag.sku}\n"
        "bag-drawn.png,sketch,,Handbags,,\n"
        ",text,red handbag,Handbags,articleType,\n"
        "missing.jpg,photo,,Handbags,articleType,\n"
        "bag.jpg,photo,,,,\n")
    out = tmp_path / "evaluate.json"
    call_command("evaluate", json=str(out), queries=str(folder / "q.csv"), limit=5)
    queries = json.loads(out.read_text())["queries"]
    assert queries["photo"]["articleType"]["n"] == 1 and queries["photo"]["articleType"]["p_at_5"] >= 0.8
    assert queries["photo"]["expected_item"] == {"r_at_10": 1.0, "n": 1}  # its own picture finds it
    assert queries["sketch"]["articleType"]["n"] == 1 and 0 <= queries["sketch"]["articleType"]["p_at_5"] <= 1
    # each query that ran is listed with what it found, for looking at small sets such as docs/queries/drawn
    drawn = next(r for r in queries["rows"] if r["query"] == "bag-drawn.png")
    assert drawn["line"] == 3 and drawn["expected"] == "Handbags" and len(drawn["found"]) == 5
    assert drawn["p_at_5"] == sum(c == "Handbags" for c in drawn["found"]) / 5
    # no text model here, a file that is not there, a row with nothing to expect: counted, not fatal
    assert queries["n_errors"] == 3 and any("line 6" in e and "expected" in e for e in queries["errors"])


def test_evaluate_reports_text_queries_with_and_without_the_title_match(searchable_with_text, settings, tmp_path):
    settings.LEXICAL_WEIGHT = 0.5
    out = tmp_path / "evaluate.json"
    call_command("evaluate", json=str(out))
    text = json.loads(out.read_text())["text"]
    assert text["lexical_weight"] == 0.5 and text["space"] == "text"
    alone = text["joint_space_alone"]
    assert 0 <= alone["r_at_10"] <= 1 and 0 <= alone["p_at_5"] <= 1
    # The synthetic titles differ only by a number no photo shows: the title match finds every item's own.
    assert text["r_at_10"] == 1.0 > alone["r_at_10"]
    sweep = text["lexical_sweep_validation"]
    assert sweep["n"] > 0 and set(sweep) == {"n", "0.0", "0.5", "1.0", "1.25", "1.5", "2.0"}
    assert sweep["0.0"]["r_at_10"] <= sweep["0.5"]["r_at_10"]
    brand = text["brand_queries"]
    assert brand["n"] > 0 and brand["query"] == "<brand> <colour> <articleType>"
    assert 0.5 < brand["p_at_5"] <= 1 and 0 <= brand["joint_space_alone_p_at_5"] <= 1


def test_a_limit_samples_the_validation_sweeps_too(searchable_with_text, tmp_path):
    """``--limit N`` (the demo's quick evaluation) takes N validation queries in each sweep as well, not all."""
    out = tmp_path / "evaluate.json"
    call_command("evaluate", json=str(out), limit=5)
    report = json.loads(out.read_text())
    n_val = sum(split_of(sku) == "val" for sku in Item.objects.values_list("sku", flat=True))
    assert n_val > 5 and report["photo"]["n"] == 5 and report["command"].endswith("--limit 5")
    assert report["text"]["lexical_sweep_validation"]["n"] == 5
    assert report["classifier"]["image_only"]["with_neighbours"]["sweep_validation"]["n"] == 5


def draw(path, shape: str) -> None:
    """A drawing as people make them: black strokes on white, a few lines."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (256, 256), 255)
    pen = ImageDraw.Draw(img)
    if shape == "bag":
        pen.rectangle((60, 110, 196, 220), outline=0, width=5)
        pen.arc((90, 50, 166, 150), 180, 360, fill=0, width=5)
    else:
        pen.polygon([(40, 60), (100, 40), (156, 40), (216, 60), (196, 110), (176, 100), (176, 220), (80, 220),
                     (80, 100), (60, 110)], outline=0, width=5)
    img.save(path)


def test_evaluate_reports_drawings_by_people_by_kind(searchable, settings, tmp_path, staff_client):
    """With HUMAN_SKETCHES_DIR present, evaluate gives P@5 per drawn kind, the macro average, the macro over the
    kinds no training drawing shows, and a sheet of the weakest kinds; the model report shows them."""
    human = tmp_path / "human"
    (human / "png").mkdir(parents=True)
    rows = ["query_image,kind,text,expected_category,category_level,expected_item_id,source,drawn_as"]
    for i in range(3):
        draw(human / "png" / f"bag{i}.png", "bag")
        draw(human / "png" / f"shirt{i}.png", "shirt")
        rows += [f"png/bag{i}.png,sketch,,Handbags,articleType,,quickdraw,purse",
                 f"png/shirt{i}.png,sketch,,Topwear,subCategory,,sketchy,t-shirt"]
    (human / "queries.csv").write_text("\n".join(rows) + "\n")
    pool = tmp_path / "pool" / "quickdraw" / "t-shirt"
    pool.mkdir(parents=True)
    draw(pool / "a.png", "shirt")
    settings.HUMAN_SKETCHES_DIR = human
    settings.HUMAN_SKETCHES_TRAIN_DIR = tmp_path / "pool"
    out = settings.ARTIFACTS_DIR / "reports" / "evaluate.json"
    call_command("evaluate", json=str(out), limit=5)
    report = json.loads(out.read_text())["human"]
    groups = report["groups"]
    assert set(groups) == {"purse (quickdraw)", "t-shirt (sketchy)"}
    assert all(g["n"] == 3 and 0 <= g["p_at_5"] <= 1 and "examples" not in g for g in groups.values())
    scores = [g["p_at_5"] for g in groups.values()]
    assert report["macro_p_at_5"] == sum(scores) / 2 and report["min_p_at_5"] == min(scores)
    assert scores == sorted(scores)  # weakest first
    assert report["kinds_trained_on"] == ["t-shirt"]
    assert report["macro_p_at_5_kinds_not_trained_on"] == groups["purse (quickdraw)"]["p_at_5"]
    sheet = settings.ARTIFACTS_DIR / "reports" / "human-sketches.png"
    assert report["sheet"] == sheet.name and sheet.stat().st_size > 1000
    page = staff_client.get("/report/").content.decode()
    assert 'id="human-kinds"' in page and "purse (quickdraw)" in page
    image = staff_client.get("/report/images/human-sketches.png")
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    quick = settings.ARTIFACTS_DIR / "reports" / "human.json"
    call_command("evaluate", json=str(quick), human_only=True)  # the same figures, nothing else measured
    alone = json.loads(quick.read_text())
    assert alone["human"]["groups"] == groups and "photo" not in alone and alone["models"]["encoder"]
