"""Sections ``embed`` (images/s of Image2Vec and the GAN by batch size) and ``training`` (from checkpoints)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bench.common import UNAVAILABLE, Run, say, setup_django

BATCHES = (1, 8, 64, 256)


def models_dir() -> Path:
    setup_django()
    from webapp.services import models_dir

    return models_dir()


def devices() -> list[tuple[str, str, int]]:
    """(label, device, torch threads): the CPU with one thread and with all cores, and CUDA if present."""
    import os

    import torch

    cores = len(os.sched_getaffinity(0))
    cpu = [("cpu_t1", "cpu", 1)] + ([(f"cpu_t{cores}", "cpu", cores)] if cores > 1 else [])
    return cpu + ([("cuda", "cuda", cores)] if torch.cuda.is_available() else [])


def rate(fn, batch: int, min_seconds: float, min_reps: int = 3) -> float:
    """Images per second of ``fn`` (one call = one batch), after one warm-up call."""
    fn()
    reps, start = 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - start < min_seconds:
        fn()
        reps += 1
    return reps * batch / (time.perf_counter() - start)


def embedding(run: Run, log_dir: Path) -> dict:
    """Random uint8 inputs of the catalog's size (80x60): speed does not depend on the pixels."""
    import torch

    from search.trained import TrainedModels

    out: dict = {}
    threads_before = torch.get_num_threads()
    min_seconds = 0.05 if run.tiny else (1.0 if run.quick else 3.0)
    rng = np.random.default_rng(0)
    for label, device, threads in devices():
        torch.set_num_threads(threads)
        models = TrainedModels(models_dir(), device=device)
        for name, role in (("image2vec", "encoder"), ("gan", "sketch2image")):
            if not models.available(role):
                out[f"embed.{name}.status"] = f"{UNAVAILABLE}: no {role} model in {models.models_dir}"
                say(f"embed.{name}", out[f"embed.{name}.status"])
                continue
            for batch in BATCHES:
                if name == "image2vec":
                    images = rng.integers(0, 256, (batch, 80, 60, 3), dtype=np.uint8)
                    fn = lambda x=images, b=batch, m=models: m.encoder().embed(x, batch_size=b)  # noqa: E731
                else:
                    sketches = rng.integers(0, 256, (batch, 80, 60), dtype=np.uint8)
                    fn = lambda x=sketches, m=models: m.sketch2image().generate(x)  # noqa: E731
                key = f"embed.{name}.{label}.b{batch}.images_per_s"
                out[key] = rate(fn, batch, min_seconds)
                say(key, out[key])
    torch.set_num_threads(threads_before)
    return out


def training(run: Run, log_dir: Path) -> dict:
    """Wall time, device and profile of each trained model, as its checkpoint recorded them."""
    from models.checkpoint import CheckpointError, load_checkpoint

    out: dict = {}
    totals: dict[str, float] = {}
    for path in sorted(models_dir().glob("*.pt")):
        try:
            train = load_checkpoint(path).get("train", {})
        except CheckpointError as exc:
            out[f"training.{path.stem}.status"] = f"{UNAVAILABLE}: {exc}"
            continue
        profile = train.get("profile", {})
        profile = profile.get("name", "?") if isinstance(profile, dict) else str(profile)
        seconds = float(train.get("seconds", float("nan")))
        p = f"training.{path.stem}"
        out.update({f"{p}.minutes": seconds / 60.0, f"{p}.device": str(train.get("device", "?")),
                    f"{p}.profile": profile, f"{p}.threads": train.get("threads")})
        if train.get("n_train") is not None:
            out[f"{p}.n_train"] = train["n_train"]
        totals[profile] = totals.get(profile, 0.0) + seconds / 60.0
        say(f"{p}", f"{seconds / 60:.1f} min, {profile} profile on {train.get('device', '?')}")
    for profile in ("quick", "full"):
        if profile in totals:
            out[f"training.{profile}_minutes"] = totals[profile]
        else:
            out[f"training.{profile}_minutes"] = (f"not measured: no checkpoint in {models_dir()} was trained with "
                                                  f"the {profile} profile")
        say(f"training.{profile}_minutes", out[f"training.{profile}_minutes"])
    return out
