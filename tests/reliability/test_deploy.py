"""Production settings pass ``manage.py check --deploy`` with no warnings; DEBUG=1 defaults still work."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def manage_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DEBUG", "SECRET_KEY", "SECRET_KEY_FILE", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL",
                        "DJANGO_ALLOW_ASYNC_UNSAFE")}  # the browser tests set it for their live server
    env.update(VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="webapp.settings")
    return env


def manage(tmp_path, *args, **env_overrides) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**manage_env(tmp_path), **env_overrides},
                          capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_in_production(tmp_path):
    out = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", DEBUG="0",
                 SECRET_KEY=secrets.token_urlsafe(64), ALLOWED_HOSTS="example.com")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    out = manage(tmp_path, "check", DEBUG="0", ALLOWED_HOSTS="example.com")
    assert out.returncode != 0 and "SECRET_KEY must be set" in out.stderr


def test_production_settings_values(tmp_path):
    code = ("from django.conf import settings as s; print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
            "s.SECURE_HSTS_SECONDS > 0, s.SECURE_CONTENT_TYPE_NOSNIFF, s.X_FRAME_OPTIONS, s.ALLOWED_HOSTS)")
    out = manage(tmp_path, "shell", "-c", code, DEBUG="0", SECRET_KEY=secrets.token_urlsafe(64),
                 ALLOWED_HOSTS="example.com")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False True True True True DENY ['example.com']"


# The WSGI callable gunicorn loads (webapp.wsgi:application), in a process with the production settings, after
# `collectstatic`: each page's stylesheets and scripts, fetched through that same callable as a browser behind
# the TLS proxy would (X-Forwarded-Proto: https, gzip accepted).
WSGI_SCRIPT = """
import json, re, sys
from wsgiref.util import setup_testing_defaults
from webapp.wsgi import application

def get(path):
    environ = {"PATH_INFO": path, "HTTP_HOST": "shop.example.com", "HTTP_X_FORWARDED_PROTO": "https",
               "HTTP_ACCEPT_ENCODING": "gzip"}
    setup_testing_defaults(environ)
    seen = {}
    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)
    body = b"".join(application(environ, start_response))
    return seen["status"], seen["headers"], body

out = {}
for page in sys.argv[1:]:
    status, _, body = get(page)
    html = body.decode()
    assets = re.findall(r'<link[^>]+rel="stylesheet"[^>]+href="([^"]+)"', html)
    assets += re.findall(r'<link[^>]+href="([^"]+)"[^>]+rel="stylesheet"', html)
    assets += re.findall(r'<script[^>]+src="([^"]+)"', html)
    fetched = {}
    for url in assets:
        a_status, headers, a_body = get(url)
        fetched[url] = {"status": a_status, "type": headers.get("Content-Type", ""), "bytes": len(a_body),
                        "encoding": headers.get("Content-Encoding", ""), "cache": headers.get("Cache-Control", "")}
    out[page] = {"status": status, "assets": fetched}
print(json.dumps(out))
"""


def test_pages_css_and_js_are_served_by_the_wsgi_app_with_debug_off(tmp_path):
    import json
    import re

    env = {"DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(64), "ALLOWED_HOSTS": "shop.example.com"}
    for step in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        out = manage(tmp_path, *step, **env)
        assert out.returncode == 0, out.stdout + out.stderr
    run = subprocess.run([sys.executable, "-c", WSGI_SCRIPT, "/", "/admin/login/", "/api/docs"], cwd=ROOT,
                         env={**manage_env(tmp_path), **env}, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    pages = json.loads(run.stdout.strip().splitlines()[-1])
    expected = {"/": {"css/app.css", "js/heatmap.js", "js/sketch.js"}, "/admin/login/": {"admin/css/base.css"},
                "/api/docs": {"ninja/swagger-ui.css", "ninja/swagger-ui-bundle.js"}}
    for page, names in expected.items():
        assert pages[page]["status"] == 200, (page, pages[page])
        assets = pages[page]["assets"]
        unhashed = {re.sub(r"^/static/|\.[0-9a-f]{12}(?=\.(css|js)$)", "", url) for url in assets}
        assert names <= unhashed, (page, sorted(assets))
        for url, got in assets.items():
            assert got["status"] == 200 and got["bytes"] > 0, (url, got)
            assert re.search(r"\.[0-9a-f]{12}\.(css|js)$", url), f"{url}: not a hashed name"
            assert got["type"].startswith("text/css" if url.endswith(".css") else "text/javascript"), (url, got)
            assert "immutable" in got["cache"] and "max-age=315360000" in got["cache"], (url, got)
            if got["bytes"] > 1000:
                assert got["encoding"] == "gzip", (url, got)
