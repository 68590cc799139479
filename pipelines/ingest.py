"""PDF ingest: one pass over the pages, then document-level stages.

Each page is read once (`get_text("dict")`, cheap vector-drawing summary, image placements) and turned
into blocks in reading order; expensive steps (table finding, OCR, crop rendering) run only where the
page shows evidence for them. Pages stream one at a time, so memory does not grow with page count
beyond the text itself.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import shutil
import statistics
import subprocess
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pymupdf

from pipelines.document import Block, Circuit, Document, OutlineEntry, write_atomic

MAX_PAGES = 5000  # refuse larger PDFs: bounded work per upload
MAX_RENDER_PIXELS = 20_000_000  # cap for any page or crop we rasterise
CROP_DPI = 144
OCR_DPI = 150
# MuPDF caches the fonts and images of every page read, up to 256 MB; emptying the cache every few pages keeps
# memory flat on long files at no measurable cost (fonts reload at most once per stretch of pages)
STORE_SHRINK_PAGES = 8
MAX_FILE_BYTES = 2 * 1024**3

Stage = Callable[[Document], Document]
Progress = Callable[[int, int], None]

# A caption opens with its label, then punctuation, a capitalised title or nothing: "Table 3. Ratings",
# "Figure 7-2 Block Diagram"; "Table 38 lists…" and "Fig. 4 shows…" open sentences, not captions.
CAPTION_RE = re.compile(
    r"^\s*(?i:Table|Tab\.|Figure|Fig\.?|Scheme|Chart|Diagram|Listing)\s*[A-Z]?\d+([.\-–]\d+)*[a-z]?"
    r"(\s*[.:\-–—|](\s|$)|\s+(?=[A-Z(\d])|\s*$)"
)
NUMBERED_HEADING_RE = re.compile(r"^(\d+(\.\d+){0,5}|[A-Z](\.\d+){1,4}|Appendix\s+[A-Z])\.?\s+\S")
BULLET_RE = re.compile(r"^\s*([•◦▪▫●○■□►▸‣⁃∙·\-–*]|\(?[0-9]{1,2}[.)]|\(?[a-z][.)])\s+")
EQUATION_NUMBER_RE = re.compile(r"\(\s*\d+(\.\d+)?[a-z]?\s*\)")
MATH_FONT_RE = re.compile(r"CMMI|CMSY|CMEX|Math|Symbol|STIX|Cambria\s*Math", re.IGNORECASE)
MONO_FONT_RE = re.compile(r"Mono|Courier|Consol|Menlo|Code|Typewriter|CMTT", re.IGNORECASE)
MATH_CHARS = set("=+−×÷∑∫√≤≥≈∞∂∆αβγδεθλμπσωΩ^_")


class PdfError(ValueError):
    """A PDF that cannot be parsed, with a one-line reason."""


@dataclass
class _Style:
    size: float
    bold: bool
    mono: bool
    math: float  # share of characters in math fonts or math symbols
    n_lines: int


@dataclass
class ParseOptions:
    """What to parse and where to put side outputs."""

    pages: list[int] | None = None  # 1-based pages to parse; None = all
    password: str | None = None
    crops_dir: Path | None = None  # where figure crops go; None = no crops
    ocr: bool = True
    tables: bool = True
    circuits: bool = False  # read each schematic block into a Circuit (about a second per drawing on CPU)


def parse_page_range(spec: str, page_count: int) -> list[int]:
    """Turn "1-20,25" into sorted 1-based page numbers within the document.

    Raises:
        PdfError: malformed spec or no page of it inside the document.
    """
    pages: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise PdfError(f"bad page range {spec!r}: use e.g. 1-20 or 3,5,7-9")
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        if lo < 1 or hi < lo:
            raise PdfError(f"bad page range {spec!r}: pages start at 1 and ranges go upwards")
        pages.update(range(lo, min(hi, page_count) + 1))
    if not pages:
        raise PdfError(f"page range {spec!r} is outside the document ({page_count} pages)")
    return sorted(pages)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def open_pdf(path: Path, password: str | None = None) -> pymupdf.Document:
    """Open a PDF, refusing what is not one with a clear reason.

    Raises:
        PdfError: missing, not a PDF, corrupt, encrypted without the right password, empty, too long.
    """
    if not path.is_file():
        raise PdfError(f"{path.name}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise PdfError(f"{path.name}: file is empty")
    if size > MAX_FILE_BYTES:
        raise PdfError(f"{path.name}: file is larger than {MAX_FILE_BYTES >> 30} GiB")
    with open(path, "rb") as f:
        head = f.read(1024)
    if b"%PDF-" not in head:
        raise PdfError(f"{path.name}: not a PDF (no %PDF header)")
    try:
        doc = pymupdf.open(path, filetype="pdf")
    except Exception as exc:  # MuPDF raises several types for broken files
        raise PdfError(f"{path.name}: corrupt or truncated PDF ({exc})") from exc
    if doc.needs_pass:
        if not password:
            raise PdfError(f"{path.name}: PDF is encrypted; give its password with --password")
        if not doc.authenticate(password):
            raise PdfError(f"{path.name}: wrong password for encrypted PDF")
    if doc.page_count == 0:
        raise PdfError(f"{path.name}: PDF has no pages")
    if doc.page_count > MAX_PAGES:
        raise PdfError(f"{path.name}: {doc.page_count} pages exceeds the limit of {MAX_PAGES}")
    return doc


def _span_is_bold(span: dict) -> bool:
    return bool(span["flags"] & 16) or "bold" in span["font"].lower() or "black" in span["font"].lower()


def _to_displayed_frame(
    page: pymupdf.Page, text: dict, drawings: list[dict], images: list[tuple]
) -> tuple[dict, list[dict], list[tuple]]:
    """Move text, drawing and image boxes of a rotated page into the displayed page's frame.

    PyMuPDF reports them unrotated, while tables, crops, OCR and the viewer use the page as shown.
    """
    m = page.rotation_matrix

    def rot(box) -> tuple:
        return tuple(pymupdf.Rect(box) * m)

    for block in text["blocks"]:
        block["bbox"] = rot(block["bbox"])
        for line in block.get("lines", []):
            line["bbox"] = rot(line["bbox"])
            for span in line["spans"]:
                span["bbox"] = rot(span["bbox"])
    drawings = [{**d, "rect": rot(d["rect"])} for d in drawings]
    return text, drawings, [rot(box) for box in images]


def _split_side_by_side(text_block: dict) -> list[dict]:
    """Split a block whose lines hold runs far apart (captions of two figures side by side) into columns."""

    def far(left: dict, right: dict) -> bool:
        gap = right["bbox"][0] - left["bbox"][2]
        number = EQUATION_NUMBER_RE.fullmatch("".join(s["text"] for s in right["spans"]).strip())
        return gap > max(2.5 * right["spans"][0]["size"], 15) and not number  # "(3)" belongs to its formula

    pieces = []  # PyMuPDF lines, cut where spans sit far apart
    for line in text_block["lines"]:
        current: list[dict] = []
        for sp in line["spans"]:
            if current and sp["text"].strip() and far(_line_of(current), _line_of([sp])):
                pieces.append(_line_of(current))
                current = []
            current.append(sp)
        if current and any(sp["text"].strip() for sp in current):
            pieces.append(_line_of(current))
    runs: list[dict] = []  # pieces on one baseline and close together form one run ("5.1" + "Overview")
    for piece in sorted(pieces, key=lambda p: (round(p["bbox"][1]), p["bbox"][0])):
        prev = runs[-1] if runs else None
        if prev and abs(prev["bbox"][1] - piece["bbox"][1]) < 2 and not far(prev, piece):
            runs[-1] = _line_of(prev["spans"] + piece["spans"])
        else:
            runs.append(piece)
    columns: list[list[dict]] = []
    for run in runs:
        last = [c[-1]["bbox"] for c in columns]
        home = next((c for c, b in zip(columns, last) if b[0] < run["bbox"][2] and run["bbox"][0] < b[2]), None)
        if home is None:
            columns.append([run])
        else:
            home.append(run)
    if len(columns) <= 1:
        return [text_block]
    return [{"type": 0, "lines": col} for col in columns]


def _line_of(spans: list[dict]) -> dict:
    return {
        "spans": spans,
        "bbox": (
            min(sp["bbox"][0] for sp in spans),
            min(sp["bbox"][1] for sp in spans),
            max(sp["bbox"][2] for sp in spans),
            max(sp["bbox"][3] for sp in spans),
        ),
    }


def _segments(text_block: dict) -> Iterable[tuple[str, tuple[float, float, float, float], _Style]]:
    """Split a PyMuPDF text block where style changes or a caption / list item begins."""
    lines = []
    for line in text_block["lines"]:
        spans = [s for s in line["spans"] if s["text"].strip()]
        if not spans:
            continue
        text = "".join(s["text"] for s in line["spans"]).strip()
        chars = sum(len(s["text"].strip()) for s in spans) or 1
        size = max(spans, key=lambda s: len(s["text"].strip()))["size"]
        bold = sum(len(s["text"].strip()) for s in spans if _span_is_bold(s)) / chars > 0.9
        mono = sum(len(s["text"].strip()) for s in spans if MONO_FONT_RE.search(s["font"]) or s["flags"] & 8) / chars
        math = sum(len(s["text"].strip()) for s in spans if MATH_FONT_RE.search(s["font"])) + sum(
            ch in MATH_CHARS for ch in text
        )
        lines.append((text, line["bbox"], round(size * 2) / 2, bold, mono > 0.6, math / chars))
    current: list = []

    def flush() -> Iterable[tuple[str, tuple[float, float, float, float], _Style]]:
        if not current:
            return
        text = ""
        for t, *_ in current:
            if text.endswith("-") and t[:1].islower():
                text = text[:-1] + t  # re-join a hyphenated word
            else:
                text = f"{text} {t}" if text else t
        x0 = min(c[1][0] for c in current)
        y0 = min(c[1][1] for c in current)
        x1 = max(c[1][2] for c in current)
        y1 = max(c[1][3] for c in current)
        style = _Style(
            size=statistics.median(c[2] for c in current),
            bold=all(c[3] for c in current),
            mono=all(c[4] for c in current),
            math=sum(c[5] for c in current) / len(current),
            n_lines=len(current),
        )
        yield text.strip(), (x0, y0, x1, y1), style

    for ln in lines:
        if current:
            prev = current[-1]
            in_caption = CAPTION_RE.match(current[0][0]) is not None  # captions mix bold labels and plain text
            starts_new = (
                (not in_caption and (abs(ln[2] - prev[2]) >= 1.0 or ln[3] != prev[3] or ln[4] != prev[4]))
                # a caption starts apart from the text above it; flush under a paragraph it is a wrapped line
                or (CAPTION_RE.match(ln[0]) and ln[1][1] - prev[1][3] > 0.25 * ln[2])
                or BULLET_RE.match(ln[0])
                or ln[1][1] - prev[1][3] > max(ln[2], 6) * 0.9  # a vertical gap: new paragraph
            )
            if starts_new:
                yield from flush()
                current = []
        current.append(ln)
    yield from flush()


def _is_lone_prefix(text: str) -> bool:
    """A bullet glyph or a bare caption label ("Table 1.") that belongs to the text beside it."""
    return (BULLET_RE.match(text + " ") is not None and len(text) <= 3) or (
        CAPTION_RE.match(text) is not None and len(text) <= 14
    )


def _attach_prefixes(segments: list[tuple[str, tuple, _Style]]) -> list[tuple[str, tuple, _Style]]:
    """Join bullets and caption labels that PyMuPDF put in blocks of their own to the text on their line."""
    bullets = [s for s in segments if _is_lone_prefix(s[0])]
    if not bullets:
        return segments
    out = [s for s in segments if s not in bullets]
    for glyph, gbox, _ in bullets:
        best = None
        for i, (_, box, _) in enumerate(out):
            same_line = abs(box[1] - gbox[1]) < max(4.0, (gbox[3] - gbox[1]) * 0.6)
            if same_line and box[2] > gbox[2] and box[0] < gbox[2] + 40 and (best is None or box[0] < out[best][1][0]):
                best = i
        if best is None:
            out.append((glyph, gbox, _Style(0, False, False, 0, 1)))
            continue
        text, box, style = out[best]
        merged = (min(box[0], gbox[0]), min(box[1], gbox[1]), max(box[2], gbox[2]), max(box[3], gbox[3]))
        out[best] = (f"{glyph} {text}", merged, style)
    return out


def _reading_order(items: list[tuple[tuple[float, float, float, float], object]], width: float) -> list:
    """Order items by bands of full-width content; within a band, left column before right column."""
    mid = width / 2
    margin = 0.08 * width  # a column block may cross the middle a little when margins are uneven
    spanning = [i for i in items if i[0][0] < mid - margin and i[0][2] > mid + margin]
    columns = [i for i in items if i not in spanning]
    left = [i for i in columns if (i[0][0] + i[0][2]) / 2 < mid]
    right = [i for i in columns if (i[0][0] + i[0][2]) / 2 >= mid]
    if not left or not right:
        return sorted(items, key=lambda i: (round(i[0][1]), i[0][0]))
    ordered: list = []
    rest = sorted(columns, key=lambda i: i[0][1])
    for sp in sorted(spanning, key=lambda i: i[0][1]):
        band = [i for i in rest if i[0][1] < sp[0][1]]
        rest = [i for i in rest if i[0][1] >= sp[0][1]]
        ordered += [i for i in band if (i[0][0] + i[0][2]) / 2 < mid] + [
            i for i in band if (i[0][0] + i[0][2]) / 2 >= mid
        ]
        ordered.append(sp)
    ordered += [i for i in rest if (i[0][0] + i[0][2]) / 2 < mid] + [i for i in rest if (i[0][0] + i[0][2]) / 2 >= mid]
    return ordered


def _inside(inner: tuple, outer: tuple, slack: float = 2.0) -> bool:
    return (
        inner[0] >= outer[0] - slack
        and inner[1] >= outer[1] - slack
        and inner[2] <= outer[2] + slack
        and inner[3] <= outer[3] + slack
    )


def _center_inside(inner: tuple, outer: tuple) -> bool:
    cx, cy = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3]


def _overlap_ratio(a: tuple, b: tuple) -> float:
    """Intersection area over the smaller box's area."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / small if small > 0 else 0.0


