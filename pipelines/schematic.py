"""Schematic reader: image -> detections -> OCR -> labels -> wire tracing -> `Circuit` -> netlists.

The detector (`vision.detect`) finds symbols, text labels, junction dots and pin points. Label
texts are read with RapidOCR (offline ONNX models) and assigned to components as references and
values, or to nets as net names. Wires are traced on the ink that is left once symbols and text are
masked: horizontal and vertical strokes become segments; a segment end that touches another
segment (corner, T-joint) connects, two strokes that cross in their middles connect only where a
junction dot sits; pins connect to the segment ends they touch and to pins they abut.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import networkx as nx
import numpy as np

from pipelines.document import Circuit, Component, Pin, write_atomic
from pipelines.parts import COMMON_PARTS, COMMON_VALUES
from vision.synth import NET_SYMBOLS, OPTIONAL_PINS, REF_PREFIXES, TYPE_PINS
from vision.synth.spice import spice_line, spice_netlist, spice_node

MAX_PIXELS = 40_000_000  # refuse larger images (about 6300 x 6300)
MIN_SIDE = 16
PDF_TARGET_SIDE = 2000  # long side in pixels of a PDF drawing rendered for reading
COMPONENT_THRESHOLD = 0.35
TEXT_THRESHOLD = 0.3
JUNCTION_THRESHOLD = 0.35
PIN_THRESHOLD = 0.25
DOT_RATIO = 1.9  # a junction dot seen in the ink reaches this many stroke half-widths from the paper
BJT_ARROW_MIN = 2.0  # an arrowhead adds at least this many squared pen widths of ink to its lead
ARROW_TAPER_RATIO = 2.0  # a current source's arrowhead half varies in width this many times more than its shaft half
FACING_GAP = 4.0  # two wire ends facing across bare paper are one cut wire up to this many pen widths (+4 px) apart
CTC_TOP = 6  # symbols per step a re-reading of a label considers
CTC_BEAM = 64  # readings kept per step
VALUE_READING_SHARE = 0.005  # a label's re-reading as a part's value is this likely against OCR's best read at least
REDRAWN_TRUST = 0.1  # share of OCR's judgement a character keeps where a repair redrew it whole (the glyph net's guess)
REDRAWN_WHOLE = 0.75  # share of a character's ink a repair drew at which it counts as redrawn whole
INK_SHOWN = 60  # gray levels by which ink a damaged drawing still shows is darker than its surroundings (black top-hat)
INK_SHOWN_REACH = 9  # side of the black top-hat's square: strokes up to this wide show as ink, wider dark areas do not
REDRAWN_ODDS = 1 / 16  # a redrawn character's probability under no judgement at all: one of the digits, marks, prefixes
SERIES_PRIOR = {12: 1.0, 24: 0.3, 0: 0.02}  # how often a part value is in E12, only in E24, or in neither
ODD_WRITING = 0.02  # how often a value's number is written otherwise than plainly: '3.30', '047'
UNLISTED_PART = 0.02  # how often a part's number or value is none of the common ones (pipelines.parts)


class SchematicInputError(ValueError):
    """The input is not something the schematic reader can read (one-line message)."""


# -- input ------------------------------------------------------------------------------------------


def load_image(image: np.ndarray | str | Path) -> np.ndarray:
    """A drawing as uint8 gray or RGB, checked for size.

    Raises:
        SchematicInputError: missing or unreadable file, unsupported array, or too large/small.
    """
    from pipelines.repair import RepairInputError
    from pipelines.repair import load_image as _load

    try:
        arr = _load(image)
    except RepairInputError as exc:
        raise SchematicInputError(str(exc)) from exc
    h, w = arr.shape[:2]
    if h * w > MAX_PIXELS:
        raise SchematicInputError(
            f"image too large: {w}x{h} is over {MAX_PIXELS // 1_000_000} megapixels; scale it down"
        )
    if min(h, w) < MIN_SIDE:
        raise SchematicInputError(f"image too small: {w}x{h} (at least {MIN_SIDE} pixels a side)")
    return arr


def render_pdf_drawing(path: Path, page: int, bbox: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Render a drawing of a PDF page at high resolution (longer side `PDF_TARGET_SIDE`), as RGB.

    Args:
        path: The PDF.
        page: 1-based page number.
        bbox: The region in PDF points (top-left origin), e.g. a schematic block's box from the
            document pipeline; None takes the union of the page's vector paths and placed images.

    Raises:
        SchematicInputError: unreadable PDF, page out of range, or a page with no drawing.
    """
    import pymupdf

    try:
        doc = pymupdf.open(path)
    except Exception as exc:  # pymupdf raises its own types for broken files
        raise SchematicInputError(f"not a readable PDF: {path.name}") from exc
    with doc:
        if not 1 <= page <= doc.page_count:
            raise SchematicInputError(f"page {page} out of range: {path.name} has {doc.page_count} pages")
        p = doc[page - 1]
        if bbox is not None:
            clip = pymupdf.Rect(bbox) & p.rect
            if clip.is_empty:
                raise SchematicInputError(f"region {bbox} lies outside page {page} of {path.name}")
        else:
            rects = [d["rect"] for d in p.get_drawings() if d["rect"].width > 0 or d["rect"].height > 0]
            rects += [
                pymupdf.Rect(i["bbox"])
                for i in p.get_image_info()
                if min(i["bbox"][2] - i["bbox"][0], i["bbox"][3] - i["bbox"][1]) > 20
            ]
            if not rects:
                raise SchematicInputError(f"page {page} of {path.name} has no drawing")
            clip = pymupdf.Rect(rects[0])
            for r in rects[1:]:
                clip |= r
            clip = (clip + (-12, -12, 12, 12)) & p.rect
        zoom = PDF_TARGET_SIDE / max(clip.width, clip.height, 1.0)
        pix = p.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), clip=clip, colorspace=pymupdf.csRGB, alpha=False)
        return np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.width, 3).copy()


def parse_source(source: str) -> tuple[Path, int | None]:
    """'drawing.pdf:3' -> (drawing.pdf, 3); 'amp.png' -> (amp.png, None).

    Raises:
        SchematicInputError: a missing file or a bad page number.
    """
    m = re.match(r"^(.*\.pdf):(\d+)$", source, re.IGNORECASE)
    path, page = (Path(m.group(1)), int(m.group(2))) if m else (Path(source), None)
    if not path.is_file():
        raise SchematicInputError(f"file not found: {path}")
    if path.suffix.lower() == ".pdf" and page is None:
        page = 1
    if page is not None and page < 1:
        raise SchematicInputError(f"page numbers start at 1, got {page}")
    return path, page


# -- models -----------------------------------------------------------------------------------------


class _Models:
    """Detector and OCR, loaded once per process on first use."""

    _lock = threading.Lock()
    detector: Any = None
    ocr: Any = None

    @classmethod
    def get(cls) -> tuple[Any, Any]:
        with cls._lock:
            if cls.detector is None:
                import torch

                from vision.detect import load_detector

                torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
                cls.detector = load_detector(fuse_bn=True)
            if cls.ocr is None:
                from rapidocr import RapidOCR

                engine = RapidOCR(
                    params={
                        "Global.log_level": "error",
                        "Rec.rec_batch_num": 16,
                        "EngineConfig.onnxruntime.intra_op_num_threads": 2,
                        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                    }
                )
                # a first call loads the recogniser; afterwards crops go to it in batches
                engine(np.full((32, 96, 3), 255, np.uint8), use_det=False, use_cls=False, use_rec=True)
                cls.ocr = engine
        return cls.detector, cls.ocr


def ocr_crops(engine: Any, crops: list[np.ndarray]) -> list[tuple[str, float]]:
    """Recognise single-line text crops (BGR uint8) in batches."""
    if not crops:
        return []
    from rapidocr.ch_ppocr_rec import TextRecInput

    out = engine.text_rec(TextRecInput(img=crops))
    return [(str(t), float(s)) for t, s in zip(out.txts, out.scores)]


def ocr_char_probs(engine: Any, crop: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The recogniser's output for one text crop (BGR uint8): per-step character probabilities (steps,
    alphabet) and the alphabet, whose first entry is CTC's blank."""
    rec = engine.text_rec
    _, height, width = rec.rec_image_shape[:3]
    h, w = crop.shape[:2]
    x = rec.resize_norm_img(crop, max(width / height, w / h))[np.newaxis].astype(np.float32)
    return rec.session(x)[0], rec.postprocess_op.character


def ctc_readings(probs: np.ndarray, alphabet: list[str], top: int = CTC_TOP, width: int = CTC_BEAM) -> dict[str, float]:
    """The likeliest texts of a CTC output (prefix beam search over each step's `top` symbols), with
    their probabilities summed over the alignments that spell them."""
    beams: dict[str, tuple[float, float]] = {"": (1.0, 0.0)}  # text -> (p ending in blank, p ending in a symbol)
    for step in probs:
        grown: dict[str, list[float]] = {}
        for c in np.argsort(-step)[:top]:
            p = float(step[c])
            for text, (p_blank, p_sym) in beams.items():
                if c == 0:
                    grown.setdefault(text, [0.0, 0.0])[0] += (p_blank + p_sym) * p
                    continue
                longer = text + alphabet[c]
                if text and text[-1] == alphabet[c]:  # a repeat spells a new symbol only after a blank
                    if p_blank:
                        grown.setdefault(longer, [0.0, 0.0])[1] += p_blank * p
                    grown.setdefault(text, [0.0, 0.0])[1] += p_sym * p
                else:
                    grown.setdefault(longer, [0.0, 0.0])[1] += (p_blank + p_sym) * p
        kept = sorted(grown.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))[:width]
        beams = {text: (pb, ps) for text, (pb, ps) in kept}
    return {text: pb + ps for text, (pb, ps) in beams.items()}


_E24 = frozenset((10, 11, 12, 13, 15, 16, 18, 20, 22, 24, 27, 30, 33, 36, 39, 43, 47, 51, 56, 62, 68, 75, 82, 91))


def standard_value(ctype: str, text: str) -> bool:
    """Whether a resistor, capacitor or inductor value is a preferred number of the E24 series (or of
    E12 and E6, its subsets): '680k' yes, '660k' no."""
    return ctype in _SERIES_TYPES and value_series(text) > 0


_E12 = frozenset((10, 12, 15, 18, 22, 27, 33, 39, 47, 56, 68, 82))
_SERIES_TYPES = ("resistor", "potentiometer", "capacitor", "capacitor_polarized", "inductor")


def value_series(text: str) -> int:
    """The narrowest of the E12 and E24 series that a value's number belongs to: 12, 24, or 0 for neither."""
    v = parse_value(text)
    if not v or v <= 0:
        return 0
    mantissa = v / 10 ** (math.floor(math.log10(v) + 1e-9) - 1)  # two significant digits: 10.0 .. 99.9
    if abs(mantissa - round(mantissa)) >= 1e-6:
        return 0
    return 12 if round(mantissa) in _E12 else 24 if round(mantissa) in _E24 else 0


def ctc_log_likelihood(probs: np.ndarray, symbols: list[int]) -> float:
    """Log-probability that a CTC output (steps, alphabet) spells the symbol indices `symbols`, summed over all
    alignments (the forward algorithm)."""
    ext = [0]
    for c in symbols:
        ext += [c, 0]  # blanks between and round the symbols
    logp = np.log(np.maximum(probs[:, ext], 1e-30))  # (steps, 2 * len(symbols) + 1)
    ext_arr = np.array(ext)
    skip = np.zeros(len(ext), bool)  # a symbol may follow the symbol before the blank between them when they differ
    skip[2:] = (ext_arr[2:] != 0) & (ext_arr[2:] != ext_arr[:-2])
    alpha = np.full(len(ext), -np.inf)
    alpha[: min(2, len(ext))] = logp[0, : min(2, len(ext))]
    for t in range(1, len(probs)):
        stay, step, jump = alpha, np.r_[-np.inf, alpha[:-1]], np.r_[-np.inf, -np.inf, alpha[:-2]]
        alpha = np.logaddexp(np.logaddexp(stay, step), np.where(skip, jump, -np.inf)) + logp[t]
    return float(np.logaddexp(alpha[-1], alpha[-2]) if len(ext) > 1 else alpha[-1])


_SERIES_NUMBERS = tuple(f"{m * k / 10:g}" for k in (1, 10, 100) for m in sorted(_E24))  # '1', '4.7', '47', '470'
_NUMBER_TAIL_RE = re.compile(r"^(\d+(?:\.\d+)?|\d+([pnuµmkKMGR])\d+)(\D*)$")  # '4.7', '4k7' or '47'; then prefix, unit


def redrawn_value(ctype: str, probs: np.ndarray, alphabet: list[str], redrawn: np.ndarray) -> str | None:
    """The value a part's label spells when a repair redrew some of its characters.

    OCR's judgement of each step is kept only in part where the repair drew the character (`redrawn`, per step
    0..1, `redrawn_steps`): the glyph net's drawing of a character erased whole is a guess. The texts of the same
    length as OCR's read (a character more or less for common values) that a part of the type is most often
    labelled with are weighed by how well they fit the steps and by how common they are: for resistors, capacitors
    and inductors the E24 numbers in the label's writing (`_series_choices`, `SERIES_PRIOR`), for semiconductors the
    common part numbers, for sources, crystals, LEDs, transformers and switches their common values
    (`pipelines.parts`; `UNLISTED_PART` for any other text). None when OCR's read stands, or when no likely reading
    is a value of the type.
    """
    if not redrawn.any() or (ctype not in _SERIES_TYPES and ctype not in COMMON_PARTS and ctype not in COMMON_VALUES):
        return None
    trust = 1.0 - (1.0 - REDRAWN_TRUST) * redrawn[:, None]
    soft = probs * trust + (1.0 - trust) * REDRAWN_ODDS  # (steps, alphabet)
    path = probs.argmax(1)
    own = repair_read("".join(alphabet[c] for i, c in enumerate(path) if c and (i == 0 or c != path[i - 1])))
    if ctype in _SERIES_TYPES:
        choices = _series_choices(ctype, own, soft, alphabet)
    elif ctype in COMMON_VALUES or value_fits(ctype, own):
        # A part number is guessed only from a read that is one, as long as it; the read of another value may be
        # junk ('1i1') or short of a character the repair drew too faintly ('16MH').
        listed = COMMON_VALUES.get(ctype) or COMMON_PARTS[ctype]
        slack = 1 if ctype in COMMON_VALUES else 0
        choices = {text: 1.0 for text in listed if abs(len(text) - len(own)) <= slack}
        choices.setdefault(own, 1.0 if own.upper() in {text.upper() for text in listed} else UNLISTED_PART)
    else:
        return None
    index = {ch: i for i, ch in enumerate(alphabet)}
    scored = {
        text: ctc_log_likelihood(soft, [index[ch] for ch in text]) + math.log(prior)
        for text, prior in choices.items()
        if all(ch in index for ch in text)
    }
    best = max(scored, key=scored.__getitem__, default=own)
    return None if best == own else value_for(ctype, best)


