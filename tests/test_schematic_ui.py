"""The Schematic tab: table/summary helpers, and in Chromium upload → read → overlay, table, netlist, downloads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from app.ui_schematic import build_schematic_tab, component_rows, summary_text
from pipelines.document import Circuit, Component, Pin
from tests.conftest import ARTIFACTS, chromium_page, serve_tab
from vision.synth.render import render_sample


def test_rows_and_summary() -> None:
    c = Circuit(
        components=[
            Component("R1", "resistor", "10k", (0, 0, 1, 1), [Pin("1", (0, 0), "IN"), Pin("2", (1, 1), "0")], 0.9),
            Component("#GND1", "ground", "", (0, 0, 1, 1), [Pin("1", (0, 0), "0")], 0.8),
        ],
        nets=["0", "IN"],
        warnings=["this looks like a photograph; reading may be unreliable"],
    )
    assert component_rows(c)[0] == ["R1", "resistor", "10k", "1→IN, 2→0", 0.9]
    text = summary_text(c, 0.5)
    assert "**1** components" in text and "**2** nets" in text and "photograph" in text


@pytest.fixture(scope="module")
def schematic_app() -> Iterator[str]:
    with serve_tab("Schematic", build_schematic_tab) as url:
        yield url


@pytest.mark.browser
def test_upload_read_and_download_in_the_browser(schematic_app: str, tmp_path: Path) -> None:
    src = tmp_path / "amplifier.png"
    cv2.imwrite(str(src), render_sample(5005, {"paper": "white", "color": False}).image)
    with chromium_page(schematic_app, height=1200) as page:
        page.click("#schem-run")  # nothing uploaded yet: a clear message, no crash
        page.get_by_text("Upload a schematic first.").first.wait_for(timeout=30_000)
        page.locator("#schem-upload input[type=file]").set_input_files(str(src))
        page.wait_for_timeout(1500)
        page.click("#schem-run")
        summary = page.locator("#schem-summary")
        summary.get_by_text("components").wait_for(timeout=120_000)
        assert "nets" in summary.inner_text()
        assert page.locator("#schem-overlay img").count() == 1
        table = page.locator("#schem-table").inner_text()
        assert "resistor" in table and table.count("→") >= 8  # every part lists its pins and nets
        assert ".end" in page.locator("#schem-netlist").inner_text()
        links = page.locator("#schem-download a")
        links.first.wait_for(timeout=30_000)
        hrefs = " ".join((links.nth(i).get_attribute("href") or "") for i in range(links.count()))
        assert "schematic.cir" in hrefs and "schematic.net" in hrefs and "schematic.json" in hrefs
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "schematic_tab.png"), full_page=True)