def _dpi_for(rect: pymupdf.Rect, dpi: int) -> int:
    """Lower the dpi so the rendered area stays under the pixel cap."""
    pixels = rect.width * rect.height * (dpi / 72) ** 2
    if pixels <= MAX_RENDER_PIXELS:
        return dpi
    return max(18, int(dpi * (MAX_RENDER_PIXELS / pixels) ** 0.5))


# text, bbox in points, paragraph key, font size estimate in points
OcrLine = tuple[str, tuple[float, float, float, float], tuple[int, int], float]
TESSERACT_WORD_TO_SIZE = 1.25  # median word box height (x-height words pull it down) to font size
RAPIDOCR_LINE_TO_SIZE = 0.8  # rapidocr pads its line boxes
_RAPIDOCR = None


def _rapidocr():
    global _RAPIDOCR
    if _RAPIDOCR is None:
        from rapidocr import RapidOCR

        _RAPIDOCR = RapidOCR(params={"Global.log_level": "error"})
    return _RAPIDOCR


def ocr_page(page: pymupdf.Page) -> list[OcrLine]:
    """OCR a page image: its lines top-down.

    Tesseract (Debian's tesseract-ocr) is used when installed: about eight times less CPU per page than
    the PP-OCR models that rapidocr ships, which remain the fallback so a pip-only install still OCRs.
    """
    return _recognise(*_render_for_ocr(page))


