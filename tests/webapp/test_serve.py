"""``manage.py serve`` stops with its worker: SIGTERM (how systemd, ``docker stop`` and supervisors stop a process)
and SIGINT leave no process of its group behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def members(group: int) -> list[psutil.Process]:
    """The live processes of a process group (zombies are dead already)."""
    found = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == group and process.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return found


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as res:
            return res.status == 200
    except OSError:
        return False


def wait_until(condition, limit: float, what: str):
    """Poll ``condition`` until it holds; ``limit`` only guards against a hang (it is no speed target)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_serve_stops_the_server_and_its_worker(tmp_path, signum):
    env = {**os.environ, "VAR_DIR": str(tmp_path / "var"), "ARTIFACTS_DIR": str(tmp_path / "artifacts"),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    env.pop("REDIS_URL", None)  # the embedded filesystem broker, as `make demo` runs it
    log = tmp_path / "serve.log"
    port = free_port()
    with log.open("wb") as out:  # a group of its own: everything serve starts is in it
        serve = subprocess.Popen([sys.executable, "manage.py", "serve", f"127.0.0.1:{port}"], cwd=ROOT, env=env,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    group = serve.pid
    try:
        wait_until(lambda: serve.poll() is None and "ready." in log.read_text(errors="replace")
                   and answers(f"http://127.0.0.1:{port}/api/health"), 240, "the server and its worker")
        children = psutil.Process(serve.pid).children(recursive=True)
        assert any("celery" in " ".join(p.cmdline()) for p in children), [p.cmdline() for p in children]
        assert len(members(group)) >= 3  # serve, the worker and the worker's pool process

        os.kill(serve.pid, signum)
        serve.wait(timeout=120)
        wait_until(lambda: not members(group), 60, "every process of the group to stop")
    finally:
        try:
            os.killpg(group, signal.SIGKILL)  # what a failed run left behind
        except ProcessLookupError:
            pass
        if serve.poll() is None:
            serve.wait(timeout=10)
