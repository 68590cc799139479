"""Repair damaged circuit drawings: find the damage, inpaint it, re-join broken wires, redraw damaged labels.

`repair_drawing` is the whole job: load and check the image, take the user's mask or predict one with the
damage-mask net (each piece confirmed by its twin trained with real drawings too, `detect_damage`), fill the
damaged pixels with the VAE/GAN inpainter (every other pixel passes through unchanged), join straight wires that
still stop at the damage, then let the glyph restorer (`vision.glyph`) redraw the characters of the text boxes the
damage touches, at full resolution. A predicted mask is taken as a guess: wire joins may paint a little beside it,
short wire breaks it left beside it are closed (`vision.wire_complete.bridge_breaks`), and inside the text boxes
the text-damage finder (`vision.glyph.find_text_damage`), which reads them at full resolution, corrects it.
`repair_command` is what `ohmlens repair` runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from pipelines.document import BBox, write_atomic
from vision.damage_net import CONFIRM_WEIGHTS, DamageNet, damage_mask
from vision.glyph import (
    FINDER_WEIGHTS,
    SYMBOL_WEIGHTS,
    GlyphNet,
    box_window,
    find_text_damage,
    redraw,
    symbol_window,
)
from vision.inpaint import (
    InpaintNet,
    faded_ink,
    fuse_batchnorm,
    inpaint_image,
    own_ink_pieces,
    see_through,
    stained_paper,
)
from vision.wire_complete import bridge_breaks, complete_wires

MIN_SIDE = 32  # pixels; smaller images hold too little drawing to repair
MAX_PIXELS = 6000 * 6000
MAX_DAMAGE = 0.6  # share of the image; beyond it there is too little intact drawing to repair from
OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
WIRE_BESIDE = 3.0  # stroke widths beside a predicted mask where wire joins may paint too (`complete_wires`)
SYMBOL_FLOOR = 0.2  # detector score of the symbols the symbol restorer redraws (a damaged one scores low)


class RepairInputError(ValueError):
    """An image or mask that cannot be repaired; the message is one line for the user."""


class ImageLoadError(RepairInputError):
    """The image is missing, unreadable or of an unsupported type."""


class ImageSizeError(RepairInputError):
    """The image is too small or too large."""


class PhotoError(RepairInputError):
    """The image looks like a photograph, not a drawing on paper."""


class MaskError(RepairInputError):
    """The mask is unreadable, of the wrong type or size, or marks (almost) everything as damaged."""


class ModelsMissingError(ValueError):
    """The repair models' weight files are not installed."""


@dataclass
class RepairResult:
    """A repaired drawing.

    Attributes:
        image: the repaired drawing, uint8, in the input's layout (gray (H, W) or RGB (H, W, 3)).
        mask: the damage mask used, uint8 (H, W), 255 = damaged.
        stats: what was done: mask source, damaged share, wire joins, tiles inpainted, seconds.
    """

    image: np.ndarray
    mask: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=1)
def _text_models() -> tuple[Any, GlyphNet, GlyphNet, GlyphNet]:
    """The schematic detector (for its text and symbol boxes), the glyph restorer, the text-damage finder and the
    symbol restorer, loaded once.

    Raises:
        ModelsMissingError: a weight file is missing from the installation.
    """
    from vision.detect import DetectorWeightsError, load_detector

    try:
        nets = GlyphNet.load(), GlyphNet.load(FINDER_WEIGHTS), GlyphNet.load(SYMBOL_WEIGHTS)
        return load_detector(fuse_bn=True), *nets
    except (FileNotFoundError, DetectorWeightsError) as exc:
        raise ModelsMissingError(f"repair models are not installed: {exc}") from exc


