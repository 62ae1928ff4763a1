"""The deployed configuration, run for real (issue 20): the commands of docker-compose.yml's web and worker services,
with DEBUG=0, a fresh PostgreSQL database, a Redis of the test's own, real Celery worker processes and gunicorn on
a free port, followed by the operator's steps of docs/deploy.md (import, reindex, a staff user and a token).

Requests are sent as the TLS proxy (Caddy) forwards them: Host is the site's name, X-Forwarded-Proto https. The
probes are sent as the container healthcheck sends them: plain HTTP to 127.0.0.1. Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import yaml

from tests.conftest import COLOURS, draw_item, jpeg_bytes
from tests.workers.conftest import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
POSTGRES_URL = os.environ.get("POSTGRES_TEST_URL", "postgres://postgres@127.0.0.1:5432/postgres")
SITE = "shop.example.com"
PROXIED = {"Host": SITE, "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}


def postgres_or_skip():
    psycopg = pytest.importorskip("psycopg")
    try:
        return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is unreachable ({exc}); set POSTGRES_TEST_URL")


@pytest.fixture
def database():
    """A fresh PostgreSQL database of this test's own; dropped afterwards."""
    admin = postgres_or_skip()
    name = f"sketch_deployed_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    yield urlsplit(POSTGRES_URL)._replace(path=f"/{name}").geturl()
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def shell_command(service: str, port: int) -> str:
    """The service's compose command as a shell line for this machine: this Python, a free port, 2 cores."""
    command = COMPOSE["services"][service]["command"]
    if command.startswith("sh -c "):
        command = shlex.split(command)[2]
    py = shlex.quote(sys.executable)
    command = command.replace("${WEB_WORKERS:-3}", "2").replace("${INDEX_CONCURRENCY:-2}", "1")
    command = command.replace("0.0.0.0:8000", f"127.0.0.1:{port}")
    command = re.sub(r"(^|&& )python ", rf"\1{py} ", command)
    command = re.sub(r"(^|&& )(gunicorn|celery) ", rf"\1{py} -m \2 ", command)
    return command


