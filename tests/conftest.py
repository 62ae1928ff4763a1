"""Shared fixtures: a tiny synthetic catalog the tests draw themselves, a tiny trained
encoder (trained once per session, for real), and isolated artifact/media dirs."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

REAL_CATALOG = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-product-images-small"
SHAPES = ["Tshirts", "Watches", "Casual Shoes", "Handbags"]
COLOURS = {"Red": (200, 30, 40), "Blue": (30, 60, 200), "Black": (20, 20, 20), "Green": (30, 150, 60)}


def draw_item(category: str, colour: tuple[int, int, int], rng: np.random.Generator, size=(60, 80)) -> Image.Image:
    """A product-like picture: one dark-ish shape per category on white, jittered."""
    w, h = size
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    dx, dy = rng.integers(-4, 5, 2)
    s = rng.uniform(0.85, 1.1)

    def box(x0, y0, x1, y1):
        cx, cy = w / 2 + dx, h / 2 + dy
        return [cx + (x0 - w / 2) * s, cy + (y0 - h / 2) * s, cx + (x1 - w / 2) * s, cy + (y1 - h / 2) * s]

    if category == "Tshirts":
        d.polygon([(p[0], p[1]) for p in [box(8, 18, 8, 18)[:2], box(22, 12, 0, 0)[:2], box(38, 12, 0, 0)[:2],
                                          box(52, 18, 0, 0)[:2], box(46, 30, 0, 0)[:2], box(42, 27, 0, 0)[:2],
                                          box(42, 66, 0, 0)[:2], box(18, 66, 0, 0)[:2], box(18, 27, 0, 0)[:2],
                                          box(14, 30, 0, 0)[:2]]], fill=colour)
    elif category == "Watches":
        d.rectangle(box(25, 8, 35, 72), fill=(90, 90, 90))
        d.ellipse(box(16, 28, 44, 52), fill=colour, outline=(0, 0, 0), width=2)
    elif category == "Casual Shoes":
        d.polygon([(p[0], p[1]) for p in [box(6, 52, 0, 0)[:2], box(30, 40, 0, 0)[:2], box(54, 50, 0, 0)[:2],
                                          box(54, 60, 0, 0)[:2], box(6, 60, 0, 0)[:2]]], fill=colour)
        d.rectangle(box(6, 60, 54, 64), fill=(240, 240, 240), outline=(0, 0, 0))
    else:  # Handbags
        d.arc(box(18, 14, 42, 40), 180, 360, fill=(60, 40, 20), width=3)
        d.polygon([(p[0], p[1]) for p in [box(10, 28, 0, 0)[:2], box(50, 28, 0, 0)[:2], box(54, 64, 0, 0)[:2],
                                          box(6, 64, 0, 0)[:2]]], fill=colour)
    return img


def write_synthetic_catalog(root: Path, per_category: int = 40, seed: int = 0) -> Path:
    """A generic-layout catalog (catalog.csv + images/) of simple drawn products."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    n = 0
    for category in SHAPES:
        for i in range(per_category):
            colour_name = list(COLOURS)[i % len(COLOURS)]
            n += 1
            item_id = str(1000 + n)
            draw_item(category, COLOURS[colour_name], rng).save(root / "images" / f"{item_id}.jpg", quality=90)
            gender = "Men" if i % 2 else "Women"
            rows.append({"id": item_id, "image": f"images/{item_id}.jpg", "category": category, "gender": gender,
                         "colour": colour_name, "title": f"Acme {gender} {colour_name} {category} {i}"})
    with (root / "catalog.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "image", "title", "category", "gender", "colour"])
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="session")
def synthetic_catalog(tmp_path_factory) -> Path:
    return write_synthetic_catalog(tmp_path_factory.mktemp("catalog"))