def lone_marks(gray: np.ndarray, mask: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
    """The mask's false alarms beside decimal points and colons: pieces of `mask` in a text box that hold clean
    paper only and lie next to no glyph stroke (within 2 px of no ink, or of a lone dot under a third of the
    text height). The damage net reads a point as what a cut left of a "1" and marks the paper above it; the
    glyph net would then draw the "1" ("1.5V" as "1!5V"). A cut through a stroke leaves ink at its edges.

    Returns:
        bool (H, W), the pixels of those pieces.
    """
    mask = mask.astype(bool)
    paper = float(np.percentile(gray, 90))
    ink = gray < 0.55 * paper
    found = np.zeros(gray.shape, bool)
    near = np.ones((5, 5), np.uint8)
    for box in boxes:
        x0, y0, x1, y1 = box_window(box, gray.shape)
        if x1 <= x0 or y1 <= y0 or not mask[y0:y1, x0:x1].any():
            continue
        largest = 0.3 * (box[3] - box[1])
        glyphs = ink[y0:y1, x0:x1]
        k, strokes, stats, _ = cv2.connectedComponentsWithStats(glyphs.astype(np.uint8), connectivity=8)
        dot = np.zeros(k, bool)
        dot[1:] = np.maximum(stats[1:, 2], stats[1:, 3]) <= largest
        n, pieces = cv2.connectedComponents(mask[y0:y1, x0:x1].astype(np.uint8), connectivity=8)
        for i in range(1, n):
            piece = pieces == i
            if float(gray[y0:y1, x0:x1][piece].min()) < paper - 25.0:
                continue  # ink, faded ink or a stain under it: not clean paper
            touched = np.unique(strokes[cv2.dilate(piece.astype(np.uint8), near).astype(bool)])
            touched = touched[touched > 0]
            if len(touched) == 0 or (len(touched) == 1 and dot[touched[0]]):
                found[y0:y1, x0:x1] |= piece
    return found


def drawing_boxes(gray: np.ndarray) -> tuple[list[BBox], list[BBox]]:
    """The text boxes the schematic detector finds on a gray uint8 drawing (as the schematic reader finds them), and
    its symbol boxes down to `SYMBOL_FLOOR` (one box per symbol: the detector keeps the likeliest class of boxes that
    overlap).

    Returns:
        (text boxes, symbol boxes), each (x0, y0, x1, y1) in drawing pixels.
    """
    from pipelines.schematic import TEXT_THRESHOLD
    from vision.detect import detect, normalize_paper
    from vision.synth import TYPE_PINS

    detector = _text_models()[0]
    dets, _ = detect(
        detector, normalize_paper(gray), box_threshold=min(TEXT_THRESHOLD, SYMBOL_FLOOR), second_look=False
    )
    texts = [d.box for d in dets if d.cls == "text" and d.score >= TEXT_THRESHOLD]
    return texts, [d.box for d in dets if d.cls in TYPE_PINS]


@lru_cache(maxsize=1)
def _models() -> tuple[DamageNet, InpaintNet]:
    """The shipped nets, loaded once, batch norms folded for inference.

    Raises:
        ModelsMissingError: the weight files are missing from the installation.
    """
    try:
        return fuse_batchnorm(DamageNet.load()), fuse_batchnorm(InpaintNet.load())
    except FileNotFoundError as exc:
        raise ModelsMissingError(f"repair models are not installed: {exc}") from exc


@lru_cache(maxsize=1)
def _confirming_net() -> DamageNet:
    """The damage net trained with real drawings too (`vision.damage_net.CONFIRM_WEIGHTS`), loaded once.

    Raises:
        ModelsMissingError: the weight file is missing from the installation.
    """
    try:
        return fuse_batchnorm(DamageNet.load(CONFIRM_WEIGHTS))
    except FileNotFoundError as exc:
        raise ModelsMissingError(f"repair models are not installed: {exc}") from exc


def _read_file(path: Path, error: type[RepairInputError], what: str) -> np.ndarray:
    """Decode an image file as stored (any depth and channels); `error` names what is wrong with it."""
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    data = np.fromfile(path, np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if arr is None:
        raise error(f"{what} is not a readable image: {path.name}")
    return arr


def load_image(image: np.ndarray | str | Path) -> np.ndarray:
    """A drawing as uint8 gray (H, W) or RGB (H, W, 3); arrays with 3 channels are taken as RGB.

    Raises:
        ImageLoadError: missing file, not an image, or an array of an unsupported shape or type.
    """
    if isinstance(image, (str, Path)):
        arr = _read_file(Path(image), ImageLoadError, "image")
        if arr.ndim == 3 and arr.shape[2] == 4:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
        elif arr.ndim == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    elif isinstance(image, np.ndarray):
        arr = image
    else:
        raise ImageLoadError(f"image must be a path or a numpy array, not {type(image).__name__}")
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        raise ImageLoadError(f"image must be 8- or 16-bit, not {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[2] == 4:
        # Transparent areas are paper: composite over white.
        alpha = arr[..., 3:].astype(np.float32) / 255.0
        arr = np.round(arr[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ImageLoadError(f"image must be gray or RGB, got an array of shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _check_size(arr: np.ndarray) -> None:
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageSizeError(f"image too small to repair: {w}x{h} (at least {MIN_SIDE} pixels a side)")
    if h * w > MAX_PIXELS:
        raise ImageSizeError(f"image too large: {w}x{h} is over {MAX_PIXELS // 1_000_000} megapixels; scale it down")


def looks_like_photo(image: np.ndarray) -> bool:
    """True for a photograph rather than a drawing on paper.

    Once uneven lighting is divided out, a drawing (even a stained or shaded one) has nearly all its pixels in
    one or two flat tones, paper and perhaps a fill; a photograph spreads over many. A dark dominant tone is
    not paper either.
    """
    small = cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA)
    gray = small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    light = cv2.GaussianBlur(cv2.dilate(gray, np.ones((15, 15), np.uint8)), (0, 0), 8)
    flat = np.clip(gray.astype(np.float32) / np.maximum(light, 1) * 255.0, 0, 255).astype(np.uint8)
    return _two_tone_share(flat) < 0.72 or _dominant_level(gray) < 100


def _tone_mass(gray: np.ndarray) -> np.ndarray:
    """Pixels within ±12 levels of each gray level."""
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    return np.convolve(hist, np.ones(25), mode="same")


def _dominant_level(gray: np.ndarray) -> int:
    return int(np.argmax(_tone_mass(gray)))


def _two_tone_share(gray: np.ndarray) -> float:
    """Share of pixels in the two most common tones (two peaks at least 25 levels apart)."""
    mass = _tone_mass(gray)
    first = int(np.argmax(mass))
    top = mass[first]
    mass[max(0, first - 24) : first + 25] = 0.0
    return float((top + mass.max()) / gray.size)


def load_mask(mask: np.ndarray | str | Path, shape: tuple[int, int]) -> np.ndarray:
    """A user mask as bool (H, W): any nonzero pixel (or, in 0–255 masks, any pixel ≥ 128) is damaged.

    Raises:
        MaskError: unreadable, wrong type, or not the image's size.
    """
    if isinstance(mask, (str, Path)):
        arr = _read_file(Path(mask), MaskError, "mask")
    elif isinstance(mask, np.ndarray):
        arr = mask
    else:
        raise MaskError(f"mask must be a path or a numpy array, not {type(mask).__name__}")
    if arr.ndim == 3:
        if arr.shape[2] not in (1, 3, 4):
            raise MaskError(f"mask must be a single-channel image, got shape {arr.shape}")
        # A painted RGBA layer marks damage with opaque paint; otherwise the brightest channel counts.
        arr = arr[..., 3] if arr.shape[2] == 4 and arr[..., 3].min() < 255 else arr[..., :3].max(axis=2)
    if arr.ndim != 2:
        raise MaskError(f"mask must be 2-D, got shape {arr.shape}")
    if arr.shape != tuple(shape):
        raise MaskError(
            f"mask is {arr.shape[1]}x{arr.shape[0]} but the image is {shape[1]}x{shape[0]}; they must match"
        )
    if arr.dtype == bool:
        return arr.copy()
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise MaskError(f"mask must hold numbers, not {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        return arr > 0.5
    return arr >= 128 if arr.max() > 1 else arr > 0


def _to_gray(arr: np.ndarray) -> np.ndarray:
    return arr if arr.ndim == 2 else cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)


def detect_damage(gray: np.ndarray, confirmed: bool = True) -> np.ndarray:
    """The damage-mask net's verdict on a gray uint8 drawing: bool (H, W), specks of a few pixels dropped, the rest
    of any stain whose edge it marked (a stain's flat inside would otherwise stay a gray blob), and the faded strokes
    next to it that it left out (a faded wire would otherwise stay half-visible past the mask's edge), less the
    pieces drawn in the drawing's own ink tone (intact symbols the net took for damage, `own_ink_pieces`).

    Args:
        confirmed: keep only the pieces the net trained with real drawings confirms (`vision.damage_net.damage_mask`);
            False gives the synthetic-only net's verdict, for comparison.
    """
    damage_net, _ = _models()
    damaged = damage_mask(damage_net, gray, _confirming_net() if confirmed else None)
    damaged |= stained_paper(gray, damaged)
    damaged |= faded_ink(gray, damaged)
    return damaged & ~own_ink_pieces(gray, damaged)


@contextmanager
def _threads_for_load() -> Iterator[None]:
    """Run torch on one thread while the machine is oversubscribed: OpenMP threads that spin-wait for a
    busy core make a small net several times slower than one thread alone."""
    before = torch.get_num_threads()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if before > 1 and load >= (os.cpu_count() or 1):
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def repair_gray(
    gray: np.ndarray, mask: np.ndarray, predicted: bool = False
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Fill the masked pixels of a gray uint8 drawing: inpaint, take back stained or faded ink the damaged pixels
    still show, redraw the damaged symbols at full resolution (`vision.glyph.redraw` with the symbol restorer), join
    broken wires (never across a label), then redraw the damaged characters of the labels the mask touches (marks on
    clean paper beside no stroke, `lone_marks`, get their damaged pixels back instead). A `predicted` mask (not a
    user's) is taken as a guess: symbols are redrawn a pixel beyond it, wire joins may paint up to `WIRE_BESIDE`
    stroke widths beside it (the end of a cut it missed), short wire breaks it left beside it are closed
    (`vision.wire_complete.bridge_breaks`), and inside the labels the text-damage finder corrects it (pixels it clears
    get their damaged pixels back, pixels it adds are redrawn too). Every pixel outside the mask used comes back
    unchanged.

    Returns:
        The repaired drawing, the mask used (bool (H, W): with a predicted mask, as corrected, and with what was
        redrawn or painted beside it) and what was done.
    """
    _, inpainter = _models()
    mask = mask.astype(bool)
    if not mask.any():
        zero = ("restored_ink", "restored_paper", "wire_endpoints", "wires_joined", "wires_extended")
        later = ("wire_breaks_closed", "symbols_redrawn", "texts_redrawn", "text_mask_changed")
        return gray.copy(), mask, dict.fromkeys((*zero, *later), 0)
    repaired = inpaint_image(inpainter, torch.from_numpy(gray).float() / 255.0, torch.from_numpy(mask))
    out = np.clip(np.round(repaired.numpy() * 255.0), 0, 255).astype(np.uint8)
    out, seen = see_through(gray, mask, out)
    _, glyph_net, finder, symbol_net = _text_models()
    # Texts and symbols are found on the repaired drawing (the damaged one hides some of them under stains and
    # blots), before wires are joined: no join may cross a label, and joins start from the redrawn symbols' leads.
    boxes, symbols = drawing_boxes(out)
    # A predicted mask stops a pixel short of some cuts (an arrowhead's tip left half erased): the symbol restorer
    # reads and redraws it a pixel wider, as it was trained to (given masks grown by 0-2 px).
    near = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) if predicted else mask
    before = out.copy()
    symbols_redrawn = redraw(symbol_net, gray, near, symbols, out, symbol_window)
    labels = np.zeros(gray.shape, bool)
    for box in boxes:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        labels[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
    joined, wires = complete_wires(out, mask, beside=WIRE_BESIDE if predicted else 0.0, avoid=labels)
    # Pixels redrawn beside a predicted mask (the symbols' ring, wire joins) join the mask used.
    bridged, out = ((joined != out) | (out != before)) & ~mask, joined
    closed = 0
    if predicted:
        filled, closed = bridge_breaks(out, mask)
        bridged, out = bridged | (filled != out), filled
    used = find_text_damage(finder, gray, mask, boxes) if predicted else mask
    cleared = mask & ~used
    out[cleared] = gray[cleared]
    lone = lone_marks(gray, used, boxes)
    out[lone] = gray[lone]
    redrawn = redraw(glyph_net, gray, used & ~lone, boxes, out)
    stats = {
        "restored_ink": seen.to_ink,
        "restored_paper": seen.to_paper,
        "wire_endpoints": wires.endpoints,
        "wires_joined": wires.joined,
        "wires_extended": wires.extended,
        "wire_breaks_closed": closed,
        "symbols_redrawn": symbols_redrawn,
        "texts_redrawn": redrawn,
        "text_mask_changed": int((used != mask).sum()),
    }
    return out, used | bridged, stats


def _recolour(original: np.ndarray, gray_out: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Put a repaired gray drawing back into colour: known pixels keep their colour, repaired ones blend
    the drawing's own paper and ink colours by their gray level."""
    gray_in = _to_gray(original)
    known = ~mask
    paper_px = known & (gray_in >= np.percentile(gray_in[known], 75))
    ink_px = known & (gray_in < np.percentile(gray_in[known], 75) * 0.55)
    paper = np.median(original[paper_px], axis=0) if paper_px.any() else np.full(3, 255.0)
    ink = np.median(original[ink_px], axis=0) if ink_px.any() else np.zeros(3)
    paper_g, ink_g = float(np.dot(paper, [0.299, 0.587, 0.114])), float(np.dot(ink, [0.299, 0.587, 0.114]))
    t = np.clip((paper_g - gray_out[mask].astype(np.float32)) / max(paper_g - ink_g, 1.0), 0.0, 1.0)[:, None]
    out = original.copy()
    out[mask] = np.clip(np.round(paper * (1 - t) + ink * t), 0, 255).astype(np.uint8)
    return out


def repair_drawing(image: np.ndarray | str | Path, mask: np.ndarray | str | Path | None = None) -> RepairResult:
    """Repair a damaged drawing.

    Args:
        image: a drawing (file path, or uint8 gray/RGB array), dark ink on light paper.
        mask: where the damage is (white/nonzero = damaged, the image's size); predicted when None.

    Returns:
        The repaired drawing, the mask used and statistics.

    Raises:
        RepairInputError: (a ValueError) bad image or mask, a photograph, or damage over most of the image.
    """
    start = time.perf_counter()
    arr = load_image(image)
    _check_size(arr)
    if looks_like_photo(arr):
        raise PhotoError("this looks like a photograph, not a drawing on paper; repair works on drawings and scans")
    gray = _to_gray(arr)
    h, w = gray.shape
    damaged = None if mask is None else load_mask(mask, (h, w))
    source = "predicted" if mask is None else "given"
    with _threads_for_load():
        if damaged is None:
            damaged = detect_damage(gray)
        share = float(damaged.mean())
        if share > MAX_DAMAGE:
            what = "the mask marks" if source == "given" else "the detected damage covers"
            raise MaskError(f"{what} {share:.0%} of the image as damaged; too little of the drawing is left to repair")
        out_gray, damaged, steps = repair_gray(gray, damaged, predicted=source == "predicted")
    out = out_gray if arr.ndim == 2 else _recolour(arr, out_gray, damaged)
    stats = {
        "mask_source": source,
        "damaged_share": round(share, 5),
        "damaged_pixels": int(damaged.sum()),
        **steps,
        "seconds": round(time.perf_counter() - start, 3),
    }
    return RepairResult(out, damaged.astype(np.uint8) * 255, stats)


def encode_image(image: np.ndarray, suffix: str) -> bytes:
    """PNG/JPEG/... bytes of a gray or RGB uint8 image.

    Raises:
        RepairInputError: unsupported output suffix.
    """
    if suffix.lower() not in OUTPUT_SUFFIXES:
        raise RepairInputError(f"unsupported output type {suffix!r}; use one of {', '.join(OUTPUT_SUFFIXES)}")
    bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(suffix.lower(), bgr)
    if not ok:
        raise RepairInputError(f"could not encode the image as {suffix}")
    return data.tobytes()


def repair_command(image: str, mask: str | None, out: Path | None, show_mask: bool) -> list[Path]:
    """`ohmlens repair`: repair IMAGE and write OUT (default ./STEM.repaired.png), plus OUT-STEM.mask.png
    with --show-mask. Files are written atomically. Returns the written paths."""
    src = Path(image)
    target = Path(out) if out is not None else Path(f"{src.stem}.repaired.png")
    if not target.suffix:
        target = target.with_suffix(".png")
    result = repair_drawing(src, Path(mask) if mask is not None else None)
    write_atomic(target, encode_image(result.image, target.suffix))
    written = [target]
    if show_mask:
        mask_path = target.with_name(f"{target.stem}.mask.png")
        write_atomic(mask_path, encode_image(result.mask, ".png"))
        written.append(mask_path)
    return written