def _render_for_ocr(page: pymupdf.Page) -> tuple[bytes | np.ndarray, float]:
    """The page as a grey image for the OCR engine (PNM bytes for tesseract, an array for rapidocr), and
    the factor from its pixels to PDF points."""
    dpi = _dpi_for(page.rect, OCR_DPI)
    pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
    if shutil.which("tesseract"):
        return pix.tobytes("pnm"), 72 / dpi  # raw PNM: no encoding cost, and tesseract reads it from stdin
    img = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.width)
    return np.stack([img] * 3, axis=-1), 72 / dpi


def _recognise(image: bytes | np.ndarray, scale: float) -> list[OcrLine]:
    if isinstance(image, bytes):
        return _tesseract_lines(image, scale)
    result = _rapidocr()(image)
    if result.boxes is None or result.txts is None:
        return []
    lines = []
    for box, text in zip(result.boxes, result.txts):
        xs = [float(p[0]) * scale for p in box]  # numpy scalars would not serialise to JSON
        ys = [float(p[1]) * scale for p in box]
        size = (max(ys) - min(ys)) * RAPIDOCR_LINE_TO_SIZE
        lines.append((text, (min(xs), min(ys), max(xs), max(ys)), (-1, -1), size))
    return sorted(lines, key=lambda t: (round(t[1][1] / 4), t[1][0]))


