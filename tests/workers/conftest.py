"""Real Celery workers for the tests: subprocesses on a real Redis, seeing the test database.

Worker processes read everything from environment variables (DATABASE_URL, ARTIFACTS_DIR,
REDIS_URL, queue names), exactly as in a deployment. So that they can see what a test
writes, the SQLite test database is a file (not SQLite's default in-memory one) and the
tests that start workers use ``django_db(transaction=True)``; with DATABASE_URL set to
PostgreSQL the workers open the same ``test_...`` database. Queue names are unique per
test, so workers of other people using the same Redis never take our tasks.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connections

ROOT = Path(__file__).resolve().parents[2]
REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/0")

_db = connections["default"].settings_dict
if _db["ENGINE"].endswith("sqlite3") and not (_db.get("TEST") or {}).get("NAME"):
    _db.setdefault("TEST", {})["NAME"] = os.path.join(tempfile.mkdtemp(prefix="sketch-test-db-"), "test.sqlite3")


def redis_reachable(url: str) -> str | None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
        return None
    except Exception as exc:  # any failure means: skip
        return f"Redis at {url} is unreachable ({exc}); set REDIS_TEST_URL or start redis-server"


def database_url() -> str:
    """The URL of the database this test process uses, for worker subprocesses."""
    conn = connections["default"].settings_dict
    if conn["ENGINE"].endswith("sqlite3"):
        name = str(conn["NAME"])
        if name.startswith("file:") or name == ":memory:":
            pytest.skip("worker tests need a file SQLite database or PostgreSQL")
        return f"sqlite:///{name}"
    user = quote(conn.get("USER") or "")
    password = f":{quote(conn['PASSWORD'])}" if conn.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{conn.get('HOST') or '127.0.0.1'}:{conn.get('PORT') or 5432}/{conn['NAME']}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def use_broker(app, url: str, inference: str, index: str, results: str | None = None) -> None:
    """Point this process's Celery app at ``url`` (results at ``results``, default the same) and fresh queues,
    with the Redis options a deployment has (``settings.REDIS_*_OPTIONS``); the app caches connections."""
    from django.conf import settings

    app.conf.update(broker_url=url, result_backend=results or url, task_default_queue=index,
                    broker_transport_options=dict(settings.REDIS_BROKER_OPTIONS),
                    result_backend_transport_options=dict(settings.REDIS_RESULT_OPTIONS),
                    redis_socket_connect_timeout=settings.REDIS_RESULT_OPTIONS["socket_connect_timeout"],
                    redis_socket_timeout=settings.REDIS_RESULT_OPTIONS["socket_timeout"],
                    broker_connection_timeout=settings.CELERY_BROKER_CONNECTION_TIMEOUT,
                    task_publish_retry_policy=settings.CELERY_TASK_PUBLISH_RETRY_POLICY,
                    task_routes={"workers.encode_query": {"queue": inference}})
    reset_connections(app)


def reset_connections(app) -> None:
    import kombu.pools

    kombu.pools.reset()  # closes and forgets every cached connection and producer pool
    app._after_fork()  # forgets the connection and producer pools
    app._backend_cache = None
    app._local.__dict__.pop("backend", None)


class Workers:
    """Celery worker subprocesses started by one test; each in its own process group."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, queues: list[str], concurrency: int = 1, wait: bool = True) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")
        node = f"{name}-{uuid.uuid4().hex[:6]}@%h"
        cmd = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", ",".join(queues),
               "-c", str(concurrency), "-P", "prefork", "-n", node, "--without-gossip", "--without-mingle",
               "--loglevel", "INFO"]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = proc
        if wait:
            self.wait_ready(name)
        return proc

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def wait_ready(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log(name):
                return
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"worker {name} exited:\n{self.log(name)[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"worker {name} not ready after {timeout}s:\n{self.log(name)[-3000:]}")

    def children(self, name: str) -> list[int]:
        pid = self.procs[name].pid
        try:
            return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def celery_redis(settings, tmp_path):
    """Settings and this process's Celery app on the test Redis with unique queues; yields worker env."""
    reason = redis_reachable(REDIS_TEST_URL)
    if reason:
        pytest.skip(reason)
    yield from _celery_on(REDIS_TEST_URL, settings, tmp_path)


def _celery_on(url, settings, tmp_path):
    from workers.celery_app import app

    tag = uuid.uuid4().hex[:8]
    inference, index = f"test-inference-{tag}", f"test-index-{tag}"
    settings.REDIS_URL = url
    settings.CELERY_BROKER_URL = settings.CELERY_RESULT_BACKEND = url
    settings.CELERY_INFERENCE_QUEUE, settings.CELERY_INDEX_QUEUE = inference, index
    settings.HEALTH_TIMEOUT = 1.0
    use_broker(app, url, inference, index)
    env = {**os.environ, "REDIS_URL": url, "CELERY_INFERENCE_QUEUE": inference, "CELERY_INDEX_QUEUE": index,
           "DJANGO_SETTINGS_MODULE": "webapp.settings", "TORCH_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    yield {"env": env, "app": app, "url": url, "inference": inference, "index": index, "tmp": tmp_path}
    reset_connections(app)
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        keys = [k for q in (inference, index) for k in client.keys(f"*{q}*")]
        if keys:
            client.delete(*keys)
    except Exception:
        pass


@pytest.fixture
def workers(celery_redis, transactional_db, artifacts, settings):
    """Start workers with ``workers.start(name, queues)``; all stopped after the test."""
    env = {**celery_redis["env"], "DATABASE_URL": database_url(), "ARTIFACTS_DIR": str(artifacts),
           "MEDIA_ROOT": str(settings.MEDIA_ROOT), "REINDEX_CHUNK_SIZE": str(settings.REINDEX_CHUNK_SIZE),
           "INDEX_SHARDS": str(settings.INDEX_SHARDS), "SEARCH_IN_WORKERS": "0"}
    log_dir = celery_redis["tmp"] / "worker-logs"
    log_dir.mkdir()
    group = Workers(env, log_dir)
    yield group
    group.stop_all()


class RedisServer:
    """A private redis-server on a free port, which a test may stop and start again (same port)."""

    def __init__(self, directory: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.proc: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", str(self.directory)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while redis_reachable(self.url) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def redis_servers(tmp_path):
    """Start private redis-servers with ``redis_servers()``; all stopped after the test."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        directory = tmp_path / f"redis-{len(servers)}"
        directory.mkdir()
        servers.append(RedisServer(directory).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def own_redis(redis_servers):
    """One private redis-server on a free port (this test may stop and restart it)."""
    return redis_servers()


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
