"""The Document tab in a real browser: upload a sample, see tables and links, jump to a link target."""

from __future__ import annotations

import pytest

from pipelines.ingest import parse_pdf
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
        timeout=300_000,
    )
    summary = page.locator("#doc-summary").inner_text()
    assert "datasheet-small.pdf" in summary
    first_table = parse_pdf(SAMPLE, ocr=False).tables()[0].table  # what the grid must show
    expected = [c.text for c in first_table.cells if c.text.strip()][:4]
    page.wait_for_function(
        "t => document.querySelector('#doc-table-grid').innerText.includes(t)", arg=expected[-1], timeout=30_000
    )
    shown = page.locator("#doc-table-grid").inner_text()
    assert all(text in shown for text in expected)
    page.get_by_role("tab", name="Links").click()
    doc = parse_pdf(SAMPLE, ocr=False)
    mention = next(lk.text for lk in doc.links if lk.kind == "xref" and lk.target)
    page.wait_for_function(
        "t => document.querySelector('#doc-links').innerText.includes(t)", arg=mention, timeout=30_000
    )
    page.locator("#doc-links").get_by_text(mention, exact=True).first.click()
    page.wait_for_timeout(2000)
    assert page.locator("#doc-page-image img").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui_document.png"), full_page=True)
