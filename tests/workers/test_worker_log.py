"""The inference worker logs one line per task, with its timing, and never a task's result (a query's result is its
vector in base64)."""

import re

import numpy as np
import pytest

from tests.conftest import COLOURS, draw_item, jpeg_bytes
from tests.workers.conftest import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_one_line_per_task_with_its_timing_and_no_vectors(workers, searchable, settings):
    from webapp.encoding import encode_query

    workers.start("infer", [settings.CELERY_INFERENCE_QUEUE])
    photo = jpeg_bytes(draw_item("Watches", COLOURS["Blue"], np.random.default_rng(5)))
    for _ in range(3):
        encode_query(photo, "photo", in_workers=True, timeout=30)

    def task_lines():
        return [line for line in workers.log("infer").splitlines() if "Task workers.encode_query[" in line]

    wait_for(lambda: len(task_lines()) >= 3, timeout=10, what="the worker's log lines")
    lines = task_lines()
    assert len(lines) == 3, lines
    for line in lines:
        assert re.search(r"Task workers\.encode_query\[[0-9a-f-]{36}\] succeeded in \d+\.\d+s$", line), line
    log = workers.log("infer")
    assert "'vector'" not in log and "'data'" not in log and max(map(len, log.splitlines())) < 400
