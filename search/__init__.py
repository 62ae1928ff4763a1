"""Django-free domain package: the catalog on disk, sketches, the Annoy store,
the query pipeline and evaluation. Never imports Django or Celery."""
