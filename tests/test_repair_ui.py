"""The Repair tab: the editor's painted layer becomes the mask; in Chromium, upload → repair → download."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import pytest

from app.ui_repair import build_repair_tab, editor_inputs
from tests.conftest import ARTIFACTS, chromium_page, serve_tab
from vision.synth.damage import apply_damage


def _drawing() -> np.ndarray:
    img = np.full((360, 480), 255, np.uint8)
    cv2.rectangle(img, (60, 80), (420, 300), 0, 3, cv2.LINE_AA)
    cv2.line(img, (240, 80), (240, 300), 0, 3, cv2.LINE_AA)
    cv2.putText(img, "R1 10k", (200, 60), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 0, 2, cv2.LINE_AA)
    return img


def test_painted_layers_become_the_mask() -> None:
    bg = np.dstack([np.full((40, 60, 3), 255, np.uint8), np.full((40, 60), 255, np.uint8)])
    layer = np.zeros((40, 60, 4), np.uint8)
    layer[10:20, 5:15] = (255, 0, 0, 255)
    image, mask = editor_inputs({"background": bg, "layers": [layer], "composite": bg})
    assert image is bg and mask is not None and mask.sum() == 100 and mask[10:20, 5:15].all()
    assert editor_inputs({"background": bg, "layers": [np.zeros_like(layer)], "composite": bg})[1] is None
    small = np.zeros((20, 30, 4), np.uint8)
    small[5:10, :] = 255  # a layer at another scale is resized onto the drawing
    assert editor_inputs({"background": bg, "layers": [small], "composite": bg})[1][10:20].all()
    with pytest.raises(gr.Error, match="Upload a drawing"):
        editor_inputs(None)
    with pytest.raises(gr.Error, match="Upload a drawing"):
        editor_inputs({"background": None, "layers": [], "composite": None})


@pytest.fixture(scope="module")
def repair_app() -> Iterator[str]:
    with serve_tab("Repair", build_repair_tab) as url:
        yield url


@pytest.mark.browser
def test_upload_repair_and_download_in_the_browser(repair_app: str, tmp_path: Path) -> None:
    damaged, _ = apply_damage(_drawing(), np.random.default_rng(5), kinds=["hole", "scribble"])
    src = tmp_path / "damaged.png"
    cv2.imwrite(str(src), damaged)
    with chromium_page(repair_app) as page:
        page.click("#repair-run")  # nothing uploaded yet: a clear message, no crash
        page.get_by_text("Upload a drawing first.").first.wait_for(timeout=30_000)
        page.locator("#repair-editor input[type=file]").set_input_files(str(src))
        page.wait_for_timeout(1500)
        page.click("#repair-run")
        summary = page.locator("#repair-summary")
        summary.get_by_text("Repaired").wait_for(timeout=90_000)
        assert "predicted mask" in summary.inner_text()
        link = page.locator("#repair-download a").first
        link.wait_for(timeout=30_000)
        assert "repaired" in (link.get_attribute("href") or "") + link.inner_text()
        assert page.locator("#repair-compare img").count() >= 1
        assert page.locator("#repair-mask img").count() == 1
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "repair_tab.png"), full_page=True)
