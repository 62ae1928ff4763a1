"""Upload a product photo without a title on the staff page of a running app (Playwright + Debian chromium)
and save a screenshot of the suggestions: the category with the nearest catalog items that voted on it, the
heatmap, the draft title. Usage:

    python docs/upload_demo.py http://127.0.0.1:8000 PASSWORD PHOTO.jpg docs/screenshots/upload.png
"""

import sys

from playwright.sync_api import sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-quic", "--disable-sync"]


def main(base: str, password: str, photo: str, out: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        page.goto(base + "/admin/login/?next=/items/new/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", password)
        page.click("input[type=submit]")
        page.wait_for_url("**/items/new/")
        page.set_input_files("input[name=image]", photo)
        page.click("button.primary")
        page.wait_for_selector(".confirm-form")
        page.screenshot(path=out, full_page=True)
        chosen = page.eval_on_selector("input[name=category]:checked", "e => e.value")
        near = page.eval_on_selector_all(".neighbours .meta", "els => els.map(e => e.textContent.trim())")
        print(f"suggested category: {chosen}; nearest items: {near}")
        browser.close()


if __name__ == "__main__":
    main(*sys.argv[1:5])
