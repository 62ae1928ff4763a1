"""Staff in a real browser: log in through the admin, rebuild the index and watch the progress bar
reach done, then read the model report with its embedding map."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import skip_without_browser
from webapp.models import IndexVersion, Job

pytestmark = [pytest.mark.e2e, skip_without_browser]
PASSWORD = "correct horse battery"


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("curator", password=PASSWORD, is_staff=True, is_superuser=True)


def log_in(web, staff, next_path: str):
    page = web.open(f"/admin/login/?next={next_path}")
    page.get_by_label("Username").fill(staff.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{next_path}")
    return page


def test_reindex_from_the_admin_reaches_done(web, searchable, staff, eager_celery):
    before = IndexVersion.objects.get(is_active=True)
    page = log_in(web, staff, "/admin/webapp/indexversion/")
    web.shot(page, "10-admin-index-versions")
    page.get_by_role("button", name="Rebuild the search index").click()
    page.wait_for_url("**/jobs/*/")
    page.wait_for_function("document.getElementById('job-status').textContent === 'done'")
    assert page.locator("#job-bar").evaluate("bar => bar.value") == 100
    web.shot(page, "11-reindex-done")
    assert Job.objects.get().status == "done"
    active = IndexVersion.objects.get(is_active=True)
    assert active.pk != before.pk and active.count == 160


def test_model_report_with_embedding_map(web, searchable, staff):
    page = log_in(web, staff, "/report/")
    assert page.get_by_role("heading", name="Model report").is_visible()
    assert any(h.startswith("encoder ") for h in page.locator(".checkpoint h3").all_inner_texts())
    page.wait_for_function("document.querySelectorAll('#embedding svg circle').length === 160")
    curves = page.locator(".curves img").first
    curves.scroll_into_view_if_needed()
    curves.evaluate("img => img.decode()")  # rendered by matplotlib on first request
    page.locator("#map-legend button").first.click()
    assert page.locator("#map-legend button").first.get_attribute("aria-pressed") == "true"
    # Points of one category overlap: click where one is, and whichever lies on top there is picked.
    page.locator("#embedding svg circle.lit").last.click(force=True)
    item = page.locator("#map-item")
    assert item.locator("a").get_attribute("href").startswith("/items/")
    item.locator("img").evaluate("img => img.decode()")
    web.shot(page, "12-model-report")
    # Staff see the report in the main navigation.
    assert page.get_by_role("navigation", name="main").get_by_role("link", name="Model report").is_visible()


def test_staff_upload_and_tag_then_find_it(web, searchable, staff, tmp_path):
    """Staff upload a product photo with a title, confirm the suggested tags, and search finds the item."""
    import numpy as np

    from tests.conftest import COLOURS, draw_item
    from webapp.models import Item

    photo = tmp_path / "new-watch.jpg"
    draw_item("Watches", COLOURS["Green"], np.random.default_rng(42)).save(photo, quality=92)
    page = log_in(web, staff, "/items/new/")
    page.set_input_files("input[name=image]", str(photo))
    page.fill("input[name=title]", "Acme Men Green Watches 999")
    page.get_by_role("button", name="Suggest tags").click()
    page.wait_for_selector("input[name=token]", state="attached")
    assert page.locator("img.heatmap").count() == 1
    web.shot(page, "13-upload-suggested-tags")
    page.get_by_role("button", name="Save and make searchable").click()
    page.wait_for_url("**/items/*/?added=1")
    item = Item.objects.get(title="Acme Men Green Watches 999")
    assert item.source == "upload" and item.category  # a suggested category was confirmed
    # The new item is searchable at once (live buffer): its own photo finds it first.
    page = web.open("/")
    page.uncheck("#live-search")
    page.set_input_files("#photo-input", str(photo))
    with page.expect_response(lambda r: r.url.endswith("/api/search")):
        page.get_by_role("button", name="Search").click()
    page.wait_for_selector("#results-body .card")
    assert "Acme Men Green Watches 999" in page.locator("#results-body .card").first.inner_text()
    web.shot(page, "14-uploaded-item-found")
