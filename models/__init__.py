"""Pure PyTorch networks, their training loops and the checkpoint format.

Nothing in this package imports Django, Celery or annoy.
"""
