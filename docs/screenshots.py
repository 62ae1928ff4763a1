"""Screenshots of the pages a new user meets, from a running app, in Chromium (Playwright + Debian's chromium):
a sketch search and a photo search, the catalog, an item, an untitled upload with its draft title, the model
report, and a reindex from start to done. Usage:

    python docs/screenshots.py http://127.0.0.1:8000 --password "$(cat var/admin-password.txt)" [--user admin]
        [--out docs/screenshots/ux] [--no-reindex]

The reindex (Admin -> Index versions -> "Rebuild the search index") builds a new index version on that app,
reusing every unchanged vector; ``--no-reindex`` leaves the app as it is. Nothing else is changed: the upload
stops at the suggestions, before saving.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-quic", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 900}
# A T-shirt drawn in three strokes, in canvas fractions.
TSHIRT = [
    [(0.15, 0.30), (0.35, 0.18), (0.45, 0.24), (0.55, 0.24), (0.65, 0.18), (0.85, 0.30), (0.76, 0.44), (0.68, 0.39)],
    [(0.68, 0.39), (0.68, 0.85), (0.32, 0.85), (0.32, 0.39)],
    [(0.32, 0.39), (0.24, 0.44), (0.15, 0.30)],
]


def shot(page, out: Path, name: str, full_page: bool = True) -> None:
    if full_page:  # lazy photos below the fold would be blank in a picture of the whole page
        page.evaluate("""() => Promise.all([...document.images].map(img => {
            img.loading = "eager"; return img.decode().catch(() => null); }))""")
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    print(f"  {path}")


def draw(page, strokes) -> None:
    box = page.locator("#sketch-canvas").bounding_box()
    for stroke in strokes:
        page.mouse.move(box["x"] + stroke[0][0] * box["width"], box["y"] + stroke[0][1] * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=6)
        page.mouse.up()


def wait_for_results(page) -> None:
    page.wait_for_function("document.getElementById('results').getAttribute('aria-busy') === 'false' && "
                           "(document.querySelector('#results .card') || "
                           "!document.getElementById('search-error').hidden)")


def log_in(context, base: str, user: str, password: str) -> None:
    page = context.new_page()
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", user)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    page.close()


def main(base: str, user: str, password: str, out: Path, reindex: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        shopper = browser.new_context(viewport=DESKTOP, base_url=base)
        shopper.set_default_timeout(120_000)
        page = shopper.new_page()

        print("the catalog, and a photo from it to search and upload with")
        page.goto("/browse/")
        page.wait_for_load_state("load")
        shot(page, out, "browse")
        card = page.locator(".card").nth(4)
        photo = shopper.request.get(card.locator("img").get_attribute("src")).body()
        item_url = card.locator(":scope > a").get_attribute("href")

        print("a sketch search: no scores on the cards, no road to choose, what the model imagined")
        page.goto("/")
        draw(page, TSHIRT)
        wait_for_results(page)
        shot(page, out, "search-sketch")

        print("a photo search")
        page.goto("/")
        page.set_input_files("#photo-input", {"name": "photo.jpg", "mimeType": "image/jpeg", "buffer": photo})
        wait_for_results(page)
        shot(page, out, "search-photo")
        page.locator("#results .card").first.screenshot(path=str(out / "card.png"))  # the photo at 2x, crisp
        print(f"  {out / 'card.png'}")

        print(f"an item page, at its catalog id ({item_url})")
        page.goto(item_url)
        page.wait_for_load_state("load")
        shot(page, out, "item")

        staff = browser.new_context(viewport=DESKTOP, base_url=base)
        staff.set_default_timeout(120_000)
        log_in(staff, base, user, password)
        page = staff.new_page()

        print("an untitled upload: the draft title names no brand")
        page.goto("/items/new/")
        page.set_input_files("input[name=image]", {"name": "photo.jpg", "mimeType": "image/jpeg", "buffer": photo})
        page.get_by_role("button", name="Suggest tags").click()
        page.wait_for_selector(".confirm-form")
        shot(page, out, "upload-draft")

        print("the model report: the evaluation's n, the curves' legends beside the lines")
        page.goto("/report/")
        page.wait_for_load_state("load")
        shot(page, out, "report")
        page.locator("#evaluation").screenshot(path=str(out / "report-evaluation.png"))
        print(f"  {out / 'report-evaluation.png'}")
        classifier = page.locator(".checkpoint", has_text="classifier").first
        if classifier.count():
            classifier.locator(".curves img").evaluate("img => img.decode()")
            classifier.screenshot(path=str(out / "report-classifier.png"))
            print(f"  {out / 'report-classifier.png'}")

        if reindex:
            print("a reindex from the admin: its steps with counts, then what was built")
            page.goto("/admin/webapp/indexversion/")
            page.get_by_role("button", name="Rebuild the search index").click()
            page.wait_for_url("**/jobs/*/")
            shot(page, out, "reindex-progress", full_page=False)
            page.wait_for_function("['done', 'failed'].includes(document.getElementById('job-status').textContent)",
                                   timeout=600_000)
            shot(page, out, "reindex-done", full_page=False)
        browser.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_url", help="the running app, e.g. http://127.0.0.1:8000")
    parser.add_argument("--user", default="admin", help="a staff user (default: admin, as make demo creates)")
    parser.add_argument("--password", required=True, help="that user's password (make demo: var/admin-password.txt)")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots/ux"), help="where the PNGs go")
    parser.add_argument("--no-reindex", dest="reindex", action="store_false", help="do not start a reindex")
    options = parser.parse_args()
    main(options.base_url.rstrip("/"), options.user, options.password, options.out, options.reindex)
