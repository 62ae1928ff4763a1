"""Run the web server and a local Celery worker together (the embedded default of `make demo`).

SIGTERM (systemd, ``docker stop``, supervisors) stops both as Ctrl+C does: the worker gets a warm
shutdown (its running task finishes) and, should it still run after ``STOP_GRACE`` seconds, it and its
pool processes are killed. A reindex chunk cut short is acknowledged late, so it runs again next time.
"""

import os
import signal
import subprocess
import sys

import psutil
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

STOP_GRACE = 5.0  # seconds the worker may take to stop before it is killed


def stop_worker(worker: subprocess.Popen, grace: float = STOP_GRACE) -> None:
    """Stop the worker and every process it started: SIGTERM, then SIGKILL for any still there after ``grace``."""
    try:
        parent = psutil.Process(worker.pid)
        tree = [parent, *parent.children(recursive=True)]  # read first: killed, its pool would be orphaned
    except psutil.NoSuchProcess:
        tree = []
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    _gone, alive = psutil.wait_procs(tree, timeout=grace)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    try:
        worker.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - killed above
        pass


class Command(BaseCommand):
    help = "Serve the app at http://127.0.0.1:8000 with a local worker process (no Redis needed)."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--no-worker", action="store_true")

    def handle(self, *args, addrport, no_worker, **opts):
        # SIGTERM ends the server as Ctrl+C does (KeyboardInterrupt), so the worker is stopped below; by default
        # Python would exit at once and leave the worker running, an orphan.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        # And Ctrl+C always does: a process started in the background by a shell inherits SIGINT ignored, and
        # Python then leaves it ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        worker = None
        try:
            if not no_worker:
                queues = f"{settings.CELERY_INFERENCE_QUEUE},{settings.CELERY_INDEX_QUEUE}"
                cmd = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", queues,
                       "--concurrency", "1", "--loglevel", "INFO", "-n", "local@%h"]
                transport = ("Redis" if settings.REDIS_URL
                             else "the filesystem broker in " + str(settings.CELERY_BROKER_DIR))
                self.stdout.write(f"==> worker: starting a local Celery worker on {transport}")
                worker = subprocess.Popen(cmd, env=os.environ.copy())
            self.stdout.write(f"==> web: serving http://{addrport}/  (Ctrl+C stops both)")
            call_command("runserver", addrport, use_reloader=False)
        finally:
            # A second signal must not cut the clean-up short (systemd may signal the whole group at once).
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if worker is not None:
                self.stdout.write("==> stopping the worker")
                stop_worker(worker)
