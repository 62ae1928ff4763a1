"""One self-describing checkpoint file per model (nanoGPT style).

A checkpoint is a single ``torch.save`` dict::

    {"format": 1, "kind": "encoder", "config": {...}, "model": state_dict,
     "metrics": {...}, "train": {...}, "optimizer": ..., "version": "..."}

``config`` is enough to rebuild the network from the file alone; ``metrics``
and ``train`` (profile, epochs, wall time, device, history) describe how it was
made. ``version`` is a short content hash so indexes can name the encoder they
were built with.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or of the wrong kind."""



class SavedConfig:
    """``to_dict``/``from_dict`` of a network's config dataclass, as its checkpoint saves it: tuples are saved
    as lists (a checkpoint holds plain types) and read back as tuples."""

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict):
        tuples = {f.name for f in fields(cls) if str(f.type).startswith("tuple")}
        return cls(**{k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in d.items()})

def state_version(state_dict: dict[str, torch.Tensor]) -> str:
    """A short stable hash of the weights, used to name model versions."""
    digest = hashlib.sha1()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes())
    return digest.hexdigest()[:12]


def save_checkpoint(path: str | os.PathLike, *, kind: str, config: dict[str, Any], model: torch.nn.Module,
                    metrics: dict[str, Any] | None = None, train: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write a checkpoint atomically (temp file + rename) and return its dict."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload: dict[str, Any] = {
        "format": FORMAT,
        "kind": kind,
        "config": dict(config),
        "model": state,
        "metrics": dict(metrics or {}),
        "train": dict(train or {}),
        "version": f"{kind}-{state_version(state)}",
    }
    if extra:
        payload.update(extra)
    _write(Path(path), payload)
    return payload


def add_train_info(path: str | os.PathLike, **info: Any) -> dict[str, Any]:
    """Add ``info`` to a saved checkpoint's ``train`` part (a setting chosen on its validation split after its
    training), atomically; its weights and version stay as they are. Returns the checkpoint."""
    payload = load_checkpoint(path)
    payload["train"] = {**payload.get("train", {}), **info}
    _write(Path(path), payload)
    return payload


def _write(path: Path, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file beside ``path``, then rename: a reader never sees half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, kind: str | None = None, map_location: str = "cpu") -> dict[str, Any]:
    """Read a checkpoint and check its kind; raises CheckpointError with a plain message."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of format {FORMAT}")
    if kind is not None and payload.get("kind") != kind:
        raise CheckpointError(f"{path} holds a {payload.get('kind')!r} model, expected {kind!r}")
    return payload

