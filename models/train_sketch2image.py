"""Training loop for the sketch -> image pix2pix (``models.pix2pix``).

Inputs are plain arrays: photos uint8 (N, 80, 60, 3) and their sketches uint8
(N, 80, 60), or (V, N, 80, 60) for V differently drawn variants of every photo
(``search.sketches.photo_to_sketch`` with V seeds). Every epoch each item is
shown with a randomly chosen variant, randomly thickened strokes, an erased
patch now and then and a joint horizontal flip, so the GAN sees varied strokes.

One step is the paper's: a discriminator step on (sketch, real) vs
(sketch, generated), then a generator step on the adversarial loss plus
``l1_weight`` x L1 to the real photo. After every epoch the loop measures the
validation L1, writes ``<stem>-samples/epoch-NNN.png`` (sketch | generated |
real for fixed validation items) and ``<stem>-losses.png`` next to the
checkpoint, and keeps a ``.partial`` file to resume from. The checkpoint holds
the generator of the epoch with the lowest validation L1.

On a CPU the networks run channels-last (oneDNN's fast layout). bfloat16
autocast is a profile switch (``cpu_bf16``), used only where the CPU has
avx512_bf16: on the 2-core Xeon this was tuned on, bf16 convolutions took
1.5-1.8x the time of fp32 ones in a training step (forward + backward, 1
thread, CPU time: 64->64 3x3 at 40x32, batch 32: 80 ms fp32, 117 ms bf16), so
the ``cpu`` profile trains in fp32.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.checkpoint import save_checkpoint
from models.loop import Profile, finish, fit, measure_epoch_seconds, plan_epochs
from models.pix2pix import GANLoss, PatchDiscriminator, Pix2PixConfig, UnetGenerator
from models.training import (
    autocast_for,
    for_inference,
    in_eval_mode,
    inference_precision,
    pick_device,
    seed_everything,
    to_float_images,
)


@dataclass
class Sketch2ImageProfile(Profile):
    batch_size: int = 64
    lr: float = 2e-4
    max_val_items: int | None = 2000
    beta1: float = 0.5
    l1_weight: float = 100.0
    ngf: int = 32
    ndf: int = 32
    norm: str = "instance"  # see models.pix2pix
    upsample: str = "resize"
    cpu_bf16: bool = False  # bfloat16 autocast on a CPU with avx512_bf16 (slower than fp32 where measured)
    sketch_variants: int = 3  # drawings of each training photo (search.train draws them)
    thicken_p: float = 0.2  # share of sketches whose strokes grow by one pixel
    erase_p: float = 0.25  # share of sketches with a patch of strokes erased
    n_samples: int = 8  # validation items in the per-epoch sample grid


PROFILES = {
    # ~4 minutes on 2 CPU cores: a half-width network, 6,400 images seen; blurry colours and shapes.
    "quick": Sketch2ImageProfile("quick", epochs=1, batch_size=32, lr=4e-4, max_train_items=3200, max_val_items=500,
                                 ngf=16, ndf=16),
    # 2 CPU cores, the GAN's share of the CPU profile's hour: 10 minutes, as many epochs of 12,000 photos with one
    # drawing each (375 steps of batch 32) as fit, at most 6. An AVX2-only pair of cores ran 4 epochs in 12 min
    # (0.46 s a step with its validation). The width is spent on steps: a step of ngf 32 costs ~3x one of ngf 16,
    # and this short schedule needs the steps.
    "cpu": Sketch2ImageProfile("cpu", epochs=6, batch_size=32, lr=3e-4, max_train_items=12000, max_val_items=1000,
                               ngf=16, ndf=16, sketch_variants=1, n_samples=16, budget_seconds=600, min_epochs=2),
    # GPU (H100, bf16): all of the training split; ~3-5 minutes.
    "full": Sketch2ImageProfile("full", epochs=40, batch_size=128, lr=2e-4, max_val_items=None),
    # For tests: a few seconds.
    "tiny": Sketch2ImageProfile("tiny", epochs=2, batch_size=8, ngf=8, ndf=8, max_val_items=16, n_samples=4),
}


def sketch_to_tensor(sketches_uint8: torch.Tensor) -> torch.Tensor:
    """(N, H, W) uint8, strokes dark -> (N, 1, H, W) float in [-1, 1]."""
    return sketches_uint8.float().div(127.5).sub(1.0).unsqueeze(1)


def vary_sketches(x: torch.Tensor, generator: torch.Generator, thicken_p: float, erase_p: float) -> torch.Tensor:
    """Random stroke thickening and a randomly erased rectangle (people leave lines out), on (N, 1, H, W)."""
    n, _, h, w = x.shape

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator).to(x.device)

    thick = (rand(n) < thicken_p).view(n, 1, 1, 1)
    x = torch.where(thick, -F.max_pool2d(-x, 3, stride=1, padding=1), x)
    eh, ew = h // 4, w // 4
    y0 = (rand(n) * (h - eh)).long().view(n, 1, 1, 1)
    x0 = (rand(n) * (w - ew)).long().view(n, 1, 1, 1)
    rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
    box = (rows >= y0) & (rows < y0 + eh) & (cols >= x0) & (cols < x0 + ew)
    erase = (rand(n) < erase_p).view(n, 1, 1, 1)
    return torch.where(box & erase, torch.ones_like(x), x)


def train_sketch2image(train_photos: np.ndarray, train_sketches: np.ndarray, val_photos: np.ndarray,
                       val_sketches: np.ndarray, out_path, *, profile: str | Sketch2ImageProfile = "quick",
                       device: str | None = None, resume: bool = True, show_progress: bool = True) -> dict:
    """Train the generator and critic, write the checkpoint (generator only) and return it."""
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    dev = pick_device(device)
    seed_everything(prof.seed)
    out_path = Path(out_path)
    config = Pix2PixConfig(ngf=prof.ngf, ndf=prof.ndf, norm=prof.norm, upsample=prof.upsample)
    layout = torch.channels_last if dev.type == "cpu" else torch.contiguous_format
    generator = UnetGenerator(config).to(dev, memory_format=layout)
    critic = PatchDiscriminator(config).to(dev, memory_format=layout)
    gan_loss = GANLoss(config.gan_mode)

    variants = np.asarray(train_sketches)
    if variants.ndim == 3:
        variants = variants[None]
    if variants.shape[1:] != np.asarray(train_photos).shape[:3]:
        raise ValueError(f"sketches {variants.shape} do not match photos {np.asarray(train_photos).shape}")
    n_items = variants.shape[1]
    n_train = n_items if prof.max_train_items is None else min(prof.max_train_items, n_items)
    subset = np.sort(np.random.default_rng(prof.seed).permutation(n_items)[:n_train])
    photos = torch.from_numpy(np.ascontiguousarray(train_photos[subset])).to(dev)
    sketches = torch.from_numpy(np.ascontiguousarray(variants[:, subset])).to(dev)
    n_val = len(val_photos) if prof.max_val_items is None else min(prof.max_val_items, len(val_photos))
    val_x = torch.from_numpy(np.ascontiguousarray(val_sketches[:n_val])).to(dev)
    val_y = torch.from_numpy(np.ascontiguousarray(val_photos[:n_val])).to(dev)
    shown = np.linspace(0, n_val - 1, min(prof.n_samples, n_val)).round().astype(int)

    steps_per_epoch = max(1, n_train // prof.batch_size)
    opt_g = torch.optim.Adam(generator.parameters(), lr=prof.lr, betas=(prof.beta1, 0.999))
    opt_d = torch.optim.Adam(critic.parameters(), lr=prof.lr, betas=(prof.beta1, 0.999))

    def decay(step: int) -> float:  # constant for the first half, then linearly to zero (pix2pix), per batch
        epoch, half = step / steps_per_epoch, prof.epochs // 2
        return 1.0 if epoch < half else 1.0 - (epoch - half) / (prof.epochs - half + 1)

    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, decay)
    sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, decay)

    def signature_of(p: Sketch2ImageProfile) -> dict:
        return {"profile": asdict(p), "config": config.to_dict(), "n_train": n_train, "variants": int(variants.shape[0])}

    autocast = autocast_for(dev, training=prof.cpu_bf16)  # bf16 on this CPU only when the profile asks
    log_every = max(1, steps_per_epoch // 10)
    # This epoch's losses, summed on the device and read every ``log_every`` steps (no GPU sync per step), and
    # their running means for the loss plot (``curve``: kept in each epoch's history row, so a resumed run has it).
    sums = {k: torch.zeros((), device=dev) for k in ("loss_d", "loss_g_gan", "loss_l1")}
    window = {k: torch.zeros((), device=dev) for k in sums}
    epoch_curve: list[dict] = []

    def step(idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The paper's step: the critic on (sketch, real) vs (sketch, generated), then the generator."""
        real = to_float_images(photos[idx])
        choice = torch.randint(sketches.shape[0], (len(idx),), generator=gen).to(dev)
        sketch = vary_sketches(sketch_to_tensor(sketches[choice, idx]), gen, prof.thicken_p, prof.erase_p)
        flip = (torch.rand(len(idx), generator=gen) < 0.5).to(dev).view(-1, 1, 1, 1)
        real = torch.where(flip, real.flip(3), real)
        sketch = torch.where(flip, sketch.flip(3), sketch)

        with autocast:
            fake = generator(sketch)
        # Critic: real pairs towards 1, generated pairs towards 0.
        critic.requires_grad_(True)
        with autocast:
            loss_d = 0.5 * (gan_loss(critic(sketch, real), True) + gan_loss(critic(sketch, fake.detach()), False))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        # Generator: fool the critic and stay close to the photo.
        critic.requires_grad_(False)
        with autocast:
            loss_g_gan = gan_loss(critic(sketch, fake), True)
        loss_l1 = F.l1_loss(fake.float(), real)
        loss_g = loss_g_gan + prof.l1_weight * loss_l1
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

        for k, v in (("loss_d", loss_d), ("loss_g_gan", loss_g_gan), ("loss_l1", loss_l1)):
            window[k] += v.detach().float()
        done = sched_g.last_epoch + 1  # steps done with this one (the schedule counts them, resumes included)
        if ((done - 1) % steps_per_epoch + 1) % log_every == 0:
            epoch_curve.append({"step": done, **{k: v.item() / log_every for k, v in window.items()}})
            for k in sums:
                sums[k] += window[k]
                window[k].zero_()
        return loss_g.detach()

    def evaluate() -> dict:
        """Validation L1 of the generated pictures, this epoch's mean losses, and its sample sheet."""
        with autocast:
            fakes = generate_tensor(generator, val_x)
        val_l1 = float((to_float_images(fakes) - to_float_images(val_y)).abs().mean()) if n_val else float("nan")
        epoch = sched_g.last_epoch // steps_per_epoch
        done = (steps_per_epoch // log_every) * log_every  # steps whose losses reached ``sums``
        row = {**{k: v.item() / done for k, v in sums.items()}, "val_l1": val_l1, "curve": list(epoch_curve)}
        for v in (*sums.values(), *window.values()):
            v.zero_()
        epoch_curve.clear()
        save_sample_grid(val_x[shown].cpu().numpy(), fakes[shown].cpu().numpy(), val_y[shown].cpu().numpy(),
                         samples_dir(out_path) / f"epoch-{epoch:03d}.png")
        return row

    def evaluate_seconds() -> float:  # the validation pictures, timed on a slice and scaled to all of them
        n = min(64, n_val)
        start = time.perf_counter()
        with torch.no_grad(), autocast:
            generate_tensor(generator, val_x[:n])
        return (time.perf_counter() - start) * n_val / max(1, n)

    # ``decay`` reads ``prof.epochs`` when it is called: the planned epochs
    prof, epoch_seconds = plan_epochs(
        "sketch2image", prof, out_path, signature_of, resume=resume, show_progress=show_progress,
        measure=lambda: measure_epoch_seconds(step, n_train, prof.batch_size, dev,
                                              {"generator": generator, "critic": critic, "opt_g": opt_g,
                                               "opt_d": opt_d}, evaluate_seconds))
    for v in window.values():  # the probe steps' losses are not the first epoch's
        v.zero_()
    epoch_curve.clear()
    signature = signature_of(prof)
    fitted = fit("sketch2image", generator, None, sched_g, out_path=out_path, signature=signature,
                 epochs=prof.epochs, n_items=n_train, batch_size=prof.batch_size, seed=prof.seed, step=step,
                 evaluate=evaluate, best_key="val_l1", best_lower=True, resume=resume, show_progress=show_progress,
                 device=dev, modules={"critic": critic}, optimizers={"opt_g": opt_g, "opt_d": opt_d},
                 schedulers={"sched_d": sched_d})
    history = [{k: v for k, v in h.items() if k != "curve"} for h in fitted.history]
    curve = [point for h in fitted.history for point in h.get("curve", [])]
    save_loss_plot(history, curve, steps_per_epoch, loss_plot_path(out_path))
    payload = save_checkpoint(
        out_path, kind="sketch2image", config=config.to_dict(),
        model=generator.cpu().to(memory_format=torch.contiguous_format),
        metrics={"val_l1": fitted.metrics.get("val_l1", float("nan")), "best_epoch": fitted.kept_epoch,
                 "n_val": n_val},
        train=fitted.train_info(profile=asdict(prof), device=str(dev), n_train=n_train,
                                variants=int(variants.shape[0]), curve=curve, measured_epoch_seconds=epoch_seconds) | {"history": history},
    )
    finish(out_path)
    return payload


def samples_dir(out_path: Path) -> Path:
    return out_path.with_name(f"{out_path.stem}-samples")


def loss_plot_path(out_path: Path) -> Path:
    return out_path.with_name(f"{out_path.stem}-losses.png")


def save_sample_grid(sketches: np.ndarray, generated: np.ndarray, real: np.ndarray, path: Path,
                     columns: int = 4, scale: int = 2) -> None:
    """PNG of (sketch | generated | real) triples, ``columns`` triples a row (torchvision ``make_grid``)."""
    from torchvision.utils import make_grid, save_image

    def chw(images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images))
        x = x[..., None].expand(*x.shape, 3) if x.ndim == 3 else x  # a sketch as grey RGB
        return x.permute(0, 3, 1, 2).float().div(255.0)

    triples = torch.cat([chw(sketches), chw(generated), chw(real)], dim=3)  # side by side, per item
    triples = F.interpolate(triples, scale_factor=scale, mode="nearest")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(triples, nrow=columns, padding=4 * scale, pad_value=0.63), path)


