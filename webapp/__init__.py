# Load the Celery app with Django so that the web process can send tasks (by name: webapp never imports workers).
from webapp.celery_app import app as celery_app

__all__ = ["celery_app"]
