"""Queries through the inference queue: a real worker process, a real Redis, real tiny models."""

import time

import numpy as np
import pytest

from tests.conftest import COLOURS, draw_item, jpeg_bytes

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_round_trip_and_search_through_a_worker(workers, searchable, settings, client):
    from webapp.encoding import encode_query
    from workers.tasks import echo

    workers.start("infer", [settings.CELERY_INFERENCE_QUEUE, settings.CELERY_INDEX_QUEUE])
    assert echo.apply_async(({"x": [1, 2]},), queue=settings.CELERY_INFERENCE_QUEUE).get(timeout=20) == {"x": [1, 2]}

    photo = jpeg_bytes(draw_item("Watches", COLOURS["Blue"], np.random.default_rng(5)))
    local = encode_query(photo, "photo", in_workers=False)
    remote = encode_query(photo, "photo", in_workers=True)
    np.testing.assert_allclose(remote.vector, local.vector, atol=1e-5)
    assert "queue" in remote.timings_ms and "encoder" in remote.timings_ms
    assert remote.categories and list(remote.categories) == list(local.categories)  # re-ranking travels too
    assert remote.categories == pytest.approx(local.categories, abs=1e-5)

    # The query path with SEARCH_IN_WORKERS: the same hits as in-process.
    settings.SEARCH_IN_WORKERS = True
    assert [h.item.category for h in search(photo).hits].count("Watches") >= 3

    # Round-trip figures for the report (printed with -s).
    def best(fn, n=15):
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
        return float(np.median(times))

    echo_ms = best(lambda: echo.apply_async((1,), queue=settings.CELERY_INFERENCE_QUEUE).get(timeout=10))
    local_ms = best(lambda: encode_query(photo, "photo", in_workers=False))
    remote_ms = best(lambda: encode_query(photo, "photo", in_workers=True))
    print(f"\n[redis] echo round trip {echo_ms:.1f} ms; encode photo in-process {local_ms:.1f} ms, "
          f"through worker {remote_ms:.1f} ms (added {remote_ms - local_ms:.1f} ms)")


def test_bad_upload_fails_before_any_round_trip(celery_redis, settings):
    from search.images import ImageInputError
    from webapp.encoding import encode_query

    with pytest.raises(ImageInputError):
        encode_query(b"not an image", "photo", in_workers=True, timeout=1)


def test_no_worker_answers_unavailable(celery_redis, searchable, settings):
    from webapp.services import SearchUnavailable

    settings.SEARCH_IN_WORKERS = True
    settings.SEARCH_WORKER_TIMEOUT = 1.0
    photo = jpeg_bytes(draw_item("Watches", COLOURS["Red"], np.random.default_rng(6)))
    started = time.monotonic()
    with pytest.raises(SearchUnavailable, match="no search worker answered"):
        search(photo)
    assert time.monotonic() - started < 5


def search(photo: bytes):
    """What webapp/queries.py does for a photo: encode (in a worker or here), then search."""
    from webapp.encoding import encode_query
    from webapp.services import search_vector

    return search_vector(encode_query(photo, "photo"), 5)

