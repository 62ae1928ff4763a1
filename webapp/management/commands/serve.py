"""Run the web server and a local Celery worker together (the embedded default of `make demo`)."""

import os
import signal
import subprocess
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the app at http://127.0.0.1:8000 with a local worker process (no Redis needed)."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--no-worker", action="store_true")

    def handle(self, *args, addrport, no_worker, **opts):
        worker = None
        if not no_worker:
            queues = f"{settings.CELERY_INFERENCE_QUEUE},{settings.CELERY_INDEX_QUEUE}"
            cmd = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", queues,
                   "--concurrency", "1", "--loglevel", "INFO", "-n", "local@%h"]
            transport = "Redis" if settings.REDIS_URL else "the filesystem broker in " + str(settings.CELERY_BROKER_DIR)
            self.stdout.write(f"==> worker: starting a local Celery worker on {transport}")
            worker = subprocess.Popen(cmd, env=os.environ.copy())
        self.stdout.write(f"==> web: serving http://{addrport}/  (Ctrl+C stops both)")
        try:
            call_command("runserver", addrport, use_reloader=False)
        finally:
            if worker and worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    worker.kill()
