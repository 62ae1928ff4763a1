"""Celery workers started by the benchmarks (subprocesses; stopped when the ``with`` block ends)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from bench.common import REPO


@contextmanager
def running_worker(queues: str, concurrency: int, env: dict[str, str], log: Path, ready_timeout: float = 90.0):
    """A Celery worker on ``queues``; yields its Popen once it answers a ping."""
    name = f"bench-{uuid.uuid4().hex[:6]}@%h"
    cmd = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", queues, "--concurrency",
           str(concurrency), "--loglevel", "INFO", "-n", name, "--without-gossip", "--without-mingle"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_worker(proc, env, ready_timeout, log)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def wait_worker(proc: subprocess.Popen, env: dict[str, str], timeout: float, log: Path) -> None:
    """Wait for the worker's "ready." log line (it has connected to the broker and forked its pool)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the Celery worker exited ({proc.returncode}); see {log}")
        if " ready." in log.read_text(errors="replace"):
            return
        time.sleep(0.3)
    raise RuntimeError(f"the Celery worker did not start within {timeout:g} s; see {log}")


def worker_children(proc: subprocess.Popen) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(proc.pid).children()]