def _series_choices(ctype: str, own: str, soft: np.ndarray, alphabet: list[str]) -> dict[str, float]:
    """Values a resistor's, capacitor's or inductor's label may spell, with how often part values are so
    (`SERIES_PRIOR`): every E24 number, in the writing of the read one (4.7k or 4k7) and with any
    prefix and unit the type is written with (`_SERIES_TAILS`), as many characters long as the read one; the read
    one too, at the odds of a number written oddly (`ODD_WRITING`: '3.30'). The read is OCR's own (`own`), or, when
    that is no value of the type, the likeliest reading of the softened steps that is. A redrawn character may be a
    prefix or unit ('15kΩ' drawn as '15k4', '3.3kΩ' as '3.30Ω'), so the tail is a guess as much as the digits."""
    read = own
    if not value_fits(ctype, own):
        readings = ctc_readings(soft, alphabet)
        likely = (repair_read(raw) for raw in sorted(readings, key=readings.__getitem__, reverse=True))
        read = next((text for text in likely if value_fits(ctype, text)), "")
    if not (m := _NUMBER_TAIL_RE.match(read)):
        return {}
    read_number, letter, read_tail = m.group(1), m.group(2), m.group(3)
    choices = {}
    for tail in dict.fromkeys((read_tail, *_SERIES_TAILS[ctype])):
        for number in _SERIES_NUMBERS:
            if letter:
                if tail not in ("", "Ω"):
                    continue  # RKM ('4k7') carries its prefix in the number and no other
                number = number.replace(".", letter) if "." in number else number + letter
            text = number + tail
            if len(text) == len(read) and value_fits(ctype, text):
                choices[text] = SERIES_PRIOR[value_series(text)]
    if value_fits(ctype, read):
        plain = bool(letter) or read_number == f"{float(read_number):g}"
        choices.setdefault(read, SERIES_PRIOR[value_series(read)] * (1.0 if plain else ODD_WRITING))
    return choices


_SERIES_TAILS = {  # the prefixes and units a value of the type is written with after its number
    "resistor": ("", "k", "M", "R", "Ω", "kΩ", "MΩ"),
    "potentiometer": ("", "k", "M", "Ω", "kΩ", "MΩ"),
    "capacitor": ("pF", "nF", "µF", "uF", "p", "n", "µ", "u"),
    "capacitor_polarized": ("µF", "uF", "mF", "µ", "u"),
    "inductor": ("nH", "µH", "uH", "mH", "H", "n", "µ", "u", "m"),
}
def value_reading(ctype: str, probs: np.ndarray, alphabet: list[str]) -> str | None:
    """The value of a part of this type that a text crop spells, when OCR's best read is no such value:
    among the likely readings (`VALUE_READING_SHARE` of the best one's probability at least) that are a
    quantity ('33µH', '5V1', '1:2') or a word value ('GREEN'), a preferred-series value first, then the
    likeliest; it keeps at least half of OCR's read (`_kept_share`). None when no likely reading is one.
    Part numbers are not guessed: the search spells one out of a net label as readily ('0OUT' -> '10OUT'). A word
    of five letters or more one letter off a word value of the type is that word ('YELLOV' -> 'YELLOW')."""
    readings = ctc_readings(probs, alphabet)
    top = max(readings, key=readings.__getitem__)
    best, floor = clean_text(top), VALUE_READING_SHARE * readings[top]
    fits = [
        (standard_value(ctype, text), p, text)
        for raw, p in readings.items()
        if p >= floor
        and value_fits(ctype, text := _word_value_slip(ctype, repair_read(raw)))
        and _quantity_or_word(ctype, text)
        and _kept_share(best, text) >= 0.5
    ]
    return value_for(ctype, max(fits)[2]) if fits else None


def _word_value_slip(ctype: str, text: str) -> str:
    """The word value of a part of this type that `text` misspells by one letter (five letters or more, so that
    one letter is at most a fifth of the word), or `text` as it is. OCR reads a W as V at the end of 'YELLOW', and no
    likely reading puts the W back."""
    t = text.upper()
    if len(t) < 5 or not t.isalpha() or t in _WORD_VALUES.get(ctype, ()):
        return text
    near = [w for w in _WORD_VALUES.get(ctype, ()) if len(w) == len(t) and sum(a != b for a, b in zip(w, t)) == 1]
    return near[0] if len(near) == 1 else text


def _kept_share(a: str, b: str) -> float:
    """How much two texts share: the characters they have in common, in order, over the longer one's length.
    A re-reading keeps at least half of what OCR read; junk ('#', a stray CJK glyph) spells no value."""
    if not a or not b:
        return 0.0
    common = sum(m.size for m in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks())
    return common / max(len(a), len(b))


def _quantity_or_word(ctype: str, text: str) -> bool:
    """Whether a value text (as `repair_read` gives it) is a quantity or one of the words a part of this type
    is labelled with."""
    return bool(
        _QUANTITY_RE.match(text)
        or _ZENER_RKM_RE.match(text)
        or _RATIO_RE.match(text)
        or text.upper() in _WORD_VALUES.get(ctype, ())
    )


# -- text ---------------------------------------------------------------------------------------------

_SI = {"p": 1e-12, "n": 1e-9, "u": 1e-6, "µ": 1e-6, "μ": 1e-6, "m": 1e-3, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}
_REF_RE = re.compile(r"^(#?[A-Z]{1,3})(\d{1,3})$")
_RATIO_RE = re.compile(r"^\d+(\.\d+)?:\d+(\.\d+)?$")  # a transformer's turns ratio: 1:2
_ZENER_RKM_RE = re.compile(r"^\d+V\d+$")  # a zener voltage in RKM: 5V1
_QUANTITY_RE = re.compile(
    r"^(\d+(?:[.,]\d+)?|\d+[pnuµmkKMGR]\d+)([pnuµmkKMG]?)(Ω|ohms?|R|F|H|Hz|A|V|Vpp|VAC|VDC|f|h)?$"
)  # a number, an SI prefix and a unit: a part's value


def clean_text(text: str) -> str:
    """OCR text tidied: spaces trimmed, Greek mu and micro sign unified, stray punctuation dropped."""
    t = text.strip().replace("μ", "µ").replace(" ", "")
    return t.strip(".,:;'\"`|_")


def parse_value(text: str) -> float | None:
    """A component value as a number: '4.7k' -> 4700, '4k7' -> 4700, '10µF' -> 1e-5, '1M' -> 1e6, '220' -> 220."""
    t = clean_text(text).replace("u", "µ").replace("Ω", "").replace("ohm", "")
    t = re.sub(r"(?<=[\dkKMGmµnp])[OQ]$", "", t)  # OCR reads a trailing Ω as O or Q
    t = re.sub(r"(?i)(F|H|V|A|Hz|W)$", "", t)
    m = re.match(r"^(\d+)([pnµmkKMG])(\d+)$", t)  # RKM: 4k7
    if m:
        return float(f"{m.group(1)}.{m.group(3)}") * _SI[m.group(2)]
    m = re.match(r"^(\d+(?:\.\d+)?)([pnµmkKMG]?)$", t)
    if not m:
        return None
    return float(m.group(1)) * (_SI[m.group(2)] if m.group(2) else 1.0)


def canonical_value(ctype: str, text: str) -> str:
    """A value text reduced to what must match between two readings of one part."""
    if not text:
        return ""
    if ctype in (
        "resistor",
        "capacitor",
        "capacitor_polarized",
        "inductor",
        "potentiometer",
        "isource",
        "vsource",
        "battery",
        "vsource_ac",
        "crystal",
    ):
        v = parse_value(text)
        if v is not None:
            return f"{v:.3g}"
    return clean_text(text).upper().replace("µ", "U").replace("Ω", "")


def ref_prefix_types(text: str) -> tuple[str, set[str]] | None:
    """('R3', {'resistor'}) for a reference designator; None for other texts."""
    t = clean_text(text).upper()
    m = _REF_RE.match(t)
    if not m:
        return None
    types = {ty for ty, prefixes in REF_PREFIXES.items() if m.group(1) in prefixes}
    return (t, types) if types else None


_SEMI = frozenset({"diode", "led", "zener", "npn", "pnp", "nmos", "pmos", "opamp", "crystal", "switch"})
_WORD_VALUES = {
    "led": COMMON_VALUES["led"],
    "switch": COMMON_VALUES["switch"],
    "nmos": {"NMOS"},
    "pmos": {"PMOS"},
    "opamp": {"OPAMP"},
}


def value_types(text: str) -> set[str]:
    """The component types a value text can belong to ('10nF' -> capacitors, '4k7' -> resistors ...)."""
    t = clean_text(text)
    if not t or ref_prefix_types(t):
        return set()
    if _RATIO_RE.match(t):
        return {"transformer"}
    if _ZENER_RKM_RE.match(t):
        return {"zener"}
    m = _QUANTITY_RE.match(t)
    if m:
        prefix, unit = m.group(2), (m.group(3) or "").replace("f", "F").replace("h", "H")
        if re.match(r"^\d+[pnuµmkKMGR]\d+$", m.group(1)):
            prefix = re.sub(r"[\d]", "", m.group(1))
        if unit in ("Ω", "ohm", "ohms") or prefix == "R":
            return {"resistor", "potentiometer"}
        if unit == "F":
            return {"capacitor", "capacitor_polarized"}
        if unit == "H":
            return {"inductor"}
        if unit == "Hz":
            return {"crystal"}
        if unit == "A":
            return {"isource"}
        if unit.startswith("V"):
            return {"vsource", "battery", "vsource_ac", "zener"}
        if prefix in ("p", "n", "u", "µ"):
            return {"capacitor", "capacitor_polarized", "inductor", "isource"}
        if prefix == "m":
            return {"isource", "inductor", "capacitor_polarized"}
        return {"resistor", "potentiometer"}
    words = {ty for ty, ws in _WORD_VALUES.items() if t.upper() in ws}
    if words:
        return words
    if (
        len(t) >= 4
        and len(re.findall(r"\d", t)) >= 2
        and re.search(r"[A-Za-z]", t)
        and re.match(r"^[A-Za-z0-9][A-Za-z0-9\-/.]*$", t)
        and not re.match(r"^\d+[.,]\d", t)
    ):  # a part number: a series number after or among letters ('BC547', '1N4148'), not a stray 'VO8'
        # nor a quantity with a garbled unit ('8.2ud')
        return set(_SEMI) | {"transformer"}
    return set()


def value_fits(ctype: str, text: str) -> bool:
    """Whether a text could be the value of a part of this type."""
    return ctype in value_types(text)


_DIGIT_LOOKALIKES = str.maketrans({"O": "0", "o": "0", "S": "5", "s": "5", "I": "1", "l": "1", "|": "1", "B": "8"})
# part-number families whose prefix OCR reads with a digit for a letter or the other way round
_PART_PREFIX_SLIPS = (
    (re.compile(r"^[Il|]N(?=\d{3,4}[A-Z]{0,2}$)"), "1N"),  # diodes: 1N4148
    (re.compile(r"^A0(?=[0-9]{4}[A-Z]?$)"), "AO"),  # Alpha & Omega MOSFETs: AO3400
    (re.compile(r"^0P(?=A?\d{2,4}[A-Z]{0,2}$)"), "OP"),  # op-amps: OP07, OPA2134
)
_QUANTITY_TAIL = re.compile(r"^[pnuµmkKMG]?(Ω|F|H|V|A|Hz)?$")


def value_for(ctype: str, text: str) -> str:
    """The value text a part of this type gets from a label that fits it: milli on a non-polarised
    capacitor is the OCR's m for n ('39mF' -> '39nF'); ceramic and film capacitors stop at tens of µF."""
    if ctype == "capacitor":
        return re.sub(r"^(\d+(?:[.,]\d+)?)mF$", r"\1nF", text)
    return text


def repair_read(text: str) -> str:
    """A label as OCR read it, with the usual slips undone where that turns it into a reference, a
    quantity or a standard part number: 'Rl' -> 'R1', 'SV' -> '5V', '2.7yF' -> '2.7µF',
    '180Q' -> '180Ω', '1:2nF' -> '1.2nF', 'IN4148' -> '1N4148', 'A03400' -> 'AO3400'. Other texts come
    back only tidied."""
    t = clean_text(text)
    if not t or ref_prefix_types(t) or _QUANTITY_RE.match(t):
        return t
    m = re.match(r"^([A-Z]{1,3})([0-9Il|\]]{1,3})$", t)
    if m and ref_prefix_types(ref := m.group(1) + re.sub(r"[Il|\]]", "1", m.group(2))):
        return ref
    fixed = re.sub(r"(?<=\d)y(?=[FHA]?$)", "µ", t)  # the micro sign read as y
    fixed = re.sub(r"(?<=[\dkKM])[OQ]$", "Ω", fixed)  # the ohm sign read as O or Q
    fixed = re.sub(r"^(\d+)[:;](?=\d+[pnuµmkKMG])", r"\1.", fixed)  # a decimal point read as a colon: 1:2nF
    # one letter read for a digit, in a number that ends in a prefix or unit ('BS250' stays a part number)
    m = re.match(r"^([0-9OoSsIl|B.,]+)(.+)$", fixed)
    if m and _QUANTITY_TAIL.match(m.group(2)) and len(re.findall(r"[OoSsIl|B]", m.group(1))) == 1:
        fixed = m.group(1).translate(_DIGIT_LOOKALIKES) + m.group(2)
    if _QUANTITY_RE.match(fixed):
        return fixed
    for wrong, right in _PART_PREFIX_SLIPS:
        t = wrong.sub(right, t)
    return t


