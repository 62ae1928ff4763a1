"""Index versions: build one to a new folder, switch to it in one transaction, prune the old ones."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Sequence
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from search.index import build_index
from search.lexical import TitleIndex
from webapp.indexing import jobs
from webapp.models import IndexEntry, IndexVersion, Item, LiveVector
from webapp.services import get_models


def build_version(item_ids: list[int], spaces: dict[str, np.ndarray], *, job_id: int | None = None,
                  shards: int = 1, snapshot: datetime | None = None, text_model: str | None = None) -> IndexVersion:
    """Write the index files, the version row and its id mapping; then switch in one transaction."""
    models = get_models()
    name = timezone.now().strftime("v%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    directory = settings.ARTIFACTS_DIR / "indexes" / name
    encoder_version = models.encoder().version
    jobs.set_stage(job_id, f"build: the {settings.INDEX_BACKEND} index of {len(item_ids):,} vectors")
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
    jobs.set_stage(job_id, "build: the title index")
    titles = dict(Item.objects.values_list("pk", "title").iterator(chunk_size=10000))
    TitleIndex.build([titles.get(pk, "") for pk in item_ids]).save(directory)
    jobs.set_stage(job_id, "build: the id mapping")
    IndexEntry.objects.bulk_create(
        (IndexEntry(version=version, annoy_id=i, item_id=pk) for i, pk in enumerate(item_ids)), batch_size=5000)
    jobs.set_stage(job_id, f"switch: to {name}")
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
