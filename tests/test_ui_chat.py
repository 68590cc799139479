"""The Chat tab in a real browser: upload a PDF, ask, follow up, and open the cited page."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ARTIFACTS, build_text_pdf


@pytest.mark.browser
def test_chat_answers_follow_ups_and_opens_cited_page(browser_page, tmp_path: Path) -> None:
    pdf = build_text_pdf(tmp_path / "regulator.pdf")
    page = browser_page
    page.get_by_role("tab", name="Chat").click()
    page.locator("#chat-upload input[type=file]").set_input_files(str(pdf))
    page.locator("#chat-load").click()
    page.wait_for_function(
        "document.querySelector('#chat-status') && document.querySelector('#chat-status').innerText.includes('ready')",
        timeout=120_000,
    )
    question = page.locator("#chat-question textarea")
    question.fill("What is the typical quiescent current?")
    page.locator("#chat-send").click()
    bot = page.locator("#chat-bot")
    page.wait_for_function(
        "document.querySelector('#chat-bot') && document.querySelector('#chat-bot').innerText.includes('35 uA')",
        timeout=180_000,
    )
    assert "page 1" in bot.inner_text()
    page.locator("#chat-page img").wait_for(timeout=30_000)  # the cited page, evidence highlighted
    page.wait_for_function("document.querySelector('#chat-citations').innerText.includes('p1-b')", timeout=30_000)

    question.fill("and the load current?")
    page.locator("#chat-send").click()
    # the first answer's sentence already mentions 600 mA: wait for the second answer's own citation line (the
    # sample repeats that sentence on every page, so any of them is a right citation)
    page.wait_for_function(
        "(document.querySelector('#chat-bot').innerText.match(/\\[1\\] page \\d/g) || []).length >= 2",
        timeout=60_000,
    )
    assert "600 mA" in bot.inner_text().split("and the load current?")[1]
    question.fill("What is the maximum HDMI clock frequency?")
    page.locator("#chat-send").click()
    page.wait_for_function(
        "document.querySelector('#chat-bot').innerText.includes('Not found in this document')",
        timeout=60_000,
    )
    assert "35 uA" not in page.locator("#chat-citations").inner_text()  # a declined answer cites nothing
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui_chat.png"), full_page=True)
