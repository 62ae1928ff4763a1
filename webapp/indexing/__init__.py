"""Reindex: embed every visible item, build a new index version, switch to it atomically; and live additions.

Split by job:

* ``jobs``: the ``Job`` row of a reindex (asked for once, claimed once, progress, failure, expiry);
* ``vectors``: embedding items, and reusing the vectors of unchanged ones;
* ``versions``: building a version, switching to it in one transaction, pruning old ones;
* ``plan``: the three steps Celery spreads (plan, embed a chunk, finish) and the in-process ``reindex``;
* ``live``: ``add_live_item``, the live buffer searches merge until the next reindex.

Searches keep using the old version until the switch. The names below are the package's public ones.
"""

from webapp.indexing.jobs import (
    STEPS,
    add_progress,
    claim,
    claim_build,
    expire_if_stale,
    fail_job,
    request_reindex,
    set_progress,
    set_stage,
    start_reindex,
)
from webapp.indexing.live import add_live_item
from webapp.indexing.plan import chunks_complete, embed_chunk, finish_reindex, job_dir, plan_reindex, reindex
from webapp.indexing.vectors import embed_items, reusable_text_vectors, reusable_vectors
from webapp.indexing.versions import activate, build_version, prune

__all__ = ["STEPS", "activate", "add_live_item", "add_progress", "build_version", "chunks_complete", "claim",
           "claim_build", "embed_chunk", "embed_items", "expire_if_stale", "fail_job", "finish_reindex", "job_dir",
           "plan_reindex", "prune", "reindex", "request_reindex", "reusable_text_vectors", "reusable_vectors",
           "set_progress", "set_stage", "start_reindex"]