class OcrAhead:
    """OCR image-only pages in background threads while the page pass reads the other pages.

    Tesseract runs as a subprocess, so threads give real parallelism; pages are rendered on the calling
    thread because PyMuPDF is not thread-safe. Candidates are pages without fonts that show an image (a
    resource lookup, no content parsing); at most `window` page images wait or run at once, so a scanned
    2,000-page PDF never holds 2,000 images. Pages the page pass finds image-only later are OCRed inline.
    """

    def __init__(self, pdf: pymupdf.Document, page_numbers: list[int], window: int | None = None):
        self._pdf = pdf
        image_only = [n for n in page_numbers if not pdf.get_page_fonts(n - 1) and pdf.get_page_images(n - 1)]
        self._todo = deque(image_only if shutil.which("tesseract") else [])
        # more jobs than cores: the last scanned pages then share the cores with the page pass instead of
        # running alone after it (each waiting image is a ~2 MB grey page)
        self._window = window or 2 * max(1, os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(self._window) if self._todo else None
        self._jobs: dict[int, Future] = {}

    def top_up(self) -> None:
        """Start jobs until `window` are unfinished."""
        while self._todo and sum(not job.done() for job in self._jobs.values()) < self._window:
            number = self._todo.popleft()
            image, scale = _render_for_ocr(self._pdf.load_page(number - 1))
            self._jobs[number] = self._pool.submit(_recognise, image, scale)

    def lines(self, page: pymupdf.Page) -> list[OcrLine]:
        """The page's OCR lines: from its background job when one ran, else recognised now."""
        job = self._jobs.pop(page.number + 1, None)
        return job.result() if job is not None else ocr_page(page)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _tesseract_lines(image: bytes, scale: float) -> list[OcrLine]:
    """Run tesseract on one page image (any format it reads) and gather its words into lines (TSV output)."""
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}  # its threads cost more than they save on small pages
    out = subprocess.run(
        ["tesseract", "stdin", "stdout", "--psm", "3", "tsv"], input=image, capture_output=True, env=env, timeout=300
    )
    if out.returncode != 0:
        raise RuntimeError(f"tesseract failed: {out.stderr.decode(errors='replace').strip()[:200]}")
    lines: dict[tuple[int, int, int], list] = {}
    for row in out.stdout.decode("utf-8", errors="replace").splitlines()[1:]:
        f = row.split("\t")
        if len(f) < 12 or f[0] != "5" or not f[11].strip():
            continue
        key = (int(f[2]), int(f[3]), int(f[4]))  # block, paragraph, line
        x, y, w, h = (int(v) * scale for v in f[6:10])
        lines.setdefault(key, []).append((f[11], (x, y, x + w, y + h)))
    result = []
    for (block, par, _), words in lines.items():
        height = statistics.median(b[3] - b[1] for _, b in words)
        runs = [[words[0]]]
        for word in words[1:]:
            if word[1][0] - runs[-1][-1][1][2] > 1.5 * height:  # a column gap: table cells, not one line
                runs.append([])
            runs[-1].append(word)
        for run in runs:
            box = (
                min(b[0] for _, b in run),
                min(b[1] for _, b in run),
                max(b[2] for _, b in run),
                max(b[3] for _, b in run),
            )
            result.append((" ".join(t for t, _ in run), box, (block, par), height * TESSERACT_WORD_TO_SIZE))
    return sorted(result, key=lambda t: (round(t[1][1] / 4), t[1][0]))


def _ocr_blocks(lines: list[OcrLine]) -> list[tuple[str, tuple, _Style]]:
    """Group OCR lines into paragraphs: the engine's own paragraphs, split further at gaps and size changes."""
    out: list[tuple[str, tuple, _Style]] = []
    group: list = []
    for line in lines:
        _, box, key, size = line
        if group:
            _, last, last_key, last_size = group[-1]
            if (
                (key != last_key and key != (-1, -1))
                or box[1] - last[3] > 0.8 * size
                or abs(box[0] - group[0][1][0]) > 3 * size
                or abs(size - last_size) > 0.25 * size
            ):
                out.append(_merge_ocr(group))
                group = []
        group.append(line)
    if group:
        out.append(_merge_ocr(group))
    return out


