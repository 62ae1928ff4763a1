"""docker-compose.yml checked against the code (there is no Docker engine here): every command's
module imports, queue names match settings, every environment variable is one settings.py reads, the
healthcheck's scheme and path reach the liveness probe through the production settings, static files are
collected and served, and the TLS proxy (Caddy) reaches gunicorn and is trusted for the scheme."""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = {name: s for name, s in SERVICES.items() if "build" in s}
# Read by tools rather than settings.py: Django's own module switch, Python itself, compose-only knobs.
NOT_SETTINGS = {"DJANGO_SETTINGS_MODULE", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "POSTGRES_PASSWORD",
                "CATALOG_HOST_DIR", "WEB_WORKERS", "INDEX_CONCURRENCY", "SITE_ADDRESS"}
# Read by settings.py but for tests only, not for operators.
TEST_ONLY = {"CELERY_TASK_ALWAYS_EAGER"}


def settings_env_names() -> set[str]:
    source = (ROOT / "webapp" / "settings.py").read_text()
    return set(re.findall(r'env(?:bool|int|path)?\(\s*"([A-Z0-9_]+)"', source))


def command_words(service: dict) -> list[str]:
    command = service["command"]
    words = command if isinstance(command, list) else shlex.split(command)
    if words[:2] == ["sh", "-c"]:
        words = shlex.split(words[2].replace("&&", " && "))
    return words


def test_app_services_and_infrastructure():
    assert {"web", "worker-inference", "worker-index", "redis", "postgres", "caddy"} <= SERVICES.keys()
    assert {"web", "worker-inference", "worker-index"} <= APP_SERVICES.keys()
    assert (ROOT / "Dockerfile").is_file() and (ROOT / ".env.example").is_file()
    for name, service in APP_SERVICES.items():
        assert service.get("env_file") == ".env", name


def test_celery_commands_import_and_use_the_settings_queues(settings):
    queues_seen = set()
    for name in ("worker-inference", "worker-index"):
        words = command_words(SERVICES[name])
        assert words[:2] == ["celery", "-A"], name
        module = importlib.import_module(words[2])
        assert module.app.main  # the Celery app object is there
        assert "worker" in words
        queues = set(words[words.index("-Q") + 1].split(","))
        assert queues <= {settings.CELERY_INFERENCE_QUEUE, settings.CELERY_INDEX_QUEUE}, (name, queues)
        queues_seen |= queues
        env = SERVICES[name].get("environment", {})
        assert not {"CELERY_INFERENCE_QUEUE", "CELERY_INDEX_QUEUE"} & env.keys(), "queues are the settings' defaults"
    assert queues_seen == {settings.CELERY_INFERENCE_QUEUE, settings.CELERY_INDEX_QUEUE}


