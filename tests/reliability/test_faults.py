"""Faults: the active index's files gone or corrupt -> a clear 503 (never a 500 with a traceback);
a locked database -> a clear error within the SQLite timeout, never a hang."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.db import OperationalError

from tests.conftest import jpeg_upload
from webapp.models import IndexVersion, Item
from webapp.services import reset_caches

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def garble(path: Path, data: bytes) -> None:
    """Replace a file by a new one (a new inode: a process that has the old one mapped keeps it)."""
    tmp = path.with_suffix(".garbled")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def break_manifest(d: Path):
    garble(d / "manifest.json", b"{not json")


def break_ann(d: Path):
    ann = next(d.glob("*.ann"))
    garble(ann, ann.read_bytes()[:-7])  # not a whole number of nodes


def break_vectors(d: Path):
    garble(next(d.glob("*.vectors.npy")), b"\x93NUMPY garbage")


def delete_dir(d: Path):
    shutil.rmtree(d)


@pytest.mark.parametrize("damage", [delete_dir, break_manifest, break_ann, break_vectors],
                         ids=lambda f: f.__name__)
def test_a_missing_or_corrupt_index_is_a_clear_503(client, searchable, damage):
    version = IndexVersion.objects.get(is_active=True)
    damage(Path(version.path))
    reset_caches()  # a process that has not opened this index yet (a new worker, a restart)
    for res in (client.post("/api/search", {"photo": jpeg_upload("red")}),
                client.get(f"/api/items/{Item.objects.first().sku}/similar")):
        assert res.status_code == 503, res.content
        assert "reindex" in res.json()["error"]
    page = client.post("/", {"photo": jpeg_upload("red")})
    assert page.status_code < 500 and "reindex" in page.content.decode()
    item_page = client.get(f"/items/{Item.objects.first().sku}/")
    assert item_page.status_code == 200 and "reindex" in item_page.content.decode()


def test_files_deleted_under_a_loaded_index_keep_serving(client, searchable):
    assert client.post("/api/search", {"photo": jpeg_upload("red")}).status_code == 200  # loaded (memory-mapped)
    shutil.rmtree(IndexVersion.objects.get(is_active=True).path)
    assert client.post("/api/search", {"photo": jpeg_upload("red")}).status_code == 200


def test_a_locked_database_is_a_clear_503_on_the_api(client, searchable, monkeypatch):
    def locked():
        raise OperationalError("database is locked")

    monkeypatch.setattr("webapp.queries.active_index", locked)
    res = client.post("/api/search", {"photo": jpeg_upload("red")})
    assert res.status_code == 503 and "database" in res.json()["error"]


LOCK_SCRIPT = textwrap.dedent("""
    import sqlite3, time
    import django
    django.setup()
    from django.core.management import call_command
    from django.db import OperationalError, connection
    from django.test import Client
    from webapp.models import Item

    call_command("migrate", verbosity=0)
    connection.close()
    connection.settings_dict["OPTIONS"]["timeout"] = 1  # settings say 20 s; the behaviour is the same
    holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a long import or reindex holding the write lock
    started = time.monotonic()
    try:
        Item.objects.create(sku="x", title="x", category="x", image_path="/x")
        print("WROTE")
    except OperationalError as exc:
        print(f"LOCKED {time.monotonic() - started:.1f} {exc}")
    print("READ", Item.objects.count())  # WAL: readers are not blocked by the writer
    print("SEARCH", Client().post("/api/search", {"text": "red shirt"}).status_code)
    holder.execute("ROLLBACK")
""")


def test_a_locked_sqlite_database_fails_fast_and_reads_go_on(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", "VAR_DIR": str(tmp_path), "DEBUG": "1",
           "ARTIFACTS_DIR": str(tmp_path / "artifacts"), "DATABASE_URL": "", "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL")
    out = subprocess.run([sys.executable, "-c", LOCK_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert "database is locked" in lines["LOCKED"] and float(lines["LOCKED"].split()[0]) < 5
    assert lines["READ"] == "0"
    assert lines["SEARCH"] == "503"  # no index in this empty database: a clear answer, not a hang
