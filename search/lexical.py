"""Words against titles: an idf-weighted index of the catalog's titles, and hybrid ranking with the joint text space.

The text encoder maps words and photos into one space, which finds the right *kind* of item (text P@5 by
articleType is high) but cannot read a brand or a model name off a 60x80 photo. A shopper who types
"Puma Men Black Sneakers" or "Titan watch" means those words, so text queries are ranked by both:
``score = cosine in the joint space + LEXICAL_WEIGHT x title match`` (the share of the query's idf-weighted
terms that the item's title has: ``TitleIndex``), over the union of each side's best candidates
(``hybrid_rank``). Items without a title (or words the catalog never
used) are found by the joint space alone, exactly as before.

``TitleIndex`` rows are aligned with the vector index's ids; it is built with each index version and saved
beside its files (``titles/``: the vocabulary, idf weights and the sparse term-presence rows).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer

from models.vocab import normalise_text
from search.index import VectorStore

DIRECTORY = "titles"
DEFAULT_POOL = 100
WORD = re.compile(r"\w+")


def _fold(word: str) -> str:
    """A light plural fold, the same for titles and queries: shoes/shoe, watches/watch, tshirts/tshirt; words
    ending in ss, us or is (dress, bus, tennis) keep their s."""
    if len(word) > 4 and word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _plain(text: str) -> str:
    """Lower case, accents removed: the models' own normaliser, so a title matches as the text model reads it."""
    return normalise_text(text, max_chars=10_000)


def analyse(text: str) -> list[str]:
    """Terms of a title or a query: words (case and accents folded, plurals folded) and adjacent word pairs."""
    words = [_fold(w) for w in WORD.findall(_plain(text))]
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


def _folded(word: str) -> str:
    return _fold(_plain(word))


def matched_words(title: str, query: str) -> list[tuple[str, bool]]:
    """The title cut into pieces, each flagged when it is a word the query has (folded as ``analyse``
    folds them), so that a page can mark what matched; the pieces joined give the title back."""
    wanted = {_folded(w) for w in WORD.findall(query or "")}
    pieces: list[tuple[str, bool]] = []
    last = 0
    for m in WORD.finditer(title or ""):
        if _folded(m.group()) in wanted:
            pieces += [(title[last:m.start()], False), (m.group(), True)]
            last = m.end()
    pieces.append(((title or "")[last:], False))
    return [(text, hit) for text, hit in pieces if text]


def _counter(vocabulary: dict[str, int] | None = None) -> CountVectorizer:
    return CountVectorizer(analyzer=analyse, binary=True, dtype=np.float32, vocabulary=vocabulary)


