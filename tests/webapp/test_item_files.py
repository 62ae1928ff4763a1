"""Deleting an item removes the image file it owns (an upload under MEDIA_ROOT), never a catalog image;
`manage.py cleanup_media` removes files that nothing uses any more."""

import io
import os
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.conftest import jpeg_upload
from webapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)  # the file goes when the deletion is committed


def uploaded_item(media: Path, name: str) -> Item:
    path = media / "items" / f"{name}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_upload().getvalue())
    return Item.objects.create(sku=name, title="t", category="Watches", image_path=str(path), source=Item.Source.UPLOAD)


def test_deleting_an_uploaded_item_in_the_admin_removes_its_photo(admin_client, settings, tmp_path, synthetic_catalog):
    settings.MEDIA_ROOT = tmp_path / "media"
    item = uploaded_item(settings.MEDIA_ROOT, "u1")
    catalog_image = synthetic_catalog / "images" / "1001.jpg"
    catalog_item = Item.objects.create(sku="1001", title="t", category="Tshirts", image_path=str(catalog_image))
    res = admin_client.post(f"/admin/webapp/item/{item.pk}/delete/", {"post": "yes"})
    assert res.status_code == 302 and not Item.objects.filter(pk=item.pk).exists()
    assert not Path(item.image_path).exists()
    catalog_item.delete()
    assert catalog_image.exists()  # the catalog's own file, not the item's


def test_a_bulk_delete_removes_every_photo(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    items = [uploaded_item(settings.MEDIA_ROOT, f"u{i}") for i in range(3)]
    Item.objects.all().delete()
    assert not any(Path(i.image_path).exists() for i in items)


def test_cleanup_media_removes_orphans_and_abandoned_staging_only(settings, tmp_path):
    settings.MEDIA_ROOT = media = tmp_path / "media"
    kept = uploaded_item(media, "kept")
    orphan = media / "items" / "orphan.jpg"
    orphan.write_bytes(b"x")
    (media / "staging").mkdir()
    old, fresh = media / "staging" / "old.jpg", media / "staging" / "fresh.jpg"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    out = io.StringIO()
    call_command("cleanup_media", "--dry-run", stdout=out)
    assert orphan.exists() and old.exists() and "1 orphaned item photos, 1 abandoned" in out.getvalue()
    call_command("cleanup_media", stdout=io.StringIO())
    assert not orphan.exists() and not old.exists()
    assert fresh.exists() and Path(kept.image_path).exists()
