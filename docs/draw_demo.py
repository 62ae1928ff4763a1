"""Draw garments on the canvas of a running app with a mouse (Playwright + Debian chromium), save a
screenshot of what each returned, and print the top-5 categories. Usage:

    python docs/draw_demo.py http://127.0.0.1:8000 docs/screenshots

The same strokes, drawn into PNG files, are a query set for `evaluate --queries` (docs/drawn_queries.py).
"""

import json
import math
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-quic", "--disable-sync"]


def ellipse(cx, cy, rx, ry, n=28):
    return [(cx + rx * math.cos(2 * math.pi * i / n), cy + ry * math.sin(2 * math.pi * i / n)) for i in range(n + 1)]


def arc(cx, cy, rx, ry, start, stop, n=16):
    """Points of an elliptic arc from ``start`` to ``stop`` degrees (0 = right, 90 = down)."""
    return [(cx + rx * math.cos(math.radians(start + (stop - start) * i / n)),
             cy + ry * math.sin(math.radians(start + (stop - start) * i / n))) for i in range(n + 1)]


# Strokes in canvas units (0..1), as a person draws them: outlines first, a few inner lines.
DRAWINGS = {
    "shoe": [[(0.08, 0.62), (0.12, 0.45), (0.30, 0.42), (0.45, 0.30), (0.58, 0.30), (0.66, 0.40), (0.88, 0.50),
              (0.93, 0.60), (0.90, 0.66), (0.08, 0.66), (0.08, 0.62)],
             [(0.08, 0.60), (0.92, 0.60)], [(0.48, 0.34), (0.55, 0.44)], [(0.52, 0.32), (0.60, 0.42)]],
    "bag": [[(0.18, 0.40), (0.82, 0.40), (0.88, 0.85), (0.12, 0.85), (0.18, 0.40)],
            [(0.32, 0.40), (0.34, 0.22), (0.50, 0.14), (0.66, 0.22), (0.68, 0.40)],
            [(0.16, 0.52), (0.84, 0.52)]],
    "t-shirt": [[(0.30, 0.14), (0.42, 0.20), (0.58, 0.20), (0.70, 0.14), (0.92, 0.30), (0.82, 0.44), (0.74, 0.38),
                 (0.74, 0.88), (0.26, 0.88), (0.26, 0.38), (0.18, 0.44), (0.08, 0.30), (0.30, 0.14)]],
    "sunglasses": [ellipse(0.30, 0.50, 0.16, 0.10), ellipse(0.70, 0.50, 0.16, 0.10),
                   [(0.46, 0.48), (0.50, 0.45), (0.54, 0.48)], [(0.14, 0.47), (0.04, 0.42)],
                   [(0.86, 0.47), (0.96, 0.42)]],
    "watch": [ellipse(0.5, 0.5, 0.16, 0.16), [(0.42, 0.36), (0.42, 0.05)], [(0.58, 0.36), (0.58, 0.05)],
              [(0.42, 0.64), (0.42, 0.95)], [(0.58, 0.64), (0.58, 0.95)], [(0.5, 0.5), (0.5, 0.40)],
              [(0.5, 0.5), (0.57, 0.53)]],
    "dress": [[(0.40, 0.08), (0.45, 0.14), (0.55, 0.14), (0.60, 0.08), (0.64, 0.30), (0.60, 0.42), (0.80, 0.92),
               (0.20, 0.92), (0.40, 0.42), (0.36, 0.30), (0.40, 0.08)], [(0.40, 0.42), (0.60, 0.42)]],
    "trousers": [[(0.30, 0.08), (0.70, 0.08), (0.76, 0.94), (0.56, 0.94), (0.50, 0.30), (0.44, 0.94), (0.24, 0.94),
                  (0.30, 0.08)], [(0.30, 0.14), (0.70, 0.14)]],
    "backpack": [[(0.28, 0.25)] + arc(0.5, 0.25, 0.22, 0.12, 180, 360)[1:] + [(0.72, 0.85), (0.28, 0.85), (0.28, 0.25)],
                 [(0.34, 0.50), (0.66, 0.50), (0.66, 0.75), (0.34, 0.75), (0.34, 0.50)], arc(0.5, 0.12, 0.07, 0.06, 180, 360)],
    "heels": [[(0.10, 0.40), (0.30, 0.45), (0.55, 0.62), (0.85, 0.66), (0.90, 0.72), (0.55, 0.72), (0.30, 0.60),
               (0.18, 0.60), (0.16, 0.85), (0.12, 0.85), (0.10, 0.40)]],
    "cap": [arc(0.45, 0.60, 0.28, 0.30, 180, 360) + [(0.92, 0.62), (0.17, 0.60)], [(0.45, 0.30), (0.45, 0.27)]],
    "shirt": [[(0.36, 0.10), (0.50, 0.20), (0.64, 0.10), (0.90, 0.22), (0.94, 0.70), (0.82, 0.70), (0.76, 0.36),
               (0.76, 0.92), (0.24, 0.92), (0.24, 0.36), (0.18, 0.70), (0.06, 0.70), (0.10, 0.22), (0.36, 0.10)],
              [(0.36, 0.10), (0.42, 0.22), (0.50, 0.20), (0.58, 0.22), (0.64, 0.10)], [(0.50, 0.20), (0.50, 0.92)]],
    "flip flops": [ellipse(0.30, 0.52, 0.12, 0.38), ellipse(0.70, 0.52, 0.12, 0.38),
                   [(0.21, 0.45), (0.30, 0.28), (0.39, 0.45)], [(0.61, 0.45), (0.70, 0.28), (0.79, 0.45)]],
    # Second and third drawings of the four kinds, in other shapes and with the details people add
    # (a flap line, laces, a neckline), so that one drawing's luck does not decide a kind.
    "bag 2": [[(0.15, 0.45), (0.85, 0.45), (0.90, 0.88), (0.10, 0.88), (0.15, 0.45)],
              arc(0.5, 0.45, 0.22, 0.28, 180, 360), [(0.13, 0.58), (0.87, 0.58)]],
    "bag 3": [[(0.18, 0.38), (0.82, 0.38), (0.82, 0.88), (0.18, 0.88), (0.18, 0.38)],
              arc(0.38, 0.38, 0.08, 0.22, 180, 360), arc(0.62, 0.38, 0.08, 0.22, 180, 360)],
    "bag 4": [[(0.12, 0.50), (0.88, 0.50)] + arc(0.5, 0.50, 0.38, 0.36, 0, 180)[1:],
              arc(0.5, 0.50, 0.24, 0.32, 180, 360)],
    "shoe 2": [[(0.06, 0.70), (0.08, 0.50), (0.22, 0.46), (0.40, 0.32), (0.55, 0.30), (0.62, 0.42), (0.85, 0.52),
                (0.94, 0.62), (0.94, 0.70), (0.06, 0.70)]],
    "shoe 3": [[(0.05, 0.62), (0.10, 0.50), (0.35, 0.47), (0.50, 0.40), (0.62, 0.42), (0.92, 0.56), (0.95, 0.64),
                (0.05, 0.64), (0.05, 0.62)], [(0.42, 0.45), (0.52, 0.50)], [(0.18, 0.64), (0.18, 0.58)]],
    "t-shirt 2": [[(0.32, 0.12), (0.68, 0.12), (0.94, 0.26), (0.86, 0.42), (0.74, 0.36), (0.76, 0.90), (0.24, 0.90),
                   (0.26, 0.36), (0.14, 0.42), (0.06, 0.26), (0.32, 0.12)],
                  [(0.40, 0.12), (0.50, 0.26), (0.60, 0.12)], [(0.80, 0.39), (0.89, 0.31)], [(0.20, 0.39), (0.11, 0.31)]],
    "sunglasses 2": [[(0.08, 0.40), (0.46, 0.40), (0.44, 0.58), (0.12, 0.60), (0.08, 0.40)],
                     [(0.54, 0.40), (0.92, 0.40), (0.88, 0.60), (0.56, 0.58), (0.54, 0.40)],
                     [(0.46, 0.44), (0.54, 0.44)], [(0.08, 0.42), (0.02, 0.38)], [(0.92, 0.42), (0.98, 0.38)]],
    "sunglasses 3": [ellipse(0.28, 0.50, 0.14, 0.14), ellipse(0.72, 0.50, 0.14, 0.14),
                     arc(0.5, 0.46, 0.08, 0.05, 180, 360), [(0.14, 0.46), (0.04, 0.44)], [(0.86, 0.46), (0.96, 0.44)]],
}
# What each drawing should find: (category, level), as `evaluate --queries` reads them.
EXPECTED = {"shoe": ("Shoes", "subCategory"), "bag": ("Handbags", "articleType"), "t-shirt": ("Tshirts", "articleType"),
            "sunglasses": ("Sunglasses", "articleType"), "watch": ("Watches", "articleType"),
            "dress": ("Dresses", "articleType"), "trousers": ("Bottomwear", "subCategory"),
            "backpack": ("Backpacks", "articleType"), "heels": ("Heels", "articleType"), "cap": ("Caps", "articleType"),
            "shirt": ("Shirts", "articleType"), "flip flops": ("Flip Flops", "articleType")}
EXPECTED.update({f"{kind} {n}": EXPECTED[kind] for kind, n in
                 [("bag", 2), ("bag", 3), ("bag", 4), ("shoe", 2), ("shoe", 3), ("t-shirt", 2), ("sunglasses", 2),
                  ("sunglasses", 3)]})


def main(base: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        for name, strokes in DRAWINGS.items():
            page.goto(base + "/")
            page.uncheck("#live-search")  # search once, with the whole drawing
            box = page.locator("#sketch-canvas").bounding_box()
            for stroke in strokes:
                page.mouse.move(box["x"] + stroke[0][0] * box["width"], box["y"] + stroke[0][1] * box["height"])
                page.mouse.down()
                for x, y in stroke[1:]:
                    page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=5)
                page.mouse.up()
            with page.expect_response(lambda r: r.url.endswith("/api/search")) as answer:
                page.click("#search-button")
            body = answer.value.json()
            page.wait_for_timeout(800)
            page.screenshot(path=str(out / f"drawn-{name.replace(' ', '-')}.png"))
            summary[name] = [r["category"] for r in body["results"][:5]]
            print(name, summary[name], body["timings_ms"].get("total"))
        browser.close()
    (out / "drawn-summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"), Path(sys.argv[2]))