class Deployment:
    def __init__(self, root: Path, env: dict[str, str]):
        self.root, self.env = root, env
        self.procs: dict[str, subprocess.Popen] = {}
        self.port = free_port()

    def start(self, service: str, extra_env: dict[str, str] | None = None) -> None:
        env = {**self.env, **{k: str(v) for k, v in COMPOSE["services"][service].get("environment", {}).items()
                              if k in ("SEARCH_IN_WORKERS", "TRUSTED_PROXIES", "TORCH_THREADS")}, **(extra_env or {})}
        log = open(self.root / f"{service}.log", "wb")
        self.procs[service] = subprocess.Popen(["sh", "-c", shell_command(service, self.port)], cwd=ROOT, env=env,
                                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self, service: str) -> str:
        return (self.root / f"{service}.log").read_text(errors="replace")[-4000:]

    def manage(self, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
        out = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**self.env, **(env or {})},
                             capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0, f"manage.py {' '.join(args)}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
        return out.stdout

    def wait(self, what: str, check, service: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[service].poll() is not None:
                raise AssertionError(f"{service} exited:\n{self.log(service)}")
            try:
                if check():
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log(service)}")

    def request(self, method: str, path: str, headers: dict | None = None, body: bytes | None = None,
                timeout: float = 60) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            res = conn.getresponse()
            return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
        finally:
            conn.close()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def deployment(tmp_path, database, synthetic_catalog, trained_models_dir):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    pytest.importorskip("gunicorn")
    redis = RedisServer(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    redis.start()
    data = tmp_path / "data"
    shutil.copytree(trained_models_dir, data / "artifacts" / "models")
    app_env = COMPOSE["x-app"]["environment"]
    # What compose gives every app container, with this machine's places for the database, Redis and volumes,
    # and what an operator puts in .env.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))}
    env.update({k: str(v) for k, v in app_env.items()})
    env.update(DATABASE_URL=database, REDIS_URL=redis.url, ARTIFACTS_DIR=str(data / "artifacts"),
               MEDIA_ROOT=str(data / "media"), VAR_DIR=str(data / "var"), CATALOG_DIR=str(synthetic_catalog),
               SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS=SITE, DJANGO_SETTINGS_MODULE="webapp.settings",
               PYTHONUNBUFFERED="1", TORCH_THREADS="1")
    assert env["DEBUG"] == "0"
    deployed = Deployment(tmp_path, env)
    try:
        yield deployed
    finally:
        deployed.stop()
        redis.stop()


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
              f"Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n" for k, (name, data) in files.items()]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_the_deployed_configuration_serves_pages_search_health_and_token_uploads(deployment):
    d = deployment
    # Compose's web command (migrate, collectstatic, gunicorn), then its two workers.
    d.start("web")
    d.wait("gunicorn to answer /healthz", lambda: d.request("GET", "/healthz")[0] == 200, "web")
    d.start("worker-inference")
    d.start("worker-index")
    for name in ("worker-inference", "worker-index"):
        d.wait(f"{name} to be ready", lambda n=name: " ready." in d.log(n), name, timeout=120)

    # The operator's steps (docs/deploy.md): the catalog, the index through the index worker, a staff user, a token.
    d.manage("import_catalog", d.env["CATALOG_DIR"])
    out = d.manage("reindex")
    assert "on the 'index' workers" in out, out  # through the index worker, not in this process
    d.manage("createsuperuser", "--noinput", "--username", "ops", "--email", "ops@example.com",
             env={"DJANGO_SUPERUSER_PASSWORD": secrets.token_urlsafe(16)})
    token = d.manage("create_token", "ops", "--name", "deploy test").strip()

    # The health checks: compose's own healthcheck command, then readiness.
    probe = COMPOSE["services"]["web"]["healthcheck"]["test"]
    assert probe[:2] == ["CMD", "python"]
    check = subprocess.run([sys.executable, *[a.replace("127.0.0.1:8000", f"127.0.0.1:{d.port}") for a in probe[2:]]],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    status, _, body = d.request("GET", "/readyz")
    ready = json.loads(body)
    assert status == 200, ready
    assert ready["checks"]["database"]["vendor"] == "postgresql" and ready["checks"]["index"]["items"] == 160
    assert ready["checks"]["broker"]["transport"] == "redis" and ready["checks"]["inference_worker"]["ok"]

    # A page and its CSS and JS, as the browser gets them through the proxy; plain HTTP is sent to HTTPS.
    status, headers, _ = d.request("GET", "/", {"Host": SITE})
    assert status == 301 and headers["location"] == f"https://{SITE}/"
    status, headers, body = d.request("GET", "/", PROXIED)
    assert status == 200 and "strict-transport-security" in headers
    html = body.decode()
    assets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', html) + re.findall(r'<script src="([^"]+)"', html)
    names = {re.sub(r"\.[0-9a-f]{12}(?=\.(css|js)$)", "", a) for a in assets}
    assert {"/static/css/app.css", "/static/js/sketch.js", "/static/js/heatmap.js"} <= names, assets
    for url in assets:
        status, headers, body = d.request("GET", url, {**PROXIED, "Accept-Encoding": "gzip"})
        assert status == 200 and body, url
        assert headers["content-type"].startswith("text/css" if url.endswith(".css") else "text/javascript")
        assert "immutable" in headers["cache-control"]

    # A search: the models run in the inference worker.
    photo = jpeg_bytes(draw_item("Watches", COLOURS["Blue"], np.random.default_rng(11)))
    body, ctype = multipart({"k": "5"}, {"photo": ("q.jpg", photo)})
    status, _, raw = d.request("POST", "/api/search", {**PROXIED, "Content-Type": ctype}, body)
    found = json.loads(raw)
    assert status == 200, found
    assert len(found["results"]) == 5 and "queue" in found["timings_ms"]
    assert found["results"][0]["url"].startswith(f"https://{SITE}/items/")

    # An upload with the token (no session, no CSRF token: a script's request), then a wrong token.
    new = jpeg_bytes(draw_item("Handbags", COLOURS["Red"], np.random.default_rng(12)))
    body, ctype = multipart({"title": "Acme Women Red Handbags 900"}, {"image": ("bag.jpg", new)})
    status, _, raw = d.request("POST", "/api/items", {**PROXIED, "Content-Type": ctype,
                                                      "Authorization": f"Bearer {token}"}, body)
    created = json.loads(raw)
    assert status == 201, created
    item = created["item"]
    status, headers, _ = d.request("GET", urlsplit(item["image_url"]).path, PROXIED)
    assert status == 200 and headers["content-type"] == "image/jpeg"
    body, ctype = multipart({"k": "3"}, {"photo": ("q.jpg", new)})
    status, _, raw = d.request("POST", "/api/search", {**PROXIED, "Content-Type": ctype}, body)
    assert status == 200 and item["id"] in [r["id"] for r in json.loads(raw)["results"]]  # searchable at once
    body, ctype = multipart({"title": "x"}, {"image": ("bag.jpg", new)})
    status, _, raw = d.request("POST", "/api/items", {**PROXIED, "Content-Type": ctype,
                                                      "Authorization": "Bearer wrong"}, body)
    assert status == 401 and "not valid" in json.loads(raw)["error"]

    assert all(p.poll() is None for p in d.procs.values()), {n: d.log(n) for n, p in d.procs.items() if p.poll()}
