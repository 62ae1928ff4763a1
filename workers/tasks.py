"""Thin Celery tasks, and the one function the web app calls to encode a query.

Models load lazily inside the worker child (``webapp.services.get_models``),
never at import time or in the worker's parent process. Queue names are read
from settings when a task is sent: ``CELERY_INFERENCE_QUEUE`` for query
encoding and live additions, ``CELERY_INDEX_QUEUE`` for reindex work.
"""

from __future__ import annotations

import base64
import logging
import time

import numpy as np
from celery import group, shared_task
from celery.exceptions import TimeoutError as CeleryTimeoutError
from django.conf import settings
from django.db import InterfaceError, OperationalError

from search.engine import Encoded, timed

log = logging.getLogger(__name__)
QUERY_KINDS = ("photo", "sketch", "photo_text")  # photo_text: a catalog photo into the text model's joint space


# ---- interactive queries -------------------------------------------------------------------------------------------

def decode_query(data: bytes, kind: str) -> tuple[np.ndarray, dict[str, float]]:
    """Upload bytes -> the array the models take (photo uint8 (80, 60, 3), sketch uint8 (80, 60)).

    Cheap and torch-free, so it runs in the web process: a bad upload fails here with
    ``search.images.ImageInputError`` (HTTP 400) without a round trip to a worker."""
    from search.images import decode_image, fit_to_model

    if kind not in QUERY_KINDS:
        raise ValueError(f"kind must be one of {', '.join(QUERY_KINDS)}")
    timings: dict[str, float] = {}
    limits = {"max_bytes": settings.UPLOAD_MAX_BYTES, "max_pixels": settings.UPLOAD_MAX_PIXELS}
    if kind in ("photo", "photo_text"):
        with timed(timings, "decode"):
            return fit_to_model(decode_image(data, **limits)), timings
    from search.sketches import normalise_sketch

    with timed(timings, "decode"):
        img = decode_image(data, keep_alpha=True, **limits)
    with timed(timings, "normalise"):
        return normalise_sketch(img), timings


def run_models(array: np.ndarray, kind: str, road: str) -> tuple[Encoded, str]:
    """The model part of a query, in this process: (encoded, version of the model that made the vector)."""
    from webapp.services import get_models

    models = get_models()
    if kind == "photo_text":
        return models.encode_photo_text_space(array), models.version("text")
    encoded = models.encode_photo(array) if kind == "photo" else models.encode_sketch(array, road)
    return encoded, models.version("encoder")


def _pack(array: np.ndarray) -> dict:
    return {"dtype": str(array.dtype), "shape": list(array.shape),
            "data": base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()}


def _unpack(packed: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(packed["data"]), dtype=packed["dtype"]).reshape(packed["shape"])


@shared_task(name="workers.encode_query", acks_late=False)
def encode_query_task(packed: dict, kind: str, road: str) -> dict:
    """Worker side of ``encode_query``: a decoded query array in, its vector (and GAN image) out.

    Not acks_late: a query nobody waits for any more must not be run again after a crash."""
    encoded, encoder_version = run_models(_unpack(packed), kind, road)
    return {"vector": _pack(np.asarray(encoded.vector, np.float32)), "space": encoded.space,
            "timings_ms": encoded.timings_ms, "encoder_version": encoder_version,
            "generated": _pack(encoded.generated) if encoded.generated is not None else None,
            "categories": encoded.categories, "neighbour_vote": encoded.neighbour_vote}


def encode_with_version(data: bytes, kind: str, road: str = "", *, in_workers: bool | None = None,
                        timeout: float | None = None) -> tuple[Encoded, str]:
    """``encode_query`` that also returns the encoder version that produced the vector."""
    array, timings = decode_query(data, kind)
    road = road or settings.SKETCH_ROAD
    if not (settings.SEARCH_IN_WORKERS if in_workers is None else in_workers):
        encoded, version = run_models(array, kind, road)
        encoded.timings_ms = {**timings, **encoded.timings_ms}
        return encoded, version
    from webapp.services import SearchUnavailable

    timeout = settings.SEARCH_WORKER_TIMEOUT if timeout is None else timeout
    started = time.perf_counter()
    try:
        async_result = encode_query_task.apply_async((_pack(array), kind, road), queue=settings.CELERY_INFERENCE_QUEUE,
                                                     expires=timeout)
        out = async_result.get(timeout=timeout, interval=0.01, propagate=True, disable_sync_subtasks=False)
    except (TimeoutError, CeleryTimeoutError):
        raise SearchUnavailable(f"no search worker answered within {timeout:g} s: start a worker on the "
                                f"'{settings.CELERY_INFERENCE_QUEUE}' queue") from None
    except Exception as exc:  # broker or result store unreachable (kombu, redis-py and socket errors)
        if is_connection_error(exc):
            reason = exc.__cause__ if isinstance(exc, RuntimeError) else exc
            raise SearchUnavailable(f"the task broker or result store cannot be reached ({type(reason).__name__}: "
                                    f"{reason}); try again in a moment") from None
        raise
    wall = (time.perf_counter() - started) * 1000.0
    worker_ms = sum(out["timings_ms"].values())
    generated = _unpack(out["generated"]) if out["generated"] else None
    encoded = Encoded(_unpack(out["vector"]), out["space"],
                      {**timings, **out["timings_ms"], "queue": max(wall - worker_ms, 0.0)}, generated,
                      out.get("categories"), bool(out.get("neighbour_vote")))
    return encoded, out["encoder_version"]


