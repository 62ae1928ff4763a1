"""Section ``reindex``: re-embed and rebuild the whole catalog, in process and through 1 and 2 Celery workers.

Runs on a copy: the SQLite database is copied (backup API) into a temporary
VAR_DIR with its index versions, jobs and live vectors removed, and the model
files into a temporary ARTIFACTS_DIR; the real database and indexes are never
touched. Each run is ``manage.py reindex --no-reuse`` (``--local`` or
``--workers``), timed from outside; the job's own ``seconds`` is reported too.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, UNAVAILABLE, Run, say, setup_django
from bench.workers import running_worker

REPORT = re.compile(r"active: (\d+) items \((\d+) embedded.*\) in ([\d.]+)s")


def prepare_copy(root: Path, limit: int) -> dict[str, str]:
    """The copy's environment (VAR_DIR, ARTIFACTS_DIR, DATABASE_URL)."""
    setup_django()
    from django.conf import settings

    from webapp import services

    db = settings.DATABASES["default"]
    if not db["ENGINE"].endswith("sqlite3"):
        raise NotImplementedError("the reindex benchmark copies a SQLite database; unset DATABASE_URL to run it")
    var, artifacts = root / "var", root / "artifacts"
    var.mkdir(parents=True)
    (artifacts / "models").mkdir(parents=True)
    target = var / "db.sqlite3"
    with sqlite3.connect(db["NAME"]) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    with sqlite3.connect(target) as conn:
        for table in ("webapp_indexentry", "webapp_livevector", "webapp_indexversion", "webapp_reindexchunk", "webapp_job"):
            conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
        if limit:
            conn.execute("UPDATE webapp_item SET hidden = 1 WHERE hidden = 0 AND id NOT IN "
                         "(SELECT id FROM webapp_item WHERE hidden = 0 ORDER BY id LIMIT ?)", (limit,))
    for model in services.models_dir().glob("*.pt"):
        shutil.copy2(model, artifacts / "models" / model.name)
    return {"VAR_DIR": str(var), "ARTIFACTS_DIR": str(artifacts), "DATABASE_URL": f"sqlite:///{target}",
            "CELERY_BROKER_DIR": str(var / "broker"), "LOG_LEVEL": "WARNING"}


def reindex_once(env: dict[str, str], where: str, timeout: float) -> dict:
    cmd = [sys.executable, "manage.py", "reindex", "--no-reuse", f"--{where}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    match = REPORT.search(proc.stdout)
    if proc.returncode or not match:
        raise RuntimeError(f"reindex --{where} failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-600:]}")
    items, embedded, seconds = int(match.group(1)), int(match.group(2)), float(match.group(3))
    return {"items": items, "embedded": embedded, "seconds": seconds, "command_seconds": wall,
            "items_per_s": embedded / seconds if seconds else float("nan")}


def record(out: dict, prefix: str, figures: dict) -> None:
    for key, value in figures.items():
        out[f"{prefix}.{key}"] = value
    say(f"{prefix} seconds / items per s", f"{figures['seconds']:.1f} / {figures['items_per_s']:.0f} "
        f"({figures['embedded']} items)")


def reindex(run: Run, log_dir: Path) -> dict:
    out: dict = {}
    cores = len(os.sched_getaffinity(0))
    timeout = 3600.0
    root = Path(tempfile.mkdtemp(prefix="bench-reindex-"))
    try:
        base = {**os.environ, **run.env, **prepare_copy(root, run.reindex_items)}
        if not os.environ.get("REDIS_URL"):
            base["REDIS_URL"] = ""
        # In process: the default torch threads (all cores), as `manage.py reindex` runs it.
        record(out, "reindex", reindex_once(base, "local", timeout))
        out["reindex.how"] = "manage.py reindex --no-reuse --local, on a copy of the database"
        for workers in (1, 2):
            queue = f"bench-index-{os.getpid()}-{workers}"
            env = {**base, "CELERY_INDEX_QUEUE": queue, "TORCH_THREADS": str(max(1, cores // workers))}
            try:
                with running_worker(queue, workers, env, log_dir / f"worker-index-{workers}.log"):
                    figures = reindex_once(env, "workers", timeout)
            except Exception as exc:  # the distributed path is reported, not fatal for the section
                out[f"reindex.workers{workers}.status"] = f"{UNAVAILABLE}: {exc}"[:300]
                say(f"reindex.workers{workers}", out[f"reindex.workers{workers}.status"])
                continue
            record(out, f"reindex.workers{workers}", figures)
            out[f"reindex.workers{workers}.how"] = (
                f"Celery worker --concurrency {workers}, TORCH_THREADS={env['TORCH_THREADS']}, "
                f"{'Redis' if env.get('REDIS_URL') else 'filesystem broker'}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out
