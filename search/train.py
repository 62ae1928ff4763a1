"""Train the project's models from a catalog directory (Django-free).

    python -m search.train all --catalog DIR --artifacts DIR [--profile auto|cpu|full|quick] [--device cpu|cuda]
                               [--drawings ../shared/data/human-sketches-train]

``--profile auto`` (the default of ``make train``) is ``full`` on a CUDA GPU and ``cpu`` without one: every model
within an hour on 2 CPU cores. ``--drawings``: a folder of people's drawings the encoder also trains on
(``search.drawings``).

``manage.py train`` calls the same functions with the settings' paths. Each
model is one checkpoint file under ``<artifacts>/models/``; a run resumes from
``<file>.partial`` when interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from search.dataset import Dataset, SplitData, load_dataset
from search.trained import MODEL_FILES

ROLES = ["encoder", "sketch2image", "text", "classifier", "classifier_image", "captioner"]
PROFILE_NAMES = ["auto", "cpu", "full", "quick", "tiny"]
TRAINING_MODULES = {"encoder": "models.train_encoder", "sketch2image": "models.train_sketch2image",
                    "text": "models.train_text", "classifier": "models.train_classifier",
                    "classifier_image": "models.train_classifier", "captioner": "models.train_captioner"}
READS_FROZEN_ENCODER = ("text", "classifier", "classifier_image", "captioner")

# `make train` keeps to an hour on 2 CPU cores. Each budgeted model (the cpu profile) has a nominal budget, which
# the fastest cores never reach; on slow cores what a model overruns (drawing its sketches, describing the
# catalog) is taken from the models after it (``share_of_hour``). What follows the training is kept free: the
# catalog's import, the reindex and the report's evaluation took 355 s on the slowest cores met (AVX2; a 208 s
# reindex); 8 minutes leave room for the models' minimum epochs too (docs/training.md).
HOUR_SECONDS = 3600.0
AFTER_TRAINING_SECONDS = 480.0


def profile_name(name: str, device: str | None = None) -> str:
    """``auto`` -> ``full`` where training runs on a CUDA GPU, else ``cpu``; any other name as it is."""
    if name != "auto":
        return name
    import torch

    on_gpu = torch.cuda.is_available() and (device in (None, "", "auto") or str(device).startswith("cuda"))
    return "full" if on_gpu else "cpu"


def load_for_training(catalog_dir: Path, artifacts_dir: Path, limit: int | None = None) -> Dataset:
    from tqdm import tqdm

    bar = tqdm(total=0, desc="reading catalog images", unit="img")

    def progress(done, total):
        bar.total, bar.n = total, done
        bar.refresh()

    try:
        return load_dataset(catalog_dir, artifacts_dir / "cache", limit=limit, progress=progress)
    finally:
        bar.close()


def resolve_profile(profiles: dict, name: str, overrides: dict | None = None):
    """A named profile, with fields overridden (experiments: ``--override '{"epochs": 60}'``)."""
    if name not in profiles:
        raise ValueError(f"unknown profile {name!r}; choose from {', '.join(profiles)}")
    prof = profiles[name]
    if overrides:
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        prof = dataclasses.replace(prof, **fields)
    return prof


def _sketch_chunk(args) -> np.ndarray:
    from search.sketches import photo_to_sketch

    images, seed, framed, worn, doodles = args
    return photo_to_sketch(images, seed=seed, framed=framed, worn=worn, doodles=doodles)


def sketches_of(images: np.ndarray, seed: int, framed: bool = False, worn: np.ndarray | None = None,
                doodles: float = 0.0) -> np.ndarray:
    """Edge-map sketches of many photos, spread over the CPU cores (deterministic for a seed).

    ``framed``: cropped to the strokes as a query is (the encoder's sketches, evaluation's queries);
    otherwise aligned with the photos (pix2pix's pairs). ``worn`` (bool per photo, ``search.catalog.is_worn``):
    the photo shows the item on a person, who is left out of its drawing. ``doodles``: the share drawn as a
    hasty doodle (``search.sketches.DOODLE_P`` for the encoder's training sketches).
    """
    chunks = [(np.asarray(images[i : i + 2000]), seed * 100003 + i, framed,
               None if worn is None else np.asarray(worn[i : i + 2000]), doodles)
              for i in range(0, len(images), 2000)]
    workers = min(len(chunks), os.cpu_count() or 1)
    if workers <= 1:
        return np.concatenate([_sketch_chunk(c) for c in chunks]) if chunks else np.zeros((0, 80, 60), np.uint8)
    with ProcessPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(_sketch_chunk, chunks)))


def training_sketches(data: Dataset, variants: int = 1, only: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's sketches: (V, N, 80, 60) of the train photos (``variants`` drawings each; with ``only``,
    of those train indices, the rest left blank) and (N, 80, 60) of the val photos, all framed as a query is
    (cropped to the strokes and redrawn)."""
    from search import sketches
    from search.catalog import is_worn

    images = data.train.images
    only = np.arange(len(images)) if only is None else np.asarray(only)
    worn = np.array([is_worn(r) for r in data.train.rows], dtype=bool)
    train = np.full((variants, *images.shape[:3]), 255, np.uint8)
    for v in range(variants):
        train[v, only] = sketches_of(images[only], seed=1 + v, framed=True, worn=worn[only],
                                     doodles=sketches.DOODLE_P)
    # the validation sketches are drawn as evaluation's test queries are, so their figure compares across recipes
    return train, sketches_of(data.val.images, seed=99, framed=True)


SHEET_TYPES = ("Tshirts", "Casual Shoes", "Handbags", "Sunglasses", "Sports Shoes", "Heels", "Watches", "Backpacks")


def sheet_items(split: SplitData, class_names: list[str], per_type: int = 3) -> np.ndarray:
    """Indices of the first ``per_type`` items of each of ``SHEET_TYPES`` in a split (the GAN's sheet)."""
    picked = [np.flatnonzero(split.labels == class_names.index(t))[:per_type] for t in SHEET_TYPES
              if t in class_names]
    return np.concatenate(picked) if picked else np.arange(min(len(split.labels), per_type * len(SHEET_TYPES)))


def training_pool(drawings: Path | None, artifacts_dir: Path, class_names: list[str]):
    """People's drawings to train the encoder on, with their articleType labels (``None`` without a folder)."""
    if drawings is None or not Path(drawings).is_dir():
        return None
    from collections import Counter

    from search.drawings import read_pool

    pool = read_pool(drawings, artifacts_dir / "cache")
    sketches, labels = pool.labels(class_names)
    kinds = Counter(k for k in pool.kinds)
    print(f"people's drawings from {drawings}: {len(sketches)} of {len(pool.kinds)} usable "
          f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}); {len(pool.skipped)} unreadable")
    return (sketches, labels) if len(sketches) else None


def frozen_encoder(role: str, data: Dataset, artifacts_dir: Path):
    """The trained Image2Vec a head model reads, and its descriptors of the train photos (and their mirror
    images) and of the val photos, from the cache when this encoder has described this catalog before."""
    from models.checkpoint import load_checkpoint
    from search.features import catalog_descriptors

    path = artifacts_dir / "models" / MODEL_FILES["encoder"]
    if not path.is_file():
        raise RuntimeError(f"the {role} model reads Image2Vec's frozen CNN: train the encoder first")
    encoder = load_checkpoint(path, "encoder")
    cache = artifacts_dir / "cache"
    return (encoder, catalog_descriptors(encoder, data.train.images, cache, views=2),
            catalog_descriptors(encoder, data.val.images, cache, views=1))


def choose_photo_vote(twin: dict, encoder: dict, train_desc: np.ndarray, val_desc: np.ndarray, data: Dataset,
                      out: Path) -> dict:
    """The weight of the nearest items' vote in a photo's guess, chosen for this twin and encoder on the validation
    photos (``search.categories.choose_vote_weight``; their nearest items: the train photos, by the vectors the
    index holds, read from the cached descriptors) and saved in the twin's checkpoint. Returns the checkpoint."""
    from models.checkpoint import add_train_info
    from models.classifier import MAIN_HEAD, load_classifier, predict
    from models.image_encoder import head_probs_of_descriptors, vectors_of_descriptors
    from models.metrics import nearest
    from search.categories import EVEN, NEIGHBOURS, choose_vote_weight, top_categories

    names = list(twin["config"]["label_names"][MAIN_HEAD])
    if names != list(encoder["config"].get("class_names") or []) or not len(data.val.labels):
        return twin
    weight = twin["train"].get("encoder_head_weight", EVEN)
    probs = predict(load_classifier(twin), None, None, descriptors=val_desc[0])[MAIN_HEAD]
    guesses = top_categories(weight * head_probs_of_descriptors(encoder, val_desc[0]) + (1.0 - weight) * probs, names)
    indices, cosines = nearest(vectors_of_descriptors(encoder, val_desc), vectors_of_descriptors(encoder, train_desc),
                               min(NEIGHBOURS, len(data.train.labels)))
    train_names = np.asarray(data.class_names)[np.asarray(data.train.labels)]
    neighbours = [list(zip(train_names[i].tolist(), c.tolist(), strict=True))
                  for i, c in zip(indices, cosines, strict=True)]
    labels = [data.class_names[label] for label in data.val.labels]
    return add_train_info(out, **choose_vote_weight(guesses, labels, neighbours))


def nominal_budget(role: str, profile: str) -> float | None:
    """The ``budget_seconds`` of ``role``'s training profile (None: it trains its epochs, however long)."""
    import importlib

    prof = importlib.import_module(TRAINING_MODULES[role]).PROFILES.get(profile)
    return getattr(prof, "budget_seconds", None)


def share_of_hour(nominal: float, later: list[float], elapsed: float, hour: float = HOUR_SECONDS,
                  after: float = AFTER_TRAINING_SECONDS) -> float:
    """The seconds a budgeted model may train, ``elapsed`` seconds into a run that must end within ``hour``
    with ``after`` seconds left for what follows the training: its ``nominal`` budget, or, where the time left is
    shorter than the nominal budgets of this model and of those still to train (``later``), its part of that
    time in proportion. 0 when none is left (the model then trains its ``min_epochs``)."""
    left = hour - after - elapsed
    return max(0.0, min(nominal, left * nominal / (nominal + sum(later))))


def describe_catalog(role: str, data: Dataset, artifacts_dir: Path, test: bool = False) -> None:
    """The frozen encoder's descriptors of the catalog, into the cache that the models reading them share
    (``frozen_encoder``, for ``role``, the first of them; ``test``: of the test photos too, which the text model's
    gallery reads)."""
    from search.features import catalog_descriptors

    encoder, _train, _val = frozen_encoder(role, data, artifacts_dir)
    if test:
        catalog_descriptors(encoder, data.test.images, artifacts_dir / "cache", views=1)


def train_role(role: str, data: Dataset, artifacts_dir: Path, *, profile: str, device: str | None,
               resume: bool = True, overrides: dict | None = None, drawings: Path | None = None) -> dict:
    profile = profile_name(profile, device)
    models_dir = artifacts_dir / "models"
    out = models_dir / MODEL_FILES[role]
    if role == "encoder":
        from models.train_encoder import PROFILES, train_encoder, training_subset

        prof = resolve_profile(PROFILES, profile, overrides)
        train_sketches, val_sketches = None, None
        if prof.sketch_fraction > 0:
            only = training_subset(len(data.train.images), prof)  # draw only the photos it trains on
            train_sketches, val_sketches = training_sketches(data, prof.sketch_variants, only)
            from search.sketches import save_sketch_sheet

            sheet = save_sketch_sheet(data.val.images, val_sketches, artifacts_dir / "reports" / "sketch-sheet.png")
            print(f"training sketches: {len(train_sketches)} drawing(s) of each of {len(only)} train photos; "
                  f"examples of validation photos in {sheet}")
        gallery = None
        if prof.name == "full":  # model selection on the deployment's view: val queries against the whole catalog
            gallery = (np.concatenate([data.train.images, data.test.images]),
                       np.concatenate([data.train.labels, data.test.labels]))
        pool = training_pool(drawings, artifacts_dir, data.class_names) if prof.pool_fraction > 0 else None
        return train_encoder(data.train.images, data.train.labels, data.val.images, data.val.labels,
                             data.class_names, out, profile=prof, device=device, resume=resume,
                             train_sketches=train_sketches, val_sketches=val_sketches, gallery=gallery, pool=pool)
    if role == "sketch2image":
        from models.train_sketch2image import PROFILES, load_generator, save_sheet, train_sketch2image

        prof = resolve_profile(PROFILES, profile, overrides)
        n = len(data.train.images) if prof.max_train_items is None else min(prof.max_train_items, len(data.train.images))
        subset = np.sort(np.random.default_rng(prof.seed).permutation(len(data.train.images))[:n])
        photos = data.train.images[subset]
        variants = np.stack([sketches_of(photos, seed=10 + v) for v in range(prof.sketch_variants)])
        n_val = len(data.val.images) if prof.max_val_items is None else min(prof.max_val_items, len(data.val.images))
        val_photos = data.val.images[:n_val]
        prof = dataclasses.replace(prof, max_train_items=None)  # already cut to the subset above
        payload = train_sketch2image(photos, variants, val_photos, sketches_of(val_photos, seed=99), out,
                                     profile=prof, device=device, resume=resume)
        shown = sheet_items(data.val, data.class_names)
        sheet = save_sheet(load_generator(payload), sketches_of(data.val.images[shown], seed=98),
                           data.val.images[shown], artifacts_dir / "reports" / "sketch2image-sheet.png")
        print(f"sketch | generated | real for {len(shown)} validation items: {sheet}")
        return payload
    if role == "text":
        from models.train_text import PROFILES, train_text
        from search.features import catalog_descriptors

        encoder, train_desc, val_desc = frozen_encoder(role, data, artifacts_dir)
        test_desc = catalog_descriptors(encoder, data.test.images, artifacts_dir / "cache", views=1)
        return train_text(data.train.images, data.train.titles, data.train.labels, data.val.images, data.val.titles,
                          data.val.labels, encoder, out,
                          extra_gallery_images=data.test.images, extra_gallery_labels=data.test.labels,
                          profile=resolve_profile(PROFILES, profile, overrides), device=device, resume=resume,
                          gallery_descriptors=np.concatenate([train_desc[0], val_desc[0], test_desc[0]]))
    if role in ("classifier", "classifier_image"):
        from models.train_classifier import PROFILES, catalog_targets, train_classifier

        encoder, train_desc, val_desc = frozen_encoder(role, data, artifacts_dir)
        train_targets, names = catalog_targets(data.train.rows)
        val_targets, _ = catalog_targets(data.val.rows, names)
        payload = train_classifier(data.train.images, data.train.titles, train_targets, data.val.images,
                                   data.val.titles, val_targets, names, out, use_text=role == "classifier",
                                   profile=resolve_profile(PROFILES, profile, overrides), device=device,
                                   resume=resume, encoder=encoder, train_descriptors=train_desc,
                                   val_descriptors=val_desc)
        return choose_photo_vote(payload, encoder, train_desc, val_desc, data, out) if role != "classifier" else payload
    if role == "captioner":
        from models.train_captioner import PROFILES, train_captioner

        encoder, train_desc, val_desc = frozen_encoder(role, data, artifacts_dir)
        return train_captioner(data.train.images, data.train.titles, data.val.images, data.val.titles, out,
                               profile=resolve_profile(PROFILES, profile, overrides), device=device, resume=resume,
                               encoder=encoder, train_descriptors=train_desc, val_descriptors=val_desc)
    raise ValueError(f"unknown model {role!r}; choose from {', '.join(ROLES)}")


def train_all(data: Dataset, artifacts_dir: Path, roles: list[str] = ROLES, *, profile: str = "auto",
              device: str | None = None, resume: bool = True, overrides: dict | None = None,
              drawings: Path | None = None, load_seconds: float = 0.0, log=print) -> dict:
    """Train ``roles`` in order (the encoder first: the text model reads it) and write
    ``<artifacts>/reports/training.json``: each model's wall time, version and validation figures, and the total
    (with ``load_seconds``, the time it took to read the catalog before)."""
    import platform

    import torch

    name = profile_name(profile, device)
    report = {"profile": name, "device": device or ("cuda" if name == "full" else "cpu"),
              "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "models": {}}
    started = time.perf_counter() - load_seconds
    report["catalog_seconds"] = round(load_seconds, 1)
    budgets = {role: nominal_budget(role, name) for role in roles}
    for i, role in enumerate(roles):
        if role in READS_FROZEN_ENCODER and "describe_seconds" not in report:
            log("Describing the catalog with the frozen encoder (once, for the models that read it)...")
            start = time.perf_counter()
            describe_catalog(role, data, artifacts_dir, test="text" in roles)
            report["describe_seconds"] = round(time.perf_counter() - start, 1)
        log(f"Training {role} ({name} profile)...")
        role_overrides = dict(overrides or {}) if len(roles) == 1 else {}
        if budgets[role] and "budget_seconds" not in role_overrides:
            later = [b for r in roles[i + 1 :] if (b := budgets[r])]
            role_overrides["budget_seconds"] = round(
                share_of_hour(budgets[role], later, time.perf_counter() - started), 1)
        start = time.perf_counter()
        payload = train_role(role, data, artifacts_dir, profile=name, device=device, resume=resume,
                             overrides=role_overrides or None, drawings=drawings)
        seconds = time.perf_counter() - start
        report["models"][role] = {"seconds": round(seconds, 1), "version": payload["version"],
                                  "budget_seconds": role_overrides.get("budget_seconds"),
                                  "metrics": {k: v for k, v in payload["metrics"].items() if isinstance(v, float)}}
        figures = ", ".join(f"{k} {v:.3f}" for k, v in report["models"][role]["metrics"].items())
        log(f"{role} trained in {seconds:.0f}s: {payload['version']} ({figures})")
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    log("Training times: " + ", ".join(f"{r} {m['seconds']:.0f}s" for r, m in report["models"].items())
        + f"; total {report['total_seconds']:.0f}s ({report['total_seconds'] / 60:.1f} min)")
    path = artifacts_dir / "reports" / "training.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roles", nargs="+", choices=ROLES + ["all"])
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--profile", default="auto", choices=PROFILE_NAMES)
    parser.add_argument("--device", default=None)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N catalog rows")
    parser.add_argument("--override", type=json.loads, default=None,
                        help="JSON of profile fields to change (one model at a time)")
    parser.add_argument("--drawings", type=Path, default=None, help="folder of people's drawings to train on")
    args = parser.parse_args(argv)
    roles = ROLES if "all" in args.roles else args.roles
    start = time.perf_counter()
    data = load_for_training(args.catalog, args.artifacts, args.limit)
    train_all(data, args.artifacts, roles, profile=args.profile, device=args.device, overrides=args.override,
              drawings=args.drawings, load_seconds=time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
