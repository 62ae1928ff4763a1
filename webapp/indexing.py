"""Reindex: embed every visible item, build a new index version, switch to it atomically.

Progress and outcome live on a ``Job`` row (stage, done/total) that the
progress page polls. A second request while one is pending or running gets the
same job back, so two reindexes never build at once. Searches keep using the
old version until the one-transaction switch; old versions are pruned.

The work is cut into three steps so that Celery can spread it (the ``workers.reindex`` tasks):
``plan_reindex`` (snapshot of item ids, vectors reused from the active index and
the live buffer, chunks of items still to embed), ``embed_chunk`` (one chunk ->
``chunk-N.npy`` under ARTIFACTS_DIR/reindex/job-<id>/, on any index worker
sharing that storage) and ``finish_reindex`` (assemble, build, switch, fold the
live buffer). ``reindex`` runs the same steps in this process.

Live additions: ``add_live_item`` embeds one item into the ``LiveVector`` buffer
that searches merge with Annoy's hits until the next reindex folds it in.
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
from django.db.models import F
from django.utils import timezone

from search.images import load_image_array
from search.index import build_index
from search.lexical import TitleIndex
from webapp.models import IndexEntry, IndexVersion, Item, Job, LiveVector
from webapp.services import active_version, get_models, load_store

log = logging.getLogger(__name__)
EMBED_BATCH = 512


def request_reindex() -> tuple[Job, bool]:
    """The pending/running reindex job, or a new one. Returns (job, created)."""
    with transaction.atomic():
        current = Job.objects.select_for_update().filter(
            kind=Job.Kind.REINDEX, status__in=[Job.Status.PENDING, Job.Status.RUNNING]).first()
        if current and expire_if_stale(current).status in (Job.Status.PENDING, Job.Status.RUNNING):
            return current, False
        return Job.objects.create(kind=Job.Kind.REINDEX, stage="waiting for a worker"), True


def expire_if_stale(job: Job) -> Job:
    """A reindex that reported nothing for ``REINDEX_STALE_SECONDS`` is failed: its workers were lost.

    (Every worker that held its tasks died, or none ever took it.) Its late
    tasks, should they run, find it failed and do nothing; a new reindex can
    start. Returns the job, refreshed when it was expired.
    """
    if job.kind != Job.Kind.REINDEX or job.status not in (Job.Status.PENDING, Job.Status.RUNNING):
        return job
    silent = (timezone.now() - job.last_sign_of_life).total_seconds()
    if silent < settings.REINDEX_STALE_SECONDS:
        return job
    waiting = "no index worker took it" if job.status == Job.Status.PENDING else "its workers were lost"
    message = (f"no progress for {silent / 60:.0f} min (last at stage '{job.stage}'): {waiting}. "
               f"Start a new reindex; the active index kept serving.")
    Job.objects.filter(pk=job.pk, status=job.status, heartbeat=job.heartbeat).update(
        status=Job.Status.FAILED, message=message, finished=timezone.now())
    job.refresh_from_db()
    if job.status == Job.Status.FAILED:
        log.warning("reindex job %s expired: %s", job.pk, message)
    return job


def claim(job_id: int) -> bool:
    """PENDING -> RUNNING by one conditional update: exactly one worker wins."""
    now = timezone.now()
    return Job.objects.filter(pk=job_id, status=Job.Status.PENDING).update(
        status=Job.Status.RUNNING, started=now, heartbeat=now, stage="starting") == 1


# The steps a reindex's progress page shows, in order; every stage of a reindex starts with one ("build: ...").
STEPS = ("snapshot", "embedding", "build", "switch")


def set_progress(job_id: int | None, stage: str, done: int = 0, total: int = 0) -> None:
    if job_id is not None:
        Job.objects.filter(pk=job_id).update(stage=stage, done=done, total=total, heartbeat=timezone.now())


def set_stage(job_id: int | None, stage: str) -> None:
    """A new stage, the counts kept (the images embedded stay on the page while the index builds)."""
    if job_id is not None:
        Job.objects.filter(pk=job_id).update(stage=stage, heartbeat=timezone.now())


def chunks_embedded(job_id: int, directory: Path, chunks: int) -> None:
    """After a chunk: "embedding: k of N chunks done", k the chunk files on the shared storage. The update only
    raises k, so two workers finishing at once cannot set it back."""
    k = len(list(directory.glob("chunk-*[0-9].npy")))
    Job.objects.filter(pk=job_id, status=Job.Status.RUNNING, stage__startswith="embedding").exclude(
        stage__in=[f"embedding: {j} of {chunks} chunks done" for j in range(k, chunks + 1)]).update(
        stage=f"embedding: {k} of {chunks} chunks done", heartbeat=timezone.now())


def add_progress(job_id: int | None, n: int) -> None:
    """Chunks on several workers count into one row without overwriting each other."""
    if job_id is not None:
        Job.objects.filter(pk=job_id).update(done=F("done") + n, heartbeat=timezone.now())


def fail_job(job_id: int, message: str) -> None:
    Job.objects.filter(pk=job_id).exclude(status=Job.Status.DONE).update(
        status=Job.Status.FAILED, message=message[:2000], finished=timezone.now())


def text_space_model() -> str | None:
    """The text model's version when it has a joint space of its own (a second index space), else None."""
    models = get_models()
    if models.available("text") and models.text().index_space == "text":
        return models.text().version
    return None


