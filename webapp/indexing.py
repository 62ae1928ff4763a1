"""Reindex: embed every visible item, build a new index version, switch to it atomically.

Progress and outcome live on a ``Job`` row (stage, done/total) that the
progress page polls. A second request while one is pending or running gets the
same job back, so two reindexes never build at once. Searches keep using the
old version until the one-transaction switch; old versions are pruned.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from search.images import load_image_array
from search.index import build_index
from webapp.models import IndexEntry, IndexVersion, Item, Job
from webapp.services import get_models, load_store

log = logging.getLogger(__name__)
EMBED_BATCH = 512


def request_reindex() -> tuple[Job, bool]:
    """The pending/running reindex job, or a new one. Returns (job, created)."""
    with transaction.atomic():
        current = Job.objects.select_for_update().filter(
            kind=Job.Kind.REINDEX, status__in=[Job.Status.PENDING, Job.Status.RUNNING]).first()
        if current:
            return current, False
        return Job.objects.create(kind=Job.Kind.REINDEX, stage="waiting for a worker"), True


def claim(job_id: int) -> bool:
    """PENDING -> RUNNING by one conditional update: exactly one worker wins."""
    return Job.objects.filter(pk=job_id, status=Job.Status.PENDING).update(
        status=Job.Status.RUNNING, started=timezone.now(), stage="starting") == 1


def set_progress(job_id: int | None, stage: str, done: int = 0, total: int = 0) -> None:
    if job_id is not None:
        Job.objects.filter(pk=job_id).update(stage=stage, done=done, total=total)


def embed_items(item_ids: Sequence[int], on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Image2Vec vectors for items, in the order given (the unit of work a worker does)."""
    paths = dict(Item.objects.filter(pk__in=item_ids).values_list("pk", "image_path"))
    models = get_models()
    out = []
    for start in range(0, len(item_ids), EMBED_BATCH):
        chunk = item_ids[start : start + EMBED_BATCH]
        images, _ok = load_image_array([Path(paths[pk]) for pk in chunk])
        out.append(models.embed_images(images))
        if on_batch:
            on_batch(len(chunk))
    dim = models.encoder().config.embed_dim
    return np.concatenate(out) if out else np.zeros((0, dim), np.float32)


def reusable_vectors(item_ids: list[int], encoder_version: str) -> tuple[np.ndarray, np.ndarray]:
    """Vectors from the active index for items unchanged since it was built with the same encoder.

    Returns (mask of reusable positions, their vectors)."""
    active = IndexVersion.objects.filter(is_active=True).first()
    mask = np.zeros(len(item_ids), dtype=bool)
    if active is None or active.encoder_version != encoder_version:
        return mask, np.zeros((0, 0), np.float32)
    try:
        store, item_of = load_store(active)
    except Exception:  # a broken active index is simply not reused
        return mask, np.zeros((0, 0), np.float32)
    position = {int(pk): i for i, pk in enumerate(item_of)}
    changed = set(Item.objects.filter(updated__gt=active.created).values_list("pk", flat=True))
    rows = []
    for j, pk in enumerate(item_ids):
        i = position.get(pk)
        if i is not None and pk not in changed:
            mask[j] = True
            rows.append(i)
    vectors = np.asarray(store.vectors("image")[np.array(rows, dtype=np.int64)]) if rows else np.zeros((0, 0))
    return mask, vectors


def build_version(item_ids: list[int], vectors: np.ndarray, *, job_id: int | None = None,
                  shards: int = 1) -> IndexVersion:
    """Write the Annoy files, the version row and its id mapping; then switch in one transaction."""
    models = get_models()
    name = timezone.now().strftime("v%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    directory = settings.ARTIFACTS_DIR / "indexes" / name
    encoder_version = models.version("encoder")
    set_progress(job_id, "building the Annoy index", 0, 1)
    manifest = build_index(directory, {"image": vectors}, version=name, n_trees=settings.INDEX_N_TREES,
                           search_k=settings.INDEX_SEARCH_K, shards=shards, models={"encoder": encoder_version})
    version = IndexVersion.objects.create(
        name=name, path=str(directory), status=IndexVersion.Status.BUILDING, encoder_version=encoder_version,
        metric=manifest.metric, dim=manifest.spaces["image"], n_trees=manifest.n_trees, search_k=manifest.search_k,
        count=manifest.count, manifest={"shards": manifest.shards, "spaces": manifest.spaces,
                                        "build_seconds": manifest.build_seconds, "models": manifest.models})
    set_progress(job_id, "saving the id mapping", 0, 1)
    IndexEntry.objects.bulk_create(
        (IndexEntry(version=version, annoy_id=i, item_id=pk) for i, pk in enumerate(item_ids)), batch_size=5000)
    activate(version)
    prune()
    return version


def activate(version: IndexVersion) -> None:
    with transaction.atomic():
        IndexVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
        IndexVersion.objects.filter(pk=version.pk).update(is_active=True, status=IndexVersion.Status.READY,
                                                          activated=timezone.now())


def prune(keep: int | None = None) -> list[str]:
    """Delete all but the newest ``keep`` ready versions (the active one always stays)."""
    keep = keep or settings.INDEX_KEEP_VERSIONS
    ready = list(IndexVersion.objects.filter(status=IndexVersion.Status.READY).order_by("-activated", "-created"))
    pruned = []
    for version in ready[keep:]:
        if version.is_active:
            continue
        shutil.rmtree(version.path, ignore_errors=True)
        version.entries.all().delete()
        version.status = IndexVersion.Status.PRUNED
        version.save(update_fields=["status"])
        pruned.append(version.name)
    return pruned


def reindex(job_id: int | None = None, *, reuse: bool = True, shards: int = 1,
            progress: Callable[[str, int, int], None] | None = None) -> IndexVersion:
    """The whole reindex in this process. With ``job_id`` the Job row is updated as it goes."""
    started = time.perf_counter()

    def report(stage, done, total):
        set_progress(job_id, stage, done, total)
        if progress:
            progress(stage, done, total)

    try:
        item_ids = list(Item.objects.filter(hidden=False).order_by("pk").values_list("pk", flat=True))
        if not item_ids:
            raise RuntimeError("the catalog is empty: run `python manage.py import_catalog` first")
        encoder_version = get_models().version("encoder")
        mask, reused = reusable_vectors(item_ids, encoder_version) if reuse else (np.zeros(len(item_ids), bool), None)
        todo = [pk for pk, m in zip(item_ids, mask) if not m]
        done = 0
        report("embedding images", 0, len(todo))

        def advance(n):
            nonlocal done
            done += n
            report("embedding images", done, len(todo))

        fresh = embed_items(todo, advance)
        vectors = np.zeros((len(item_ids), fresh.shape[1]), np.float32)
        if mask.any():
            vectors[mask] = reused
        vectors[~mask] = fresh
        version = build_version(item_ids, vectors, job_id=job_id, shards=shards)
        result = {"version": version.name, "count": version.count, "embedded": len(todo),
                  "reused": int(mask.sum()), "seconds": round(time.perf_counter() - started, 1)}
        if job_id is not None:
            Job.objects.filter(pk=job_id).update(status=Job.Status.DONE, stage="done", done=len(todo) or 1,
                                                 total=len(todo) or 1, result=result, finished=timezone.now())
        report("done", 1, 1)
        return version
    except Exception as exc:
        log.exception("reindex failed")
        if job_id is not None:
            Job.objects.filter(pk=job_id).update(status=Job.Status.FAILED, message=str(exc)[:2000],
                                                 finished=timezone.now())
        raise

