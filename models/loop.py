"""The one training loop every model here runs: epochs over shuffled batches, the schedule, progress bars,
validation each epoch, the history, the best epoch, and a resumable checkpoint between epochs.

A model's training module builds its network, optimizer and schedule and gives ``fit`` two functions:
``step(indices, generator) -> loss`` for one batch, and ``evaluate() -> {name: figure}`` for the end of an
epoch. ``fit`` does the rest and returns a ``Fitted`` the caller saves with ``models.checkpoint``.

An interrupted run (Ctrl-C, a killed process) resumes from ``<checkpoint>.partial`` at the last finished
epoch. A partial file written with another configuration is refused with ``ResumeError`` rather than mixed in.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from models.training import BestEpoch, EpochCheckpointer, Timer


@dataclass
class Profile:
    """What every model's training profile names: the epochs, the optimizer's batch size, learning rate and weight
    decay, how many train items it reads (None: all) and the seed. Each model's profile adds its own fields.

    ``budget_seconds``: the wall time the training may take. ``epochs`` is then the most it runs, cut to what this
    machine's measured speed fits in the time (``plan_epochs``), never under ``min_epochs``. None: always ``epochs``.
    Two machines sold as "2 CPU cores" differ by 2x (AVX-512 BF16 or AVX2 alone): a budget keeps the hour."""

    name: str
    epochs: int
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    max_train_items: int | None = None
    seed: int = 0
    budget_seconds: float | None = None
    min_epochs: int = 1


def adamw_one_cycle(model: torch.nn.Module, prof: Profile, steps_per_epoch: int, pct_start: float = 0.15):
    """(AdamW over the trainable parameters, a one-cycle schedule stepped per batch over ``prof.epochs``): what
    the models here train with."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=prof.lr,
                                  weight_decay=prof.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=prof.lr,
                                                    total_steps=prof.epochs * steps_per_epoch, pct_start=pct_start)
    return optimizer, scheduler


