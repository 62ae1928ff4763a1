"""Every benchmark section runs end to end with tiny counts on the synthetic catalog.

A throwaway deployment is made once for the module (its own VAR_DIR, SQLite
database, ARTIFACTS_DIR with the session's tiny trained models, an index), and
each section is ``python -m bench.run --tiny --sections <name>`` against it, as
``make bench`` runs it. Servers and workers bind to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def manage(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    proc = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, synthetic_catalog, trained_models_dir) -> dict[str, str]:
    pytest.importorskip("gunicorn")
    pytest.importorskip("psutil")
    root = tmp_path_factory.mktemp("bench")
    shutil.copytree(trained_models_dir, root / "artifacts" / "models")
    var = root / "var"
    env = {**os.environ, "VAR_DIR": str(var), "ARTIFACTS_DIR": str(root / "artifacts"),
           "DATABASE_URL": f"sqlite:///{var / 'db.sqlite3'}", "CELERY_BROKER_DIR": str(var / "broker"),
           "MEDIA_ROOT": str(root / "media"), "REDIS_URL": "", "CATALOG_DIR": str(synthetic_catalog),
           "DJANGO_SETTINGS_MODULE": "webapp.settings", "TORCH_THREADS": "1"}
    env.pop("PYTEST_CURRENT_TEST", None)
    manage(env, "migrate", "--noinput")
    manage(env, "import_catalog", str(synthetic_catalog))
    manage(env, "reindex", "--local")
    env["BENCH_ROOT"] = str(root)
    return env


def bench(env: dict[str, str], section: str) -> dict:
    out = Path(env["BENCH_ROOT"]) / f"results-{section}.json"
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--tiny", "--sections", section, "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert out.with_suffix(".md").read_text().startswith("# Benchmarks")
    return json.loads(out.read_text())


def test_query_latency(deployment):
    r = bench(deployment, "query")
    for kind in ("photo", "sketch"):
        assert r[f"query.{kind}.status"] == "ok"
        assert 0 < r[f"query.{kind}.p50_ms"] <= r[f"query.{kind}.p99_ms"]
        assert r[f"query.{kind}.stage.encoder.p50_ms"] > 0
    # No GAN was trained for the synthetic catalog, and text search may not exist: reported, not fatal.
    assert r["query.sketch_gan.status"].startswith("unavailable")
    assert r["query.text.status"] == "ok" or r["query.text.status"].startswith("unavailable")


def test_health_probes(deployment):
    r = bench(deployment, "health")
    for probe in ("healthz", "readyz"):
        assert r[f"health.{probe}.status"] == "ok" and r[f"health.{probe}.n"] == 20
        assert 0 < r[f"health.{probe}.p50_ms"] <= r[f"health.{probe}.p99_ms"]
    results_md = (Path(deployment["BENCH_ROOT"]) / "results-health.md").read_text()
    assert "/healthz (liveness)" in results_md


def test_throughput(deployment):
    r = bench(deployment, "throughput")
    for clients in (1, 2, 4, 8, 16):
        assert r[f"throughput.c{clients}.qps"] > 0


def test_embedding_and_training(deployment):
    r = bench(deployment, "embed,training")
    assert r["embed.image2vec.cpu_t1.b1.images_per_s"] > 0
    assert r["embed.gan.status"].startswith("unavailable")
    assert r["training.encoder.minutes"] > 0 and r["training.encoder.device"] == "cpu"


def test_index_and_scale(deployment):
    r = bench(deployment, "index,scale")
    assert r["index.synthetic_dataset"] == "index.3k"
    assert 0 <= r["index.3k.recall_at_10"] <= 1 and r["index.3k.speedup_vs_exact"] > 0
    assert 0 <= r["index.160.recall_at_10"] <= 1
    assert any(k.startswith("index.3k.sweep.hnswlib.") or k == "index.3k.hnswlib.status" for k in r)
    assert any(k.startswith("index.3k.sweep.ivf.") for k in r) and any(k.startswith("index.3k.sweep.annoy.") for k in r)
    assert isinstance(r["index.3k.annoy.target_met"], bool) and isinstance(r["index.3k.ivf.target_met"], bool)
    shared = [k for k in r if k.startswith("index.3k.ivf.") and k.endswith(".sharing.private_mb")]
    assert shared and 0 < r[shared[0]] <= r[shared[0].replace("private_mb", "rss_mb")]
    assert "Beyond one machine" in r["scale.markdown"] and r["scale.10m.shards"] > 1


def test_reindex(deployment):
    r = bench(deployment, "reindex")
    assert r["reindex.items"] == 160 and r["reindex.seconds"] > 0
    assert r["reindex.workers1.items"] == 160 or r["reindex.workers1.status"].startswith("unavailable")


def test_memory(deployment):
    r = bench(deployment, "memory")
    assert r["memory.web_embedded.0.rss_mb"] > 0
    assert r["memory.web_embedded.0.index_rss_mb"] >= 0


def test_load(deployment):
    r = bench(deployment, "load")
    assert r["load.clients"] == 3 and r["load.requests"] > 0 and r["load.errors"] == 0
    assert 0 < r["load.p50_ms"] <= r["load.p99_ms"] and r["load.qps"] > 0
    assert r["load.memory.queries"] == 200 and len(r["load.memory.rss_mb_series"]) == 12
    assert r["load.memory.verdict"] in ("flat", "growing") and "load.memory.growth_pct" in r