@pytest.fixture(scope="session")
def trained_models_dir(synthetic_catalog, tmp_path_factory) -> Path:
    """Really trained (tiny profile) models on the synthetic catalog; copied into each test's artifacts."""
    from search.dataset import load_dataset
    from search.train import train_role

    artifacts = tmp_path_factory.mktemp("trained")
    data = load_dataset(synthetic_catalog, artifacts / "cache")
    for role in ("encoder", "classifier", "classifier_image"):
        train_role(role, data, artifacts, profile="tiny", device="cpu")
    return artifacts / "models"


@pytest.fixture(scope="session")
def trained_text_models_dir(synthetic_catalog, trained_models_dir, tmp_path_factory) -> Path:
    """``trained_models_dir`` plus a really trained (tiny) text model: indexes get a text space."""
    from search.dataset import load_dataset
    from search.train import train_role

    artifacts = tmp_path_factory.mktemp("trained-text")
    shutil.copytree(trained_models_dir, artifacts / "models")
    train_role("text", load_dataset(synthetic_catalog, artifacts / "cache"), artifacts, profile="tiny", device="cpu")
    return artifacts / "models"


@pytest.fixture
def artifacts(settings, tmp_path):
    """Fresh artifacts and media directories for one test; caches of loaded models forgotten."""
    from webapp.services import reset_caches

    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    settings.MEDIA_ROOT = tmp_path / "media"
    # people's drawings (../shared/data) only where a test brings its own: evaluate and train read them by default
    settings.HUMAN_SKETCHES_DIR = tmp_path / "no-human-sketches"
    settings.HUMAN_SKETCHES_TRAIN_DIR = tmp_path / "no-human-sketches-train"
    settings.ARTIFACTS_DIR.mkdir()
    reset_caches()
    yield settings.ARTIFACTS_DIR
    reset_caches()


@pytest.fixture
def eager_celery(settings):
    """Run Celery tasks inline (in the calling thread) instead of sending them to a worker."""
    from workers.celery_app import app

    before = app.conf.task_always_eager  # read first: reading loads Celery's config from the settings
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_user("staff", "staff@example.com", "pw-for-tests-only", is_staff=True)
    client.force_login(user)
    client.user = user
    return client


def make_searchable(artifacts: Path, catalog: Path, models_dir: Path) -> Path:
    """Import ``catalog``, put the trained models in place, build and activate an index."""
    from webapp.catalog_import import import_catalog
    from webapp.indexing import reindex

    shutil.copytree(models_dir, artifacts / "models")
    import_catalog(catalog)
    reindex()
    return catalog


@pytest.fixture(scope="session")
def demo_models_dir(synthetic_catalog, trained_text_models_dir, tmp_path_factory):
    """Every model the demo needs, really trained (tiny profile): the text models plus the sketch-to-image GAN."""
    from search.dataset import load_dataset
    from search.train import train_role

    artifacts = tmp_path_factory.mktemp("trained-demo")
    shutil.copytree(trained_text_models_dir, artifacts / "models")
    train_role("sketch2image", load_dataset(synthetic_catalog, artifacts / "cache"), artifacts, profile="tiny",
               device="cpu")
    return artifacts / "models"


@pytest.fixture
def searchable(db, artifacts, synthetic_catalog, trained_models_dir):
    """The synthetic catalog imported, trained models in place, an index built and active."""
    return make_searchable(artifacts, synthetic_catalog, trained_models_dir)


@pytest.fixture
def searchable_with_text(db, artifacts, synthetic_catalog, trained_text_models_dir):
    """``searchable`` with a text model too: the active index has an image and a text space."""
    return make_searchable(artifacts, synthetic_catalog, trained_text_models_dir)


def jpeg_upload(colour: str = "green", name: str = "p.jpg") -> io.BytesIO:
    """A small plain JPEG as a named file object, the way test clients upload one."""
    buf = io.BytesIO(jpeg_bytes(Image.new("RGB", (60, 80), colour)))
    buf.name = name
    return buf


def jpeg_bytes(img: Image.Image, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()