def budget_epochs(prof: Profile, epoch_seconds: float) -> int:
    """The epochs of a budgeted profile that fit in ``budget_seconds`` at ``epoch_seconds`` each (measured),
    between ``min_epochs`` and ``epochs``."""
    if not prof.budget_seconds:
        return prof.epochs
    fits = int(prof.budget_seconds // max(epoch_seconds, 1e-9))
    return max(min(prof.min_epochs, prof.epochs), min(prof.epochs, fits))


def measure_epoch_seconds(step: Callable[[torch.Tensor, torch.Generator], torch.Tensor], n_items: int,
                          batch_size: int, device: torch.device | str, state: dict[str, Any],
                          evaluate_seconds: Callable[[], float] | None = None, probes: int = 3) -> float:
    """Seconds one epoch takes here: a few training steps (forward and backward), scaled to the epoch's batches,
    plus ``evaluate_seconds()`` (the caller's estimate of its validation, timed on a slice).

    ``state``: the modules and optimizers the probe steps may change (a GAN's step runs its own optimizers); they
    are left as they were."""
    saved = {k: copy.deepcopy(v.state_dict()) for k, v in state.items()}
    gen = torch.Generator().manual_seed(12345)
    times = []
    for v in state.values():
        if isinstance(v, torch.nn.Module):
            v.train()
    for _ in range(probes + 1):  # the first warms the allocator and oneDNN's kernels up
        idx = torch.randint(0, n_items, (min(batch_size, n_items),), generator=gen).to(device)
        start = time.perf_counter()
        loss = step(idx, gen)
        if loss.requires_grad:
            loss.backward()
        times.append(time.perf_counter() - start)
    for k, v in state.items():
        v.load_state_dict(saved[k])
        if isinstance(v, torch.nn.Module):
            v.zero_grad(set_to_none=True)
            v.eval()
    eval_seconds = evaluate_seconds() if evaluate_seconds is not None else 0.0
    return float(np.median(times[1:])) * max(1, n_items // batch_size) + eval_seconds


def seconds_of(fn: Callable[[], Any]) -> float:
    """The wall time of one call of ``fn`` (a validation pass whose result is not needed)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def resumed_plan(out_path: Path, signature: dict) -> tuple[int, float | None] | None:
    """(epochs, budget) of an interrupted budgeted run whose signature was this one but for those two, else None:
    a resumed run keeps the schedule it started with, even where its budget is now another share of the hour
    (``search.train.share_of_hour``). (``signature["profile"]`` is the profile as a dict.)"""
    partial = EpochCheckpointer(out_path).partial_path
    if not partial.is_file():
        return None
    saved = torch.load(partial, map_location="cpu", weights_only=False).get("signature") or {}
    profile = saved.get("profile") or {}
    if profile.get("epochs") is None:
        return None
    mine = copy.deepcopy(signature)
    mine["profile"]["epochs"] = profile["epochs"]
    mine["profile"]["budget_seconds"] = profile.get("budget_seconds")
    return (int(profile["epochs"]), profile.get("budget_seconds")) if mine == saved else None


def plan_epochs(name: str, prof: Profile, out_path: Path, signature_of: Callable[[Profile], dict],
                measure: Callable[[], float], resume: bool = True,
                show_progress: bool = True) -> tuple[Profile, float | None]:
    """(The profile with the epochs this run trains, the measured seconds of an epoch or None).

    Without a budget, the profile as it is. With one, the epochs of the interrupted run being resumed, else those
    that ``measure()``'s epoch time fits in the budget. The schedule's length must be known before the first step
    (one cycle), so this runs before the optimizer's schedule is built."""
    if not prof.budget_seconds:
        return prof, None
    resumed = resumed_plan(out_path, signature_of(prof)) if resume else None
    if resumed is not None:
        return replace(prof, epochs=resumed[0], budget_seconds=resumed[1]), None
    epoch_seconds = measure()
    epochs = budget_epochs(prof, epoch_seconds)
    if show_progress:
        tqdm.write(f"{name}: an epoch takes ~{epoch_seconds:.0f}s here; {epochs} of at most {prof.epochs} epochs "
                   f"fit in the {prof.budget_seconds:.0f}s budget")
    return replace(prof, epochs=epochs), epoch_seconds


class ResumeError(RuntimeError):
    """A partial checkpoint exists but was written by a run with another configuration."""


@dataclass
class Fitted:
    history: list[dict]
    seconds: float
    kept_epoch: int  # the epoch whose weights the model now holds
    metrics: dict[str, float] = field(default_factory=dict)  # that epoch's validation figures

    def train_info(self, **extra: Any) -> dict:
        """The ``train`` part of a checkpoint: history, wall time, threads and the kept epoch."""
        return {"history": self.history, "seconds": self.seconds, "kept_epoch": self.kept_epoch,
                "threads": torch.get_num_threads(), **extra}


def fit(name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, *, out_path: Path,
        signature: dict, epochs: int, n_items: int, batch_size: int, seed: int,
        step: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
        evaluate: Callable[[], dict[str, float]], best_key: str | None = None, clip_norm: float | None = None,
        resume: bool = True, show_progress: bool = True, device: torch.device | str = "cpu",
        already_seconds: float = 0.0, modules: dict[str, torch.nn.Module] | None = None,
        optimizers: dict[str, torch.optim.Optimizer] | None = None,
        schedulers: dict[str, Any] | None = None, best_lower: bool = False) -> Fitted:
    """Train ``epochs`` epochs of ``n_items // batch_size`` batches; keep the epoch with the highest
    ``best_key`` figure (the lowest with ``best_lower``), else the last. ``modules``/``optimizers``/``schedulers``:
    further networks, optimizers and per-batch schedules whose state the partial checkpoint keeps (a GAN's
    discriminator); the optimizers' steps are then ``step``'s business, and ``optimizer`` may be None.

    Every epoch is seeded (``seed + epoch``, the batch order and torch's global generator, which dropout
    draws from), so a resumed run repeats the uninterrupted one."""
    modules = {"model": model, **(modules or {})}
    optimizers = {"optimizer": optimizer, **(optimizers or {})} if optimizer is not None else dict(optimizers or {})
    schedules = {"scheduler": scheduler, **(schedulers or {})} if scheduler is not None else dict(schedulers or {})
    checkpointer = EpochCheckpointer(out_path)
    steps_per_epoch = max(1, n_items // batch_size)
    history: list[dict] = []
    best = BestEpoch(best_key or "", lower=best_lower)
    start_epoch = 0
    if resume and checkpointer.partial_path.is_file():
        state = checkpointer.load(signature)
        if state is None:
            raise ResumeError(f"{checkpointer.partial_path} was written by a {name} run with another configuration "
                              "or catalog: start over with --restart (or delete that file)")
        for key, module in modules.items():
            module.load_state_dict(state[key])
        for key, opt in optimizers.items():
            opt.load_state_dict(state[key])
        for key, schedule in schedules.items():
            schedule.load_state_dict(state[key])
        start_epoch, history = state["epoch"], state["history"]
        best.load(state.get("best"))
        if show_progress:
            tqdm.write(f"{name}: resuming after epoch {start_epoch} of {epochs}")
    timer = Timer(already=history[-1]["seconds"] if history else already_seconds)
    params = [p for p in model.parameters() if p.requires_grad]

    for epoch in range(start_epoch, epochs):
        torch.manual_seed(seed + epoch)
        gen = torch.Generator().manual_seed(seed + epoch)
        for module in modules.values():
            module.train()
        order = torch.randperm(n_items, generator=gen).to(device)
        bar = tqdm(range(steps_per_epoch), desc=f"{name} epoch {epoch + 1}/{epochs}", disable=not show_progress,
                   unit="batch", dynamic_ncols=True)
        loss_sum = 0.0
        for i in bar:
            loss = step(order[i * batch_size : (i + 1) * batch_size], gen)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if clip_norm:
                    torch.nn.utils.clip_grad_norm_(params, clip_norm)
                optimizer.step()
            for schedule in schedules.values():
                schedule.step()
            loss_sum += float(loss.detach())
            if i % 20 == 0:
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        for module in modules.values():
            module.eval()
        metrics = evaluate()
        history.append({"epoch": epoch + 1, "loss": loss_sum / steps_per_epoch, "seconds": timer.seconds, **metrics})
        if best_key:
            best.update(model, metrics, epoch + 1)
        if show_progress:
            tqdm.write(f"{name} epoch {epoch + 1}: loss {history[-1]['loss']:.3f} "
                       + " ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float)))
        checkpointer.save(signature, epoch=epoch + 1, history=history, best=best.to_dict(),
                          **{k: m.state_dict() for k, m in modules.items()},
                          **{k: o.state_dict() for k, o in optimizers.items()},
                          **{k: sch.state_dict() for k, sch in schedules.items()})

    kept = len(history)
    if best_key and best.state is not None:
        model.load_state_dict(best.state)
        kept = best.epoch
    final = dict(history[kept - 1]) if history else {}
    return Fitted(history=history, seconds=timer.seconds, kept_epoch=kept,
                  metrics={k: v for k, v in final.items() if k.startswith("val_")})


def finish(out_path: Path) -> None:
    """Drop the partial checkpoint once the final one is written."""
    EpochCheckpointer(out_path).finish()
