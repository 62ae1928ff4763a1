"""One settings file, driven by environment variables.

Defaults run everything locally with no server: SQLite, a filesystem Celery
broker, artifacts and media under the repository. ``DATABASE_URL`` switches to
PostgreSQL, ``REDIS_URL`` to Redis as Celery broker and result backend.
Secrets may come from files: ``SECRET_KEY_FILE``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from search import rerank

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        return Path(file_path).read_text().strip()
    return os.environ.get(name, default)


def envbool(name: str, default: bool) -> bool:
    return env(name, "1" if default else "0").strip().lower() in {"1", "true", "yes", "on"}


def envint(name: str, default: int) -> int:
    return int(env(name, str(default)))


def envpath(name: str, default: Path) -> Path:
    return Path(env(name, str(default))).expanduser().resolve()


DEBUG = envbool("DEBUG", True)
SECRET_KEY = env("SECRET_KEY", "dev-only-insecure-key-change-me" if DEBUG else "")
if not SECRET_KEY:
    raise RuntimeError("SECRET_KEY must be set when DEBUG is off")
ALLOWED_HOSTS = [h.strip() for h in env("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver,[::1]").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

VAR_DIR = envpath("VAR_DIR", BASE_DIR / "var")
CATALOG_DIR = envpath("CATALOG_DIR", BASE_DIR.parent / "shared" / "data" / "fashion-product-images-small")
ARTIFACTS_DIR = envpath("ARTIFACTS_DIR", BASE_DIR / "artifacts")
# People's drawings: the validation set of sketch search (evaluate reports it when present) and a training pool.
HUMAN_SKETCHES_DIR = envpath("HUMAN_SKETCHES_DIR", BASE_DIR.parent / "shared" / "data" / "human-sketches")
HUMAN_SKETCHES_TRAIN_DIR = envpath("HUMAN_SKETCHES_TRAIN_DIR",
                                   BASE_DIR.parent / "shared" / "data" / "human-sketches-train")
MEDIA_ROOT = envpath("MEDIA_ROOT", VAR_DIR / "media")
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = envpath("STATIC_ROOT", VAR_DIR / "staticfiles")
# Static files are served by the web process itself (WhiteNoise), so gunicorn needs nothing in front for them.
# With DEBUG off they are collected (`manage.py collectstatic`) under hashed names, compressed, and sent with
# a year of caching; with DEBUG on they come straight from static/ and the apps.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage" if DEBUG
                    else "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = WHITENOISE_AUTOREFRESH = DEBUG  # read at start (the test runner turns DEBUG off later)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "ninja",
    "webapp",
]

MIDDLEWARE = [
    "webapp.health.HealthProbeMiddleware",  # /healthz, /readyz: before host checks and the HTTPS redirect
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files from STATIC_ROOT under gunicorn
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "webapp.middleware.DatabaseBusyMiddleware",
    "webapp.ratelimit.RateLimitMiddleware",  # every search and heatmap view, pages and API alike
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"), conn_max_age=envint("DB_CONN_MAX_AGE", 60)
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # WAL lets searches read while an import or reindex writes; wait instead of "database is locked".
    # IMMEDIATE: a transaction takes the write lock when it begins, so two writers wait for each other
    # (up to the timeout) instead of failing at once with "database is locked" when a reader upgrades.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;",
                                       "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
LOGIN_URL = "/admin/login/"

# Uploads: refuse big bodies early; images are checked again when decoded.
UPLOAD_MAX_BYTES = envint("UPLOAD_MAX_BYTES", 10 * 1024 * 1024)
UPLOAD_MAX_PIXELS = envint("UPLOAD_MAX_PIXELS", 40_000_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = UPLOAD_MAX_BYTES + 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = UPLOAD_MAX_BYTES + 1024 * 1024

# Search
SEARCH_DEFAULT_K = envint("SEARCH_DEFAULT_K", 12)
SEARCH_MAX_K = envint("SEARCH_MAX_K", 100)
# "annoy" (default, catalog scale) or "ivf" (faiss IVF-Flat, memory-mapped: large catalogs; bench/results.md)
INDEX_BACKEND = env("INDEX_BACKEND", "annoy")
if INDEX_BACKEND not in ("annoy", "ivf"):
    raise RuntimeError(f"INDEX_BACKEND must be annoy or ivf, not {INDEX_BACKEND!r}")
INDEX_N_TREES = envint("INDEX_N_TREES", 64)
INDEX_SEARCH_K = envint("INDEX_SEARCH_K", 20000)
INDEX_NLIST = envint("INDEX_NLIST", 0)  # ivf partitions; 0: about sqrt(items)
INDEX_NPROBE = envint("INDEX_NPROBE", 16)  # ivf partitions scanned per query
INDEX_KEEP_VERSIONS = envint("INDEX_KEEP_VERSIONS", 2)
TORCH_THREADS = envint("TORCH_THREADS", 0)  # 0: PyTorch's default
# The encoder's CNN in int8 on a CPU (models.quantize): a reindex ~18 % faster for ~0.001 of P@5 (docs/benchmarks.md).
# Set it alike for every process that embeds, and reindex with --no-reuse after a switch.
ENCODER_INT8 = envbool("ENCODER_INT8", False)
# Draft titles of untitled uploads: "auto" (whichever of the next two `evaluate` measured better, as a draft is shown,
# for the captioner in use; "neighbour" until it has), "neighbour" (the nearest item's title without its brand), "lstm"
# (the captioner, when trained) or "tags"; the first three fall back to "tags".
CAPTION_METHOD = env("CAPTION_METHOD", "auto")
if CAPTION_METHOD not in ("auto", "neighbour", "lstm", "tags"):
    raise ValueError(f"CAPTION_METHOD must be auto, neighbour, lstm or tags, not {CAPTION_METHOD!r}")
# Text queries: weight of the title match beside the joint text space (search.lexical); 0: off. 1.25 was chosen on
# the validation titles (evaluate's text.lexical_sweep_validation; docs/experiments.md).
LEXICAL_WEIGHT = float(env("LEXICAL_WEIGHT", "1.25"))
RERANK_WEIGHT = float(env("RERANK_WEIGHT", str(rerank.RERANK_WEIGHT)))  # re-ranking of picture queries by category; 0: off
SKETCH_ROAD = env("SKETCH_ROAD", "direct")  # "direct" (encoder saw sketches) or "gan" (pix2pix first); docs/experiments.md

# Caches and the search rate limit. LocMem counts per process; with REDIS_URL (or CACHE_URL)
# every web process shares one Redis cache, so the limit holds across them.
CACHE_URL = env("CACHE_URL", env("REDIS_URL", ""))
if CACHE_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL,
                          "KEY_PREFIX": "sketch", "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1}}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "sketch"}}
SEARCH_RATE_LIMIT = env("SEARCH_RATE_LIMIT", "120/m")  # per client IP and window ("120/m", "10/s"); 0: no limit
TRUSTED_PROXIES = envint("TRUSTED_PROXIES", 0)  # proxies in front that append to X-Forwarded-For (client IP)

# Celery: Redis when REDIS_URL is set, else a filesystem broker under VAR_DIR (no server needed).
# Queues: inference (query encoding, live additions) and index (reindex chunks and the build).
# REDIS_RESULTS_URL: task results on another Redis (default: REDIS_URL).
REDIS_URL = env("REDIS_URL", "")
REDIS_RESULTS_URL = env("REDIS_RESULTS_URL", REDIS_URL)
CELERY_BROKER_DIR = envpath("CELERY_BROKER_DIR", VAR_DIR / "broker")
CELERY_INFERENCE_QUEUE = env("CELERY_INFERENCE_QUEUE", "inference")
CELERY_INDEX_QUEUE = env("CELERY_INDEX_QUEUE", "index")
# With Redis unreachable a search must answer 503 within about a second: connect within 1 s
# (a refused connection fails at once), and one quick retry only, which replaces a pooled connection that
# went stale while Redis restarted. Celery's default for the result store is 20 retries a second apart,
# then a RuntimeError ("the Celery application must be restarted"; it need not be: the next call
# reconnects), which workers.tasks answers as a 503 like any other connection error.
REDIS_BROKER_OPTIONS = {
    # An unacknowledged task (its worker died) goes back to the queue after this long; keep it
    # above the longest task (one reindex chunk, the Annoy build).
    "visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 3600),
    "socket_connect_timeout": 1,
    "socket_timeout": 5,
}
REDIS_RESULT_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 5,
                        "retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2,
                                         "interval_max": 0.2}}
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_RESULTS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = REDIS_BROKER_OPTIONS
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = REDIS_RESULT_OPTIONS
    CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = REDIS_RESULT_OPTIONS["socket_connect_timeout"]
    CELERY_REDIS_SOCKET_TIMEOUT = REDIS_RESULT_OPTIONS["socket_timeout"]
else:
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),  # else kombu writes ./control in the working dir
        "store_processed": False,
        "polling_interval": 0.05,  # seconds between directory scans (kombu's default 1 s adds ~0.5 s a task)
    }
    CELERY_RESULT_BACKEND = f"file://{CELERY_BROKER_DIR / 'results'}"
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = CELERY_INDEX_QUEUE
CELERY_TASK_ROUTES = {"workers.encode_query": {"queue": CELERY_INFERENCE_QUEUE}}
CELERY_RESULT_EXPIRES = 3600
# Fail fast when the broker is down: a search answers 503 within about a second instead of hanging.
CELERY_BROKER_CONNECTION_TIMEOUT = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}

# Where models run: "cpu", "cuda", or "auto" (CUDA when the process sees a GPU). Resolved lazily in the
# process that loads the models (a worker child), never in a Celery parent.
TORCH_DEVICE = env("TORCH_DEVICE", "cpu")
# Picture queries and live additions in workers: the web process sends the decoded query to the inference
# queue and waits SEARCH_WORKER_TIMEOUT seconds. (Text queries, heatmaps and upload suggestions still run their
# models in the web process: docs/architecture.md, where torch runs.) Default: on with Redis (deployments), off
# for the embedded filesystem broker (docs/architecture.md has the figures).
SEARCH_IN_WORKERS = envbool("SEARCH_IN_WORKERS", bool(REDIS_URL))
SEARCH_WORKER_TIMEOUT = float(env("SEARCH_WORKER_TIMEOUT", "10"))
# Reindex: items per chunk task (a Celery group over all index workers; vectors go to files under
# ARTIFACTS_DIR/reindex/), and how many Annoy files the index is split into.
REINDEX_CHUNK_SIZE = envint("REINDEX_CHUNK_SIZE", 2048)
# A reindex with no progress for this long is marked failed (its workers were lost) and a new one may start.
REINDEX_STALE_SECONDS = envint("REINDEX_STALE_SECONDS", 1800)
INDEX_SHARDS = envint("INDEX_SHARDS", 1)
# Health: how long each /readyz check waits (the broker, the inference worker's round trip).
HEALTH_TIMEOUT = float(env("HEALTH_TIMEOUT", "1.5"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"django.server": {"level": "WARNING"}, "faiss.loader": {"level": "WARNING"},  # faiss: "AVX2?" chatter
                # Workers: one line per task, its outcome and time (workers/celery_app.py), not also "received".
                "celery.worker.strategy": {"level": "WARNING"}},
}

# Production speaks HTTPS only, through a proxy that terminates TLS (docker-compose.yml: Caddy) and sets
# X-Forwarded-Proto; plain HTTP to a web process is redirected, except the probes (HealthProbeMiddleware).
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"
