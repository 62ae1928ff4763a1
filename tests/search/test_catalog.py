from pathlib import Path

import pytest

from search.catalog import CatalogError, read_catalog, split_of

KAGGLE_HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName\n"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_kaggle_layout_joins_unquoted_commas_in_titles(tmp_path):
    write(tmp_path / "styles.csv", KAGGLE_HEADER
          + "15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt\n"
          + "39403,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,Puma Men, Blue, Round Neck T-shirt\n"
          + "1,Men,Apparel\n")
    read = read_catalog(tmp_path)
    assert read.layout == "kaggle"
    assert [r.id for r in read.rows] == ["15970", "39403"]
    assert read.rows[1].title == "Puma Men, Blue, Round Neck T-shirt"
    assert read.rows[0].image_path == tmp_path / "images" / "15970.jpg"
    assert read.rows[0].year == 2011 and read.rows[0].colour == "Navy Blue"
    assert read.problems == [(4, "expected 10 fields, found 3")]


def test_generic_layout_and_row_problems(tmp_path):
    write(tmp_path / "catalog.csv",
          "id,image,title,category,gender,colour\n"
          "a1,img/a1.jpg,Red dress,Dresses,Women,Red\n"
          "a1,img/a1.jpg,Dup,Dresses,Women,Red\n"
          "a2,../../etc/passwd,Evil,Dresses,,\n"
          "a3,/etc/passwd,Evil,Dresses,,\n"
          "a4,img/a4.jpg,No category,,,\n"
          ",img/x.jpg,No id,Dresses,,\n")
    read = read_catalog(tmp_path / "catalog.csv")
    assert [r.id for r in read.rows] == ["a1"]
    reasons = " | ".join(reason for _, reason in read.problems)
    assert "duplicate id a1" in reasons
    assert reasons.count("outside the catalog directory") == 2
    assert "empty category" in reasons and "empty id" in reasons


def test_non_utf8_text_is_read_not_fatal(tmp_path):
    write(tmp_path / "catalog.csv", b"id,image,title,category\nx1,i.jpg,Caf\xe9 shirt,Shirts\n")
    read = read_catalog(tmp_path)
    assert read.rows[0].title.startswith("Caf")


def test_bad_path_and_wrong_csv_raise_clear_errors(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        read_catalog(tmp_path / "nope")
    with pytest.raises(CatalogError, match="no styles.csv or catalog.csv"):
        read_catalog(tmp_path)
    write(tmp_path / "catalog.csv", "name,price\nshirt,3\n")
    with pytest.raises(CatalogError, match="expected the Kaggle styles.csv columns"):
        read_catalog(tmp_path)
    write(tmp_path / "catalog.csv", "")
    with pytest.raises(CatalogError, match="empty"):
        read_catalog(tmp_path)


def test_split_is_deterministic_and_roughly_80_10_10():
    splits = [split_of(str(i)) for i in range(20000)]
    assert splits == [split_of(str(i)) for i in range(20000)]
    share = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert 0.77 < share["train"] < 0.83 and 0.08 < share["val"] < 0.12 and 0.08 < share["test"] < 0.12


def test_items_shown_on_a_person_are_the_worn_ones():
    from search.catalog import CatalogRow, is_worn

    def row(master, sub):
        return CatalogRow("1", Path("1.jpg"), "t", "x", master_category=master, sub_category=sub)

    assert is_worn(row("Apparel", "Topwear")) and is_worn(row("Apparel", "Innerwear"))
    assert is_worn(row("Accessories", "Headwear")) and is_worn(row("Accessories", "Socks"))
    assert not is_worn(row("Accessories", "Bags")) and not is_worn(row("Footwear", "Shoes"))
    assert not is_worn(row("Personal Care", "Lips"))