def _merge_ocr(group: list[OcrLine]) -> tuple[str, tuple, _Style]:
    box = (
        min(g[1][0] for g in group),
        min(g[1][1] for g in group),
        max(g[1][2] for g in group),
        max(g[1][3] for g in group),
    )
    size = statistics.median(g[3] for g in group)
    return " ".join(g[0] for g in group), box, _Style(round(size * 2) / 2, False, False, 0.0, len(group))


def _figure_regions(
    page: pymupdf.Page, tables: list[Block], drawings: list[dict], images: list[tuple]
) -> list[tuple[tuple, str]]:
    """Clusters of raster images and vector drawings worth reporting as figures: (bbox, "raster"|"vector")."""
    page_area = page.rect.width * page.rect.height
    rasters = []
    for box in images:
        r = pymupdf.Rect(box) & page.rect
        if not r.is_empty and r.get_area() < 0.9 * page_area:
            rasters.append(tuple(r))
    table_boxes = [t.bbox for t in tables]
    paths = [
        d
        for d in drawings
        if _area(d["rect"]) < 0.5 * page_area and not any(_inside(tuple(d["rect"]), t, slack=3) for t in table_boxes)
    ]
    drawings = [tuple(d["rect"]) for d in paths]
    weights = [1] * len(rasters) + [len(d["items"]) for d in paths]  # count path segments, not paths
    if not rasters and sum(weights) < 4:
        return []
    kept: list[tuple[tuple, str]] = []
    for box, count in _cluster_rects(rasters + drawings, page.rect, weights):
        has_raster = any(_inside(r, box) for r in rasters)
        if box[2] - box[0] < 40 or box[3] - box[1] < 30 or (count < 4 and not has_raster):
            continue
        if any(_overlap_ratio(box, t.bbox) > 0.5 for t in tables):
            continue  # table rulings or a table's shading
        kept.append((box, "raster" if has_raster else "vector"))
    return kept


def _area(rect: tuple) -> float:
    return max(0.0, rect[2] - rect[0]) * max(0.0, rect[3] - rect[1])


def _cluster_rects(
    rects: list[tuple], page_rect: pymupdf.Rect, weights: list[int], tol_x: float = 6.0, tol_y: float = 16.0
) -> list[tuple[tuple, int]]:
    """Group drawing rectangles lying within tol_x / tol_y points of each other: (bbox, summed weight).

    The vertical reach is larger because stacked parts of one figure (waveform rows of a timing
    diagram, plot panels) sit further apart than side-by-side figures in two columns.

    Rasterises the rectangles onto a 1-point grid and labels connected regions, which stays linear in
    the number of items where pairwise merging would be quadratic on dense schematics.
    """
    import cv2

    w, h = int(page_rect.width) + 1, int(page_rect.height) + 1
    grid = np.zeros((h, w), dtype=np.uint8)
    tx, ty = int(tol_x / 2), int(tol_y / 2)  # each box grows by half the reach, so two boxes meet at the full reach
    for x0, y0, x1, y1 in rects:
        grid[max(0, int(y0) - ty) : min(h, int(y1) + ty + 1), max(0, int(x0) - tx) : min(w, int(x1) + tx + 1)] = 1
    n, labels = cv2.connectedComponents(grid, connectivity=8)
    counts = [0] * n
    boxes: list[list[float]] = [[1e9, 1e9, -1e9, -1e9] for _ in range(n)]
    for (x0, y0, x1, y1), weight in zip(rects, weights):
        lab = labels[min(h - 1, max(0, int((y0 + y1) / 2))), min(w - 1, max(0, int((x0 + x1) / 2)))]
        b = boxes[lab]
        b[0], b[1], b[2], b[3] = min(b[0], x0), min(b[1], y0), max(b[2], x1), max(b[3], y1)
        counts[lab] += weight
    return [(tuple(boxes[i]), counts[i]) for i in range(1, n) if counts[i]]


def _drop_tables_inside_figures(
    tables: list[Block], figures: list[tuple[tuple, str]], drawings: list[dict]
) -> list[Block]:
    """Drop "tables" that are really aligned labels inside a line drawing (pin diagrams, part values).

    Such a label grid has no rules of its own and sits inside a clearly larger vector drawing; a real
    table is ruled, or is the drawing itself (its rulings form a cluster about its own size), or lies
    over a raster (a scan or a background).
    """

    def ruled(box: tuple) -> bool:
        """A horizontal rule (possibly drawn cell by cell) across most of the table's width."""
        covered: dict[int, float] = {}
        for d in drawings:
            x0, y0, x1, y1 = d["rect"]
            if y1 - y0 <= 2.5 and box[1] - 4 <= y0 <= box[3] + 4:
                overlap = min(x1, box[2]) - max(x0, box[0])
                if overlap > 0:
                    covered[round(y0)] = covered.get(round(y0), 0.0) + overlap
        return any(length >= 0.8 * (box[2] - box[0]) for length in covered.values())

    return [
        t
        for t in tables
        if ruled(t.bbox)
        or not any(
            src == "vector" and _inside(t.bbox, box, slack=4) and _area(t.bbox) < 0.6 * _area(box)
            for box, src in figures
        )
    ]


