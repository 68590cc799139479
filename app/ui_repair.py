"""The Repair tab: upload a damaged drawing, optionally paint over the damage, see before/after, download."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import numpy as np

from pipelines.document import write_atomic
from pipelines.repair import encode_image, load_image, repair_drawing


def editor_inputs(value: dict[str, Any] | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The uploaded drawing and the painted mask (None when nothing was painted) from an ImageEditor value.

    Raises:
        gr.Error: no drawing was uploaded.
    """
    background = None if value is None else value.get("background")
    if background is None:
        raise gr.Error("Upload a drawing first.")
    h, w = background.shape[:2]
    painted = np.zeros((h, w), bool)
    for layer in value.get("layers") or []:
        if layer is None:
            continue
        if layer.ndim == 3:
            alpha = layer[..., 3] if layer.shape[2] == 4 else layer.max(axis=2)
        else:
            alpha = layer
        if alpha.shape != (h, w):
            alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_NEAREST)
        painted |= alpha > 0
    return background, (painted if painted.any() else None)


def _overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The drawing with the damage mask tinted red."""
    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image.copy()
    hit = mask > 0
    rgb[hit] = (0.45 * rgb[hit] + 0.55 * np.array([230, 30, 30])).astype(np.uint8)
    return rgb


def build_repair_tab() -> None:
    """Create the Repair tab's content inside the current `gr.Tab("Repair")`."""
    gr.Markdown(
        "Upload a scanned or damaged drawing. The damage (tears, holes, stains, faded ink, gaps, folds, "
        "scribbles) is found automatically; paint over it with the brush to mark it yourself instead."
    )
    with gr.Row():
        with gr.Column():
            editor = gr.ImageEditor(
                label="Drawing (paint over damage to override detection)",
                type="numpy",
                image_mode="RGBA",
                sources=("upload", "clipboard"),
                brush=gr.Brush(colors=["#ff0000"], default_size=14, color_mode="fixed"),
                layers=False,
                transforms=(),
                format="png",
                elem_id="repair-editor",
            )
            run = gr.Button("Repair", variant="primary", elem_id="repair-run")
        with gr.Column():
            compare = gr.ImageSlider(label="Before / after", type="numpy", format="png", elem_id="repair-compare")
            mask_view = gr.Image(label="Damage mask used", type="numpy", format="png", elem_id="repair-mask")
            summary = gr.Markdown(elem_id="repair-summary")
            download = gr.File(label="Repaired drawing", elem_id="repair-download")

    def do_repair(value: dict[str, Any] | None) -> tuple[Any, ...]:
        image, painted = editor_inputs(value)
        try:
            result = repair_drawing(image, painted)
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        before = load_image(image)  # as the repair saw it: transparency composited over white paper
        path = Path(tempfile.mkdtemp(prefix="ohmlens-repair-")) / "repaired.png"
        write_atomic(path, encode_image(result.image, ".png"))
        s = result.stats
        text = (
            f"Repaired **{s['damaged_share']:.1%}** of the drawing ({s['mask_source']} mask); "
            f"{s['wires_joined']} wire gaps joined, {s['wires_extended']} wire ends extended, "
            f"{s['texts_redrawn']} damaged labels redrawn; {s['seconds']:.2f} s."
        )
        return (before, result.image), _overlay(result.image, result.mask), text, str(path)

    run.click(do_repair, inputs=editor, outputs=[compare, mask_view, summary, download])