def test_inference_worker_reserves_an_nvidia_gpu():
    devices = SERVICES["worker-inference"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert SERVICES["worker-inference"]["environment"]["TORCH_DEVICE"] in {"auto", "cuda"}


def gunicorn_port() -> int:
    words = command_words(SERVICES["web"])
    return int(words[words.index("--bind") + 1].rsplit(":", 1)[1])


def test_web_runs_gunicorn_on_the_wsgi_app_and_probes_healthz():
    from django.core.management import get_commands
    from django.urls import resolve

    words = command_words(SERVICES["web"])
    target = words[words.index("gunicorn") + 1]
    module, attr = target.split(":")
    assert callable(getattr(importlib.import_module(module), attr))
    commands = get_commands()
    for i, word in enumerate(words):
        if word == "manage.py":
            assert words[i + 1] in commands, words[i + 1]
    probe = " ".join(SERVICES["web"]["healthcheck"]["test"])
    url = re.search(r"'(\w+)://127\.0\.0\.1:(\d+)(/\S*?)'", probe)
    scheme, port, path = url.group(1), int(url.group(2)), url.group(3)
    assert scheme == "http", "gunicorn speaks plain HTTP: TLS is Caddy's"
    assert port == gunicorn_port()
    assert resolve(path).func.__name__ == "healthz"  # liveness: a Redis outage must not mark web unhealthy
    assert SERVICES["web"]["environment"]["SEARCH_IN_WORKERS"] == "1"


def test_the_healthcheck_request_is_answered_by_the_production_settings(client, settings, db):
    """What the healthcheck sends (plain HTTP, Host 127.0.0.1:8000), with DEBUG off's HTTPS redirect and an
    ALLOWED_HOSTS that names only the site, as .env.example has it."""
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["shop.example.com"]
    probe = " ".join(SERVICES["web"]["healthcheck"]["test"])
    host, path = re.search(r"://([\w.:]+)(/\S*?)'", probe).groups()
    res = client.get(path, HTTP_HOST=host)
    assert res.status_code == 200 and res.json() == {"status": "ok"}


def compose_settings(service: str, code: str) -> dict:
    """Evaluate ``code`` (an expression over ``s``, django.conf.settings) in a process with the environment compose
    gives ``service`` (plus .env.example's values for what compose leaves to .env)."""
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line.strip() and not line.startswith("#"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DEBUG", "REDIS_", "DATABASE_"))}
    env.update({k: str(v) for k, v in example.items()})
    env.update({k: str(v) for k, v in SERVICES[service]["environment"].items()})
    env.update(DJANGO_SETTINGS_MODULE="webapp.settings", SECRET_KEY="compose-test-only", POSTGRES_PASSWORD="x")
    env["DATABASE_URL"] = env["DATABASE_URL"].replace("${POSTGRES_PASSWORD}", "x")
    script = f"import json, django; django.setup(); from django.conf import settings as s; print(json.dumps({code}))"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_static_files_are_collected_then_served_by_the_web_process():
    words = command_words(SERVICES["web"])
    assert "collectstatic" in words and words.index("collectstatic") < words.index("gunicorn")
    got = compose_settings("web", '{"debug": s.DEBUG, "middleware": s.MIDDLEWARE, "root": str(s.STATIC_ROOT), '
                                  '"storage": s.STORAGES["staticfiles"]["BACKEND"]}')
    assert got["debug"] is False
    assert "whitenoise.middleware.WhiteNoiseMiddleware" in got["middleware"]
    assert got["storage"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"  # hashed, compressed
    var_dir = SERVICES["web"]["environment"]["VAR_DIR"]
    assert got["root"].startswith(var_dir + "/")
    assert var_dir in (ROOT / "Dockerfile").read_text()  # made and owned by the app user in the image


def test_caddy_terminates_tls_and_is_trusted_for_the_scheme_and_client_address():
    caddy = SERVICES["caddy"]
    assert {"80:80", "443:443"} <= set(caddy["ports"])
    assert caddy["depends_on"]["web"]["condition"] == "service_healthy"
    mount = next(v for v in caddy["volumes"] if v.endswith(":/etc/caddy/Caddyfile:ro"))
    caddyfile = (ROOT / mount.split(":")[0]).read_text()
    assert re.search(r"^\{\$SITE_ADDRESS(:[^}]*)?\} \{", caddyfile, re.M), "the site is SITE_ADDRESS"
    assert re.search(rf"reverse_proxy web:{gunicorn_port()}\b", caddyfile)
    assert all(p.startswith("127.0.0.1:") for p in SERVICES["web"]["ports"]), "plain HTTP stays on this host"
    got = compose_settings("web", '{"header": s.SECURE_PROXY_SSL_HEADER, "redirect": s.SECURE_SSL_REDIRECT, '
                                  '"proxies": s.TRUSTED_PROXIES}')
    assert got["header"] == ["HTTP_X_FORWARDED_PROTO", "https"] and got["redirect"] is True
    assert got["proxies"] == 1  # Caddy replaces X-Forwarded-For with the client's address


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_every_environment_variable_is_read_by_settings(name):
    known = settings_env_names()
    env = APP_SERVICES[name].get("environment", {})
    unknown = {k for k in env if k not in known | NOT_SETTINGS}
    assert not unknown, f"{name} sets variables settings.py never reads: {unknown}"


def test_env_example_names_every_setting_an_operator_can_set():
    text = (ROOT / ".env.example").read_text()
    mentioned = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, re.M))
    missing = settings_env_names() - TEST_ONLY - mentioned
    assert not missing, f".env.example does not mention {sorted(missing)}"


def test_env_example_variables_are_read_and_interpolations_defined():
    known = settings_env_names()
    example = {line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert not example - known - NOT_SETTINGS, example - known - NOT_SETTINGS
    text = (ROOT / "docker-compose.yml").read_text()
    for var, default in re.findall(r"\$\{([A-Z0-9_]+)(:-[^}]*)?\}", text):
        assert var in example or default, f"${{{var}}} has no default and is not in .env.example"


def test_media_and_artifacts_are_shared_volumes_at_the_configured_paths():
    for name, service in APP_SERVICES.items():
        env = service["environment"]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        assert mounts.get(env["ARTIFACTS_DIR"]) == "artifacts", name
        assert mounts.get(env["MEDIA_ROOT"]) == "media", name
    assert {"artifacts", "media"} <= COMPOSE["volumes"].keys()
    for name in APP_SERVICES:
        url = APP_SERVICES[name]["environment"]["REDIS_URL"]
        assert url.startswith("redis://redis:"), name
        assert "@postgres:5432/" in APP_SERVICES[name]["environment"]["DATABASE_URL"]