def save_sheet(generator: UnetGenerator, sketches: np.ndarray, photos: np.ndarray, path: str | Path,
               columns: int = 4) -> Path:
    """The generator's pictures of ``sketches`` beside them and their photos: a sketch | generated | real sheet."""
    path = Path(path)
    save_sample_grid(sketches, generate(generator, sketches), photos, path, columns=columns)
    return path


def save_loss_plot(history: list[dict], curve: list[dict], steps_per_epoch: int, path: Path) -> None:
    """Critic, adversarial and L1 losses over steps, validation L1 per epoch (matplotlib, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    steps = [c["step"] for c in curve]
    left.plot(steps, [c["loss_d"] for c in curve], label="critic")
    left.plot(steps, [c["loss_g_gan"] for c in curve], label="generator (adversarial)")
    left.set_xlabel("step")
    left.set_title("GAN losses")
    left.legend()
    right.plot(steps, [c["loss_l1"] for c in curve], label="train L1")
    right.plot([h["epoch"] * steps_per_epoch for h in history], [h["val_l1"] for h in history], "o-", label="val L1")
    right.set_xlabel("step")
    right.set_title("L1 (images in [-1, 1])")
    right.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def load_generator(payload: dict, device: str | torch.device = "cpu") -> UnetGenerator:
    """The generator of a "sketch2image" checkpoint, in eval mode (no dropout: same sketch, same image),
    channels-last (``for_inference``)."""
    model = UnetGenerator(Pix2PixConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["model"])
    return for_inference(model, device)


@torch.no_grad()
def generate_tensor(generator: UnetGenerator, sketches: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """uint8 (N, 80, 60) sketches on the generator's device -> uint8 (N, 80, 60, 3) images there."""
    was_training = generator.training
    in_eval_mode(generator)
    out = []
    for start in range(0, len(sketches), batch_size):
        with inference_precision(sketches.device):
            images = generator(sketch_to_tensor(sketches[start : start + batch_size])).float()
        out.append(images.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1))
    if was_training:  # a generator mid-training goes back to it; a served one stays as it was, unwalked
        generator.train()
    if not out:
        return torch.zeros((0, *sketches.shape[1:], 3), dtype=torch.uint8, device=sketches.device)
    return torch.cat(out)


def generate(generator: UnetGenerator, sketches: np.ndarray) -> np.ndarray:
    """Images for sketches: uint8 (N, 80, 60) -> uint8 (N, 80, 60, 3)."""
    device = next(generator.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(sketches, dtype=np.uint8)).to(device)
    return generate_tensor(generator, x).cpu().numpy()
