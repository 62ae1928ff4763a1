"""docker-compose.yml checked against the code (there is no Docker engine here): every command's
module imports, queue names match settings, every environment variable is one settings.py reads."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = {name: s for name, s in SERVICES.items() if "build" in s}
# Read by tools rather than settings.py: Django's own module switch, Python itself, compose-only knobs.
NOT_SETTINGS = {"DJANGO_SETTINGS_MODULE", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "POSTGRES_PASSWORD",
                "CATALOG_HOST_DIR", "WEB_WORKERS", "INDEX_CONCURRENCY"}


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
    assert {"web", "worker-inference", "worker-index", "redis", "postgres"} <= SERVICES.keys()
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
    path = re.search(r"127\.0\.0\.1:8000(/\S*?)'", probe).group(1)
    assert resolve(path).func.__name__ == "healthz"
    assert SERVICES["web"]["environment"]["SEARCH_IN_WORKERS"] == "1"


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_every_environment_variable_is_read_by_settings(name):
    known = settings_env_names()
    env = APP_SERVICES[name].get("environment", {})
    unknown = {k for k in env if k not in known | NOT_SETTINGS}
    assert not unknown, f"{name} sets variables settings.py never reads: {unknown}"


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
