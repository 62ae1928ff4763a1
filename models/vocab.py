"""A small word vocabulary for titles, stored as a plain word list in checkpoints.

Two splitting modes:

* ``"words"`` (classifier input): lower-cased runs of letters/digits, so
  "T-Shirt", "t-shirt" and "T-shirts" become ``t shirt`` / ``t shirts``.
* ``"title"`` (captioner output): whitespace-separated words with their case
  and punctuation kept, so ``decode(encode(title))`` gives the title back when
  every word is known.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where tensors are made: search.lexical reads normalise_text without it
    import torch

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]
_WORD = re.compile(r"[a-z0-9]+")


def normalise_text(text: str | None, max_chars: int = 1000) -> str:
    """The one text normaliser of titles and queries: lower-case, accents stripped (NFKD: "Café" -> "cafe"),
    at most ``max_chars`` characters read."""
    text = unicodedata.normalize("NFKD", str(text or "")[:max_chars])
    return "".join(c for c in text if not unicodedata.combining(c)).lower()


class Vocab:
    def __init__(self, words: list[str], mode: str = "words"):
        if mode not in ("words", "title"):
            raise ValueError(f"unknown vocabulary mode {mode!r}")
        if words[: len(SPECIALS)] != SPECIALS:
            raise ValueError("a vocabulary starts with the special tokens")
        self.words = list(words)
        self.mode = mode
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, texts: Iterable[str], mode: str = "words", min_count: int = 2,
              max_size: int | None = None) -> Vocab:
        counts = Counter(tok for text in texts for tok in split_text(text, mode))
        common = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]
        if max_size is not None:
            common = common[: max(0, max_size - len(SPECIALS))]
        return cls(SPECIALS + common, mode)

    def __len__(self) -> int:
        return len(self.words)

    def to_dict(self) -> dict:
        return {"words": self.words, "mode": self.mode}

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        return cls(d["words"], d["mode"])

    def encode(self, text: str | None, max_len: int, *, bos: bool = False, eos: bool = False) -> list[int]:
        ids = [self.index.get(tok, UNK) for tok in split_text(text or "", self.mode)]
        room = max_len - int(bos) - int(eos)
        ids = ids[:room]
        return ([BOS] if bos else []) + ids + ([EOS] if eos else [])

    def encode_batch(self, texts: list[str | None], max_len: int, *, bos: bool = False,
                     eos: bool = False) -> torch.Tensor:
        """(N, max_len) int64, right-padded with PAD."""
        import torch

        out = torch.full((len(texts), max_len), PAD, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = self.encode(text, max_len, bos=bos, eos=eos)
            if ids:
                out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        words = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            words.append(self.words[i] if 0 <= i < len(self.words) else SPECIALS[UNK])
        return " ".join(words)


def split_text(text: str, mode: str) -> list[str]:
    if mode == "words":
        return _WORD.findall(normalise_text(text))
    return text.split()
