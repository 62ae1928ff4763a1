"""Where a query's models run: in this process, or in an inference worker when ``SEARCH_IN_WORKERS``.

Decoding always runs here (cheap and torch-free, so a bad upload is a 400 without a round trip). The
models run ``search.pipeline.encode`` in this process, or the worker task ``workers.encode_query`` runs it
(sent by name: the web never imports ``workers``), waiting at most ``SEARCH_WORKER_TIMEOUT`` s.
"""

from __future__ import annotations

import base64
import time

import numpy as np
from celery.exceptions import TimeoutError as CeleryTimeoutError
from django.conf import settings

from search import pipeline
from search.pipeline import Encoded
from webapp.celery_app import send
from webapp.services import SearchUnavailable, active_version, follow_index, get_models

ENCODE_TASK = "workers.encode_query"


def decode(data: bytes, kind: str) -> tuple[np.ndarray, dict[str, float]]:
    """Upload bytes -> the array the models take, within the upload limits of the settings."""
    return pipeline.decode(data, kind, max_bytes=settings.UPLOAD_MAX_BYTES, max_pixels=settings.UPLOAD_MAX_PIXELS)


FOLLOW_INDEX_EVERY = 1.0  # seconds between a process's looks at which encoder built the active index
_followed = [float("-inf")]


def encode_here(array: np.ndarray, kind: str, road: str) -> tuple[Encoded, str]:
    """The model part of a query in this process: (encoded, version of the model that made the vector).

    At most every ``FOLLOW_INDEX_EVERY`` seconds it first checks that the models in memory are those the
    active index was built with (``services.follow_index``): an inference worker moves to new models with
    the index, without a restart."""
    now = time.monotonic()
    if now - _followed[0] >= FOLLOW_INDEX_EVERY:
        _followed[0] = now
        follow_index(active_version())
    return pipeline.encode(get_models(), array, kind, road, categories=settings.RERANK_WEIGHT > 0)


def pack(array: np.ndarray) -> dict:
    """An array as JSON for a task's arguments or result."""
    return {"dtype": str(array.dtype), "shape": list(array.shape),
            "data": base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()}


def unpack(packed: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(packed["data"]), dtype=packed["dtype"]).reshape(packed["shape"])


def encoded_out(encoded: Encoded, model_version: str) -> dict:
    """The worker's answer (``workers.encode_query``): what ``encode_with_version`` rebuilds an ``Encoded`` from."""
    return {"vector": pack(np.asarray(encoded.vector, np.float32)), "space": encoded.space,
            "timings_ms": encoded.timings_ms, "encoder_version": model_version,
            "generated": pack(encoded.generated) if encoded.generated is not None else None,
            "categories": encoded.categories, "neighbour_vote": encoded.neighbour_vote}


def encode_with_version(data: bytes, kind: str, road: str = "", *, in_workers: bool | None = None,
                        timeout: float | None = None) -> tuple[Encoded, str]:
    """Upload bytes of a ``photo``, ``sketch`` (or ``photo_text``) -> (``Encoded``, the version of the model
    that made the vector).

    Raises ``search.images.ImageInputError`` for a bad upload (400), ``SearchUnavailable`` when no worker or
    broker answers (503) and ``search.trained.ModelMissingError`` when a model is not trained (503). With
    workers, ``timings_ms["queue"]`` is the round trip's overhead."""
    array, timings = decode(data, kind)
    road = road or settings.SKETCH_ROAD
    if not (settings.SEARCH_IN_WORKERS if in_workers is None else in_workers):
        encoded, version = encode_here(array, kind, road)
        encoded.timings_ms = {**timings, **encoded.timings_ms}
        return encoded, version
    timeout = settings.SEARCH_WORKER_TIMEOUT if timeout is None else timeout
    started = time.perf_counter()
    try:
        async_result = send(ENCODE_TASK, (pack(array), kind, road), queue=settings.CELERY_INFERENCE_QUEUE,
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
    generated = unpack(out["generated"]) if out["generated"] else None
    encoded = Encoded(unpack(out["vector"]), out["space"],
                      {**timings, **out["timings_ms"], "queue": max(wall - worker_ms, 0.0)}, generated,
                      out.get("categories"), float(out.get("neighbour_vote") or 0.0))
    return encoded, out["encoder_version"]


def encode_query(data: bytes, kind: str, road: str = "", *, in_workers: bool | None = None,
                 timeout: float | None = None) -> Encoded:
    """``encode_with_version`` without the version: what a search needs."""
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