def _widest_gap(ink: np.ndarray, box: tuple[float, ...]) -> tuple[int, int] | None:
    """The blank between two words in a text box: the widest run of ink-free columns between its first
    and last inked columns (image x from, to), when it is as wide as a space (a quarter of the text
    height) and half as wide again as any other (the glyphs of one word stand evenly); else None."""
    H, W = ink.shape
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    cols = ink[max(0, y0) : min(H, y1 + 1), max(0, x0) : min(W, x1 + 1)].any(axis=0)
    on = np.flatnonzero(cols)
    if len(on) < 2:
        return None
    blanks = np.diff(on) - 1
    i = int(blanks.argmax())
    second = float(np.partition(blanks, -2)[-2]) if len(blanks) > 1 else 0.0
    if blanks[i] < 0.25 * (y1 - y0) or blanks[i] < 1.5 * second:
        return None
    return max(0, x0) + int(on[i]) + 1, max(0, x0) + int(on[i + 1])


def split_reads(
    texts: list[Any],
    reads: list[str],
    ink: np.ndarray | None = None,
    reread: Callable[[list[tuple[float, float, float, float]]], list[str]] | None = None,
) -> tuple[list[Any], list[str]]:
    """Texts whose read holds several words that are each a reference or a value ('R1 680k': one
    label box over two labels on a line) become one text per word, the box cut at the words'
    character positions; every read is passed through `repair_read`.

    With the drawing's `ink` and `reread` (OCR of boxes), a read that OCR ran together ('R1150k') and
    that some cut would turn into a reference and a value is cut at the widest blank between its
    glyphs, and the two halves are read again: they replace it when they are a reference and a value.
    """
    out_t: list[Any] = []
    out_r: list[str] = []
    halves: list[tuple[int, tuple[float, float, float, float], tuple[float, float, float, float]]] = []
    for t, raw in zip(texts, reads):
        words = [(m.start(), m.end(), repair_read(m.group())) for m in re.finditer(r"\S+", raw.strip())]
        x0, y0, x1, y1 = t.box
        if len(words) > 1 and all(ref_prefix_types(w) or value_types(w) for _, _, w in words):
            k = (x1 - x0) / max(1, len(raw.strip()))
            for a, b, w in words:
                out_t.append(type(t)(t.cls, t.score, (x0 + a * k, y0, x0 + b * k, y1)))
                out_r.append(w)
            continue
        whole = repair_read(raw)
        if (
            ink is not None
            and reread is not None
            and len(words) == 1
            and not ref_prefix_types(whole)
            and not _QUANTITY_RE.match(whole)
            and any(ref_prefix_types(whole[:k]) and value_types(repair_read(whole[k:])) for k in range(2, len(whole)))
            and (gap := _widest_gap(ink, t.box)) is not None
        ):
            halves.append((len(out_t), (x0, y0, float(gap[0]), y1), (float(gap[1]), y0, x1, y1)))
        out_t.append(t)
        out_r.append(whole)
    if not halves or reread is None:
        return out_t, out_r
    again = reread([b for _, left, right in halves for b in (left, right)])
    for n, (i, left, right) in reversed(list(enumerate(halves))):
        head, tail = repair_read(again[2 * n]), repair_read(again[2 * n + 1])
        if ref_prefix_types(head) and value_types(tail):
            t = out_t[i]
            out_t[i : i + 1] = [type(t)(t.cls, t.score, left), type(t)(t.cls, t.score, right)]
            out_r[i : i + 1] = [head, tail]
    return out_t, out_r


# -- geometry helpers ---------------------------------------------------------------------------------


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Whether two boxes share some area (not just an edge)."""
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def _box_gap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Distance between two boxes (0 when they overlap)."""
    dx = max(0.0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0.0, max(a[1], b[1]) - min(a[3], b[3]))
    return math.hypot(dx, dy)


class _UF:
    def __init__(self, n: int) -> None:
        self.p = list(range(n))

    def find(self, a: int) -> int:
        while self.p[a] != a:
            self.p[a] = self.p[self.p[a]]
            a = self.p[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.p[ra] = rb


@dataclass
class Segment:
    """A straight wire stroke: horizontal (y fixed) or vertical (x fixed), in pixels."""

    horizontal: bool
    a: float  # start along the stroke
    b: float  # end along the stroke
    c: float  # the fixed coordinate
    thick: float

    def endpoints(self) -> tuple[tuple[float, float], tuple[float, float]]:
        if self.horizontal:
            return (self.a, self.c), (self.b, self.c)
        return (self.c, self.a), (self.c, self.b)

    def distance(self, x: float, y: float) -> float:
        """Distance from a point to the stroke's centre line."""
        along, across = (x, y) if self.horizontal else (y, x)
        d_along = max(0.0, self.a - along, along - self.b)
        return math.hypot(d_along, across - self.c)


def binarize(gray: np.ndarray) -> np.ndarray:
    """Ink mask (bool) from a paper-normalised grayscale image."""
    thr, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    thr = min(max(thr, 60.0), 190.0)
    return gray < thr


def stroke_width(ink: np.ndarray) -> float:
    """Typical pen width: median thickness of long horizontal and vertical runs."""
    vals = []
    for horizontal in (True, False):
        k = np.ones((1, 25) if horizontal else (25, 1), np.uint8)
        m = cv2.morphologyEx(ink.astype(np.uint8), cv2.MORPH_OPEN, k)
        n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        for i in range(1, n):
            x, y, w, h, area = stats[i]
            length = w if horizontal else h
            if length >= 25:
                vals.append(area / length)
    return float(np.clip(np.median(vals), 1.0, 12.0)) if vals else 2.0


def detection_side(norm: np.ndarray, base_side: int) -> int:
    """The detector's input side for this drawing: thin-pen drawings are read enlarged (`reading_side`)."""
    from vision.detect import reading_side

    return reading_side(base_side, max(norm.shape), stroke_width(binarize(norm)))


def extract_segments(
    ink: np.ndarray, stroke: float, text_boxes: list[tuple[float, float, float, float]]
) -> list[Segment]:
    """Horizontal and vertical strokes of at least a few pen widths, minus glyph strokes inside text."""
    L = int(max(10, round(3 * stroke + 4)))
    segs: list[Segment] = []
    text_mask = np.zeros(ink.shape, np.uint8)
    for x0, y0, x1, y1 in text_boxes:
        text_mask[max(0, int(y0) - 2) : int(y1) + 3, max(0, int(x0) - 2) : int(x1) + 3] = 1
    for horizontal in (True, False):
        k = np.ones((1, L) if horizontal else (L, 1), np.uint8)
        m = cv2.morphologyEx(ink.astype(np.uint8), cv2.MORPH_OPEN, k)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        if n <= 1:
            continue
        in_text = np.bincount(labels.ravel(), weights=text_mask.ravel(), minlength=n)
        for i in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[i])
            if in_text[i] > 0.6 * area:
                continue
            thick = area / max(1, w if horizontal else h)
            if thick > 4 * stroke + 3:  # a filled area, not a wire
                continue
            if horizontal:
                segs.append(Segment(True, float(x), float(x + w - 1), y + (h - 1) / 2, thick))
            else:
                segs.append(Segment(False, float(y), float(y + h - 1), x + (w - 1) / 2, thick))
    return segs


def _local_centre(ink: np.ndarray, seg: Segment, at: float, skip: int) -> float:
    """The centre line of a stroke near position `at` along it (its fixed coordinate there), read from
    the ink just before and after `at` (`skip` pixels away, clear of a stroke crossing there)."""
    H, W = ink.shape
    r = int(math.ceil(seg.thick)) + 2
    c = int(round(seg.c))
    vals = []
    for along in (int(round(at)) - skip, int(round(at)) + skip):
        if not (seg.a <= along <= seg.b and 0 <= along < (W if seg.horizontal else H)):
            continue
        lo = max(0, c - r)
        line = ink[lo : c + r + 1, along] if seg.horizontal else ink[along, lo : c + r + 1]
        idx = np.flatnonzero(line)
        if len(idx):
            vals.append(lo + float(idx.mean()))
    return float(np.mean(vals)) if vals else seg.c


def _half_width(dist: np.ndarray, seg: Segment) -> float:
    """A stroke's half-width as the distance transform sees it: the median ridge height across it."""
    H, W = dist.shape
    r = int(math.ceil(seg.thick / 2)) + 1
    vals = []
    for t in (0.2, 0.35, 0.5, 0.65, 0.8):
        along = int(round(seg.a + t * (seg.b - seg.a)))
        c = int(round(seg.c))
        win = dist[max(0, c - r) : c + r + 1, along] if seg.horizontal else dist[along, max(0, c - r) : c + r + 1]
        if 0 <= along < (W if seg.horizontal else H) and win.size:
            vals.append(float(win.max()))
    return float(np.median(vals)) if vals else seg.thick / 2


def dot_junctions(ink: np.ndarray, segs: list[Segment], stroke: float) -> list[tuple[float, float]]:
    """Filled round blobs on two or more wires, clearly fatter than those wires: junction dots.

    Measured on the distance transform: where two strokes of half-width d cross, the ink around the
    centre reaches about 1.41 d from the paper (up to 1.8 d once a scan's blur fills the corners);
    a dot reaches its radius, which drawings make about twice the half-width or more. A blob counts
    when it reaches `DOT_RATIO` times the half-width of the fattest stroke through it (measured
    along those strokes, so thin and bold pens both work). The detector finds dots too; this is the
    second opinion for the ones it misses, so it errs towards leaving a crossing uncut.
    """
    dist = cv2.distanceTransform(ink.astype(np.uint8), cv2.DIST_L2, 5)
    r = max(1, int(round(0.6 * stroke)))
    core = (dist > r).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(core, connectivity=8)
    out = []
    widths: dict[int, float] = {}
    for i in range(1, n):
        x, y, w, h, _ = stats[i]
        if w > 6 * stroke + 6 or h > 6 * stroke + 6:
            continue
        sub = np.where(lab[y : y + h, x : x + w] == i, dist[y : y + h, x : x + w], 0)
        cy, cx = np.unravel_index(int(sub.argmax()), sub.shape)
        cx, cy = float(cx + x), float(cy + y)
        near = [k for k, sg in enumerate(segs) if sg.distance(cx, cy) <= stroke + 2]
        if len(near) < 2:
            continue
        for k in near:
            if k not in widths:
                widths[k] = _half_width(dist, segs[k])
        if float(sub.max()) >= DOT_RATIO * max(widths[k] for k in near):
            out.append((cx, cy))
    return out


def _straight_strokes(ink: np.ndarray, L: int) -> dict[bool, tuple[np.ndarray, np.ndarray]]:
    """Labelled horizontal (True) and vertical (False) straight strokes at least L pixels long."""
    out = {}
    for horizontal in (True, False):
        k = np.ones((1, L) if horizontal else (L, 1), np.uint8)
        strokes = cv2.morphologyEx(ink.astype(np.uint8), cv2.MORPH_OPEN, k)
        _, lab, stats, _ = cv2.connectedComponentsWithStats(strokes, connectivity=8)
        out[horizontal] = (lab, stats)
    return out


def _restore_strokes(
    work: np.ndarray,
    strokes: dict[bool, tuple[np.ndarray, np.ndarray]],
    boxes: list[tuple[float, float, float, float]],
    rails: list[int],
    pins: list[tuple[int, tuple[float, float]]],
    stroke: float,
) -> None:
    """Give back straight wires that masking cut: those that run along the edge of a ground or
    supply box (`rails`: their indices) and out on both sides, and those that pass through a pin
    point (a wire that turns at a pin, or runs inside a neighbour's box to reach it)."""
    band = int(math.ceil(stroke)) + 2
    m = 2 * stroke + 2
    grow = int(math.ceil(stroke / 4)) + 2  # the mask's margin: a thin symbol's rims stay out
    r = int(math.ceil(stroke / 2)) + 1
    by_comp: dict[int, list[tuple[int, int]]] = {}
    for ci, (x, y) in pins:
        by_comp.setdefault(ci, []).append((int(round(x)), int(round(y))))

    def on_stroke(lab: np.ndarray, i: int, xy: tuple[int, int]) -> bool:
        x, y = xy
        return bool((lab[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1] == i).any())

    def ends_inside(horizontal: bool, i: int, box: tuple[float, float, float, float], pin: tuple[int, int]) -> bool:
        """Whether stroke i enters the box at `pin` and ends inside it, across its middle: then it is
        the symbol's inside (a MOSFET's gate wire lines up with its source arrow). A stroke that runs
        along the box's edge, or through the box and out of its far side, is a wire."""
        sx, sy, sw, sh, _ = strokes[horizontal][1][i]
        x0, y0, x1, y1 = box
        lo, hi, at, run_lo, run_hi, mid = (
            (x0, x1, pin[0], sx, sx + sw - 1, sy + sh / 2)
            if horizontal
            else (y0, y1, pin[1], sy, sy + sh - 1, sx + sw / 2)
        )
        c0, c1 = (y0, y1) if horizontal else (x0, x1)
        if not c0 + band < mid < c1 - band:
            return False
        return run_hi <= hi + band if at - lo < hi - at else run_lo >= lo - band

    def give_back(horizontal: bool, i: int, own: int | None = None) -> None:
        """Restore stroke i, except inside the pin's own symbol (its inner strokes may lead to other
        pins), inside any symbol the stroke runs through from one of its pins to another, and inside
        one it enters at a pin and ends in."""
        lab, stats = strokes[horizontal]
        sx, sy, sw, sh, _ = stats[i]
        sel = lab[sy : sy + sh, sx : sx + sw] == i
        for cj, (x0, y0, x1, y1) in enumerate(boxes):
            if x1 < sx or x0 > sx + sw or y1 < sy or y0 > sy + sh:
                continue
            if cj != own:
                hits = [p for p in by_comp.get(cj, []) if on_stroke(lab, i, p)]
                if len(hits) < 2 and not (len(hits) == 1 and ends_inside(horizontal, i, (x0, y0, x1, y1), hits[0])):
                    continue
            bx0, by0 = max(0, int(x0) - grow - sx), max(0, int(y0) - grow - sy)
            bx1, by1 = int(math.ceil(x1)) + grow + 1 - sx, int(math.ceil(y1)) + grow + 1 - sy
            if bx1 > bx0 and by1 > by0:
                sel[by0:by1, bx0:bx1] = False
        work[sy : sy + sh, sx : sx + sw] |= sel

    for horizontal in (True, False):
        lab, stats = strokes[horizontal]
        for x0, y0, x1, y1 in (boxes[i] for i in rails):
            X0, Y0, X1, Y1 = int(x0), int(y0), int(math.ceil(x1)), int(math.ceil(y1))
            edges = ((Y0, Y0 + band), (Y1 - band, Y1)) if horizontal else ((X0, X0 + band), (X1 - band, X1))
            for e0, e1 in edges:
                if horizontal:
                    region = lab[max(0, e0) : e1 + 1, max(0, X0) : X1 + 1]
                else:
                    region = lab[max(0, Y0) : Y1 + 1, max(0, e0) : e1 + 1]
                for i in np.unique(region):
                    if i == 0:
                        continue
                    sx, sy, sw, sh, _ = stats[i]
                    lo, hi = (sx, sx + sw - 1) if horizontal else (sy, sy + sh - 1)
                    need_lo, need_hi = (x0 - m, x1 + m) if horizontal else (y0 - m, y1 + m)
                    if lo <= need_lo and hi >= need_hi:
                        give_back(horizontal, int(i))
        for ci, (x, y) in pins:
            xi, yi = int(round(x)), int(round(y))
            win = lab[max(0, yi - r) : yi + r + 1, max(0, xi - r) : xi + r + 1]
            for i in np.unique(win):
                if i:
                    give_back(horizontal, int(i), ci)


