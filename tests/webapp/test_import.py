import pytest
from django.core.management import CommandError, call_command

from webapp.catalog_import import import_catalog
from webapp.models import Item

pytestmark = pytest.mark.django_db


def test_import_is_idempotent_and_updates(synthetic_catalog, tmp_path):
    first = import_catalog(synthetic_catalog)
    assert first.created == 160 and first.skipped == 0
    again = import_catalog(synthetic_catalog)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 160)
    assert Item.objects.count() == 160
    Item.objects.filter(sku="1001").update(title="changed")
    third = import_catalog(synthetic_catalog)
    assert third.updated == 1 and Item.objects.get(sku="1001").title.startswith("Acme")


def test_missing_and_unreadable_images_are_reported_and_skipped(tmp_path, synthetic_catalog):
    root = tmp_path / "cat"
    (root / "images").mkdir(parents=True)
    (root / "images" / "ok.jpg").write_bytes((synthetic_catalog / "images" / "1001.jpg").read_bytes())
    (root / "images" / "bad.jpg").write_bytes(b"this is not a jpeg")
    (root / "catalog.csv").write_text("id,image,title,category\n1,images/ok.jpg,Good,Tshirts\n"
                                      "2,images/bad.jpg,Bad,Tshirts\n3,images/none.jpg,Missing,Tshirts\n")
    summary = import_catalog(root)
    assert summary.created == 1
    reasons = " ".join(r for _, r in summary.problems)
    assert "unreadable image" in reasons and "no image file" in reasons
    assert list(Item.objects.values_list("sku", flat=True)) == ["1"]


def test_bad_path_or_wrong_csv_changes_nothing(tmp_path, synthetic_catalog, capsys):
    import_catalog(synthetic_catalog)
    with pytest.raises(CommandError, match="does not exist"):
        call_command("import_catalog", str(tmp_path / "missing"))
    (tmp_path / "catalog.csv").write_text("foo,bar\n1,2\n")
    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("import_catalog", str(tmp_path))
    assert Item.objects.count() == 160


def test_command_prints_summary(synthetic_catalog, capsys):
    call_command("import_catalog", str(synthetic_catalog))
    out = capsys.readouterr().out
    assert "generic catalog: 160 rows, 160 created" in out
