"""The retrieval figures every model and ``evaluate`` report, defined once.

``precision_at_k``: the share of a query's k nearest gallery items (cosine) whose label is the query's.
``recall_at_k``: whether the query's own item is among its k nearest. Both exact, in chunks, on any device.
``bleu4``: corpus BLEU-4 of caption drafts against the true titles.
``share_of_hits`` is the counting rule they share with the index-based figures of ``search.evaluation``
(torch is imported only by the exact ones, so that counting rule costs no torch import).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def share_of_hits(found: Sequence, expected, k: int) -> float:
    """P@k of one query: the share of its top ``k`` labels ``found`` equal to ``expected`` (missing hits miss)."""
    return sum(f == expected for f in list(found)[:k]) / k


def _nearest(query_vecs: np.ndarray, gallery_vecs: np.ndarray, k: int, exclude: np.ndarray | None, chunk: int = 1024):
    import torch

    q = torch.from_numpy(np.ascontiguousarray(query_vecs, dtype=np.float32))
    g = torch.from_numpy(np.ascontiguousarray(gallery_vecs, dtype=np.float32))
    for start in range(0, len(q), chunk):
        sims = q[start : start + chunk] @ g.t()
        if exclude is not None:
            rows = torch.arange(sims.shape[0])
            sims[rows, torch.as_tensor(exclude[start : start + chunk])] = -float("inf")
        yield start, sims, sims.topk(min(k, sims.shape[1]), dim=1).indices


def nearest(query_vecs: np.ndarray, gallery_vecs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact search: each query's ``k`` nearest gallery items (cosine of unit vectors), nearest first, as
    (indices (N, k), cosines (N, k))."""
    indices, cosines = [], []
    for _start, sims, top in _nearest(query_vecs, gallery_vecs, k, None):
        indices.append(top.numpy())
        cosines.append(sims.gather(1, top).numpy())
    if not indices:
        return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
    return np.concatenate(indices), np.concatenate(cosines)


def precision_at_k(query_vecs: np.ndarray, query_labels: np.ndarray, gallery_vecs: np.ndarray,
                   gallery_labels: np.ndarray, k: int = 5, exclude_self: bool = False,
                   exclude: np.ndarray | None = None) -> float:
    """Mean P@k over the queries. ``exclude[i]``: a gallery index query i may not find (its own item);
    ``exclude_self``: the queries are the gallery's first items, each excluded from its own hits."""
    if len(query_vecs) == 0:
        return float("nan")
    import torch

    if exclude_self:
        exclude = np.arange(len(query_vecs))
    gl = torch.as_tensor(np.asarray(gallery_labels, dtype=np.int64))
    ql = torch.as_tensor(np.asarray(query_labels, dtype=np.int64))
    hits = 0.0
    for start, _sims, top in _nearest(query_vecs, gallery_vecs, k, exclude):
        hits += (gl[top] == ql[start : start + len(top), None]).float().sum().item() / k
    return hits / len(query_vecs)


def recall_at_k(query_vecs: np.ndarray, own_index: np.ndarray, gallery_vecs: np.ndarray, k: int = 10) -> float:
    """Share of queries whose own gallery item (``own_index[i]``) ranks among their k nearest."""
    if len(query_vecs) == 0:
        return float("nan")
    import torch

    own = torch.as_tensor(np.asarray(own_index, dtype=np.int64))
    found = 0.0
    for start, sims, _top in _nearest(query_vecs, gallery_vecs, 1, None):
        rows = torch.arange(sims.shape[0])
        own_score = sims[rows, own[start : start + len(rows)]]
        found += ((sims > own_score[:, None]).sum(1) < k).float().sum().item()
    return found / len(query_vecs)


def bleu4(hypotheses: list[str], references: list[str]) -> float:
    """Corpus BLEU-4 (sacrebleu defaults: 13a tokens, case-sensitive, exp smoothing) on a 0..1 scale.

    As in any BLEU-4, a corpus with no 4-gram (all titles under four words) scores 0.
    """
    import sacrebleu  # imported here so the model code loads without it

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        return float("nan")
    score = sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score / 100.0
    return min(1.0, float(score))  # float rounding can give 1.0000000000000004