def embed_items(item_ids: Sequence[int], on_batch: Callable[[int], None] | None = None,
                spaces: Sequence[str] = ("image",)) -> dict[str, np.ndarray]:
    """Vectors of items per index space (``image``: Image2Vec; ``text``: the text model's joint space),
    in the order given (the unit of work a worker does)."""
    paths = dict(Item.objects.filter(pk__in=item_ids).values_list("pk", "image_path"))
    models = get_models()
    out: dict[str, list[np.ndarray]] = {space: [] for space in spaces}
    for start in range(0, len(item_ids), EMBED_BATCH):
        chunk = item_ids[start : start + EMBED_BATCH]
        images, _ok = load_image_array([Path(paths[pk]) for pk in chunk])
        out["image"].append(models.encoder().embed(images))
        if "text" in out:
            out["text"].append(models.text().encode_images(images))
        if on_batch:
            on_batch(len(chunk))
    dims = {"image": models.encoder().dim, "text": models.text().dim if "text" in out else 0}
    return {space: np.concatenate(v) if v else np.zeros((0, dims[space]), np.float32) for space, v in out.items()}


def reusable_vectors(item_ids: list[int], encoder_version: str) -> tuple[np.ndarray, np.ndarray]:
    """Vectors from the active index for items unchanged since it was built with the same encoder.

    Returns (mask of reusable positions, their vectors)."""
    active = active_version()
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


def reusable_text_vectors(item_ids: list[int], text_version: str) -> tuple[np.ndarray, np.ndarray]:
    """Text-space vectors from the active index (same text model, item unchanged): (vectors, mask)."""
    dim = get_models().text().dim
    vectors = np.zeros((len(item_ids), dim), np.float32)
    mask = np.zeros(len(item_ids), dtype=bool)
    active = active_version()
    if active is None or (active.manifest or {}).get("models", {}).get("text") != text_version:
        return vectors, mask
    try:
        store, item_of = load_store(active)
    except Exception:  # a broken active index is simply not reused
        return vectors, mask
    if not store.has_space("text"):
        return vectors, mask
    position = {int(pk): i for i, pk in enumerate(item_of)}
    changed = set(Item.objects.filter(updated__gt=active.created).values_list("pk", flat=True))
    for j, pk in enumerate(item_ids):
        i = position.get(pk)
        if i is not None and pk not in changed:
            vectors[j] = store.vectors("text")[i]
            mask[j] = True
    return vectors, mask


