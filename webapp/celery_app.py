"""The Celery app, configured from Django settings (``CELERY_`` namespace), and how the web sends it tasks.

The web app never imports ``workers``: it sends tasks by name (``send``), and the worker processes
(``celery -A workers.celery_app worker``) register them from ``workers.tasks``.

Embedded default: a filesystem broker and file result backend under VAR_DIR,
so ``make demo`` runs a real worker process with no server. ``REDIS_URL``
switches broker and results to Redis.
"""

import os

from celery import Celery
from celery.app import trace

# One log line per task, with its timing. Celery's success line also prints the task's return
# value, which for a query is its vector in base64; its "received" line is silenced in settings.LOGGING.
trace.LOG_SUCCESS = "Task %(name)s[%(id)s] succeeded in %(runtime)ss"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("sketchsearch")
app.config_from_object("django.conf:settings", namespace="CELERY")


@app.on_after_configure.connect
def _make_broker_dirs(sender, **kwargs):
    from django.conf import settings

    if not settings.REDIS_URL:
        for name in ("queue", "processed", "results", "control"):
            (settings.CELERY_BROKER_DIR / name).mkdir(parents=True, exist_ok=True)


app.autodiscover_tasks(["workers"])  # lazily, by name: a worker (or an eager test) imports workers.tasks


def send(name: str, args: tuple = (), *, queue: str, **options):
    """Send the task ``name`` (a ``workers.tasks`` name, e.g. ``workers.encode_query``) to ``queue``.

    With ``CELERY_TASK_ALWAYS_EAGER`` (tests) it runs here, as ``apply_async`` would: Celery's ``send_task``
    ignores that setting."""
    if app.conf.task_always_eager:
        return app.tasks[name].apply(args, **{k: v for k, v in options.items() if k != "expires"})
    return app.send_task(name, args, queue=queue, **options)
