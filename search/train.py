"""Train the project's models from a catalog directory (Django-free).

    python -m search.train encoder --catalog DIR --artifacts DIR [--profile quick|full] [--device cpu|cuda]

``manage.py train`` calls the same functions with the settings' paths. Each
model is one checkpoint file under ``<artifacts>/models/``; a run resumes from
``<file>.partial`` when interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from search.dataset import Dataset, load_dataset
from search.engine import MODEL_FILES

ROLES = ["encoder"]


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


def train_role(role: str, data: Dataset, artifacts_dir: Path, *, profile: str, device: str | None,
               resume: bool = True) -> dict:
    models_dir = artifacts_dir / "models"
    out = models_dir / MODEL_FILES[role]
    if role == "encoder":
        from models.train_encoder import train_encoder

        return train_encoder(data.train.images, data.train.labels, data.val.images, data.val.labels,
                             data.class_names, out, profile=profile, device=device, resume=resume)
    raise ValueError(f"unknown model {role!r}; choose from {', '.join(ROLES)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roles", nargs="+", choices=ROLES + ["all"])
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--device", default=None)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N catalog rows")
    args = parser.parse_args(argv)
    roles = ROLES if "all" in args.roles else args.roles
    data = load_for_training(args.catalog, args.artifacts, args.limit)
    for role in roles:
        start = time.perf_counter()
        payload = train_role(role, data, args.artifacts, profile=args.profile, device=args.device)
        print(f"{role}: {payload['version']} in {time.perf_counter() - start:.0f}s, metrics {payload['metrics']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