def build_version(item_ids: list[int], spaces: dict[str, np.ndarray], *, job_id: int | None = None,
                  shards: int = 1, snapshot: datetime | None = None, text_model: str | None = None) -> IndexVersion:
    """Write the index files, the version row and its id mapping; then switch in one transaction."""
    models = get_models()
    name = timezone.now().strftime("v%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    directory = settings.ARTIFACTS_DIR / "indexes" / name
    encoder_version = models.encoder().version
    set_stage(job_id, f"build: the {settings.INDEX_BACKEND} index of {len(item_ids):,} vectors")
    versions = {"encoder": encoder_version, **({"text": text_model} if text_model else {})}
    manifest = build_index(directory, spaces, version=name, n_trees=settings.INDEX_N_TREES,
                           search_k=settings.INDEX_SEARCH_K, shards=shards, models=versions,
                           backend=settings.INDEX_BACKEND, nlist=settings.INDEX_NLIST, nprobe=settings.INDEX_NPROBE)
    version = IndexVersion.objects.create(
        name=name, path=str(directory), status=IndexVersion.Status.BUILDING, encoder_version=encoder_version,
        metric=manifest.metric, dim=manifest.spaces["image"], n_trees=manifest.n_trees, search_k=manifest.search_k,
        count=manifest.count, manifest={"backend": manifest.backend, "nlist": manifest.nlist,
                                        "nprobe": manifest.nprobe, "shards": manifest.shards, "spaces": manifest.spaces,
                                        "build_seconds": manifest.build_seconds, "models": manifest.models})
    set_stage(job_id, "build: the title index")
    titles = dict(Item.objects.values_list("pk", "title").iterator(chunk_size=10000))
    TitleIndex.build([titles.get(pk, "") for pk in item_ids]).save(directory)
    set_stage(job_id, "build: the id mapping")
    IndexEntry.objects.bulk_create(
        (IndexEntry(version=version, annoy_id=i, item_id=pk) for i, pk in enumerate(item_ids)), batch_size=5000)
    set_stage(job_id, f"switch: to {name}")
    activate(version, folded=item_ids if snapshot else None, snapshot=snapshot)
    prune()
    return version


def activate(version: IndexVersion, folded: Sequence[int] | None = None, snapshot: datetime | None = None) -> None:
    """Switch the active version in one transaction, dropping the live vectors it now contains.

    A live vector written after ``snapshot`` (the item changed or arrived during the build) stays."""
    with transaction.atomic():
        IndexVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
        IndexVersion.objects.filter(pk=version.pk).update(is_active=True, status=IndexVersion.Status.READY,
                                                          activated=timezone.now())
        if folded is not None and snapshot is not None:
            folded_ids = list(folded)
            for start in range(0, len(folded_ids), 5000):
                LiveVector.objects.filter(item_id__in=folded_ids[start:start + 5000], created__lte=snapshot).delete()


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
    set_progress(_int_or_none(job_id), "snapshot: the catalog's visible items and the vectors to reuse")
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
        text_vectors, text_mask = reusable_text_vectors(item_ids, text_version) if reuse else (None, None)
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
    if _int_or_none(job_id) is not None:  # the snapshot's counts, shown while the rest runs
        Job.objects.filter(pk=job_id).update(
            stage=f"embedding: 0 of {len(chunks)} chunks done", done=0, total=len(todo), heartbeat=timezone.now(),
            result={"items": len(item_ids), "reused": int(mask.sum()), "embedded": len(todo), "chunks": len(chunks)})
    return chunks


def embed_chunk(job_id: int | str, index: int, item_ids: Sequence[int]) -> int:
    """Embed one chunk into ``chunk-<index>.npy``; a retry of a finished chunk does nothing."""
    path = job_dir(job_id) / f"chunk-{index}.npy"
    if path.exists():
        return 0
    plan = json.loads((job_dir(job_id) / "plan.json").read_text())
    spaces = ("image", "text") if plan.get("text_model") else ("image",)
    vectors = embed_items(list(item_ids), on_batch=lambda n: add_progress(_int_or_none(job_id), n), spaces=spaces)
    if "text" in vectors:  # written first: the image file marks the chunk as done
        _save_npy(job_dir(job_id) / f"chunk-{index}.text.npy", vectors["text"])
    _save_npy(path, vectors["image"])
    if _int_or_none(job_id) is not None:
        chunks_embedded(job_id, job_dir(job_id), plan["chunks"])
    return len(item_ids)


def chunks_complete(job_id: int | str) -> bool:
    """True once every chunk of the job's plan has its vectors on disk (and the job is not cleaned up yet).

    Each chunk task asks this after writing its own file, so the last one to finish sees them all and
    starts the build. Files, not Celery's chord counter: a worker killed between storing a chunk's
    result and counting it into the chord (Celery 5.7 then acks the task as succeeded) left the chord
    one short forever, and the job RUNNING until it went stale.
    """
    directory = job_dir(job_id)
    try:
        plan = json.loads((directory / "plan.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False  # already built and cleaned up, or never planned
    return all((directory / f"chunk-{i}.npy").exists() for i in range(plan["chunks"]))


def claim_build(job_id: int | str, token: str) -> bool:
    """One builder per job: the first finish task to claim it wins, and so does its own redelivery.

    Several chunk tasks may each see the plan complete and ask for a build; the claim file (written
    whole, then linked into place, so it never exists empty) holds the winner's task id. A task
    redelivered after its worker died carries the same id and may build again; any other gets False.
    """
    path = job_dir(job_id) / "build.claim"
    tmp = path.with_name(f"build.claim.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(token)
    except FileNotFoundError:
        return False  # the job directory is gone: built and cleaned up
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return path.read_text() == token
    finally:
        tmp.unlink(missing_ok=True)


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
    job_pk = _int_or_none(job_id)
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


def _int_or_none(job_id):
    return job_id if isinstance(job_id, int) else None


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


def add_live_item(item: Item) -> LiveVector:
    """Make ``item`` searchable now: embed its image into the live buffer (replacing an older vector).

    Runs the encoder where queries run (an inference worker when SEARCH_IN_WORKERS, else here).
    Raises ``search.images.ImageInputError`` for an unreadable image and ``SearchUnavailable``
    when the workers cannot be reached."""
    from webapp.encoding import encode_with_version

    data = Path(item.image_path).read_bytes()
    encoded, encoder_version = encode_with_version(data, "photo")
    text_vector, text_version = None, ""
    active = active_version()
    if active is not None and "text" in active.manifest.get("spaces", {}):  # words search a space of their own
        from search.trained import ModelMissingError

        try:
            text, text_version = encode_with_version(data, "photo_text")
            text_vector = np.ascontiguousarray(text.vector, np.float32).tobytes()
        except ModelMissingError as exc:  # still found by picture now, by words after the next reindex
            log.warning("item %s: no text-space vector for the live buffer: %s", item.pk, exc)
    live, _ = LiveVector.objects.update_or_create(
        item=item, defaults={"vector": np.ascontiguousarray(encoded.vector, np.float32).tobytes(),
                             "encoder_version": encoder_version, "text_vector": text_vector,
                             "text_version": text_version})
    return live


def start_reindex(reuse: bool = True, shards: int | None = None) -> tuple[Job, bool]:
    """Ask the index workers for a reindex (the task ``workers.reindex``, sent by name); returns (job, created).
    A pending/running one is reused, never doubled. If the broker cannot take the task, the job is marked
    failed and the error raised."""
    from webapp.celery_app import send

    job, created = request_reindex()
    if created:
        try:
            send("workers.reindex", (job.pk, reuse, shards), queue=settings.CELERY_INDEX_QUEUE)
        except Exception as exc:
            fail_job(job.pk, f"the task broker cannot be reached: {exc}")
            raise
    return job, created
