"""A reindex in three steps that Celery can spread over index workers (``workers.reindex`` and its tasks).

``plan_reindex`` snapshots the visible items, reuses what it can (the active index, the live buffer) and cuts
the rest into chunks, one ``ReindexChunk`` row each; ``embed_chunk`` embeds one chunk on any index worker (its
vectors go to ``chunk-N.npy`` under ARTIFACTS_DIR/reindex/job-<id>/, shared storage) and marks its row done;
the chunk that finds every row done asks for ``finish_reindex``, which assembles the vectors, builds the new
version and switches to it. ``reindex`` runs the same steps in this process.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from webapp.indexing.jobs import add_progress, chunks_embedded, fail_job, job_pk_of, set_progress
from webapp.indexing.vectors import embed_items, reusable_text_vectors, reusable_vectors, text_space_model
from webapp.indexing.versions import build_version
from webapp.models import IndexVersion, Item, Job, LiveVector, ReindexChunk
from webapp.services import get_models

log = logging.getLogger(__name__)


def job_dir(job_id: int | str) -> Path:
    """Where a reindex keeps its plan and chunk vectors: shared storage every index worker sees."""
    return settings.ARTIFACTS_DIR / "reindex" / f"job-{job_id}"


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, array)
    os.replace(tmp, path)  # a reader (or a retried chunk) never sees half a file


def plan_reindex(job_id: int | str, *, reuse: bool = True, chunk_size: int | None = None) -> list[list[int]]:
    """Snapshot the visible items, keep what can be reused, write the plan; returns the chunks to embed."""
    directory = job_dir(job_id)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    set_progress(job_pk_of(job_id), "snapshot: the catalog's visible items and the vectors to reuse")
    snapshot = timezone.now()
    item_ids = list(Item.objects.filter(hidden=False).order_by("pk").values_list("pk", flat=True))
    if not item_ids:
        raise RuntimeError("the catalog is empty: run `python manage.py import_catalog` first")
    encoder_version = get_models().encoder().version
    dim = get_models().encoder().dim
    mask = np.zeros(len(item_ids), dtype=bool)
    vectors = np.zeros((len(item_ids), dim), np.float32)
    if reuse:
        reused_mask, reused = reusable_vectors(item_ids, encoder_version)
        if reused_mask.any():
            vectors[reused_mask] = reused
            mask |= reused_mask
        position = {pk: i for i, pk in enumerate(item_ids)}
        for pk, blob in LiveVector.objects.filter(encoder_version=encoder_version).values_list("item_id", "vector"):
            i = position.get(pk)
            if i is not None:  # the live vector is the newest one for this item
                vectors[i] = np.frombuffer(bytes(blob), dtype=np.float32)
                mask[i] = True
    text_version = text_space_model()
    if text_version is not None:
        text_mask, text_vectors = reusable_text_vectors(item_ids, text_version) if reuse else (None, None)
        if text_vectors is None:
            text_vectors = np.zeros((len(item_ids), get_models().text().dim), np.float32)
            text_mask = np.zeros(len(item_ids), dtype=bool)
        mask &= text_mask
        _save_npy(directory / "text_vectors.npy", text_vectors)
    todo = [pk for pk, m in zip(item_ids, mask, strict=True) if not m]
    size = chunk_size or settings.REINDEX_CHUNK_SIZE
    chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
    _save_npy(directory / "item_ids.npy", np.array(item_ids, dtype=np.int64))
    _save_npy(directory / "reused_mask.npy", mask)
    _save_npy(directory / "vectors.npy", vectors)
    (directory / "plan.json").write_text(json.dumps({
        "snapshot": snapshot.isoformat(), "chunks": len(chunks), "embedded": len(todo), "reused": int(mask.sum()),
        "started": time.time(), "text_model": text_version}))
    if job_pk_of(job_id) is not None:  # the chunks' rows, and the snapshot's counts shown while the rest runs
        with transaction.atomic():
            ReindexChunk.objects.filter(job_id=job_id).delete()
            ReindexChunk.objects.bulk_create(ReindexChunk(job_id=job_id, index=i, items=len(chunk))
                                             for i, chunk in enumerate(chunks))
        Job.objects.filter(pk=job_id).update(
            stage=f"embedding: 0 of {len(chunks)} chunks done", done=0, total=len(todo), heartbeat=timezone.now(),
            result={"items": len(item_ids), "reused": int(mask.sum()), "embedded": len(todo), "chunks": len(chunks)})
    return chunks


def embed_chunk(job_id: int | str, index: int, item_ids: Sequence[int]) -> int:
    """Embed one chunk into ``chunk-<index>.npy`` and mark it done on its row; a redelivered chunk that was
    done already does nothing. Returns the items embedded."""
    job_pk = job_pk_of(job_id)
    if job_pk is not None and ReindexChunk.objects.filter(job_id=job_pk, index=index, done=True).exists():
        return 0
    plan = json.loads((job_dir(job_id) / "plan.json").read_text())
    spaces = ("image", "text") if plan.get("text_model") else ("image",)
    vectors = embed_items(list(item_ids), on_batch=lambda n: add_progress(job_pk, n), spaces=spaces)
    if "text" in vectors:
        _save_npy(job_dir(job_id) / f"chunk-{index}.text.npy", vectors["text"])
    _save_npy(job_dir(job_id) / f"chunk-{index}.npy", vectors["image"])
    if job_pk is not None:
        ReindexChunk.objects.filter(job_id=job_pk, index=index).update(done=True)
        chunks_embedded(job_pk, plan["chunks"])
    return len(item_ids)


def chunks_complete(job_id: int | str) -> bool:
    """True once every chunk of a running job's plan is marked done on its row.

    Each chunk task asks this after marking its own row, so the last one to finish sees them all and
    asks for the build. Rows, not Celery's chord counter: a worker killed between storing a chunk's
    result and counting it into the chord (Celery 5.7 then acks the task as succeeded) left the chord
    one short forever, and the job RUNNING until it went stale."""
    job_pk = job_pk_of(job_id)
    if job_pk is None or not Job.objects.filter(pk=job_pk, status=Job.Status.RUNNING).exists():
        return False  # never planned with a row, failed, or already built
    chunks = ReindexChunk.objects.filter(job_id=job_pk)
    return chunks.exists() and not chunks.filter(done=False).exists()


def finish_reindex(job_id: int | str, *, shards: int | None = None) -> IndexVersion:
    """Assemble the plan and the chunk files, build and switch to the new version, mark the job done."""
    directory = job_dir(job_id)
    plan = json.loads((directory / "plan.json").read_text())
    item_ids = np.load(directory / "item_ids.npy").tolist()
    mask = np.load(directory / "reused_mask.npy")
    vectors = np.load(directory / "vectors.npy")
    fresh = [np.load(directory / f"chunk-{i}.npy") for i in range(plan["chunks"])]
    if fresh:
        vectors[~mask] = np.concatenate(fresh)
    spaces = {"image": vectors}
    if plan.get("text_model"):
        text = np.load(directory / "text_vectors.npy")
        fresh_text = [np.load(directory / f"chunk-{i}.text.npy") for i in range(plan["chunks"])]
        if fresh_text:
            text[~mask] = np.concatenate(fresh_text)
        spaces["text"] = text
    job_pk = job_pk_of(job_id)
    version = build_version(item_ids, spaces, job_id=job_pk, shards=shards or settings.INDEX_SHARDS,
                            snapshot=datetime.fromisoformat(plan["snapshot"]), text_model=plan.get("text_model"))
    result = {"version": version.name, "count": version.count, "items": len(item_ids), "embedded": plan["embedded"],
              "reused": plan["reused"], "chunks": plan["chunks"], "shards": version.manifest.get("shards", 1),
              "seconds": round(time.time() - plan["started"], 1)}
    if job_pk is not None:
        Job.objects.filter(pk=job_pk).update(status=Job.Status.DONE, stage="done", done=plan["embedded"],
                                             total=plan["embedded"], result=result, finished=timezone.now())
    shutil.rmtree(directory, ignore_errors=True)
    return version


def reindex(job_id: int | None = None, *, reuse: bool = True, shards: int | None = None,
            progress: Callable[[str, int, int], None] | None = None) -> IndexVersion:
    """The whole reindex in this process. With ``job_id`` the Job row is updated as it goes."""
    key = job_id if job_id is not None else f"local-{uuid.uuid4().hex[:8]}"
    try:
        chunks = plan_reindex(key, reuse=reuse)
        total, done = sum(len(c) for c in chunks), 0
        if progress:
            progress("embedding images", 0, total)
        for i, chunk in enumerate(chunks):
            done += embed_chunk(key, i, chunk)
            if progress:
                progress("embedding images", done, total)
        version = finish_reindex(key, shards=shards)
        if progress:
            progress("done", 1, 1)
        return version
    except Exception as exc:
        log.exception("reindex failed")
        if job_id is not None:
            fail_job(job_id, str(exc))
        raise
    finally:
        if job_id is None:
            shutil.rmtree(job_dir(key), ignore_errors=True)
