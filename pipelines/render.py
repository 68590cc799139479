"""Page pictures for viewers: a PDF page with block boxes drawn over it."""

from __future__ import annotations

from pathlib import Path

import pymupdf
from PIL import Image, ImageDraw

from pipelines.document import Block

KIND_COLOURS = {
    "heading": (214, 39, 40),
    "paragraph": (31, 119, 180),
    "list_item": (23, 190, 207),
    "table": (44, 160, 44),
    "figure": (255, 127, 14),
    "schematic": (148, 103, 189),
    "caption": (140, 86, 75),
    "formula": (227, 119, 194),
    "code": (127, 127, 127),
    "page_header": (188, 189, 34),
    "page_footer": (188, 189, 34),
}
MAX_VIEW_PIXELS = 6_000_000


def render_page(
    pdf_path: Path, page: int, blocks: list[Block], highlight: set[str] | None = None, dpi: int = 110
) -> Image.Image:
    """The 1-based page with each block's box in its kind's colour; highlighted blocks get a thick yellow box."""
    highlight = highlight or set()
    with pymupdf.open(pdf_path) as pdf:
        p = pdf[page - 1]
        area = p.rect.width * p.rect.height * (dpi / 72) ** 2
        if area > MAX_VIEW_PIXELS:
            dpi = int(dpi * (MAX_VIEW_PIXELS / area) ** 0.5)
        pix = p.get_pixmap(dpi=dpi, colorspace=pymupdf.csRGB)
    img = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
    draw = ImageDraw.Draw(img, "RGBA")
    scale = dpi / 72
    for b in blocks:
        box = [v * scale for v in b.bbox]
        if b.id in highlight:
            draw.rectangle(box, fill=(255, 230, 0, 70), outline=(230, 180, 0, 255), width=4)
        else:
            colour = KIND_COLOURS.get(b.kind, (0, 0, 0))
            draw.rectangle(box, outline=(*colour, 200), width=2)
    return img