class TitleIndex:
    """Which terms each indexed item's title has (row i = vector index id i), and each term's idf.

    The title match of a query is the share of the query's weight that a title contains: the query's terms
    weighted by idf (rarer words such as a brand count more), normalised to unit length, and each term the
    title has adds its squared weight. So a title that has every word of the query scores 1 however long it
    is (a model name beside the brand costs nothing), and "puma black casual shoes" puts Puma's black casual
    shoes above other brands' (a length-normalised TF-IDF cosine did the opposite: longer titles lost).
    Words no indexed title uses still weigh in the query (with the rarest term's idf), so a new item whose
    title has them (``scores_for``) can match them."""

    def __init__(self, vocabulary: dict[str, int], idf: np.ndarray, rows: sp.csr_matrix):
        self.vocabulary = vocabulary
        self.idf = np.asarray(idf, dtype=np.float32)
        self.rows = rows.tocsr()
        self.unknown_idf = float(self.idf.max()) if len(self.idf) else 1.0

    @classmethod
    def build(cls, titles: Sequence[str]) -> TitleIndex:
        titles = [t or "" for t in titles]
        counter = _counter()
        try:
            rows = counter.fit_transform(titles)
        except ValueError:  # no title has a single word: an empty vocabulary
            return cls({}, np.zeros(0, np.float32), sp.csr_matrix((len(titles), 0), dtype=np.float32))
        df = np.bincount(rows.indices, minlength=rows.shape[1])
        idf = np.log((1.0 + len(titles)) / (1.0 + df)) + 1.0  # smoothed, as sklearn's
        return cls(dict(counter.vocabulary_), idf, rows)

    def __len__(self) -> int:
        return self.rows.shape[0]

    def save(self, directory: Path) -> None:
        out = Path(directory) / DIRECTORY
        out.mkdir(parents=True, exist_ok=True)
        vocabulary = {term: int(i) for term, i in self.vocabulary.items()}
        (out / "vocabulary.json").write_text(json.dumps(vocabulary, ensure_ascii=False))
        np.save(out / "idf.npy", self.idf)
        sp.save_npz(out / "rows.npz", self.rows)

    @classmethod
    def load(cls, directory: Path) -> TitleIndex | None:
        """The title index saved with an index version, or None when that version has none (built before it)."""
        src = Path(directory) / DIRECTORY
        if not (src / "rows.npz").is_file():
            return None
        return cls(json.loads((src / "vocabulary.json").read_text()), np.load(src / "idf.npy"),
                   sp.load_npz(src / "rows.npz"))

    def weights(self, text: str) -> dict[str, float]:
        """The unit-length idf weights of ``text``'s terms (sublinear in repeats), unknown terms included."""
        counts = Counter(analyse(text))
        raw = {t: (1.0 + math.log(c)) * (float(self.idf[i]) if (i := self.vocabulary.get(t)) is not None
                                          else self.unknown_idf) for t, c in counts.items()}
        norm = math.sqrt(sum(v * v for v in raw.values())) or 1.0
        return {t: v / norm for t, v in raw.items()}

    def scores(self, text: str) -> np.ndarray:
        """The title match of ``text`` with every row: in [0, 1], 1 when the title has all its terms."""
        known = [(self.vocabulary[t], v * v) for t, v in self.weights(text).items() if t in self.vocabulary]
        if not known:
            return np.zeros(len(self), np.float32)
        cols, vals = zip(*known, strict=True)
        query = sp.csr_matrix((vals, (cols, [0] * len(cols))), shape=(self.rows.shape[1], 1), dtype=np.float32)
        return np.asarray((self.rows @ query).todense(), dtype=np.float32).ravel()

    def scores_for(self, text: str, titles: Sequence[str]) -> np.ndarray:
        """The same match against titles that are not rows (items added since the index was built)."""
        query = self.weights(text)
        out = np.zeros(len(titles), np.float32)
        for j, title in enumerate(titles):
            terms = set(analyse(title))
            out[j] = sum(v * v for t, v in query.items() if t in terms)
        return out


def best_matches(scores: np.ndarray, n: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(the scores with disallowed ids zeroed, the ids of the best ``n`` positive ones, unordered)."""
    scores = np.asarray(scores, dtype=np.float32)
    if allowed is not None:
        scores = np.where(allowed, scores, 0.0)
    n = min(n, int((scores > 0).sum()))
    return scores, (np.argpartition(-scores, n - 1)[:n] if n else np.zeros(0, np.int64))


def hybrid_rank(store: VectorStore, vector: np.ndarray, lexical: np.ndarray | None, k: int, *, weight: float,
                space: str = "text", allowed: np.ndarray | None = None,
                pool: int = DEFAULT_POOL) -> list[tuple[int, float]]:
    """Top-k (index id, score) of a text query by ``cosine + weight x lexical`` (``lexical``: the query's
    ``TitleIndex.scores``; None or weight 0 ranks by the joint space alone, as the index does).

    Candidates: the index's best ``pool`` by the vector and the ``pool`` best titles; every candidate is then
    scored exactly on both sides."""
    vector = np.asarray(vector, dtype=np.float32)
    dense = store.query(vector, max(pool, k), space=space, allowed=allowed)
    if lexical is None or not weight:
        return dense[:k]
    lex, lexical_ids = best_matches(lexical, max(pool, k), allowed)
    ids = np.union1d(np.fromiter((i for i, _ in dense), dtype=np.int64, count=len(dense)), lexical_ids)
    if not len(ids):
        return []
    fused = np.asarray(store.vectors(space)[ids]) @ vector + weight * lex[ids]
    order = np.argsort(-fused, kind="stable")[:k]
    return [(int(ids[j]), float(fused[j])) for j in order]
