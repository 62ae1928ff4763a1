"""A real server on loopback for the HTTP sections, and a small multipart client (stdlib only).

The server is gunicorn on ``webapp.wsgi`` with production-like settings
(``DEBUG=0``), bound to 127.0.0.1 on a free port; it is stopped (SIGTERM, then
SIGKILL) when the ``with`` block ends. Traffic never leaves the machine.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.common import REPO, free_port

HOST = "127.0.0.1"


@dataclass
class Server:
    port: int
    process: subprocess.Popen
    workers: int
    torch_threads: int
    log: Path

    def worker_pids(self) -> list[int]:
        """The gunicorn worker processes (children of the master)."""
        import psutil

        return [c.pid for c in psutil.Process(self.process.pid).children()]


def server_env(extra: dict[str, str] | None = None, torch_threads: int = 0) -> dict[str, str]:
    env = os.environ.copy()
    env.update({"DEBUG": "0", "SECRET_KEY": "bench-only-" + uuid.uuid4().hex, "SECURE_SSL_REDIRECT": "0",
                "ALLOWED_HOSTS": "127.0.0.1,localhost", "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
                # Every bench client is 127.0.0.1: the per-IP rate limiter would measure itself, not the server.
                "SEARCH_RATE_LIMIT": "0"})
    if torch_threads:
        env["TORCH_THREADS"] = str(torch_threads)
    env.update(extra or {})
    return env


@contextmanager
def running_server(workers: int, torch_threads: int, extra_env: dict[str, str] | None = None,
                   log_dir: Path | None = None, ready_timeout: float = 120.0):
    port = free_port()
    log = Path(log_dir or REPO / "bench") / "server.log"
    cmd = [sys.executable, "-m", "gunicorn", "webapp.wsgi:application", "--bind", f"{HOST}:{port}",
           "--workers", str(workers), "--timeout", "300", "--graceful-timeout", "5", "--backlog", "256"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=server_env(extra_env, torch_threads), stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(port, proc, workers, torch_threads, log)
    try:
        wait_ready(server, ready_timeout)
        yield server
    finally:
        stop(proc)


def wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited ({server.process.returncode}); see {server.log}")
        try:
            status, _ = request(server.port, "GET", "/api/health", timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer within {timeout:g} s; see {server.log}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)  # gunicorn's master stops its workers
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the master and its workers only
        proc.wait(timeout=5)


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    boundary = "bench" + uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data, ctype) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def request(port: int, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
            timeout: float = 60.0, conn: http.client.HTTPConnection | None = None) -> tuple[int, dict | None]:
    """One request; returns (status, JSON body or None). Reuses ``conn`` when given (keep-alive)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": content_type} if content_type else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        return resp.status, data
    finally:
        if own:
            conn.close()