def _gap(a: tuple, b: tuple) -> float:
    """Distance between two boxes (0 when they touch or overlap)."""
    dx = max(0.0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0.0, max(a[1], b[1]) - min(a[3], b[3]))
    return max(dx, dy)


def _absorb_labels(
    figures: list[tuple[tuple, str]], segments: list[tuple[str, tuple, _Style]], reach: float = 14.0
) -> list[tuple[tuple, str]]:
    """Grow each figure over the short labels drawn at its edge (pin names, part values, axis titles).

    A label must lie within `reach` of the drawing itself, so growth never chains across the page.
    """
    if not figures or not segments:
        return figures
    body = statistics.median(s[2].size for s in segments)
    labels = [
        s[1]
        for s in segments
        if len(s[0]) <= 30
        and s[2].n_lines <= 3
        and s[2].size <= body * 1.5
        and not (s[2].bold and s[2].size > body)  # a heading, not a label
        and not CAPTION_RE.match(s[0])
    ]
    grown = []
    for box, src in figures:
        near = [lb for lb in labels if _gap(lb, box) <= reach and (lb[2] - lb[0]) <= 1.5 * (box[2] - box[0])]
        for lb in near:
            box = (min(box[0], lb[0]), min(box[1], lb[1]), max(box[2], lb[2]), max(box[3], lb[3]))
        grown.append((box, src))
    return grown


COMPONENT_REF_RE = re.compile(r"\b(?:[RCLQDUTXYJ]|IC|VR|SW|LED)[A-Z]{0,4}\d{1,3}[A-Z]?\b")
COMPONENT_VALUE_RE = re.compile(r"\b\d+(?:[.,]\d+)?\s?[kKMmµunp]?(?:Ω|F|H|ohm)(?![a-zA-Z])")


def _looks_like_schematic(box: tuple, inner_text: str, drawings: list[dict]) -> bool:
    """A vector cluster made of many straight segments, labelled with part references and values."""
    evidence = len(set(COMPONENT_REF_RE.findall(inner_text))) + len(COMPONENT_VALUE_RE.findall(inner_text))
    if evidence < 2:
        return False
    segments = sum(sum(1 for it in d["items"] if it[0] == "l") for d in drawings if _inside(tuple(d["rect"]), box))
    return segments >= 8


def parse_page(
    page: pymupdf.Page,
    number: int,
    doc_id: str,
    options: ParseOptions,
    styles: dict[int, _Style],
    recognise: Callable[[pymupdf.Page], list[OcrLine]] = ocr_page,
) -> list[Block]:
    """Blocks of one page in reading order, with ids `p{number}-b{i}`; `recognise` OCRs an image-only page."""
    width = page.rect.width
    text = page.get_text("dict", flags=pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_IMAGES, sort=True)
    drawings = page.get_cdrawings()  # read once: tables, figure clusters, schematic evidence and the OCR test
    images = [info["bbox"] for info in page.get_image_info()]
    page_frame_drawings = drawings
    shown = text  # boxes in the displayed frame; `text` stays as PyMuPDF gives it, for the table finder
    if page.rotation:
        shown, drawings, images = _to_displayed_frame(page, copy.deepcopy(text), drawings, images)
    blocks = [part for tb in shown["blocks"] if tb["type"] == 0 for part in _split_side_by_side(tb)]
    segments = [seg for tb in blocks for seg in _segments(tb) if seg[0]]
    segments = _attach_prefixes(segments)
    ocr = False
    if not segments and options.ocr:
        covered = sum((pymupdf.Rect(box) & page.rect).get_area() for box in images) / max(
            page.rect.get_area(), 1
        )
        if covered > 0.3 or drawings:
            ocr_lines = recognise(page)
            segments = _ocr_blocks(ocr_lines)
            ocr = bool(segments)

    tables: list[Block] = []
    if options.tables and ocr:
        from pipelines.tables import tables_from_ocr

        tables = tables_from_ocr([(line[0], line[1]) for line in ocr_lines], page.rect, number)
        for t in tables:
            t.ocr = True
    elif options.tables:
        from pipelines.tables import extract_tables

        tables = extract_tables(page, number, text, page_frame_drawings)
    if tables and not ocr:
        drawn = _absorb_labels(_figure_regions(page, [], drawings, images), segments)
        tables = _drop_tables_inside_figures(tables, drawn, drawings)
    figures = [] if ocr else _absorb_labels(_figure_regions(page, tables, drawings, images), segments)

    items: list[tuple[tuple, Block]] = []
    for t in tables:
        items.append((t.bbox, t))
    for i, (box, src) in enumerate(figures):
        inner = [s for s in segments if _inside(s[1], box, slack=4)]
        inner_text = " ".join(s[0] for s in inner)
        is_schematic = src == "vector" and _looks_like_schematic(box, inner_text, drawings)
        kind = "schematic" if is_schematic else "figure"
        fig = Block(id="", kind=kind, page=number, bbox=box, text=inner_text)
        if is_schematic and options.circuits:
            fig.circuit = read_block_circuit(page, box)
        if options.crops_dir is not None:
            rect = pymupdf.Rect(box)
            pix = page.get_pixmap(clip=rect, dpi=_dpi_for(rect, CROP_DPI))
            name = f"{doc_id[:12]}-p{number}-f{i + 1}.png"
            write_atomic(options.crops_dir / name, pix.tobytes("png"))
            fig.image = name
        items.append((box, fig))
    taken = [t.bbox for t in tables] + [f[0] for f in figures]
    for seg_text, box, style in segments:
        if any(_center_inside(box, t) for t in taken) and not CAPTION_RE.match(seg_text):
            continue  # text that belongs to a table or figure
        block = Block(id="", kind="paragraph", page=number, bbox=tuple(box), text=seg_text, ocr=ocr)
        styles[id(block)] = style
        items.append((block.bbox, block))

    ordered = [blk for _, blk in _reading_order(items, width)]
    for i, blk in enumerate(ordered, start=1):
        blk.id = f"p{number}-b{i}"
    return ordered


