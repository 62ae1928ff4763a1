"""Caption drafts: an LSTM decoder over CNN image features (show-and-tell, seed 003/004).

The residual GAP-CNN turns a photo into one vector; it sets the LSTM's initial
state and is fed again with every word. Decoding is greedy (``beam_size=1``)
or a beam search with length normalisation. Words are whitespace-separated
with case kept, so a generated caption reads like a catalog title
("Nike Men Black Sports Shoes"). ``<unk>`` is never generated.

``models.metrics.bleu4`` is corpus BLEU-4 from sacrebleu (13a tokenisation, case-sensitive)
on a 0..1 scale (sacrebleu's score / 100). ``nearest_neighbour_captions`` is
the baseline: the title of the nearest gallery item by cosine on image features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoint import SavedConfig
from models.image_encoder import backbone, descriptor_dim, descriptor_of
from models.training import in_eval_mode, to_float_images
from models.vocab import BOS, EOS, PAD, UNK, Vocab


@dataclass
class CaptionerConfig(SavedConfig):
    vocab: dict = field(default_factory=dict)  # models.vocab.Vocab.to_dict(), mode "title"
    widths: tuple[int, ...] = (32, 64, 128, 256)
    word_dim: int = 128
    hidden: int = 256
    max_len: int = 16  # tokens, <bos>/<eos> included
    dropout: float = 0.2
    blocks: int = 1
    stem_stride: int = 2
    frozen_encoder: str = ""  # version of the Image2Vec whose frozen CNN it reads (its descriptor); "" = its own


class Captioner(nn.Module):
    def __init__(self, config: CaptionerConfig):
        super().__init__()
        self.config = config
        self.vocab = Vocab.from_dict(config.vocab)
        self.features = backbone(config.widths, config.blocks, config.stem_stride)
        cin = config.widths[-1]
        h = config.hidden
        if config.frozen_encoder:
            self.features.requires_grad_(False)
            cin = descriptor_dim(config.widths[-2:])
            self.image_proj = nn.Sequential(nn.LayerNorm(cin), nn.Linear(cin, h), nn.LayerNorm(h), nn.Tanh())
        else:
            self.image_proj = nn.Sequential(nn.Linear(cin, h), nn.LayerNorm(h), nn.Tanh())
        self.feature_dim = cin
        self.init_h = nn.Linear(h, h)
        self.init_c = nn.Linear(h, h)
        self.embed = nn.Embedding(len(self.vocab), config.word_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(config.word_dim + h, h, batch_first=True)
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(h, len(self.vocab))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (N, 3, H, W) -> what the decoder reads: the frozen descriptor or the pooled CNN."""
        if self.config.frozen_encoder:
            return descriptor_of(self.features, x)
        return self.features(x).mean(dim=(2, 3))

    def start(self, pooled: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """What ``pooled`` gives -> the image vector fed with every word, and the LSTM's first state."""
        v = self.image_proj(pooled.float())
        return v, (self.init_h(v).unsqueeze(0).contiguous(), self.init_c(v).unsqueeze(0).contiguous())

    def step_logits(self, v: torch.Tensor, tokens: torch.Tensor,
                    state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Image vectors (N, h), input tokens (N, T) -> logits (N, T, V) and the new LSTM state."""
        with torch.autocast(tokens.device.type, enabled=False):  # the LSTM stays in float32 under bf16 autocast
            inp = torch.cat([self.embed(tokens).float(), v.float().unsqueeze(1).expand(-1, tokens.shape[1], -1)], 2)
            states, state = self.lstm(self.dropout(inp), (state[0].float(), state[1].float()))
            return self.out(self.dropout(states)), state

    def forward(self, x: torch.Tensor, tokens_in: torch.Tensor, pooled: bool = False) -> torch.Tensor:
        """Teacher forcing: images (or, with ``pooled``, what ``pooled`` gives of them) and input tokens
        (<bos> w1 .. wn) -> logits for (w1 .. wn <eos>)."""
        v, state = self.start(x if pooled else self.pooled(x))
        logits, _ = self.step_logits(v, tokens_in, state)
        return logits


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _decode(model: Captioner, pooled: torch.Tensor, beam_size: int) -> list[list[int]]:
    x = pooled
    n, max_new = x.shape[0], model.config.max_len - 1
    v, (h, c) = model.start(pooled)
    k = beam_size
    # Beams flattened to (n * k); at the start only beam 0 of each item is alive.
    v = v.repeat_interleave(k, 0)
    h, c = h.repeat_interleave(k, 1), c.repeat_interleave(k, 1)
    scores = torch.full((n, k), float("-inf"), device=x.device)
    scores[:, 0] = 0.0
    seqs = torch.full((n * k, 0), PAD, dtype=torch.long, device=x.device)
    last = torch.full((n * k, 1), BOS, dtype=torch.long, device=x.device)
    done = torch.zeros(n * k, dtype=torch.bool, device=x.device)
    lengths = torch.zeros(n * k, device=x.device)
    for _ in range(max_new):
        logits, (h, c) = model.step_logits(v, last, (h, c))
        logp = logits[:, -1].float().log_softmax(dim=1)
        logp[:, UNK] = float("-inf")
        logp[:, PAD] = float("-inf")
        logp[:, BOS] = float("-inf")
        # A finished beam only extends with <eos> at no cost.
        logp[done] = float("-inf")
        logp[done, EOS] = 0.0
        vocab = logp.shape[1]
        cand = (scores.view(-1, 1) + logp).view(n, k * vocab)
        if k == 1:
            best, flat = cand.max(dim=1, keepdim=True)
        else:
            # Rank by length-normalised score; keep raw scores for the next step.
            new_len = (lengths + (~done).float()).view(n, k, 1).expand(-1, -1, vocab).reshape(n, k * vocab)
            _, flat = (cand / new_len.clamp_min(1.0)).topk(k, dim=1)
            best = cand.gather(1, flat)
        beam = flat // vocab
        word = flat % vocab
        src = (beam + torch.arange(n, device=x.device).unsqueeze(1) * k).view(-1)
        seqs = torch.cat([seqs[src], word.view(-1, 1)], dim=1)
        lengths = lengths[src] + (~done[src]).float()
        done = done[src] | (word.view(-1) == EOS)
        h, c = h[:, src], c[:, src]
        scores = best
        last = word.view(-1, 1)
        if bool(done.all()):
            break
    if k > 1:
        norm = scores / lengths.view(n, k).clamp_min(1.0)
        pick = norm.argmax(dim=1) + torch.arange(n, device=x.device) * k
    else:
        pick = torch.arange(n, device=x.device)
    return seqs[pick].tolist()


@torch.no_grad()
def generate_captions(model: Captioner, images: np.ndarray | None, *, beam_size: int = 3,
                      batch_size: int = 256, descriptors: np.ndarray | None = None) -> list[str]:
    """uint8 images (N, 80, 60, 3) -> one draft title each (beam search; ``beam_size=1`` is greedy).
    ``descriptors`` (N, D): what ``Captioner.pooled`` gives of them, when the caller has it (no CNN pass)."""
    in_eval_mode(model)
    dev = _device_of(model)
    source = np.asarray(descriptors if descriptors is not None else images)
    out: list[str] = []
    for start in range(0, len(source), batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(source[start : start + batch_size])).to(dev)
        pooled = chunk.float() if descriptors is not None else model.pooled(to_float_images(chunk))
        out += [model.vocab.decode(seq) for seq in _decode(model, pooled, beam_size)]
    return out


@torch.no_grad()
def caption_image_features(model: Captioner, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The captioner's pooled CNN features (N, C), L2-normalised (for the nearest-neighbour baseline)."""
    in_eval_mode(model)
    dev = _device_of(model)
    out = []
    for start in range(0, len(images), batch_size):
        x = to_float_images(torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(dev))
        out.append(F.normalize(model.pooled(x).float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, model.feature_dim), np.float32)


def nearest_neighbour_captions(gallery_feats: np.ndarray, gallery_titles: list[str],
                               query_feats: np.ndarray, chunk: int = 1024) -> list[str]:
    """For each query, the title of the gallery item with the highest cosine similarity."""
    if len(gallery_titles) != len(gallery_feats):
        raise ValueError(f"{len(gallery_feats)} gallery features but {len(gallery_titles)} titles")
    g = F.normalize(torch.as_tensor(np.asarray(gallery_feats, dtype=np.float32)), dim=1)
    q = F.normalize(torch.as_tensor(np.asarray(query_feats, dtype=np.float32)), dim=1)
    out: list[str] = []
    for start in range(0, len(q), chunk):
        best = (q[start : start + chunk] @ g.t()).argmax(dim=1).tolist()
        out += [gallery_titles[i] for i in best]
    return out


def load_captioner(payload: dict, device: str | torch.device = "cpu") -> Captioner:
    """Rebuild a captioner from its checkpoint dict (``models.checkpoint.load_checkpoint(path, "captioner")``)."""
    if payload.get("kind") != "captioner":
        raise ValueError(f"expected a captioner checkpoint, got {payload.get('kind')!r}")
    model = Captioner(CaptionerConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["model"])
    return model.to(device).eval()