def encode_query(data: bytes, kind: str, road: str = "", *, in_workers: bool | None = None,
                 timeout: float | None = None) -> Encoded:
    """Upload bytes of a ``photo`` or ``sketch`` -> ``Encoded`` (vector, space, timings, GAN image).

    The one call the query path makes. Decoding runs here; the models run in an inference worker
    when ``SEARCH_IN_WORKERS`` (waiting at most ``SEARCH_WORKER_TIMEOUT`` s; ``timings_ms["queue"]``
    is the round trip's overhead), else in this process. Raises ``search.images.ImageInputError``
    for a bad upload (400), ``webapp.services.SearchUnavailable`` when no worker or broker answers
    (503) and ``search.engine.ModelMissingError`` when a model is not trained (503)."""
    return encode_with_version(data, kind, road, in_workers=in_workers, timeout=timeout)[0]


def is_connection_error(exc: BaseException) -> bool:
    """A broker or result store that cannot be reached, including Celery's RuntimeError "the Celery application
    must be restarted", raised from a connection error once the result store gave up reconnecting (it does
    reconnect on the next call: no restart needed)."""
    import kombu.exceptions

    try:
        import redis.exceptions as redis_errors

        redis_types: tuple = (redis_errors.ConnectionError, redis_errors.TimeoutError)
    except ImportError:  # pragma: no cover - redis-py is a requirement
        redis_types = ()
    connection_errors = (kombu.exceptions.OperationalError, ConnectionError, OSError, *redis_types)
    if isinstance(exc, RuntimeError) and isinstance(exc.__cause__, connection_errors):
        return True
    return isinstance(exc, connection_errors)


@shared_task(name="workers.echo", acks_late=False)
def echo(value):
    """A round trip through broker, worker and result backend (tests, latency figures)."""
    return value


# ---- reindex -------------------------------------------------------------------------------------------------------

TRANSIENT = (OperationalError, InterfaceError, ConnectionError)


@shared_task(name="workers.reindex", acks_late=True)
def reindex_task(job_id: int, reuse: bool = True, shards: int | None = None) -> dict:
    """Claim the job, plan it, and fan the chunks out as a group; the last chunk to finish starts the build."""
    from webapp.indexing import claim, fail_job, plan_reindex

    if not claim(job_id):
        log.info("reindex job %s already claimed or gone", job_id)
        return {"skipped": True}
    try:
        chunks = plan_reindex(job_id, reuse=reuse)
    except Exception as exc:
        log.exception("reindex %s failed while planning", job_id)
        fail_job(job_id, str(exc))
        return {"failed": str(exc)}
    queue = settings.CELERY_INDEX_QUEUE
    if chunks:
        group(embed_chunk_task.si(job_id, i, chunk, shards).set(queue=queue)
              for i, chunk in enumerate(chunks)).apply_async()
    else:
        finish_reindex_task.apply_async((job_id, shards), queue=queue)
    return {"chunks": len(chunks)}


def _reindex_step(task, job_id: int, what: str, run):
    """Run one step of a reindex: a transient database or broker error is retried with backoff (a retry keeps
    the task id), then fails the job; any other error fails the job at once, with the reason."""
    from webapp.indexing import fail_job

    try:
        return run()
    except TRANSIENT as exc:
        if task.request.retries < task.max_retries:
            raise task.retry(exc=exc, countdown=2 ** task.request.retries) from exc
        fail_job(job_id, f"{what} failed {task.max_retries + 1} times: {type(exc).__name__}: {exc}")
        raise
    except Exception as exc:
        log.exception("reindex %s: %s failed", job_id, what)
        fail_job(job_id, f"{what} failed: {type(exc).__name__}: {exc}")
        raise


def _job_running(job_id: int) -> bool:
    from webapp.models import Job

    return Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).exists()


@shared_task(name="workers.embed_chunk", bind=True, acks_late=True, max_retries=3)
def embed_chunk_task(self, job_id: int, index: int, item_ids: list[int], shards: int | None = None) -> int:
    """Embed one chunk; the chunk that completes the plan (or its redelivery) asks for the build.
    A chunk that fails for good fails the job (the active index keeps serving)."""
    from webapp.indexing import chunks_complete, embed_chunk

    if not _job_running(job_id):
        return 0  # failed meanwhile (another chunk, or stale): nothing to add to
    embedded = _reindex_step(self, job_id, f"chunk {index}", lambda: embed_chunk(job_id, index, item_ids))
    if chunks_complete(job_id):
        finish_reindex_task.apply_async((job_id, shards), queue=settings.CELERY_INDEX_QUEUE)
    return embedded


@shared_task(name="workers.finish_reindex", bind=True, acks_late=True, max_retries=3)
def finish_reindex_task(self, job_id: int, shards: int | None = None) -> dict:
    """Build and switch. Asked for by every chunk that saw the plan complete; one of them builds."""
    from webapp.indexing import claim_build, finish_reindex
    from webapp.models import Job

    if not _job_running(job_id) or not claim_build(job_id, self.request.id or "local"):
        return {"skipped": True}  # failed meanwhile, already built, or another task builds it
    _reindex_step(self, job_id, "the build", lambda: finish_reindex(job_id, shards=shards))
    return Job.objects.get(pk=job_id).result


def start_reindex(reuse: bool = True, shards: int | None = None):
    """Ask for a reindex through the index workers; returns (job, created). A pending/running one is
    reused, never doubled. If the broker cannot take the task, the job is marked failed and the
    error raised."""
    from webapp.indexing import fail_job, request_reindex

    job, created = request_reindex()
    if created:
        try:
            reindex_task.apply_async((job.pk, reuse, shards), queue=settings.CELERY_INDEX_QUEUE)
        except Exception as exc:
            fail_job(job.pk, f"the task broker cannot be reached: {exc}")
            raise
    return job, created