def read_block_circuit(page: pymupdf.Page, box: tuple) -> Circuit:
    """Read the schematic drawn in `box` of the page into a `Circuit` in page points.

    The region is rendered at the resolution the schematic reader works at (vector art stays sharp at any
    zoom); its labels come from the text layer, exact, instead of OCR. A drawing the reader cannot read
    gives an empty circuit with the reason as a warning.
    """
    from pipelines.schematic import PDF_TARGET_SIDE, SchematicInputError, read_schematic

    clip = pymupdf.Rect(box) & page.rect
    zoom = min(PDF_TARGET_SIDE / max(clip.width, clip.height, 1.0), (MAX_RENDER_PIXELS / max(abs(clip), 1.0)) ** 0.5)
    pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), clip=clip, colorspace=pymupdf.csRGB, alpha=False)
    image = np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.width, 3)
    labels = []
    for block in page.get_text("dict", clip=clip)["blocks"]:
        for line in block.get("lines", []):
            text = "".join(span["text"] for span in line["spans"]).strip()
            if text:
                x0, y0, x1, y1 = line["bbox"]
                pixels = ((x0 - clip.x0) * zoom, (y0 - clip.y0) * zoom, (x1 - clip.x0) * zoom, (y1 - clip.y0) * zoom)
                labels.append((text, pixels))
    try:
        circuit = read_schematic(image, labels=labels)
    except SchematicInputError as exc:
        return Circuit(warnings=[str(exc)])
    return _circuit_to_page(circuit, clip.x0, clip.y0, 1 / zoom)


def _circuit_to_page(circuit: Circuit, x0: float, y0: float, scale: float) -> Circuit:
    """Move a circuit read from a page crop (pixels) into page points, rounded to 0.01 pt."""

    def pt(x: float, y: float) -> tuple[float, float]:
        return round(x0 + x * scale, 2), round(y0 + y * scale, 2)

    for comp in circuit.components:
        comp.bbox = (*pt(*comp.bbox[:2]), *pt(*comp.bbox[2:]))
        for pin in comp.pins:
            pin.xy = pt(*pin.xy)
    circuit.junctions = [pt(*j) for j in circuit.junctions]
    circuit.wires = [[pt(*q) for q in wire] for wire in circuit.wires]
    return circuit


def _normalise_running(text: str) -> str:
    return re.sub(r"\d+", "#", text.lower()).strip()


def mark_running_text(doc: Document, styles: dict[int, _Style]) -> Document:
    """Mark blocks repeated in the top/bottom margin of many pages (or bare page numbers) as headers/footers."""
    n_pages = max(1, len({b.page for b in doc.blocks}))
    candidates: Counter[tuple[str, str]] = Counter()
    for b in doc.blocks:
        height = doc.page_sizes[b.page - 1][1]
        zone = "top" if b.bbox[3] < 0.1 * height else "bottom" if b.bbox[1] > 0.9 * height else None
        if zone and b.kind == "paragraph":
            candidates[(zone, _normalise_running(b.text))] += 1
    threshold = max(2, int(0.3 * n_pages)) if n_pages > 2 else 2
    for b in doc.blocks:
        if b.kind != "paragraph":
            continue
        height = doc.page_sizes[b.page - 1][1]
        zone = "top" if b.bbox[3] < 0.1 * height else "bottom" if b.bbox[1] > 0.9 * height else None
        if zone is None:
            continue
        norm = _normalise_running(b.text)
        bare_number = re.fullmatch(r"(page\s*)?#(\s*(of|/)\s*#)?|-\s*#\s*-", norm) is not None
        if candidates[(zone, norm)] >= threshold or bare_number:
            b.kind = "page_header" if zone == "top" else "page_footer"
    return doc


def classify_blocks(doc: Document, styles: dict[int, _Style], toc: list) -> Document:
    """Headings (font evidence + numbering + the PDF outline), captions, lists, code and formulas."""
    sizes: Counter[float] = Counter()
    for b in doc.blocks:
        st = styles.get(id(b))
        if st and b.kind == "paragraph":
            sizes[st.size] += len(b.text)
    body = sizes.most_common(1)[0][0] if sizes else 10.0
    toc_titles = {_norm_title(t[1]): t[0] for t in toc}

    heading_sizes: set[float] = set()
    for b in doc.blocks:
        st = styles.get(id(b))
        if b.kind != "paragraph" or st is None:
            continue
        text = b.text
        if CAPTION_RE.match(text):
            b.kind = "caption"
        elif st.mono:
            b.kind = "code"
        elif st.math > 0.3 and len(text) < 200:
            b.kind = "formula"
        elif _is_heading(text, st, body) or _norm_title(text) in toc_titles:
            b.kind = "heading"
            heading_sizes.add(st.size)
        elif BULLET_RE.match(text):
            b.kind = "list_item"
    ranked = sorted(heading_sizes, reverse=True)
    for b in doc.blocks:
        if b.kind != "heading":
            continue
        st = styles[id(b)]
        m = NUMBERED_HEADING_RE.match(b.text)
        if _norm_title(b.text) in toc_titles:
            b.level = toc_titles[_norm_title(b.text)]
        elif m and m.group(1)[0].isdigit():
            b.level = m.group(1).count(".") + 1
        else:
            b.level = min(ranked.index(st.size) + 1, 6)
    doc.outline = [
        OutlineEntry(title=b.text, level=b.level or 1, page=b.page, block=b.id)
        for b in doc.blocks
        if b.kind == "heading"
    ]
    return doc


