"""Text side of search: a tokenizer built from catalog titles, a bidirectional
GRU text encoder and the image head of the joint text-image space.

Words are lower-cased, accents are stripped and text is split on anything that
is not a letter or digit, so "Ray-Ban Men's" becomes ``ray ban men s``. A word
is the sum of its vocabulary embedding (``<unk>`` when unseen) and the mean of
hashed character-trigram embeddings (fastText style, crc32 buckets). A brand
never seen in training therefore still gets a vector that shares pieces with
similar spellings, and every input, however odd, gives a valid query.

The joint space (Karpathy & Fei-Fei 2015): titles and photos are mapped to
L2-normalised vectors of the same size and trained so that an item's title
lands next to its photo. ``ImageHead`` is the trainable image side; it reads a
fixed descriptor (pooled statistics) of the Image2Vec feature map plus a coarse
colour histogram of the pixels, because Image2Vec is trained on articleType only
and keeps little of the colour and detail that titles name. With a ``tower``,
the model holds its own copy of the Image2Vec CNN, initialised from it and
fine-tuned end to end by the ranking loss (Karpathy & Fei-Fei fine-tune their
CNN too), so the photo side can learn the detail that titles name.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoint import SavedConfig
from models.image_encoder import (  # noqa: F401 - re-exported: the text model's image side reads them
    COLOUR_LEVELS,
    backbone,
    colour_histogram,
    descriptor_dim,
    descriptor_of,
    frozen_descriptor,
)
from models.vocab import normalise_text

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"[^\W_]+")


class Tokenizer:
    """Words -> ids plus hashed character trigrams per word; lives inside the checkpoint."""

    def __init__(self, vocab: Sequence[str], *, max_len: int = 24, n_buckets: int = 4096, max_ngrams: int = 12,
                 max_chars: int = 1000):
        self.vocab = list(vocab)
        if self.vocab[:2] != [PAD, UNK]:
            raise ValueError("a vocabulary starts with <pad>, <unk>")
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.max_len = max_len
        self.n_buckets = n_buckets
        self.max_ngrams = max_ngrams
        self.max_chars = max_chars
        self._ngram_cache: dict[str, list[int]] = {}

    @classmethod
    def build(cls, titles: Iterable[str], *, min_count: int = 2, max_vocab: int = 30000, **kwargs) -> Tokenizer:
        """Vocabulary of the words seen at least ``min_count`` times, most frequent first."""
        counts = Counter(w for t in titles for w in _WORD.findall(normalise_text(t)))
        words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls([PAD, UNK] + words[:max_vocab], **kwargs)

    def __len__(self) -> int:
        return len(self.vocab)

    def words(self, text: str) -> list[str]:
        return _WORD.findall(normalise_text(text, self.max_chars))[: self.max_len]

    def ngram_ids(self, word: str) -> list[int]:
        """Bucket ids (1..n_buckets; 0 is padding) of the word's character trigrams with boundary marks."""
        cached = self._ngram_cache.get(word)
        if cached is None:
            w = f"<{word[:30]}>"
            grams = [w[i : i + 3] for i in range(max(1, len(w) - 2))][: self.max_ngrams]
            cached = [1 + zlib.crc32(g.encode("utf-8")) % self.n_buckets for g in grams]
            cached += [0] * (self.max_ngrams - len(cached))
            if len(self._ngram_cache) < 100_000:
                self._ngram_cache[word] = cached
        return cached

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Texts -> word ids (B, L), trigram ids (B, L, G) and lengths (B,); empty text gives one <unk>."""
        tokenised = [self.words(t) for t in texts]
        length = max((len(w) for w in tokenised), default=0) or 1
        unk, no_grams = self.index[UNK], [0] * self.max_ngrams
        ids = [[self.index.get(w, unk) for w in words] + [0] * (length - len(words)) if words
               else [unk] + [0] * (length - 1) for words in tokenised]
        grams = [[self.ngram_ids(w) for w in words] + [no_grams] * (length - len(words)) if words
                 else [no_grams] * length for words in tokenised]
        lengths = [max(1, len(words)) for words in tokenised]
        return (torch.tensor(ids, dtype=torch.long).view(len(texts), length),
                torch.tensor(grams, dtype=torch.long).view(len(texts), length, self.max_ngrams),
                torch.tensor(lengths, dtype=torch.long))

    def to_dict(self) -> dict:
        return {"vocab": list(self.vocab), "max_len": self.max_len, "n_buckets": self.n_buckets,
                "max_ngrams": self.max_ngrams, "max_chars": self.max_chars}

    @classmethod
    def from_dict(cls, d: dict) -> Tokenizer:
        return cls(d["vocab"], max_len=d["max_len"], n_buckets=d["n_buckets"], max_ngrams=d["max_ngrams"],
                   max_chars=d["max_chars"])


@dataclass
class TextConfig(SavedConfig):
    vocab_size: int
    n_buckets: int = 4096
    word_dim: int = 128
    hidden: int = 256
    layers: int = 1
    embed_dim: int = 256
    dropout: float = 0.1


class TextEncoder(nn.Module):
    """(word ids, trigram ids, lengths) -> L2-normalised (B, embed_dim): BiGRU, mean+max pooled, projected."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.config = config
        self.words = nn.Embedding(config.vocab_size, config.word_dim, padding_idx=0)
        self.grams = nn.Embedding(config.n_buckets + 1, config.word_dim, padding_idx=0)
        self.dropout = nn.Dropout(config.dropout)
        self.rnn = nn.GRU(config.word_dim, config.hidden, num_layers=config.layers, batch_first=True,
                          bidirectional=True, dropout=config.dropout if config.layers > 1 else 0.0)
        self.project = nn.Linear(4 * config.hidden, config.embed_dim)

    def forward(self, ids: torch.Tensor, grams: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        gram_count = (grams > 0).sum(-1, keepdim=True).clamp_min(1)
        x = self.words(ids) + self.grams(grams).sum(2) / gram_count
        x = self.dropout(x)
        # The RNN is small; it runs in float32 even under a bf16 autocast.
        with torch.autocast(device_type=x.device.type, enabled=False):
            packed = nn.utils.rnn.pack_padded_sequence(x.float(), lengths.cpu(), batch_first=True,
                                                       enforce_sorted=False)
            out, _ = self.rnn(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        mask = (torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths.to(ids.device)[:, None])
        mask = mask.unsqueeze(-1)
        mean = (out * mask).sum(1) / mask.sum(1).clamp_min(1)
        top = out.masked_fill(~mask, float("-inf")).amax(1)
        return F.normalize(self.project(self.dropout(torch.cat([mean, top], dim=1))), dim=1)


@dataclass
class HeadConfig(SavedConfig):
    in_dim: int
    hidden: int = 1024
    embed_dim: int = 256
    dropout: float = 0.1


class ImageHead(nn.Module):
    """Frozen descriptor -> L2-normalised joint-space vector (a two-layer MLP)."""

    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        self.net = nn.Sequential(nn.LayerNorm(config.in_dim), nn.Linear(config.in_dim, config.hidden), nn.GELU(),
                                 nn.Dropout(config.dropout), nn.Linear(config.hidden, config.embed_dim))

    def forward(self, descriptor: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(descriptor.float()), dim=1)


class TextImageModel(nn.Module):
    """Every trainable part of text search in one module (one state_dict in the checkpoint)."""

    def __init__(self, text: TextConfig, head: HeadConfig | None, temperature: float = 0.05,
                 tower: dict | None = None):
        super().__init__()
        self.text = TextEncoder(text)
        self.image_head = ImageHead(head) if head is not None else None
        # The photo side's own CNN ({"widths", "blocks"} of the Image2Vec it starts from), or None: frozen Image2Vec.
        self.tower = (backbone(tuple(tower["widths"]), tower.get("blocks", 1), tower.get("stem_stride", 2))
                      if tower else None)
        self.log_scale = nn.Parameter(torch.tensor(1.0 / temperature).log())

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=100.0)
