"""Celery app and thin tasks: they take primary keys and call the search domain."""
