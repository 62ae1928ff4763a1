"""The staff model report: checkpoints with curves, GAN samples, evaluation, confusion matrix, embedding map."""

import io
import json

import pytest
import torch
from PIL import Image

from models.checkpoint import save_checkpoint
from webapp.models import Item

pytestmark = pytest.mark.django_db


def fake_checkpoint(models_dir, name="encoder", epochs=3):
    history = [{"epoch": e, "loss": 2.0 / e, "seconds": 1.5 * e, "val_accuracy": 0.5 + 0.1 * e}
               for e in range(1, epochs + 1)]
    return save_checkpoint(models_dir / f"{name}.pt", kind=name, config={"embed_dim": 8}, model=torch.nn.Linear(2, 2),
                           metrics={"val_accuracy": 0.8, "val_p_at_5": 0.75},
                           train={"profile": {"name": "tiny"}, "device": "cpu", "seconds": 125.0, "history": history})


def png(path, colour="red"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


def test_report_is_for_staff_only(client, artifacts, django_user_model):
    res = client.get("/report/")
    assert res.status_code == 302 and "/admin/login/" in res["Location"]
    django_user_model.objects.create_user("shopper", password="pw")
    client.login(username="shopper", password="pw")
    assert client.get("/report/").status_code == 302
    assert client.get("/report/embedding.json").status_code == 302


def test_empty_report_says_what_to_run(admin_client, artifacts):
    html = admin_client.get("/report/").content.decode()
    assert "No checkpoints yet" in html and "No GAN sample grid yet" in html
    assert "No evaluation yet" in html and "Not available yet" in html
    assert "no search index yet" in html
    assert admin_client.get("/report/embedding.json").status_code == 503


def test_checkpoint_facts_metrics_and_cached_curves(admin_client, artifacts):
    payload = fake_checkpoint(artifacts / "models")
    (artifacts / "models" / "broken.pt").write_bytes(b"not a checkpoint")
    html = admin_client.get("/report/").content.decode()
    assert payload["version"] in html and "2 min 5 s" in html and "val_p_at_5" in html and "0.7500" in html
    assert "broken.pt" in html and "cannot be read" in html
    assert 'src="/report/curves/encoder.png"' in html

    res = admin_client.get("/report/curves/encoder.png")
    assert res.status_code == 200 and res["Content-Type"] == "image/png"
    cached = list((artifacts / "reports").glob("curves-encoder-*.png"))
    assert len(cached) == 1 and Image.open(cached[0]).size[0] > 300
    assert admin_client.get("/report/curves/nothing.png").status_code == 404
    assert admin_client.get("/report/curves/..%2Fsecret.png").status_code == 404


def test_gan_samples_last_epoch_confusion_and_evaluation(admin_client, artifacts):
    samples = artifacts / "models" / "sketch2image-samples"
    png(samples / "epoch-9.png", "red")
    png(samples / "epoch-10.png", "blue")
    png(artifacts / "reports" / "confusion.png", "green")
    (artifacts / "reports" / "evaluate.json").write_text(json.dumps(
        {"photo": {"p_at_5": 0.81234, "n": 40}, "sketch": {"direct": {"p_at_5": 0.5}}, "seconds": 3.2}))
    html = admin_client.get("/report/").content.decode()
    assert "/report/images/gan-samples.png" in html and "/report/images/confusion.png" in html
    assert "0.8123" in html and "direct.p_at_5" in html

    grid = admin_client.get("/report/images/gan-samples.png")
    assert Image.open(io.BytesIO(grid.getvalue())).getpixel((0, 0)) == (0, 0, 255)  # epoch 10, not 9
    assert admin_client.get("/report/images/confusion.png").status_code == 200
    assert admin_client.get("/report/images/passwords.png").status_code == 404


def test_curve_legends_sit_beside_the_lines_not_on_them(admin_client, artifacts, monkeypatch):
    """The classifier's six validation accuracies fill the plot: a legend inside covered its lines."""
    from matplotlib.figure import Figure

    history = [{"epoch": e, "loss": 2.0 / e, "seconds": 30.0 * e, "val_accuracy": 0.5 + 0.04 * e,
                "val_gender_accuracy": 0.6 + 0.03 * e, "val_colour_accuracy": 0.4 + 0.05 * e,
                "val_sub_category_accuracy": 0.7 + 0.02 * e, "val_accuracy_no_title": 0.45 + 0.04 * e,
                "val_cam_accuracy": 0.5 + 0.03 * e} for e in range(1, 9)]
    save_checkpoint(artifacts / "models" / "classifier-fused.pt", kind="classifier", config={}, model=torch.nn.Linear(2, 2),
                    metrics={"val_accuracy": 0.82}, train={"seconds": 240.0, "history": history})
    drawn, real = [], Figure.savefig

    def recorded(fig, *args, **kwargs):  # the real savefig, remembering the figure it drew
        drawn.append(fig)
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recorded)
    res = admin_client.get("/report/curves/classifier-fused.png")
    assert res.status_code == 200 and len(drawn) == 1
    fig = drawn[0]  # laid out as saved
    assert len(fig.axes) == 2
    for ax in fig.axes:
        legend, plot = ax.get_legend().get_window_extent(), ax.get_window_extent()
        assert not legend.overlaps(plot), ax.get_title()
        assert fig.bbox.x0 <= legend.x0 and legend.x1 <= fig.bbox.x1 and legend.y0 >= fig.bbox.y0  # not cut off


def test_embedding_map_points_are_indexed_items(admin_client, searchable):
    res = admin_client.get("/report/embedding.json")
    body = res.json()
    assert res.status_code == 200 and body["method"] == "t-SNE"
    assert len(body["points"]) == Item.objects.count() == 160
    names = [c["name"] for c in body["categories"]]
    assert sorted(names) == ["Casual Shoes", "Handbags", "Tshirts", "Watches"]
    x, y, sku, cat, title = body["points"][0]  # items by their catalog id, as their pages are
    assert 0 <= x <= 1 and 0 <= y <= 1 and Item.objects.get(sku=sku).title == title
    assert Item.objects.get(sku=sku).category == names[cat]
    html = admin_client.get("/report/").content.decode()
    assert 'data-url="/report/embedding.json"' in html and "Embedding map" in html


def test_evaluation_leads_with_its_figures_in_words_and_says_when_it_is_of_another_index(admin_client, searchable,
                                                                                          artifacts):
    from webapp.models import IndexVersion

    active = IndexVersion.objects.get(is_active=True)
    reports = artifacts / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    figures = {"photo": {"p_at_5": 0.8123, "n": 300}, "sketch": {"direct": {"p_at_5": 0.58}, "gan": {"p_at_5": 0.2}},
               "index": {"version": active.name, "count": 160}, "seconds": 52.3,
               "command": "python manage.py evaluate --limit 300"}
    (reports / "evaluate.json").write_text(json.dumps(figures))
    html = admin_client.get("/report/").content.decode()
    assert "n = 300 test items, a sample" in html and "in 52 s" in html
    headline = html.split('class="headline')[1].split("</table>")[0]
    assert "Photo search: items of the same kind among the top 5" in headline and "0.81" in headline
    assert "through the GAN road" in headline and "0.20" in headline and 'style="width: 58%"' in headline
    assert "The active index is" not in html

    (reports / "evaluate.json").write_text(json.dumps({**figures, "index": {"version": "v-older", "count": 150}}))
    html = admin_client.get("/report/").content.decode()
    assert f"The active index is {active.name}, built since" in html
