"""The Schematic tab: upload a drawing, see it read (overlay, component table, netlist), download netlists."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import numpy as np

from pipelines.document import Circuit, write_atomic
from pipelines.schematic import draw_overlay, read_schematic, to_json, to_kicad, to_spice

TABLE_HEADERS = ["id", "type", "value", "pins (name→net)", "score"]


def component_rows(circuit: Circuit) -> list[list[Any]]:
    """One table row per component."""
    return [
        [c.id, c.type, c.value, ", ".join(f"{p.name}→{p.net}" for p in c.pins), round(c.score, 2)]
        for c in circuit.components
    ]


def summary_text(circuit: Circuit, seconds: float) -> str:
    parts = sum(1 for c in circuit.components if c.type not in ("ground", "supply"))
    text = f"Read **{parts}** components and **{len(circuit.nets)}** nets in {seconds:.2f} s."
    if circuit.warnings:
        text += "\n\n" + "\n".join(f"- {w}" for w in circuit.warnings)
    return text


def build_schematic_tab() -> None:
    """Create the Schematic tab's content inside the current `gr.Tab("Schematic")`."""
    gr.Markdown(
        "Upload a schematic (a CAD export, a figure cropped from a datasheet, a scan). Components, values and "
        "nets are read into a netlist; the overlay shows parts boxed, pins dotted and each net in its own colour."
    )
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.Image(label="Schematic", type="numpy", sources=("upload", "clipboard"), elem_id="schem-upload")
            repair = gr.Radio(["off", "auto"], value="off", label="Repair damage first", elem_id="schem-repair")
            run = gr.Button("Read schematic", variant="primary", elem_id="schem-run")
        with gr.Column(scale=2):
            overlay = gr.Image(label="Overlay", type="numpy", format="png", elem_id="schem-overlay")
            summary = gr.Markdown(elem_id="schem-summary")
    table = gr.Dataframe(headers=TABLE_HEADERS, label="Components", interactive=False, elem_id="schem-table")
    with gr.Row():
        netlist = gr.Code(label="SPICE netlist", elem_id="schem-netlist")
        downloads = gr.File(label="Downloads", file_count="multiple", elem_id="schem-download")

    def do_read(image: np.ndarray | None, mode: str) -> tuple[Any, ...]:
        import time

        if image is None:
            raise gr.Error("Upload a schematic first.")
        start = time.perf_counter()
        try:
            circuit = read_schematic(image, repair=mode)
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        seconds = time.perf_counter() - start
        folder = Path(tempfile.mkdtemp(prefix="ohmlens-schematic-"))
        spice = to_spice(circuit, title="uploaded schematic")
        files = [folder / "schematic.cir", folder / "schematic.json", folder / "schematic.net"]
        write_atomic(files[0], spice)
        write_atomic(files[1], json.dumps(to_json(circuit), indent=1, ensure_ascii=False))
        write_atomic(files[2], to_kicad(circuit, title="uploaded schematic"))
        picture = draw_overlay(image if image.ndim == 2 else image[..., :3], circuit)
        ok, buf = cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        if ok:
            files.append(folder / "schematic.overlay.png")
            write_atomic(files[-1], buf.tobytes())
        return picture, summary_text(circuit, seconds), component_rows(circuit), spice, [str(f) for f in files]

    run.click(do_read, inputs=[upload, repair], outputs=[overlay, summary, table, netlist, downloads])
