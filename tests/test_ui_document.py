"""The Document tab in a real browser: upload a sample, see tables and links, jump to a link target."""

from __future__ import annotations

import pytest

from tests.conftest import ARTIFACTS, REPO

SAMPLE = REPO / "samples" / "datasheet-small.pdf"


@pytest.mark.browser
def test_upload_shows_tables_and_links(browser_page) -> None:
    if not SAMPLE.exists():
        pytest.fail(f"committed sample missing: {SAMPLE}")
    page = browser_page
    page.locator("#doc-upload input[type=file]").set_input_files(str(SAMPLE))
    page.locator("#doc-parse").click()
    page.wait_for_function(
        "document.querySelector('#doc-summary') && document.querySelector('#doc-summary').innerText.includes('tables')",
        timeout=120_000,
    )
    summary = page.locator("#doc-summary").inner_text()
    assert "datasheet-small.pdf" in summary
    grid = page.locator("#doc-table-grid")
    grid.locator("td").first.wait_for(timeout=30_000)
    assert grid.locator("td").count() >= 4
    page.get_by_role("tab", name="Links").click()
    rows = page.locator("#doc-links tbody tr")
    rows.first.wait_for(timeout=30_000)
    assert rows.count() >= 5
    rows.first.locator("td").nth(1).click()
    page.wait_for_timeout(1500)
    assert page.locator("#doc-page-image img").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui_document.png"), full_page=True)