def _norm_title(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def _is_heading(text: str, st: _Style, body: float) -> bool:
    if len(text) > 120 or st.n_lines > 3 or text.endswith((".", ",", ";")) and not NUMBERED_HEADING_RE.match(text):
        return False
    if not re.search(r"[^\W\d_]{3}", text):
        return False  # a heading has at least one real word ("5 V" or "3 A" are values)
    if st.size >= body * 1.15:
        return True
    return st.bold and (NUMBERED_HEADING_RE.match(text) is not None or (len(text) < 60 and st.n_lines == 1))


def default_stages() -> list[Stage]:
    """Document-level stages run after the page pass, in order."""
    from pipelines.links import link_document
    from pipelines.tables import merge_split_tables

    return [merge_split_tables, link_document]


def parse_pdf(
    path: str | Path,
    *,
    pages: str | list[int] | None = None,
    password: str | None = None,
    crops_dir: Path | None = None,
    progress: Progress | None = None,
    stages: list[Stage] | None = None,
    ocr: bool = True,
    circuits: bool = False,
) -> Document:
    """Parse a PDF into a linked `Document`.

    Args:
        path: the PDF file.
        pages: a range spec ("1-20,25") or page numbers; default all pages.
        password: for encrypted PDFs.
        crops_dir: folder for figure crop PNGs; none are rendered when omitted.
        progress: called with (pages done, pages total) after each page.
        stages: document-level stages; default `default_stages()`.
        ocr: OCR pages that have no text layer.
        circuits: read every schematic block into `Block.circuit` (components, values, nets in page points).

    Raises:
        PdfError: the file cannot be read as a PDF.
    """
    path = Path(path)
    pdf = open_pdf(path, password)
    ahead: OcrAhead | None = None
    try:
        page_numbers = (
            parse_page_range(pages, pdf.page_count)
            if isinstance(pages, str)
            else pages or list(range(1, pdf.page_count + 1))
        )
        doc = new_document(path, pdf, page_numbers)
        options = ParseOptions(
            pages=page_numbers, password=password, crops_dir=crops_dir, ocr=ocr, circuits=circuits
        )
        styles: dict[int, _Style] = {}
        ocr_pages = []
        ahead = OcrAhead(pdf, page_numbers if ocr else [])
        for done, number in enumerate(page_numbers, start=1):
            try:
                ahead.top_up()
                page = pdf.load_page(number - 1)
                blocks = parse_page(page, number, doc.id, options, styles, ahead.lines)
                doc.blocks += blocks
                if any(b.ocr for b in blocks):
                    ocr_pages.append(number)
            except Exception as exc:  # one broken page never fails the document
                doc.problems.append(f"page {number}: {type(exc).__name__}: {exc}")
            if progress:
                progress(done, len(page_numbers))
            if done % STORE_SHRINK_PAGES == 0:
                pymupdf.TOOLS.store_shrink(100)
        doc.metadata["ocr_pages"] = ocr_pages
        toc = pdf.get_toc(simple=True)
    finally:
        if ahead is not None:
            ahead.close()
        pdf.close()
    return finish_document(doc, styles, toc, stages)


def new_document(path: Path, pdf: pymupdf.Document, page_numbers: list[int]) -> Document:
    """An empty document for an open PDF: id, page sizes, metadata."""
    doc = Document(id=file_sha256(path), source=path.name)
    doc.page_sizes = [(pdf[i].rect.width, pdf[i].rect.height) for i in range(pdf.page_count)]
    doc.metadata = {k: v for k, v in (pdf.metadata or {}).items() if v}
    doc.metadata["pages_parsed"] = page_numbers if len(page_numbers) < pdf.page_count else "all"
    return doc


def finish_document(doc: Document, styles: dict[int, _Style], toc: list, stages: list[Stage] | None = None) -> Document:
    """Run the document-level stages after the page pass; a failing stage is reported, not fatal.

    The layout stages need the fonts seen during the page pass (`styles`, keyed by block object id);
    the later stages (`stages`, default `default_stages()`) read the document alone.
    """
    layout: list[Stage] = [partial(mark_running_text, styles=styles), partial(classify_blocks, styles=styles, toc=toc)]
    for stage in layout + (default_stages() if stages is None else stages):
        try:
            doc = stage(doc)
        except Exception as exc:
            name = getattr(stage, "__name__", None) or getattr(getattr(stage, "func", None), "__name__", "stage")
            doc.problems.append(f"stage {name}: {type(exc).__name__}: {exc}")
    return doc
