"""Write the canvas drawings of docs/draw_demo.py as a sketch query set for `evaluate --queries`:

    python docs/drawn_queries.py docs/queries/drawn
    python manage.py evaluate --queries docs/queries/drawn/queries.csv --json drawn.json

Each drawing is drawn as the canvas draws it (512 x 512, black round-jointed strokes of the default brush, 7 px, on
white), one PNG per drawing, and the CSV says what kind of product each should find.
"""

import csv
import sys
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from draw_demo import DRAWINGS, EXPECTED  # noqa: E402

CANVAS = 512
BRUSH = 7


def render(strokes) -> Image.Image:
    img = Image.new("RGB", (CANVAS, CANVAS), "white")
    draw = ImageDraw.Draw(img)
    for stroke in strokes:
        draw.line([(x * CANVAS, y * CANVAS) for x, y in stroke], fill="black", width=BRUSH, joint="curve")
    return img


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "queries.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["query_image", "kind", "text", "expected_category", "category_level", "expected_item_id"])
        for name, strokes in DRAWINGS.items():
            file = name.replace(" ", "-") + ".png"
            render(strokes).save(out / file)
            category, level = EXPECTED[name]
            writer.writerow([file, "sketch", "", category, level, ""])
    print(f"{len(DRAWINGS)} drawings in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