def _arm_label(lab: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> int:
    """The most common wire label in a small window (0 when none)."""
    H, W = lab.shape
    win = lab[max(0, y0) : min(H, y1 + 1), max(0, x0) : min(W, x1 + 1)]
    vals = win[win > 0]
    return int(np.bincount(vals).argmax()) if vals.size else 0


def _lead_length(
    ink: np.ndarray, box: tuple[float, float, float, float], side: str, pin: tuple[int, int], stroke: float
) -> int:
    """How far a two-terminal symbol's lead runs into its box from the pin's edge ("t", "b", "l", "r"):
    steps along the lead's axis until the ink across it widens (plate, zigzag, circle, triangle) or
    stops. 0 when the pin's axis holds no ink. A wire that turns beside the lead stays outside the
    measured run, since the run is taken across the axis pixel only."""
    H, W = ink.shape
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    horizontal_lead = side in ("l", "r")
    length = (x1 - x0) if horizontal_lead else (y1 - y0)
    start = {"t": y0, "b": y1, "l": x0, "r": x1}[side]
    step = 1 if side in ("t", "l") else -1
    axis = pin[1] if horizontal_lead else pin[0]
    slack = int(math.ceil(stroke / 2)) + 1
    wide = int(2.5 * stroke + 2)
    skip = int(math.ceil(stroke)) + 2  # a wire that tees in at the pin widens the first rows
    for t in range(0, max(0, length // 2)):
        u = start + step * t
        if not (0 <= u < (W if horizontal_lead else H)):
            return t
        line = ink[:, u] if horizontal_lead else ink[u, :]
        lo, hi = max(0, axis - slack), min(len(line), axis + slack + 1)
        hits = np.flatnonzero(line[lo:hi])
        if not len(hits):
            return t
        c = lo + int(hits[np.abs(hits + lo - axis).argmin()])
        a = b = c
        while a - 1 >= 0 and line[a - 1] and c - a <= wide:
            a -= 1
        while b + 1 < len(line) and line[b + 1] and b - c <= wide:
            b += 1
        if b - a + 1 > wide and t > skip:
            return t
    return max(0, length // 2)


def trace_nets(
    ink: np.ndarray,
    comp_boxes: list[tuple[float, float, float, float]],
    text_boxes: list[tuple[float, float, float, float]],
    junctions: list[tuple[float, float]],
    pins: list[tuple[int, tuple[float, float]]],
    stroke: float | None = None,
    comp_types: list[str] | None = None,
) -> tuple[list[int], list[Segment], list[int | None]]:
    """Connect pins through the wires of a drawing.

    The ink left after masking symbols (and dropping glyphs inside label boxes) is split into
    connected pieces; where a horizontal and a vertical stroke cross in their middles with no
    junction dot, the crossing is cut out and the two straight continuations are joined instead.

    Args:
        ink: Ink mask of the whole drawing.
        comp_boxes: Symbol boxes, masked before tracing.
        text_boxes: Label boxes; ink pieces lying inside one are glyphs, not wires.
        junctions: Junction dot centres (where crossing strokes do connect).
        pins: (component index, (x, y)) for every pin.
        stroke: Pen width in pixels; measured when None.
        comp_types: The symbol type per box. Ground and supply symbols get a rail that passes their
            pin kept whole; parts whose pins each sit alone on an edge (two-terminal parts,
            potentiometers, ground, supply) keep the whole band along a pin's edge, so a wire that
            turns at the pin stays whole. Without types, only the pins' surroundings are kept.

    Returns:
        A net id per pin (same id = same net), the straight wire segments found, and the net id of
        each segment (None for a segment that the cut crossings left unlabelled).
    """
    if stroke is None:
        stroke = stroke_width(ink)
    H, W = ink.shape
    L = int(max(10, round(3 * stroke + 4)))
    work = ink.copy()
    e = 1 + int(round(stroke / 4))  # anti-aliased rims of a symbol must not survive as thin "wires"
    for x0, y0, x1, y1 in comp_boxes:
        work[max(0, int(y0) - e) : int(math.ceil(y1)) + e + 1, max(0, int(x0) - e) : int(math.ceil(x1)) + e + 1] = False
    types = comp_types or [""] * len(comp_boxes)
    edge_band = {i for i, t in enumerate(types) if t and (len(TYPE_PINS[t]) <= 2 or t == "potentiometer")}
    rails = [i for i, t in enumerate(types) if t in NET_SYMBOLS]
    _restore_strokes(work, _straight_strokes(ink, L), comp_boxes, rails, pins, stroke)
    # a wire that turns or joins right at a pin lies partly inside the symbol's box: keep the pin's
    # surroundings (for parts with pins on opposite edges, the whole band along the pin's edge)
    rp = int(math.ceil(1.5 * stroke)) + 2 + e
    band = int(math.ceil(stroke)) + 3 + e
    for ci, (x, y) in pins:
        xi, yi = int(round(x)), int(round(y))
        if ci in edge_band:
            x0, y0, x1, y1 = (int(round(v)) for v in comp_boxes[ci])
            bw, bh = max(1, x1 - x0), max(1, y1 - y0)  # relative distances: a thin box's pin is at its end
            side = min(
                ((abs(y - y0) / bh, "t"), (abs(y - y1) / bh, "b"), (abs(x - x0) / bw, "l"), (abs(x - x1) / bw, "r"))
            )[1]
            g = e + 2
            # the lead's whole length: whatever lies beside a lead inside the box is wire, not symbol
            d = max(band, _lead_length(ink, comp_boxes[ci], side, (xi, yi), stroke) - e)
            sl = {
                "t": (slice(max(0, y0 - g), y0 + d), slice(max(0, x0 - g), x1 + g + 1)),
                "b": (slice(max(0, y1 - d), y1 + g + 1), slice(max(0, x0 - g), x1 + g + 1)),
                "l": (slice(max(0, y0 - g), y1 + g + 1), slice(max(0, x0 - g), x0 + d)),
                "r": (slice(max(0, y0 - g), y1 + g + 1), slice(max(0, x1 - d), x1 + g + 1)),
            }[side]
        else:
            sl = (slice(max(0, yi - rp), yi + rp + 1), slice(max(0, xi - rp), xi + rp + 1))
        work[sl] |= ink[sl]
    if text_boxes:
        n, lab, stats, _ = cv2.connectedComponentsWithStats(work.astype(np.uint8), connectivity=8)
        drop = np.zeros(n, bool)
        for i in range(1, n):
            x, y, w, h, _ = stats[i]
            for tx0, ty0, tx1, ty1 in text_boxes:
                if x >= tx0 - 3 and y >= ty0 - 3 and x + w - 1 <= tx1 + 3 and y + h - 1 <= ty1 + 3:
                    drop[i] = True
                    break
        work &= ~drop[lab]
    segs = extract_segments(work, stroke, [])
    juncs = list(junctions) + dot_junctions(work, segs, stroke)
    tol = stroke + 3.0
    cut = work.copy()
    crossings: list[tuple[int, int, int, int]] = []
    for h in (s for s in segs if s.horizontal):
        for v in (s for s in segs if not s.horizontal):
            if not (h.a + tol < v.c < h.b - tol and v.a + tol < h.c < v.b - tol):
                continue
            if min(abs(v.c - h.a), abs(v.c - h.b)) <= tol + v.thick / 2:
                continue
            if min(abs(h.c - v.a), abs(h.c - v.b)) <= tol + h.thick / 2:
                continue
            if any(math.hypot(jx - v.c, jy - h.c) <= 2 * tol for jx, jy in juncs):
                continue
            # a wire entering a symbol at a pin crosses the symbol's rim left outside its box, not a wire
            if any(math.hypot(px - v.c, py - h.c) <= tol for _, (px, py) in pins):
                continue
            rx, ry = int(math.ceil(v.thick / 2)) + 2, int(math.ceil(h.thick / 2)) + 2
            # where the strokes run here, not their mean lines: a skewed scan moves a long wire by pixels
            x = int(round(_local_centre(work, v, h.c, ry + 3)))
            y = int(round(_local_centre(work, h, v.c, rx + 3)))
            cut[max(0, y - ry) : y + ry + 1, max(0, x - rx) : x + rx + 1] = False
            crossings.append((x, y, rx, ry))
    n2, lab2 = cv2.connectedComponents(cut.astype(np.uint8), connectivity=8)
    uf = _UF(n2 + len(pins))
    for x, y, rx, ry in crossings:
        left = _arm_label(lab2, y - ry, y + ry, x - rx - 3, x - rx - 1)
        right = _arm_label(lab2, y - ry, y + ry, x + rx + 1, x + rx + 3)
        up = _arm_label(lab2, y - ry - 3, y - ry - 1, x - rx, x + rx)
        down = _arm_label(lab2, y + ry + 1, y + ry + 3, x - rx, x + rx)
        if left and right:
            uf.union(left, right)
        if up and down:
            uf.union(up, down)
    tol_pin = max(6.0, 2.5 * stroke + 3)
    r = int(math.ceil(tol_pin))
    for k, (_, (x, y)) in enumerate(pins):
        xi, yi = int(round(x)), int(round(y))
        y0, x0 = max(0, yi - r), max(0, xi - r)
        win = lab2[y0 : min(H, yi + r + 1), x0 : min(W, xi + r + 1)]
        ys, xs = np.nonzero(win)
        if not len(ys):
            continue
        d = np.hypot(xs + x0 - x, ys + y0 - y)
        best = int(d.argmin())
        if d[best] > tol_pin:
            continue
        uf.union(n2 + k, int(win[ys[best], xs[best]]))
        for lbl in np.unique(win[ys[d <= stroke + 2], xs[d <= stroke + 2]]):
            uf.union(n2 + k, int(lbl))
    tol_pp = max(4.0, 2 * stroke + 2)
    for k, (ci, (x, y)) in enumerate(pins):
        for m in range(k + 1, len(pins)):
            cj, (x2, y2) = pins[m]
            if ci != cj and math.hypot(x - x2, y - y2) <= tol_pp:
                uf.union(n2 + k, n2 + m)
    seg_labels = [_segment_label(lab2, sg) for sg in segs]
    for i, j in facing_wire_ends(segs, ink, comp_boxes, text_boxes, juncs, [xy for _, xy in pins], stroke):
        if seg_labels[i] and seg_labels[j]:
            uf.union(seg_labels[i], seg_labels[j])
    for i, j in wire_ends_short_of_wires(segs, lab2, seg_labels, comp_boxes, [xy for _, xy in pins], stroke):
        uf.union(seg_labels[i], seg_labels[j])
    for i, dot in dots_missing_an_arm(segs, lab2, seg_labels, juncs, comp_boxes, [xy for _, xy in pins], stroke):
        uf.union(seg_labels[i], dot)
    seg_nets = [uf.find(lbl) if lbl else None for lbl in seg_labels]
    return [uf.find(n2 + k) for k in range(len(pins))], segs, seg_nets


def _segment_label(lab: np.ndarray, sg: Segment) -> int:
    """The ink piece a wire segment lies on (0 when none): the one at its middle, else at its start."""
    (ax, ay), (bx, by) = sg.endpoints()
    my, mx = int(round((ay + by) / 2)), int(round((ax + bx) / 2))
    return _arm_label(lab, my - 1, my + 1, mx - 1, mx + 1) or _arm_label(
        lab, int(ay) - 1, int(ay) + 1, int(ax) - 1, int(ax) + 1
    )


def facing_wire_ends(
    segs: list[Segment],
    ink: np.ndarray,
    comp_boxes: list[tuple[float, float, float, float]],
    text_boxes: list[tuple[float, float, float, float]],
    junctions: list[tuple[float, float]],
    pins: list[tuple[float, float]],
    stroke: float,
) -> list[tuple[int, int]]:
    """Pairs of straight wires that stop in line, facing each other across a short gap of bare paper: one
    wire cut in two (a scan's dropout, or a cut a repair missed).

    The gap is no longer than `FACING_GAP` pen widths, lies outside every symbol box and not beside one (a
    capacitor's plates face each other inside theirs, a transformer's leads under its coils), clear of every
    label box, and no other wire ends at the cut ends. Each wire is at least as long as the gap, and its
    other end meets a wire across its line, a junction dot, a pin, a symbol or ink that spreads across its
    line (dashes of a dashed line and the bars of an equals sign end free). A wire that stops short of a
    wire across its line is left alone: drawings show a crossing without a connection so (a hop).

    Returns:
        (index, index) into `segs`, the first wire before the second along their line.
    """
    tol = stroke + 3.0
    longest = FACING_GAP * stroke + 4
    H, W = ink.shape

    def point(sg: Segment, along: float, c: float | None = None) -> tuple[float, float]:
        c = sg.c if c is None else c
        return (along, c) if sg.horizontal else (c, along)

    def wire_at(x: float, y: float, skip: tuple[int, ...]) -> bool:
        return any(m not in skip and sg.distance(x, y) <= tol for m, sg in enumerate(segs))

    def attached(k: int, at_end: bool) -> bool:
        """Whether wire `k` ends (at its end, else at its start) on a wire across its line, a junction dot,
        a pin, a symbol, or on ink that spreads across its line (a terminal circle, a net label); not on
        the next dash of a dashed line."""
        sg = segs[k]
        along = sg.b if at_end else sg.a
        x, y = point(sg, along)
        if (
            any(o.horizontal != sg.horizontal and o.distance(x, y) <= tol + o.thick / 2 for o in segs)
            or any(math.hypot(jx - x, jy - y) <= 2 * tol for jx, jy in junctions)
            or any(math.hypot(px - x, py - y) <= tol for px, py in pins)
            or any(_box_gap(b, (x, y, x, y)) <= tol for b in comp_boxes)
        ):
            return True
        reach = int(math.ceil(tol))
        lo, hi = (int(along) + 1, int(along) + 1 + reach) if at_end else (int(along) - reach, int(along))
        side = int(math.ceil(sg.thick / 2)) + 1  # the wire's own line: ink there may be the next dash
        c = int(round(sg.c))
        across, steps = slice(max(0, c - side - reach), c + side + reach + 1), slice(max(0, lo), max(0, hi))
        beyond = ink[across, steps].T if sg.horizontal else ink[steps, across]  # (along, across)
        off_line = np.abs(np.arange(beyond.shape[1]) + across.start - c) > side
        return bool(beyond[:, off_line].any())

    def bare(horizontal: bool, c: float, along0: int, along1: int) -> bool:
        """Whether a stretch of a wire's centre line (pixels along0..along1-1, and one pixel to each side)
        is paper, clear of every label box, with no symbol box over it or beside it (within `tol` across
        the line: the two coils of a transformer stand over the gap between their leads). Only the centre
        line must be paper: a junction dot the cut left a crescent of may lie beside it. Its first and last
        pixel may hold ink, one of them at least paper: a wire's end is found to a pixel, and a slanted cut
        leaves a ragged end."""
        cross0, cross1 = max(0, int(round(c)) - 1), int(round(c)) + 2
        if horizontal:
            window = (slice(cross0, min(H, cross1)), slice(max(0, along0), max(0, along1)))
            box = (float(along0), float(cross0), float(along1 - 1), float(cross1 - 1))
            beside = (box[0], box[1] - tol, box[2], box[3] + tol)
        else:
            window = (slice(max(0, along0), max(0, along1)), slice(cross0, min(W, cross1)))
            box = (float(cross0), float(along0), float(cross1 - 1), float(along1 - 1))
            beside = (box[0] - tol, box[1], box[2] + tol, box[3])
        inked = ink[window].any(axis=0 if horizontal else 1)  # per pixel along the line
        return (
            along1 > along0
            and not inked[1:-1].any()
            and not inked.all()
            and all(_box_gap(b, box) > 1 for b in text_boxes)
            and not any(_overlap(b, beside) for b in comp_boxes)
        )

    pairs = []
    for i, s in enumerate(segs):
        for j, t in enumerate(segs):
            gap = t.a - s.b
            if s.horizontal != t.horizontal or abs(s.c - t.c) > max(2.0, stroke / 2) or not 0 < gap <= longest:
                continue
            c = (s.c + t.c) / 2
            if (
                min(s.b - s.a, t.b - t.a) >= max(gap, 2 * stroke)
                and bare(s.horizontal, c, int(s.b) + 1, math.ceil(t.a))
                and not wire_at(*point(s, s.b, c), (i, j))
                and not wire_at(*point(t, t.a, c), (i, j))
                and attached(i, at_end=False)
                and attached(j, at_end=True)
            ):
                pairs.append((i, j))
    return pairs


def wire_ends_short_of_wires(
    segs: list[Segment],
    lab: np.ndarray,
    seg_labels: list[int],
    comp_boxes: list[tuple[float, float, float, float]],
    pins: list[tuple[float, float]],
    stroke: float,
) -> list[tuple[int, int]]:
    """Straight wires that stop just short of a wire across their line, with nothing on its far side: a T-joint
    cut at the joint (a gap beside a junction dot a repair missed).

    Walking on from the wire's free end along its line, over two pixels of bare paper at least (one may be the light
    rim between strokes drawn to touch: a clean drawing, seed 900000277, has one beside a slanted wire that its truth
    leaves apart) and no more than `FACING_GAP` pen widths (+4 px), the first ink met is the piece of a wire across
    its line (or of its junction dot), and the crossing point lies inside that wire, not at its end: a wire that stops
    short of another's corner is drawn so at times (a potentiometer's wiper lead beside its pin's). The end is free: no
    other wire ends there, and no pin or symbol box is near it. A wire that goes on beyond the wire across (a hop: a
    crossing drawn without a connection) is left alone.

    Args:
        lab: the labelled ink pieces the wires lie on (`cv2.connectedComponents`).
        seg_labels: each wire's piece in `lab` (0 for none).

    Returns:
        (index of the wire that stops, index of the wire across its line) into `segs`.
    """
    tol = stroke + 3.0
    reach = int(math.ceil(FACING_GAP * stroke + 4))
    pairs = []
    for i, along, step in _free_ends(segs, comp_boxes, pins, stroke):
        s = segs[i]
        if not seg_labels[i]:
            continue
        c = int(round(s.c))
        ahead = [int(round(along)) + step * k for k in range(2, reach + 2)]
        met, paper, n = _first_piece(lab, [(c, at) if s.horizontal else (at, c) for at in ahead])
        if not met or met == seg_labels[i] or paper < 2:
            continue
        hit = ahead[n]
        across = [
            k
            for k, o in enumerate(segs)
            if o.horizontal != s.horizontal
            and seg_labels[k] == met
            and abs(o.c - hit) <= reach
            and o.a + tol <= s.c <= o.b - tol  # a T: a wire that stops short of a corner may be drawn so
        ]
        if not across:
            continue
        j = min(across, key=lambda k: abs(segs[k].c - hit))
        far = segs[j].c + step * (segs[j].thick / 2 + 1)  # just past the wire across
        lo, hi = sorted((far, far + step * reach))
        hop = any(
            k != i
            and o.horizontal == s.horizontal
            and abs(o.c - s.c) <= max(2.0, stroke / 2)
            and o.b >= lo
            and o.a <= hi
            for k, o in enumerate(segs)
        )
        if not hop:
            pairs.append((i, j))
    return pairs


def dots_missing_an_arm(
    segs: list[Segment],
    lab: np.ndarray,
    seg_labels: list[int],
    junctions: list[tuple[float, float]],
    comp_boxes: list[tuple[float, float, float, float]],
    pins: list[tuple[float, float]],
    stroke: float,
) -> list[tuple[int, int]]:
    """Junction dots that lost an arm, and the wire end it led to: a dot that joins fewer than three wire arms,
    with a wire's free end straight across from it (the wire turned there: a corner whose short leg a cut erased),
    two pixels of bare paper at least between them, and the dot's centre no more than `FACING_GAP` + 2 pen widths
    (+4 px; two for the dot's radius) from the wire.

    Returns:
        (index of the wire whose end it is into `segs`, the dot's ink piece in `lab`).
    """
    tol = stroke + 3.0
    reach = int(math.ceil((FACING_GAP + 2) * stroke + 4))
    H, W = lab.shape
    pairs: list[tuple[int, int]] = []
    ends: list[tuple[int, float, int]] | None = None  # found once, for the first dot that lost an arm
    for jx, jy in junctions:
        dot = int(lab[min(H - 1, max(0, int(round(jy)))), min(W - 1, max(0, int(round(jx))))])
        arms = 0
        for o in segs:
            along = jx if o.horizontal else jy
            if o.distance(jx, jy) <= tol:
                arms += 2 if o.a + tol < along < o.b - tol else 1
        if not dot or arms >= 3:
            continue
        if ends is None:
            ends = list(_free_ends(segs, comp_boxes, pins, stroke))
        for i, along, _step in ends:
            s = segs[i]
            j_along, j_across = (jx, jy) if s.horizontal else (jy, jx)
            if not seg_labels[i] or seg_labels[i] == dot or abs(j_along - along) > max(2.0, stroke / 2):
                continue
            if not 0 < abs(j_across - s.c) <= reach:
                continue
            toward = 1 if j_across > s.c else -1
            line = int(round(along))
            across = range(int(round(s.c)), int(round(j_across)) + toward, toward)
            pixels = [(k, line) if s.horizontal else (line, k) for k in across]
            met, paper, _ = _first_piece(lab, pixels, own=seg_labels[i])
            if met == dot and paper >= 2:
                pairs.append((i, dot))
    return pairs


def _first_piece(lab: np.ndarray, pixels: list[tuple[int, int]], own: int = 0) -> tuple[int, int, int]:
    """Walking over `pixels` ((y, x) in order) of the labelled ink pieces `lab`: the first piece met (0 for none,
    and the `own` piece is walked through until paper starts), how many paper pixels came before it, and where in
    `pixels` it was met."""
    paper = 0
    for n, (py, px) in enumerate(pixels):
        if not (0 <= py < lab.shape[0] and 0 <= px < lab.shape[1]):
            break
        here = int(lab[py, px])
        if here and not (here == own and not paper):
            return here, paper, n
        if not here:
            paper += 1
    return 0, paper, -1


def _free_ends(
    segs: list[Segment],
    comp_boxes: list[tuple[float, float, float, float]],
    pins: list[tuple[float, float]],
    stroke: float,
) -> Iterator[tuple[int, float, int]]:
    """The wire ends no other wire goes on from in line and no pin or symbol box is near: (index into `segs`,
    the end's coordinate along its wire, -1 at its start or 1 at its end)."""
    tol = stroke + 3.0
    for i, s in enumerate(segs):
        for along, step in ((s.a, -1), (s.b, 1)):
            x, y = (along, s.c) if s.horizontal else (s.c, along)
            if (
                any(k != i and o.distance(x, y) <= tol and o.horizontal == s.horizontal for k, o in enumerate(segs))
                or any(math.hypot(px - x, py - y) <= tol for px, py in pins)
                or any(_box_gap(b, (x, y, x, y)) <= tol for b in comp_boxes)
            ):
                continue
            yield i, along, step


# -- pins -------------------------------------------------------------------------------------------


def _entry_points(box: tuple[float, float, float, float], ink: np.ndarray, stroke: float) -> list[tuple[float, float]]:
    """Where ink leaves a symbol box: centres of ink runs in a thin strip just outside each side."""
    H, W = ink.shape
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    d = int(math.ceil(stroke)) + 2
    out: list[tuple[float, float]] = []
    strips = [
        (True, max(0, y0 - d), max(0, y0 - 1), x0, x1),  # top
        (True, min(H - 1, y1 + 1), min(H - 1, y1 + d), x0, x1),  # bottom
        (False, max(0, x0 - d), max(0, x0 - 1), y0, y1),  # left
        (False, min(W - 1, x1 + 1), min(W - 1, x1 + d), y0, y1),  # right
    ]
    for horizontal, a0, a1, b0, b1 in strips:
        if a1 < a0:
            continue
        b0, b1 = max(0, b0), min((W if horizontal else H) - 1, b1)
        if b1 <= b0:
            continue
        band = ink[a0 : a1 + 1, b0 : b1 + 1] if horizontal else ink[b0 : b1 + 1, a0 : a1 + 1].T
        prof = band.all(axis=0) if band.shape[0] > 0 else np.zeros(0, bool)
        runs = np.flatnonzero(np.diff(np.concatenate([[0], prof.astype(np.int8), [0]])))
        for r0, r1 in zip(runs[::2], runs[1::2]):
            if r1 - r0 > 4 * stroke + 4:  # a wire running along the box, not into it
                continue
            c = b0 + (r0 + r1 - 1) / 2
            edge = y0 if (horizontal and a1 < y0) else y1 if horizontal else x0 if a1 < x0 else x1
            out.append((c, float(edge)) if horizontal else (float(edge), c))
    return out


def assign_pins(
    ctype: str,
    box: tuple[float, float, float, float],
    cands: list[tuple[str, float, tuple[float, float]]],
    entries: list[tuple[float, float]],
) -> dict[str, tuple[float, float]]:
    """Name the pins of one symbol from detected pin points (role, score, xy), snapped to the
    points where wires enter the box; missing pins fall back to entry points."""
    spec = TYPE_PINS[ctype]
    optional = OPTIONAL_PINS.get(ctype, frozenset())
    x0, y0, x1, y1 = box
    size = max(x1 - x0, y1 - y0, 1.0)
    snap = 0.25 * size + 4
    used_entries: set[int] = set()

    def snapped(xy: tuple[float, float]) -> tuple[float, float]:
        best = min(
            ((math.hypot(xy[0] - e[0], xy[1] - e[1]), i) for i, e in enumerate(entries) if i not in used_entries),
            default=None,
        )
        if best and best[0] <= snap:
            used_entries.add(best[1])
            return entries[best[1]]
        return xy

    out: dict[str, tuple[float, float]] = {}
    roles: dict[str, list[str]] = {}
    for name, role in spec:
        roles.setdefault(role, []).append(name)
    # the most confident roles choose first; two pins never share a spot
    order = sorted(roles, key=lambda r: -max((c[1] for c in cands if c[0] == r), default=0.0))
    taken: list[tuple[float, float]] = []
    sep = 0.2 * size
    for role in order:
        names = roles[role]
        picked: list[tuple[float, float]] = []
        for _, _, xy in sorted((c for c in cands if c[0] == role), key=lambda c: -c[1]):
            if all(math.hypot(xy[0] - p[0], xy[1] - p[1]) > sep for p in picked + taken):
                picked.append(xy)
            if len(picked) == len(names):
                break
        picked = [snapped(p) for p in picked]
        taken += picked
        if role == "generic":
            picked.sort(key=lambda p: (round(p[0] / max(size * 0.3, 1.0)), p[1]))
            if ctype == "transformer" and len(picked) == 4:
                left = sorted(sorted(picked, key=lambda p: p[0])[:2], key=lambda p: p[1])
                right = sorted(sorted(picked, key=lambda p: p[0])[2:], key=lambda p: p[1])
                picked = left + right
        for name, xy in zip(names, picked):
            out[name] = xy
    missing = [name for name, _ in spec if name not in out and name not in optional]
    free = [e for i, e in enumerate(entries) if i not in used_entries]
    if len(spec) == 2 and x1 - x0 > 0 and y1 - y0 > 0:
        # two-terminal parts end at the two ends of their long axis
        if x1 - x0 >= y1 - y0:
            ends = [(x0, (y0 + y1) / 2), (x1, (y0 + y1) / 2)]
        else:
            ends = [((x0 + x1) / 2, y0), ((x0 + x1) / 2, y1)]
        free += [e for e in ends if all(math.hypot(e[0] - f[0], e[1] - f[1]) > sep for f in free)]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    for name in missing:
        free = [f for f in free if all(math.hypot(f[0] - p[0], f[1] - p[1]) > sep for p in out.values())]
        if not free:
            break
        far = max(
            free,
            key=lambda e: (
                min((math.hypot(e[0] - p[0], e[1] - p[1]) for p in out.values()), default=0.0)
                + 1e-3 * math.hypot(e[0] - cx, e[1] - cy)
            ),
        )
        out[name] = far
        free.remove(far)
    return out


def _ink_run(line: np.ndarray, at: int) -> int:
    """Length of the ink run of a 1-D mask that contains index `at` (0 where `at` is paper)."""
    if not 0 <= at < len(line) or not line[at]:
        return 0
    a = b = at
    while a > 0 and line[a - 1]:
        a -= 1
    while b < len(line) - 1 and line[b + 1]:
        b += 1
    return b - a + 1


def _ray_on_ink(m: np.ndarray, start: np.ndarray, u: np.ndarray, limit: int) -> int:
    """How far a ray from `start` along `u` stays on ink (one missed pixel is forgiven)."""
    h, w = m.shape
    reach = miss = 0
    for t in range(limit):
        xi, yi = int(round(start[0] + t * u[0])), int(round(start[1] + t * u[1]))
        if 0 <= xi < w and 0 <= yi < h and m[yi, xi]:
            reach, miss = t + 1, 0
        else:
            miss += 1
            if miss > 1:
                break
    return reach


def _lead_widths(m: np.ndarray, start: np.ndarray, u: np.ndarray, length: int, reach: int) -> np.ndarray:
    """Ink width across a straight lead at each pixel along it (the run through the lead's centre line)."""
    h, w = m.shape
    nrm = np.array([-u[1], u[0]])
    out = np.zeros(length)
    for t in range(length):
        q = start + t * u
        for side, first in ((1, 0), (-1, 1)):
            for r in range(first, reach):
                xi, yi = int(round(q[0] + side * r * nrm[0])), int(round(q[1] + side * r * nrm[1]))
                if not (0 <= xi < w and 0 <= yi < h) or not m[yi, xi]:
                    break
                out[t] += 1
    return out


def bjt_emitter(
    ink: np.ndarray,
    stroke: float,
    box: tuple[float, float, float, float],
    base: tuple[float, float],
    leads: tuple[tuple[float, float], tuple[float, float]],
) -> int | None:
    """Which of a bipolar transistor's two `leads` (pin points) is the emitter: the one whose diagonal
    carries the arrowhead.

    The two diagonals leave the base bar as mirror images, so the emitter is the one that is wider
    along its length. None when the drawing does not show this clearly (no bar, no clear arrowhead).
    """
    x0, y0, x1, y1 = box
    pad = int(0.08 * max(x1 - x0, y1 - y0)) + 2
    H, W = ink.shape
    ax, ay = max(0, int(x0) - pad), max(0, int(y0) - pad)
    m = ink[ay : min(H, int(math.ceil(y1)) + pad + 1), ax : min(W, int(math.ceil(x1)) + pad + 1)]
    pts = np.array([base, *leads], float) - [ax, ay]
    cx, cy = (x0 + x1) / 2 - ax, (y0 + y1) / 2 - ay
    # work in a frame where the base lead comes in horizontally from the left
    if abs(pts[0, 1] - cy) > abs(pts[0, 0] - cx):
        m, pts, cx, cy = m.T, pts[:, ::-1].copy(), cy, cx
    if pts[0, 0] > cx:
        m = m[:, ::-1]
        pts[:, 0] = m.shape[1] - 1 - pts[:, 0]
    h, w = m.shape
    by = int(round(pts[0, 1]))
    if not 0 <= by < h or m.size == 0:
        return None
    # the bar is where the base lead's ink along its row ends (a circle around the symbol only crosses it)
    row = m[max(0, by - 1) : by + 2].any(axis=0)
    x = int(round(pts[0, 0]))
    while 0 <= x < w - 1 and not row[x] and x < pts[0, 0] + stroke + 2:
        x += 1
    while 0 <= x < w - 1 and row[x + 1]:
        x += 1
    bar = x
    if not 0 <= bar < w - 2:
        return None
    if max(_ink_run(m[:, xx], yy) for xx in range(max(0, bar - 2), bar + 1) for yy in (by - 1, by, by + 1)) < (
        3 * stroke + 2
    ):
        return None
    reach = int(max(2.5 * stroke, 0.12 * h)) + 1
    widths = []
    for p in pts[1:]:
        sgn = 1 if p[1] > by else -1
        col = m[:, bar + 2]
        rows = [y for y in range(h) if col[y] and (y - by) * sgn > stroke]
        if not rows:
            return None
        # the run nearest the base row is where the diagonal starts (a circle lies farther out)
        near = min(rows, key=lambda y: abs(y - by))
        start = np.array([bar + 1.0, float(np.mean([y for y in rows if abs(y - near) <= 2 * stroke + 2]))])
        # the diagonal: of the rays bending away from the base row, the one that stays longest on ink
        length, u = max(
            (
                (_ray_on_ink(m, start, v, int(0.9 * h)), tuple(v))
                for a in np.radians(np.arange(10.0, 81.0, 2.5))
                for v in [np.array([math.cos(a), sgn * math.sin(a)])]
            ),
            key=lambda r: r[0],
        )
        if length < 3 * stroke:
            return None
        wid = _lead_widths(m, start, np.array(u), length, reach)
        # a junction dot where a lead meets its wire is no arrowhead
        along = start + np.arange(length)[:, None] * np.array(u)
        wid[np.hypot(*(along - p).T) <= 2 * stroke + 2] = 0
        widths.append(wid)
    n = min(len(widths[0]), len(widths[1]))
    diff = widths[1][:n] - widths[0][:n]
    diff[: max(1, int(stroke))] = 0  # the bar's own edge
    total = float(diff.sum())
    if abs(total) < BJT_ARROW_MIN * stroke * stroke:
        return None
    return int(total > 0)


def arrow_head_side(
    ink: np.ndarray, box: tuple[float, float, float, float], leads: tuple[tuple[float, float], tuple[float, float]]
) -> int | None:
    """Which of a current source's two `leads` its arrow points to, or None when unclear.

    Inside the circle the arrow is the only ink: along its length the shaft keeps one width while
    the head tapers, so the half whose width varies more is the half the arrow points to.
    """
    (ax, ay), (bx, by) = leads
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # along the box's long axis, from the first lead's end to the second's (a pin read where a wire
    # turns off beside the end must not tilt the axis)
    vertical = y1 - y0 > x1 - x0
    along = (by - ay) if vertical else (bx - ax)
    if abs(along) < 4:
        return None
    ux, uy = (0.0, math.copysign(1.0, along)) if vertical else (math.copysign(1.0, along), 0.0)
    # the circle spans the box across the leads' axis; well inside it only the arrow remains
    inner = 0.6 * 0.5 * (abs(uy) * (x1 - x0) + abs(ux) * (y1 - y0))
    H, W = ink.shape
    r = int(math.ceil(inner))
    wx0, wy0 = max(0, int(cx) - r), max(0, int(cy) - r)
    ys, xs = np.nonzero(ink[wy0 : min(H, int(cy) + r + 1), wx0 : min(W, int(cx) + r + 1)])
    dx, dy = xs + wx0 - cx, ys + wy0 - cy
    t, n = dx * ux + dy * uy, dy * ux - dx * uy
    keep = (np.hypot(dx, dy) < inner) & (np.abs(n) < 0.6 * inner)
    if keep.sum() < 8:
        return None
    t, n = np.round(t[keep]).astype(int), n[keep]
    steps = np.unique(t)
    widths = np.array([np.ptp(n[t == v]) + 1 for v in steps])
    half = len(steps) // 2
    if half < 4:
        return None
    # the outermost steps are the rounded ends of the strokes
    spread = [float(np.std(widths[1 : half - 1])), float(np.std(widths[len(steps) - half + 1 : -1]))]
    if max(spread) < ARROW_TAPER_RATIO * min(spread) + 0.5:
        return None
    return int(spread[1] > spread[0])


# -- the reader -------------------------------------------------------------------------------------


def grow_text_box(
    ink: np.ndarray,
    box: tuple[float, float, float, float],
    symbols: list[tuple[float, float, float, float]] | None = None,
) -> tuple[float, float, float, float]:
    """Widen a label box over characters it cut off or left out just beyond its ends: glyph ink (columns
    at least 0.3 text heights tall inside the line) closer than 0.35 text heights, up to 3 text heights.
    A wire is no glyph: a horizontal one is too flat, a vertical one runs on above and below the line;
    nor is the ink of a symbol (`symbols`: component boxes)."""
    H, W = ink.shape
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    h = max(1, y1 - y0)
    ya, yb = max(0, y0), min(H, y1 + 1)
    if yb <= ya:
        return box
    lo, hi = max(0, x0 - 3 * h), min(W, x1 + 3 * h + 1)
    band = ink[ya:yb, lo:hi].copy()
    for sx0, sy0, sx1, sy1 in symbols or []:
        if sy0 < yb and sy1 > ya:
            band[:, max(0, int(sx0) - 1 - lo) : max(0, int(math.ceil(sx1)) + 2 - lo)] = False
    filled = band.any(axis=0)
    top = np.where(filled, band.argmax(axis=0), 0)
    bottom = np.where(filled, band.shape[0] - 1 - band[::-1].argmax(axis=0), 0)
    glyph = filled & (bottom - top + 1 >= 0.3 * h)
    above, below = max(0, y0 - int(0.3 * h) - 1), min(H - 1, y1 + int(0.3 * h) + 1)
    through = ink[above, lo:hi] & ink[below, lo:hi] & ink[above : below + 1, lo:hi].all(axis=0)
    cols = glyph & ~through
    gap = max(2, int(0.35 * h))

    def walk(start: int, step: int) -> int:
        edge, run, flat = start, 0, 0
        x = start + step
        while 0 <= x - lo < len(cols) and abs(x - start) <= 3 * h:
            if through[x - lo]:
                break
            if cols[x - lo]:
                edge, run, flat = x, 0, 0
            elif filled[x - lo] and flat < h:
                flat += 1  # a serif or a letter's bar between glyph columns (a wire runs on for longer)
            else:
                run += 1
                if run > gap:
                    break
            x += step
        return edge

    return (float(min(x0, walk(x0, -1))), box[1], float(max(x1, walk(x1, 1))), box[3])


def merge_text_boxes(texts: list[Any]) -> list[Any]:
    """One box per label: text boxes (with `cls`, `score`, `box`) that cover one word twice, on one line
    and overlapping over at least 0.7 of the wider one's width, become their union (the best score).
    The detector's suppression keeps such near-duplicates when they are shifted against each other (a
    box on the whole label and one that misses its first character), and the part would get whichever
    is read first. A box over a whole line and a box over one of its words stay apart."""
    uf = _UF(len(texts))
    for i, a in enumerate(texts):
        for j in range(i + 1, len(texts)):
            b = texts[j].box
            h = min(a.box[3] - a.box[1], b[3] - b[1])
            w = max(a.box[2] - a.box[0], b[2] - b[0])
            dy = min(a.box[3], b[3]) - max(a.box[1], b[1])
            dx = min(a.box[2], b[2]) - max(a.box[0], b[0])
            if h > 0 and w > 0 and dy >= 0.5 * h and dx >= 0.7 * w:
                uf.union(i, j)
    groups: dict[int, list[Any]] = {}
    for i, t in enumerate(texts):
        groups.setdefault(uf.find(i), []).append(t)
    out = []
    for g in groups.values():
        best = max(g, key=lambda t: t.score)
        box = tuple(f(t.box[k] for t in g) for k, f in enumerate((min, min, max, max)))
        out.append(type(best)(best.cls, best.score, box))
    return out


def _ocr_window(shape: tuple[int, ...], box: tuple[float, float, float, float]) -> tuple[slice, slice]:
    """The rows and columns of a drawing that OCR reads for a text box: the box and a margin."""
    H, W = shape[:2]
    x0, y0, x1, y1 = box
    pad = max(2.0, 0.15 * (y1 - y0))
    return (
        slice(max(0, int(y0 - pad)), min(H, int(math.ceil(y1 + pad)))),
        slice(max(0, int(x0 - pad)), min(W, int(math.ceil(x1 + pad)))),
    )


def redrawn_steps(
    drawn: np.ndarray, ink: np.ndarray, box: tuple[float, float, float, float], steps: int, rec_shape: tuple[int, int]
) -> np.ndarray:
    """How much of the character under each OCR step of a text box a repair drew, 0..1 (steps,): the share of the
    ink (bool (H, W)) over a character's width round the step that is `drawn` ink, against `REDRAWN_WHOLE`.

    Args:
        steps: the number of steps the recogniser gave for the box's crop (`ocr_char_probs`).
        rec_shape: the recogniser's input height and least width, which fix how the crop maps onto its steps.
    """
    ys, xs = _ocr_window(ink.shape, box)
    rows = slice(max(ys.start, int(box[1])), min(ys.stop, int(math.ceil(box[3]))))
    new, old = drawn[rows, xs] & ink[rows, xs], ink[rows, xs]
    h, w = ys.stop - ys.start, xs.stop - xs.start
    out = np.zeros(steps, np.float32)
    if old.size == 0 or h <= 0:
        return out
    rec_h, rec_w = rec_shape
    padded = int(rec_h * max(rec_w / rec_h, w / h))  # the recogniser's input width; the crop fills its left part
    filled = min(padded, math.ceil(rec_h * w / h))
    half = 0.3 * old.shape[0]  # half a character's width
    for t in range(steps):
        centre = (t + 0.5) * padded / steps * w / filled
        if centre >= w:
            break
        cols = slice(max(0, int(centre - half)), int(math.ceil(centre + half)) + 1)
        out[t] = new[:, cols].sum() / max(1, old[:, cols].sum())
    return np.clip(out / REDRAWN_WHOLE, 0.0, 1.0)


def drawn_ink(before: np.ndarray, after: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The ink a repair drew: pixels of its `mask` that are ink in the repaired gray drawing where the damaged one
    showed no ink, bool (H, W). Ink shows as a stroke `INK_SHOWN` darker than what a closing over
    `INK_SHOWN_REACH` px fills it with (black top-hat): ink a fade or a translucent stain left visible was restored,
    not guessed; bare paper, and the flat dark backing a hole or a tear shows (wider than a stroke), hide what was
    there."""
    from vision.detect import normalize_paper

    # Raw gray: paper normalisation would stretch a large hole's backing to paper and its grain to ink contrast.
    square = np.ones((INK_SHOWN_REACH, INK_SHOWN_REACH), np.uint8)
    shown = cv2.morphologyEx(before, cv2.MORPH_BLACKHAT, square) >= INK_SHOWN
    return mask.astype(bool) & binarize(normalize_paper(after)) & ~shown


def _crop_for_ocr(gray: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    c = gray[_ocr_window(gray.shape, box)]
    if c.size == 0:
        c = np.full((8, 8), 255, np.uint8)
    if c.shape[0] < 24:
        k = 32 / max(1, c.shape[0])
        c = cv2.resize(c, (max(1, int(c.shape[1] * k)), 32), interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(c, cv2.COLOR_GRAY2BGR)


def read_schematic(
    image: np.ndarray | str | Path,
    *,
    repair: str = "off",
    labels: list[tuple[str, tuple[float, float, float, float]]] | None = None,
    redrawn: np.ndarray | None = None,
) -> Circuit:
    """Read a schematic drawing into a `Circuit` (pixel coordinates of the input image).

    Args:
        image: A path or a uint8 gray/RGB array.
        repair: "off", or "auto" to repair damage first (pipelines.repair) when the drawing allows.
        labels: the drawing's texts with their boxes in image pixels when they are known exactly (a PDF's
            text layer); they replace text detection and OCR.
        redrawn: for a drawing repaired already, the ink the repair drew (the image's size, nonzero = drawn;
            `drawn_ink`); "auto" repair finds it itself. Values of the labels it touches are read with the
            redrawn characters taken as a guess (`redrawn_value`).

    Raises:
        SchematicInputError: unreadable, too small or too large input, a bad `repair` value, or a `redrawn` mask
            of another size than the image.
    """
    if repair not in ("off", "auto"):
        raise SchematicInputError(f"repair must be 'off' or 'auto', not {repair!r}")
    arr = load_image(image)
    if redrawn is not None:
        if redrawn.shape != arr.shape[:2]:
            raise SchematicInputError(
                f"the redrawn mask is {redrawn.shape[1]}x{redrawn.shape[0]} but the image is "
                f"{arr.shape[1]}x{arr.shape[0]}; they must match"
            )
        redrawn = redrawn.astype(bool)
    from vision.detect import Detection, detect, normalize_paper, reading_side, to_gray

    warnings: list[str] = []
    gray = to_gray(arr)
    if float(gray.std()) < 2.0 or float((gray < 128).mean()) < 1e-5:
        return Circuit(warnings=["blank image: no ink found"])
    from pipelines.repair import looks_like_photo

    photo = looks_like_photo(arr)
    if photo:
        warnings.append("this looks like a photograph; reading may be unreliable")
    if repair == "auto":
        from pipelines.repair import RepairInputError, repair_drawing

        try:
            fixed = repair_drawing(arr)
            repaired = to_gray(fixed.image)
            redrawn = drawn_ink(gray, repaired, fixed.mask > 0)
            gray = repaired
            if fixed.stats.get("damaged_share", 0) > 0:
                warnings.append(f"repaired {fixed.stats['damaged_share']:.1%} of the image before reading")
        except RepairInputError as exc:
            warnings.append(f"repair skipped: {exc}")
    norm = normalize_paper(gray)
    ink = binarize(norm)
    stroke = stroke_width(ink)  # sets the detector's reading size and the wire tracer's scale
    detector, ocr = _Models.get()
    dets, pin_pts = detect(
        detector,
        norm,
        box_threshold=min(COMPONENT_THRESHOLD, TEXT_THRESHOLD),
        pin_threshold=PIN_THRESHOLD,
        side=reading_side(detector.config.input_side, max(norm.shape), stroke),
    )
    comps = [d for d in dets if d.cls in TYPE_PINS and d.score >= COMPONENT_THRESHOLD]
    texts = [d for d in dets if d.cls == "text" and d.score >= TEXT_THRESHOLD]
    juncs = [d for d in dets if d.cls == "junction" and d.score >= JUNCTION_THRESHOLD]
    if photo and (len(comps) < 2 or float(np.mean([d.score for d in comps])) < 0.5):
        comps = []  # a few unsure symbols in a photograph are texture, not a circuit
    if not comps:
        warnings.append("no circuit found: no component symbols detected")
        return Circuit(warnings=warnings)
    if labels is not None:
        texts = [Detection("text", 1.0, tuple(box)) for _, box in labels]
        return assemble_circuit(norm, comps, texts, [text for text, _ in labels], juncs, pin_pts, warnings, stroke)
    symbols = [c.box for c in comps]
    texts = merge_text_boxes([Detection(t.cls, t.score, grow_text_box(ink, t.box, symbols)) for t in texts])

    def read_boxes(boxes: list[tuple[float, float, float, float]]) -> list[str]:
        return [text for text, _ in ocr_crops(ocr, [_crop_for_ocr(norm, b) for b in boxes])]

    texts, reads = split_reads(texts, read_boxes([t.box for t in texts]), ink, read_boxes)
    outputs: dict[int, tuple[np.ndarray, list[str]]] = {}

    def char_probs(ti: int) -> tuple[np.ndarray, list[str]]:
        if ti not in outputs:
            outputs[ti] = ocr_char_probs(ocr, _crop_for_ocr(norm, texts[ti].box))
        return outputs[ti]

    def reread_value(ti: int, ctype: str) -> str | None:
        return recheck_value(ti, ctype) or value_reading(ctype, *char_probs(ti))

    @functools.cache  # asked again for a part whose value `reread_value` found
    def recheck_value(ti: int, ctype: str) -> str | None:
        if redrawn is None or not redrawn[_ocr_window(redrawn.shape, texts[ti].box)].any():
            return None
        probs, alphabet = char_probs(ti)
        steps = redrawn_steps(redrawn, ink, texts[ti].box, len(probs), tuple(ocr.text_rec.rec_image_shape[1:3]))
        return redrawn_value(ctype, probs, alphabet, steps)

    return assemble_circuit(norm, comps, texts, reads, juncs, pin_pts, warnings, stroke, reread_value, recheck_value)


def _label_block_rank(ref: tuple[float, ...], other: tuple[float, ...]) -> float | None:
    """How surely a text box continues the label block that starts with a reference's box: the next
    line under it (rank 0..1), the line over it (1..2) or the text after it on its line (2..3), with
    an edge or the centre aligned; None when the two are not one block."""
    h = max(ref[3] - ref[1], other[3] - other[1], 1.0)

    def near(gap: float) -> float | None:  # a line gap from -0.3 to 0.8 text heights, as 0..1
        return (gap + 0.3 * h) / (1.1 * h) if -0.3 * h <= gap <= 0.8 * h else None

    aligned = min(abs(ref[0] - other[0]), abs(ref[2] - other[2]), abs(ref[0] + ref[2] - other[0] - other[2]) / 2)
    if aligned <= 0.3 * h:
        for base, gap in ((0.0, other[1] - ref[3]), (1.0, ref[1] - other[3])):
            if (r := near(gap)) is not None:
                return base + r
    same_line = abs((ref[1] + ref[3]) - (other[1] + other[3])) / 2 <= 0.3 * h
    after = other[0] - ref[2]
    if same_line and -0.1 * h <= after <= h:
        return 2.0 + (after + 0.1 * h) / (1.1 * h)
    return None


def assemble_circuit(
    norm: np.ndarray,
    comps: list[Any],
    texts: list[Any],
    reads: list[str],
    juncs: list[Any],
    pin_pts: list[Any],
    warnings: list[str] | None = None,
    stroke: float | None = None,
    reread_value: Callable[[int, str], str | None] | None = None,
    recheck_value: Callable[[int, str], str | None] | None = None,
) -> Circuit:
    """Build the circuit from detections (boxes with `cls`, `score`, `box`; pins with `role`, `score`, `xy`)
    and the texts read in the label boxes: pins are named, wires traced and labels assigned.

    Args:
        stroke: the drawing's pen width (`stroke_width` of `binarize(norm)`), when the caller has it already.
        reread_value: (text index, part type) -> the value of that type the text's box spells, or None; asked
            for the labels left over beside parts that got no value (OCR texts; `value_reading`).
        recheck_value: (text index, part type) -> another value for a part whose value that text gave, or None to
            keep it; asked for every value (a repaired drawing's redrawn labels; `redrawn_value`).
    """
    warnings = list(warnings or [])
    ink = binarize(norm)
    stroke = stroke_width(ink) if stroke is None else stroke
    text_boxes = [t.box for t in texts]

    # pins per component
    comp_pins: list[dict[str, tuple[float, float]]] = []
    # a pin point belongs to the box it is nearest to (near-ties: shared by abutting symbols)
    gaps = np.array([[_box_gap(d.box, (*p.xy, *p.xy)) for d in comps] for p in pin_pts]).reshape(
        len(pin_pts), len(comps)
    )
    nearest = gaps.min(axis=1) if len(pin_pts) else np.zeros(0)
    for ci, d in enumerate(comps):
        x0, y0, x1, y1 = d.box
        m = 0.2 * max(x1 - x0, y1 - y0) + 4
        cands = [
            (p.role, p.score, p.xy)
            for pi, p in enumerate(pin_pts)
            if gaps[pi, ci] <= m and gaps[pi, ci] <= nearest[pi] + 3
        ]
        pins = assign_pins(d.cls, d.box, cands, _entry_points(d.box, ink, stroke))
        if d.cls in ("npn", "pnp") and {"B", "C", "E"} <= set(pins):
            # the detector tells collector from emitter by position; the arrowhead says it for sure
            if bjt_emitter(ink, stroke, d.box, pins["B"], (pins["E"], pins["C"])) == 1:
                pins["C"], pins["E"] = pins["E"], pins["C"]
        if d.cls == "isource" and {"+", "-"} <= set(pins):
            # current flows from + through the source to -: the arrow points at the - pin
            if arrow_head_side(ink, d.box, (pins["-"], pins["+"])) == 1:
                pins["+"], pins["-"] = pins["-"], pins["+"]
        comp_pins.append(pins)
    flat = [(ci, name, xy) for ci, pins in enumerate(comp_pins) for name, xy in pins.items()]
    net_ids, segs, seg_nets = trace_nets(
        ink,
        [d.box for d in comps],
        text_boxes,
        [((j.box[0] + j.box[2]) / 2, (j.box[1] + j.box[3]) / 2) for j in juncs],
        [(ci, xy) for ci, _, xy in flat],
        stroke,
        [d.cls for d in comps],
    )

    # labels: net names beside open wire ends first, then references and values by distance
    refs: dict[int, str] = {}
    values: dict[int, str] = {}
    value_text: dict[int, int] = {}  # part -> the text its value came from
    used: set[int] = set()
    net_names: dict[int, str] = {}
    scale = float(np.median([max(d.box[2] - d.box[0], d.box[3] - d.box[1]) for d in comps]))
    pin_xy = [xy for _, _, xy in flat]
    open_ends = [
        (p, i)
        for i, sg in enumerate(segs)
        for p in sg.endpoints()
        if seg_nets[i] is not None
        and all(math.hypot(p[0] - q[0], p[1] - q[1]) > 3 * stroke + 6 for q in pin_xy)
        and sum(1 for o in segs if o.distance(*p) <= stroke + 3) == 1
    ]
    for ti, t in enumerate(texts):
        text = clean_text(reads[ti])
        if not text or ref_prefix_types(text) or value_types(text):
            continue
        if not re.match(r"^[A-Za-z+\-][A-Za-z0-9+\-_.]*$", text):
            continue
        th = t.box[3] - t.box[1]
        d_end, seg = min(((_box_gap(t.box, (p[0], p[1], p[0], p[1])), i) for p, i in open_ends), default=(1e9, -1))
        d_comp = min(_box_gap(t.box, d.box) for d in comps)
        if d_end <= 1.5 * th + 3 * stroke + 4 and d_end < d_comp:
            net_names.setdefault(seg_nets[seg], spice_node(text))
            used.add(ti)
    pairs = sorted(
        (_box_gap(t.box, d.box), ti, ci)
        for ti, t in enumerate(texts)
        for ci, d in enumerate(comps)
        if ti not in used and _box_gap(t.box, d.box) <= 1.2 * scale
    )
    ref_text: dict[int, int] = {}
    for _dist, ti, ci in pairs:
        text = clean_text(reads[ti])
        ref = ref_prefix_types(text) if text else None
        if ti in used or not ref:
            continue
        ctype = comps[ci].cls
        if ctype in ref[1] and ci not in refs and ctype not in NET_SYMBOLS:
            refs[ci] = ref[0]
            ref_text[ci] = ti
            used.add(ti)
    # a value printed in one block with a part's reference belongs to that part, even where another
    # part's symbol happens to sit closer to it
    blocks = sorted(
        (rank, ti, ci)
        for ci, rti in ref_text.items()
        for ti, t in enumerate(texts)
        if ti not in used and (rank := _label_block_rank(texts[rti].box, t.box)) is not None
    )
    for _rank, ti, ci in blocks:
        text = clean_text(reads[ti])
        if ti in used or ci in values or not text or ref_prefix_types(text):
            continue
        if value_fits(comps[ci].cls, text):
            values[ci] = value_for(comps[ci].cls, text)
            value_text[ci] = ti
            used.add(ti)
    for _dist, ti, ci in pairs:
        text = clean_text(reads[ti])
        if ti in used or not text or ref_prefix_types(text):
            continue
        ctype = comps[ci].cls
        if ci not in values and (ctype == "supply" or value_fits(ctype, text)):
            values[ci] = value_for(ctype, text)
            value_text[ci] = ti
            used.add(ti)
    if reread_value is not None:
        # a part still without a value takes a label OCR misread, if the label spells one of its values; only
        # a label of the part's own block or one no other part is nearer to
        nearest = {
            ti: min(range(len(comps)), key=lambda k: _box_gap(t.box, comps[k].box)) for ti, t in enumerate(texts)
        }
        own = [(ti, ci) for _rank, ti, ci in blocks] + [(ti, ci) for _dist, ti, ci in pairs if nearest[ti] == ci]
        for ti, ci in own:
            ctype = comps[ci].cls
            if ti in used or ci in values or ctype in NET_SYMBOLS or ref_prefix_types(clean_text(reads[ti])):
                continue
            if (text := reread_value(ti, ctype)) is not None:
                values[ci] = text
                value_text[ci] = ti
                used.add(ti)
    if recheck_value is not None:
        for ci, ti in value_text.items():
            if (text := recheck_value(ti, comps[ci].cls)) is not None:
                values[ci] = text
    for ci, d in enumerate(comps):
        if d.cls in NET_SYMBOLS:
            name = "0" if d.cls == "ground" else spice_node(values[ci]) if values.get(ci) else None
            for k, (cj, _, _) in enumerate(flat):
                if cj == ci and name and net_names.get(net_ids[k]) != "0":
                    net_names[net_ids[k]] = name

    # assemble
    order = sorted(set(net_ids), key=lambda n: net_ids.index(n))
    names: dict[int, str] = {}
    taken: set[str] = set()
    counter = 0
    for n in order:
        name = net_names.get(n)
        if name is None or name in taken and name != "0":
            counter += 1
            name = f"N{counter:03d}"
            while name in taken:
                counter += 1
                name = f"N{counter:03d}"
        names[n] = name
        taken.add(name)
    components: list[Component] = []
    seen_ids: set[str] = set()
    counts: dict[str, int] = {}
    for ci, d in enumerate(comps):
        cid = refs.get(ci)
        if not cid or cid in seen_ids:
            prefix = REF_PREFIXES[d.cls][0]
            counts[prefix] = counts.get(prefix, 0) + 1
            cid = f"{prefix}?{counts[prefix]}"
        seen_ids.add(cid)
        pins = [
            Pin(name, (round(float(xy[0]), 1), round(float(xy[1]), 1)), names[net_ids[k]])
            for k, (cj, name, xy) in enumerate(flat)
            if cj == ci
        ]
        components.append(
            Component(
                cid, d.cls, values.get(ci, ""), tuple(round(float(v), 1) for v in d.box), pins, round(float(d.score), 3)
            )
        )
    return Circuit(
        components=components,
        nets=sorted(set(names.values()), key=lambda s: (s != "0", s)),
        junctions=[(round((j.box[0] + j.box[2]) / 2, 1), round((j.box[1] + j.box[3]) / 2, 1)) for j in juncs],
        wires=[[tuple(round(v, 1) for v in p) for p in s.endpoints()] for s in segs],
        warnings=warnings,
    )


# -- exports ----------------------------------------------------------------------------------------


def to_spice(circuit: Circuit, title: str = "ohmlens schematic") -> str:
    """A SPICE netlist (ground symbols are node 0, supply rails named nodes)."""
    cards = []
    for c in circuit.components:
        card = spice_line(c.type, c.id.replace("?", "_"), c.value, {p.name: p.net or "NC" for p in c.pins})
        if card:
            cards.append(card)
    return spice_netlist(title, cards)


def to_json(circuit: Circuit) -> dict[str, Any]:
    """The circuit as a JSON-ready graph: components {id, type, value, bbox, pins}, nets with members."""
    members: dict[str, list[list[str]]] = {n: [] for n in circuit.nets}
    for c in circuit.components:
        for p in c.pins:
            if p.net is not None:
                members.setdefault(p.net, []).append([c.id, p.name])
    return {
        "components": [
            {
                "id": c.id,
                "type": c.type,
                "value": c.value,
                "bbox": list(c.bbox),
                "score": c.score,
                "pins": [{"name": p.name, "xy": list(p.xy), "net": p.net} for p in c.pins],
            }
            for c in circuit.components
        ],
        "nets": [{"name": n, "pins": members.get(n, [])} for n in circuit.nets],
        "junctions": [list(j) for j in circuit.junctions],
        "wires": [[list(p) for p in w] for w in circuit.wires],
        "warnings": list(circuit.warnings),
    }


def to_kicad(circuit: Circuit, title: str = "ohmlens schematic") -> str:
    """A KiCad-style (s-expression, 'export' version E) netlist."""

    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ["(export (version E)", f"  (design (source {q(title)}) (tool {q('ohmlens')}))", "  (components"]
    for c in circuit.components:
        if c.type in NET_SYMBOLS:
            continue
        lines.append(
            f"    (comp (ref {q(c.id)}) (value {q(c.value or '~')}) (libsource (lib ohmlens) (part {q(c.type)})))"
        )
    lines.append("  )")
    lines.append("  (nets")
    members: dict[str, list[tuple[str, str]]] = {}
    for c in circuit.components:
        if c.type in NET_SYMBOLS:
            continue
        for p in c.pins:
            if p.net:
                members.setdefault(p.net, []).append((c.id, p.name))
    for code, net in enumerate(sorted(members, key=lambda s: (s != "0", s)), start=1):
        nodes = " ".join(f"(node (ref {q(r)}) (pin {q(p)}))" for r, p in members[net])
        name = "GND" if net == "0" else net
        lines.append(f"    (net (code {code}) (name {q(name)}) {nodes})")
    lines.append("  )")
    lines.append(")")
    return "\n".join(lines) + "\n"


_PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 190, 190),
    (240, 50, 230),
    (128, 128, 0),
    (0, 0, 128),
    (170, 110, 40),
    (128, 0, 0),
    (0, 128, 128),
]


def draw_overlay(image: np.ndarray, circuit: Circuit) -> np.ndarray:
    """An RGB picture of the drawing with components boxed, pins dotted and nets coloured."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY)
    faded = (255 - (255 - gray.astype(np.float32)) * 0.45).astype(np.uint8)
    out = cv2.cvtColor(faded, cv2.COLOR_GRAY2RGB)
    H, W = gray.shape
    lw = max(1, int(round(max(H, W) / 700)))
    colour = {n: _PALETTE[i % len(_PALETTE)] for i, n in enumerate(circuit.nets)}
    colour["0"] = (90, 90, 90)
    wire_net: list[str | None] = []
    pin_xy = [(p.xy, p.net) for c in circuit.components for p in c.pins]
    for w in circuit.wires:
        (ax, ay), (bx, by) = w[0], w[-1]
        best = None
        for xy, net in pin_xy:
            d = min(math.hypot(xy[0] - ax, xy[1] - ay), math.hypot(xy[0] - bx, xy[1] - by))
            if best is None or d < best[0]:
                best = (d, net)
        wire_net.append(best[1] if best and best[0] < 12 else None)
    for w, net in zip(circuit.wires, wire_net):
        col = colour.get(net, (150, 150, 150)) if net else (150, 150, 150)
        cv2.line(out, tuple(int(v) for v in w[0]), tuple(int(v) for v in w[-1]), col, lw + 1, cv2.LINE_AA)
    font = cv2.FONT_HERSHEY_SIMPLEX
    fs = max(0.4, max(H, W) / 2500)
    for c in circuit.components:
        x0, y0, x1, y1 = (int(v) for v in c.bbox)
        cv2.rectangle(out, (x0, y0), (x1, y1), (20, 20, 220), lw, cv2.LINE_AA)
        tag = f"{c.id} {c.value}".strip()
        cv2.putText(out, tag, (x0, max(10, y0 - 3)), font, fs, (20, 20, 220), max(1, lw - 1), cv2.LINE_AA)
        for p in c.pins:
            col = colour.get(p.net or "", (0, 0, 0))
            cv2.circle(out, (int(p.xy[0]), int(p.xy[1])), lw + 3, col, -1, cv2.LINE_AA)
    for x, y in circuit.junctions:
        cv2.circle(out, (int(x), int(y)), lw + 4, (0, 0, 0), lw, cv2.LINE_AA)
    return out


# -- truth and comparison (benchmarks and tests) ----------------------------------------------------


def truth_circuit(truth: dict[str, Any]) -> Circuit:
    """A synthetic sample's ground truth as a `Circuit`."""
    node = {(r, p): n["name"] for n in truth["nets"] for r, p in n["pins"]}
    comps = [
        Component(
            c["ref"],
            c["type"],
            c["value"],
            tuple(c["bbox"]),
            [Pin(name, tuple(xy), node[(c["ref"], name)]) for name, xy in c["pins"].items()],
        )
        for c in truth["components"]
    ]
    return Circuit(
        components=comps, nets=[n["name"] for n in truth["nets"]], junctions=[tuple(j) for j in truth["junctions"]]
    )


def circuit_graph(circuit: Circuit) -> nx.Graph:
    """Bipartite graph of parts and nets for isomorphism tests.

    Part nodes carry (type, canonical value); net nodes carry whether a ground or a supply symbol
    sits on them; edges carry the pin's role, so symmetric parts compare without pin order.
    """
    roles = {(t, name): role for t, pins in TYPE_PINS.items() for name, role in pins}
    g = nx.Graph()
    flags: dict[str, set[str]] = {}
    for c in circuit.components:
        if c.type in NET_SYMBOLS:
            for p in c.pins:
                if p.net:
                    flags.setdefault(p.net, set()).add(c.type)
    for c in circuit.components:
        if c.type in NET_SYMBOLS:
            continue
        g.add_node(("c", c.id), kind="part", label=(c.type, canonical_value(c.type, c.value)))
        for p in c.pins:
            if p.net is None:
                continue
            n = ("n", p.net)
            if n not in g:
                g.add_node(n, kind="net", label=tuple(sorted(flags.get(p.net, set()))))
            role = roles.get((c.type, p.name), "generic")
            if g.has_edge(("c", c.id), n):
                g.edges[("c", c.id), n]["role"] = tuple(sorted(set(g.edges[("c", c.id), n]["role"]) | {role}))
            else:
                g.add_edge(("c", c.id), n, role=(role,))
    return g


def same_netlist(a: Circuit, b: Circuit) -> bool:
    """Whether two circuits have isomorphic part/net graphs with equal types, values and pin roles."""
    ga, gb = circuit_graph(a), circuit_graph(b)
    if ga.number_of_nodes() != gb.number_of_nodes() or ga.number_of_edges() != gb.number_of_edges():
        return False
    return nx.is_isomorphic(
        ga,
        gb,
        node_match=lambda x, y: x["kind"] == y["kind"] and x["label"] == y["label"],
        edge_match=lambda x, y: x["role"] == y["role"],
    )


# -- the CLI job ------------------------------------------------------------------------------------


def schematic_command(source: str, out_dir: Path, fmt: str, repair: str = "off") -> list[Path]:
    """Read IMAGE or PDF[:PAGE] and write STEM.cir/.json/.net, STEM.json and STEM.overlay.png.

    Raises:
        SchematicInputError: bad source, format or input image.
    """
    if fmt not in ("spice", "json", "kicad"):
        raise SchematicInputError(f"unknown format {fmt!r} (spice, json or kicad)")
    path, page = parse_source(source)
    if path.suffix.lower() == ".pdf":
        image = render_pdf_drawing(path, page or 1)
        stem = f"{path.stem}.p{page}"
    else:
        image = load_image(path)
        stem = path.stem
    circuit = read_schematic(image, repair=repair)
    out_dir = Path(out_dir)
    written: list[Path] = []
    data = to_json(circuit)
    data["source"] = path.name + (f":{page}" if page else "")
    json_path = out_dir / f"{stem}.json"
    write_atomic(json_path, json.dumps(data, indent=1, ensure_ascii=False))
    if fmt == "spice":
        p = out_dir / f"{stem}.cir"
        write_atomic(p, to_spice(circuit, title=path.name))
        written.append(p)
    elif fmt == "kicad":
        p = out_dir / f"{stem}.net"
        write_atomic(p, to_kicad(circuit, title=path.name))
        written.append(p)
    written.append(json_path)
    overlay = draw_overlay(image, circuit)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
    if ok:
        p = out_dir / f"{stem}.overlay.png"
        write_atomic(p, buf.tobytes())
        written.append(p)
    return written
