"""Production settings pass ``manage.py check --deploy`` with no warnings; DEBUG=1 defaults still work."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def manage(tmp_path, *args, **env_overrides) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DEBUG", "SECRET_KEY", "SECRET_KEY_FILE", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL",
                        "DJANGO_ALLOW_ASYNC_UNSAFE")}  # the browser tests set it for their live server
    env.update(VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="webapp.settings", **env_overrides)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


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
