"""Test-time variants of a drawing on the drawings by people (docs/drawings.md, "Test-time variants"):

    python docs/drawing_variants.py VARIANT [--json OUT]      # VARIANT: none, thick, rot, squash, or e.g. thick+rot

Runs ``python manage.py evaluate --human-only`` with the active models and index, each single drawing's vector
replaced by the normalised mean of its vector and those of variants of it: ``thick`` (strokes thickened by a 2x2
erosion), ``rot`` (turned by -10 and +10 degrees), ``squash`` (80 % as tall, and 80 % as wide). Prints the macro
P@5 over the 19 kinds and over the 15 the training pool does not show.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
django.setup()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from django.core.management import call_command  # noqa: E402

from search.images import IMAGE_H, IMAGE_W  # noqa: E402
from search.trained import Image2Vec  # noqa: E402


def variants(drawing: np.ndarray, names: str) -> np.ndarray:
    """A drawing uint8 (80, 60, 3), grey, and its variants named in ``names``, as one batch."""
    grey = drawing[..., 0]
    centre = (IMAGE_W / 2, IMAGE_H / 2)
    out = [grey]
    if "thick" in names:
        out.append(cv2.erode(grey, np.ones((2, 2), np.uint8)))
    if "rot" in names:
        out += [cv2.warpAffine(grey, cv2.getRotationMatrix2D(centre, a, 1.0), (IMAGE_W, IMAGE_H), borderValue=255)
                for a in (-10, 10)]
    if "squash" in names:
        for sx, sy in ((1.0, 0.8), (0.8, 1.0)):
            m = np.float32([[sx, 0, centre[0] * (1 - sx)], [0, sy, centre[1] * (1 - sy)]])
            out.append(cv2.warpAffine(grey, m, (IMAGE_W, IMAGE_H), borderValue=255, flags=cv2.INTER_AREA))
    return np.repeat(np.stack(out)[..., None], 3, axis=-1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variant")
    parser.add_argument("--json", default="/tmp/drawing-variants.json")
    args = parser.parse_args()
    served = Image2Vec.embed

    def embed(self, images, batch_size=None):
        one_drawing = len(images) == 1 and np.array_equal(images[0, ..., 0], images[0, ..., 1])
        if args.variant == "none" or not one_drawing:
            return served(self, images, batch_size)
        mean = served(self, variants(images[0], args.variant)).mean(axis=0, keepdims=True)
        return (mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32)

    Image2Vec.embed = embed
    call_command("evaluate", human_only=True, json_path=args.json)
    human = json.loads(Path(args.json).read_text())["human"]
    print(f"{args.variant}: macro {human['macro_p_at_5']:.3f}, "
          f"15 kinds {human['macro_p_at_5_kinds_not_trained_on']:.3f}, worst {human['min_p_at_5']:.2f}")


if __name__ == "__main__":
    main()
