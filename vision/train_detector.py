"""Train the schematic detector on synthetic drawings plus the real circuits set.

Synthetic samples are rendered on the fly by DataLoader workers (clean, scanned or damaged); real
samples come from a packed copy of `circuits-real` (see `pack_real`). Checkpoints are safetensors
(model, optimiser and step in one file), so a run resumes where it stopped.

    python -m vision.train_detector pack-real --src ../shared/data/circuits-real --out .pack/real
    python -m vision.train_detector train --real .pack/real --out runs/det --minutes 6 --batch 32

`--real-aug strong` turns, distorts, crops, re-inks and degrades the real samples (`RealDataset`); `--real-scale` and
`--synth-scale` set the size range of real and synthetic drawings on the canvas (above 1: zoomed-in crops, whose
cut symbols become ignore regions). `--repaired DIR` mixes in damaged drawings as the repair pipeline left them
(packed by `python -m pipelines.pack_repaired`), every `--repaired-period`-th sample. The defaults reproduce the
earlier runs.

Under `torchrun --nproc_per_node N` the same command trains with DDP (see `vision.distributed`): `--batch` stays
the global batch, and losses, weights and checkpoints are those of one process, so a run resumes on any number
of processes. `--workers` counts DataLoader workers per process (default: the machine's cores shared among its
processes, less one each).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from vision.detect import STRIDE, DetectorConfig, SchematicDetector, normalize_paper, save_detector, to_gray
from vision.distributed import (
    DistContext,
    DistributedSetupError,
    Ratio,
    ShardSampler,
    default_workers,
    local_ratio,
    process_group,
)
from vision.synth import DETECT_CLASSES, PIN_ROLES, TYPE_PINS

CLS_INDEX = {c: i for i, c in enumerate(DETECT_CLASSES)}
ROLE_INDEX = {r: i for i, r in enumerate(PIN_ROLES)}
PIN_ROLE = {(t, name): role for t, pins in TYPE_PINS.items() for name, role in pins}

# circuits-real classes -> ours; classes not listed are ignored regions (no loss there)
REAL_CLASS_MAP: dict[str, str] = {
    "resistor": "resistor",
    "resistor2": "resistor",
    "capacitor": "capacitor",
    "inductor": "inductor",
    "diode": "diode",
    "npn": "npn",
    "npn-cross": "npn",
    "pnp": "pnp",
    "pnp-cross": "pnp",
    "nmos": "nmos",
    "nmos-cross": "nmos",
    "nmos-bulk": "nmos",
    "pmos": "pmos",
    "pmos-cross": "pmos",
    "pmos-bulk": "pmos",
    "Diso_amp": "opamp",
    "Voltage_1": "vsource",
    "Voltage_2": "battery",
    "current": "isource",
    "gnd": "ground",
    "vdd": "supply",
    "switch": "switch",
}
REAL_IGNORE = frozenset({"Siso_amp", "Dido_amp", "switch-3"})
REAL_PIN_ROLE: dict[str, str] = {
    "Drain": "high",
    "Collect": "high",
    "Source": "low",
    "Emitter": "low",
    "Gate": "control",
    "Base": "control",
    "Body": "bulk",
    "InN": "minus",
    "InP": "plus",
    "port": "generic",
}
# classes whose Positive/Negative pins carry a polarity (the rest are symmetric: generic)
_POLAR = frozenset({"vsource", "battery", "isource"})
# a box cut by a zoomed-in crop stays a target when this much of its area is visible, else it is ignored
KEEP_VISIBLE = 0.6
# the `strong` real augmentation: chance of a 90-degree turn, largest log change of the aspect ratio
P_TURN = 0.5
ASPECT_JITTER = 0.1


def real_split(image_id: str) -> str:
    """Deterministic 80/20 split by numeric id: ids whose (id // 5) % 5 == 0 are validation."""
    digits = "".join(ch for ch in image_id if ch.isdigit()) or "0"
    return "val" if (int(digits) // 5) % 5 == 0 else "train"


def read_real_annotation(path: Path) -> dict[str, Any]:
    """One X-AnyLabeling JSON as boxes [(class, x0, y0, x1, y1)], pins [(role, x, y)] and ignore boxes."""
    d = json.loads(path.read_text(encoding="utf-8"))
    groups: dict[Any, str] = {}
    boxes, ignore, pins = [], [], []
    for s in d["shapes"]:
        if s["shape_type"] != "rectangle":
            continue
        xs = [p[0] for p in s["points"]]
        ys = [p[1] for p in s["points"]]
        box = (min(xs), min(ys), max(xs), max(ys))
        if s["label"] in REAL_CLASS_MAP:
            cls = REAL_CLASS_MAP[s["label"]]
            boxes.append((cls, *box))
            if s.get("group_id") is not None:
                groups[s["group_id"]] = cls
        elif s["label"] in REAL_IGNORE:
            ignore.append(box)
    for s in d["shapes"]:
        if s["shape_type"] != "point" or s.get("group_id") not in groups:
            continue
        cls = groups[s["group_id"]]
        label = s["label"]
        if label in ("Positive", "Negative"):
            role = ("plus" if label == "Positive" else "minus") if cls in _POLAR else "generic"
        elif label in ("In", "Out") and cls == "diode":
            role = "anode" if label == "In" else "cathode"
        elif label == "Out":
            role = "out"
        else:
            role = REAL_PIN_ROLE.get(label)
        if role:
            pins.append((role, float(s["points"][0][0]), float(s["points"][0][1])))
    return {"boxes": boxes, "pins": pins, "ignore": ignore, "size": (d["imageWidth"], d["imageHeight"])}


def pack_real(src: Path, out: Path, max_side: int = 1024) -> dict[str, int]:
    """Copy circuits-real into a compact training folder (grayscale PNG <= max_side, one index.json)."""
    out.mkdir(parents=True, exist_ok=True)
    index = []
    for js in sorted((src / "images").glob("*.json")):
        img = cv2.imread(str(js.with_suffix(".png")), cv2.IMREAD_GRAYSCALE)
        if img is None:
            continue
        ann = read_real_annotation(js)
        h, w = img.shape
        k = min(1.0, max_side / max(h, w))
        if k < 1:
            img = cv2.resize(img, (int(round(w * k)), int(round(h * k))), interpolation=cv2.INTER_AREA)
        name = js.stem + ".png"
        cv2.imwrite(str(out / name), img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        index.append(
            {
                "id": js.stem,
                "file": name,
                "split": real_split(js.stem),
                "boxes": [(c, *(v * k for v in b)) for c, *b in ann["boxes"]],
                "pins": [(r, x * k, y * k) for r, x, y in ann["pins"]],
                "ignore": [tuple(v * k for v in b) for b in ann["ignore"]],
            }
        )
    (out / "index.json").write_text(json.dumps(index), encoding="utf-8")
    return {s: sum(1 for e in index if e["split"] == s) for s in ("train", "val")}


# -- targets ----------------------------------------------------------------------------------------


def _gauss2d(h: int, w: int, cx: float, cy: float, sx: float, sy: float) -> tuple[np.ndarray, slice, slice]:
    """An elliptical Gaussian patch (peak 1 at the centre cell) and where it sits in an (h, w) map."""
    rx, ry = int(math.ceil(3 * sx)), int(math.ceil(3 * sy))
    ix, iy = int(cx), int(cy)
    x0, x1 = max(0, ix - rx), min(w, ix + rx + 1)
    y0, y1 = max(0, iy - ry), min(h, iy + ry + 1)
    xs = np.arange(x0, x1, dtype=np.float32) - ix
    ys = np.arange(y0, y1, dtype=np.float32) - iy
    g = np.exp(-(xs[None, :] ** 2) / (2 * sx * sx) - (ys[:, None] ** 2) / (2 * sy * sy))
    return g.astype(np.float32), slice(y0, y1), slice(x0, x1)


def build_targets(
    hw: tuple[int, int],
    boxes: list[tuple[int, float, float, float, float]],
    pins: list[tuple[int, float, float]],
    ignore: list[tuple[float, float, float, float]],
    channel_mask: np.ndarray,
) -> dict[str, np.ndarray]:
    """Training maps at stride 4 for one image (coordinates in network pixels).

    Args:
        hw: Output map size (h, w).
        boxes: (class index, x0, y0, x1, y1).
        pins: (role index, x, y).
        ignore: Boxes where no heatmap loss is taken (unmapped real classes).
        channel_mask: 1 for heatmap channels annotated in this image (classes then roles).
    """
    h, w = hw
    nc, nr = len(DETECT_CLASSES), len(PIN_ROLES)
    heat = np.zeros((nc, h, w), np.float32)
    box_t = np.zeros((4, h, w), np.float32)
    box_w = np.zeros((h, w), np.float32)
    pin_heat = np.zeros((nr, h, w), np.float32)
    pin_off = np.zeros((2, h, w), np.float32)
    pin_w = np.zeros((h, w), np.float32)
    valid = np.ones((h, w), np.float32)
    for x0, y0, x1, y1 in ignore:
        valid[
            max(0, int(y0 / STRIDE)) : int(math.ceil(y1 / STRIDE)),
            max(0, int(x0 / STRIDE)) : int(math.ceil(x1 / STRIDE)),
        ] = 0
    # large boxes first so that small ones win the regression cells they share
    order = sorted(boxes, key=lambda b: -(b[3] - b[1]) * (b[4] - b[2]))
    for c, x0, y0, x1, y1 in order:
        bw, bh = max(x1 - x0, 1.0) / STRIDE, max(y1 - y0, 1.0) / STRIDE
        cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
        if not (0 <= cx < w and 0 <= cy < h):
            continue
        g, ys, xs = _gauss2d(h, w, cx, cy, max(0.5, 0.54 * bw / 6), max(0.5, 0.54 * bh / 6))
        heat[c, ys, xs] = np.maximum(heat[c, ys, xs], g)
        core = g > 0.3
        if not core.any():
            continue
        sub_w = box_w[ys, xs]
        weight = g * math.log(max(bw * bh, 1.0) + 1.0) / max(float(g[core].sum()), 1e-6)
        upd = core
        sub_w[upd] = weight[upd]
        for k, v in enumerate((x0, y0, x1, y1)):
            box_t[k, ys, xs][upd] = v
    for r, x, y in pins:
        cx, cy = x / STRIDE, y / STRIDE
        if not (0 <= cx < w and 0 <= cy < h):
            continue
        g, ys, xs = _gauss2d(h, w, cx, cy, 0.8, 0.8)
        pin_heat[r, ys, xs] = np.maximum(pin_heat[r, ys, xs], g)
        ix, iy = int(cx), int(cy)
        pin_off[0, iy, ix] = cx - ix
        pin_off[1, iy, ix] = cy - iy
        pin_w[iy, ix] = 1.0
    half = np.float16  # halves what workers hand over; the loss works in float32
    return {
        "heat": heat.astype(half),
        "box_t": box_t,
        "box_w": box_w.astype(half),
        "pin_heat": pin_heat.astype(half),
        "pin_off": pin_off.astype(half),
        "pin_w": pin_w.astype(half),
        "valid": valid.astype(half),
        "chan": channel_mask.astype(np.float32),
    }


def synth_objects(
    truth: dict[str, Any],
) -> tuple[list[tuple[int, float, float, float, float]], list[tuple[int, float, float]]]:
    """Boxes (components, labels, junction dots) and pins of a synthetic truth, in its pixels."""
    boxes = [(CLS_INDEX[c["type"]], *c["bbox"]) for c in truth["components"]]
    boxes += [(CLS_INDEX["text"], *lb["bbox"]) for lb in truth["labels"]]
    r = float(truth["style"]["dot_radius"]) * float(truth["px_per_unit"]) + float(truth["line_width"]) / 2
    boxes += [(CLS_INDEX["junction"], x - r, y - r, x + r, y + r) for x, y in truth["junctions"]]
    pins = [
        (ROLE_INDEX[PIN_ROLE[(c["type"], name)]], float(x), float(y))
        for c in truth["components"]
        for name, (x, y) in c["pins"].items()
    ]
    return boxes, pins


# -- datasets ---------------------------------------------------------------------------------------


def _offset(rng: np.random.Generator, side: int, n: int) -> int:
    """Where an image `n` pixels long starts on a canvas `side` long: inside it, or cropped when larger."""
    return int(rng.integers(min(0, side - n), max(0, side - n) + 1))


def _paste(small: np.ndarray, side: int, ox: int, oy: int, fill: float) -> np.ndarray:
    """An ink-space side x side canvas holding the part of the paper-space image `small` placed at (ox, oy)."""
    canvas = np.full((side, side), fill, np.float32)
    h, w = small.shape
    x0, y0, x1, y1 = max(0, ox), max(0, oy), min(side, ox + w), min(side, oy + h)
    canvas[y0:y1, x0:x1] = 1.0 - small[y0 - oy : y1 - oy, x0 - ox : x1 - ox].astype(np.float32) / 255.0
    return canvas


def _place(
    gray: np.ndarray, side: int, rng: np.random.Generator, fill: float, scale: tuple[float, float] = (0.6, 1.0)
) -> tuple[np.ndarray, float, int, int]:
    """Resize so the longer side is a random fraction (`scale` range) of `side` and drop it on a side x side canvas.

    A fraction above 1 zooms in: the canvas then shows a random window of the image (negative offsets).
    """
    h, w = gray.shape
    k = side * float(rng.uniform(*scale)) / max(h, w)
    nh, nw = max(1, int(round(h * k))), max(1, int(round(w * k)))
    small = cv2.resize(gray, (nw, nh), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
    ox, oy = _offset(rng, side, nw), _offset(rng, side, nh)
    return _paste(small, side, ox, oy, fill), k, ox, oy


def _visible(a: float, b: float, side: int) -> float:
    """Fraction of the interval [a, b] inside [0, side] (a degenerate interval is wholly in or out)."""
    if b - a <= 1e-6:
        return float(0 <= a <= side)
    return max(0.0, min(b, side) - max(a, 0.0)) / (b - a)


def crop_boxes(
    boxes: list[tuple[int, float, float, float, float]], ignore: list[tuple[float, float, float, float]], side: int
) -> tuple[list[tuple[int, float, float, float, float]], list[tuple[float, float, float, float]]]:
    """Boxes and ignore boxes on a canvas that shows only part of the image.

    Boxes mostly visible (`KEEP_VISIBLE` of their area) keep their visible part; the others become ignore
    regions (half a symbol is neither a symbol nor background); ignore boxes keep their visible part; whatever
    is wholly outside goes.

    Returns:
        The boxes (class, x0, y0, x1, y1) and ignore boxes, clipped to the canvas.
    """

    def clip(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        return (min(max(x0, 0.0), side), min(max(y0, 0.0), side), min(max(x1, 0.0), side), min(max(y1, 0.0), side))

    kept, cut = [], []
    for c, *b in boxes:
        frac = _visible(b[0], b[2], side) * _visible(b[1], b[3], side)
        if frac >= KEEP_VISIBLE:
            kept.append((c, *clip(*b)))
        elif frac > 0:
            cut.append(clip(*b))
    cut += [clip(*b) for b in ignore if _visible(b[0], b[2], side) * _visible(b[1], b[3], side) > 0]
    return kept, cut


def _cropped(shape: tuple[int, ...], k: float, side: int) -> bool:
    """Whether `_place` at scale k showed only a window of an image of this shape (its longer side overflows)."""
    return int(round(max(shape) * k)) > side


class SynthDataset(torch.utils.data.Dataset):
    """Rendered drawings, each clean, scanned or damaged; index i renders seed `base + i` (whichever process asks).

    Args:
        base: First seed.
        length: Number of samples.
        side: Square canvas side in network pixels.
        p_scan: Probability of the scan simulator.
        p_damage: Probability of the damage simulator (when it is importable).
        scale: Range of the drawing's longer side as a fraction of `side` (above 1: a zoomed-in crop).
    """

    def __init__(
        self,
        base: int,
        length: int,
        side: int = 640,
        p_scan: float = 0.45,
        p_damage: float = 0.2,
        scale: tuple[float, float] = (0.6, 1.0),
    ) -> None:
        self.base, self.length, self.side = base, length, side
        self.p_scan, self.p_damage = p_scan, p_damage
        self.scale = scale

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        from vision.synth.render import Sample, render_sample
        from vision.synth.scan import scan, transform_truth

        seed = self.base + i
        rng = np.random.default_rng(seed + 7_777_777)
        sample = render_sample(seed)
        # shrink to about the training scale first: the simulators are then cheap
        h, w = sample.image.shape[:2]
        k = min(1.0, self.side * 1.1 / max(h, w))
        if k < 1:
            img = cv2.resize(sample.image, (int(round(w * k)), int(round(h * k))), interpolation=cv2.INTER_AREA)
            H = np.diag([k, k, 1.0])
            sample = Sample(img, transform_truth(sample.truth, H, (img.shape[1], img.shape[0])))
        u = rng.random()
        if u < self.p_scan:
            sample = scan(sample, seed, float(rng.uniform(0.3, 1.8)))
        elif u < self.p_scan + self.p_damage:
            sample = _damaged(sample, rng)
        return synth_targets(normalize_paper(to_gray(sample.image)), sample.truth, self.side, rng, self.scale)


def synth_targets(
    gray: np.ndarray, truth: dict[str, Any], side: int, rng: np.random.Generator, scale: tuple[float, float]
) -> dict[str, np.ndarray]:
    """A paper-normalised drawing placed on a training canvas (`_place`), with the targets of its synthetic truth."""
    canvas, k, ox, oy = _place(gray, side, rng, 0.0, scale)
    boxes, pins = synth_objects(truth)
    boxes = [(c, x0 * k + ox, y0 * k + oy, x1 * k + ox, y1 * k + oy) for c, x0, y0, x1, y1 in boxes]
    pins = [(r, x * k + ox, y * k + oy) for r, x, y in pins]
    ignore: list[tuple[float, float, float, float]] = []
    if _cropped(gray.shape, k, side):
        boxes, ignore = crop_boxes(boxes, ignore, side)
    hw = (side // STRIDE, side // STRIDE)
    t = build_targets(hw, boxes, pins, ignore, np.ones(len(DETECT_CLASSES) + len(PIN_ROLES)))
    t["image"] = canvas[None]
    return t


class RepairedDataset(torch.utils.data.Dataset):
    """Damaged synthetic drawings as the repair pipeline left them (packed by `pipelines.pack_repaired`): what the
    reader is given after `--repair auto`. Item i is stored drawing i modulo the pack's size, placed on the canvas
    at random (seeded by `seed` and i), so a small pack serves a long run.

    Args:
        root: The pack's folder (`SEED.png` with its ground truth `SEED.json`).
        side: Square canvas side in network pixels.
        seed: Placement seed of the run.
        scale: Range of the drawing's longer side as a fraction of `side`.
    """

    def __init__(self, root: Path, side: int, seed: int, scale: tuple[float, float] = (0.6, 1.0)) -> None:
        self.items = sorted(p.with_suffix("") for p in root.glob("*.json"))
        if not self.items:
            raise ValueError(f"no packed repaired drawings in {root}")
        self.side, self.seed, self.scale = side, seed, scale

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        stem = self.items[i % len(self.items)]
        gray = cv2.imread(str(stem.with_suffix(".png")), cv2.IMREAD_GRAYSCALE)
        truth = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
        rng = np.random.default_rng([self.seed, i])
        return synth_targets(normalize_paper(gray), truth, self.side, rng, self.scale)


def _damaged(sample: Any, rng: np.random.Generator) -> Any:
    """The damage simulator's output when the module exists; the sample unchanged otherwise."""
    try:
        from vision.synth.damage import apply_damage
    except ImportError:
        return sample
    from vision.synth.render import Sample

    out = apply_damage(sample.image, rng)
    img = out[0] if isinstance(out, tuple) else out
    return Sample(img, sample.truth)


REAL_AUGS = ("flip", "strong")


class RealDataset(torch.utils.data.Dataset):
    """The packed circuits-real training split; text/junction channels off.

    Augmentation `flip`: a random mirror image and a random size. `strong` adds, all drawn from the item's
    seed: random 90-degree turns, aspect jitter, zoom-in crops (`scale` above 1), thicker or thinner strokes,
    fainter or harsher ink, paper texture, blur, noise and JPEG artefacts (applied before `normalize_paper`,
    as a scanned or compressed file meets it at inference).

    Args:
        folder: A `pack_real` folder.
        split: Which entries of its index to use.
        side: Square canvas side in network pixels.
        seed: Item i draws its augmentation from seed * 100_003 + i.
        aug: One of `REAL_AUGS`.
        scale: Range of the image's longer side as a fraction of `side` (the reader shows the detector a
            drawing at 1.0 when `side` is the inference side).
        repeat_threshold: LVIS repeat-factor sampling when above 0: a class in a fraction f of the images gets
            r = max(1, sqrt(repeat_threshold / f)), an image is repeated by its classes' largest r (stochastic
            rounding) and the list is shuffled, both drawn from `seed`; rare symbols are seen more often.
    """

    def __init__(
        self,
        folder: Path,
        split: str = "train",
        side: int = 640,
        seed: int = 0,
        aug: str = "flip",
        scale: tuple[float, float] = (0.6, 1.0),
        repeat_threshold: float = 0.0,
    ) -> None:
        if aug not in REAL_AUGS:
            raise ValueError(f"unknown real augmentation {aug!r}: use one of {REAL_AUGS}")
        self.folder = Path(folder)
        index = json.loads((self.folder / "index.json").read_text(encoding="utf-8"))
        self.items = [e for e in index if e["split"] == split]
        if repeat_threshold > 0:
            self.items = repeat_rare(self.items, repeat_threshold, np.random.default_rng(seed))
        self.side = side
        self.seed = seed
        self.aug, self.scale = aug, scale
        self.mask = np.ones(len(DETECT_CLASSES) + len(PIN_ROLES), np.float32)
        self.mask[CLS_INDEX["text"]] = 0
        self.mask[CLS_INDEX["junction"]] = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        canvas, boxes, pins, ignore = self.sample(i)
        hw = (self.side // STRIDE, self.side // STRIDE)
        t = build_targets(hw, boxes, pins, ignore, self.mask)
        t["image"] = canvas[None]
        return t

    def sample(self, i: int) -> tuple[np.ndarray, list, list, list]:
        """Item i as an ink-space canvas with its boxes (class index, x0, y0, x1, y1), pins (role index, x, y)
        and ignore boxes in canvas pixels."""
        e = self.items[i % len(self.items)]
        rng = np.random.default_rng(self.seed * 100_003 + i)
        gray = cv2.imread(str(self.folder / e["file"]), cv2.IMREAD_GRAYSCALE)
        if self.aug == "strong":
            return self._strong(gray, e, rng)
        gray = normalize_paper(gray)
        flip = bool(rng.random() < 0.5)  # pin roles are functional, so a mirror image keeps its labels
        if flip:
            gray = gray[:, ::-1]
        w = gray.shape[1]
        canvas, k, ox, oy = _place(gray, self.side, rng, 0.0, self.scale)

        def tr(x: float, y: float) -> tuple[float, float]:
            return ((w - x if flip else x) * k + ox, y * k + oy)

        def box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
            (a, b), (c, d) = tr(x0, y0), tr(x1, y1)
            return (min(a, c), b, max(a, c), d)

        boxes = [(CLS_INDEX[c], *box(*b)) for c, *b in e["boxes"]]
        pins = [(ROLE_INDEX[r], *tr(x, y)) for r, x, y in e["pins"]]
        ignore = [box(*b) for b in e["ignore"]]
        if _cropped(gray.shape, k, self.side):
            boxes, ignore = crop_boxes(boxes, ignore, self.side)
        return canvas, boxes, pins, ignore

    def _strong(
        self, gray: np.ndarray, e: dict[str, Any], rng: np.random.Generator
    ) -> tuple[np.ndarray, list, list, list]:
        """The `strong` augmentation of one packed image (see the class docstring)."""
        gray = normalize_paper(_degrade(_restroke(gray, rng), rng))
        # geometry as one matrix on continuous pixel coordinates (the image spans [0, w] x [0, h])
        m = np.eye(3)
        if rng.random() < 0.5:  # pin roles are functional, so mirrored and turned drawings keep their labels
            m = np.array([[-1.0, 0, gray.shape[1]], [0, 1, 0], [0, 0, 1]]) @ m
            gray = gray[:, ::-1]
        turns = int(rng.integers(1, 4)) if rng.random() < P_TURN else 0
        for _ in range(turns):  # np.rot90 turns counter-clockwise: (x, y) -> (y, w - x)
            m = np.array([[0, 1.0, 0], [-1, 0, gray.shape[1]], [0, 0, 1]]) @ m
            gray = np.rot90(gray)
        h, w = gray.shape
        k = self.side * float(rng.uniform(*self.scale)) / max(h, w)
        aspect = math.exp(float(rng.uniform(-ASPECT_JITTER, ASPECT_JITTER)))
        nw, nh = max(1, int(round(w * k * aspect))), max(1, int(round(h * k / aspect)))
        interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
        small = cv2.resize(np.ascontiguousarray(gray), (nw, nh), interpolation=interp)
        ox, oy = _offset(rng, self.side, nw), _offset(rng, self.side, nh)
        canvas = _paste(small, self.side, ox, oy, 0.0)
        m = np.array([[nw / w, 0, ox], [0, nh / h, oy], [0, 0, 1]]) @ m

        def box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
            (a, b), (c, d) = (m[:2] @ (x, y, 1.0) for x, y in ((x0, y0), (x1, y1)))
            return (min(a, c), min(b, d), max(a, c), max(b, d))

        boxes = [(CLS_INDEX[c], *box(*b)) for c, *b in e["boxes"]]
        boxes, ignore = crop_boxes(boxes, [box(*b) for b in e["ignore"]], self.side)
        pins = [(ROLE_INDEX[r], *(float(v) for v in m[:2] @ (x, y, 1.0))) for r, x, y in e["pins"]]
        return canvas, boxes, pins, ignore


def _restroke(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bolder or thinner pen on a paper-space image, by a random part of a 3 x 3 min or max filter (thinning
    keeps at least 40 % of a one-pixel line's ink, so no stroke disappears)."""
    u = rng.random()
    if u >= 0.5:
        return gray
    g = gray.astype(np.float32)
    k3 = np.ones((3, 3), np.uint8)
    if u < 0.25:
        g += float(rng.uniform(0.3, 1.0)) * (cv2.erode(g, k3) - g)
    else:
        g += float(rng.uniform(0.2, 0.6)) * (cv2.dilate(g, k3) - g)
    return g.astype(np.uint8)


def _degrade(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """File and paper damage on a paper-space image: ink contrast and gamma, textured paper, blur, noise, JPEG."""
    g = gray.astype(np.float32)
    h, w = g.shape
    if rng.random() < 0.5:
        ink = (255.0 - g) * float(rng.uniform(0.6, 1.0)) / 255.0
        g = 255.0 * (1.0 - ink ** float(rng.uniform(0.7, 1.3)))
    if rng.random() < 0.25:  # blotchy paper: normalize_paper flattens most of it, as at inference
        low = cv2.resize(rng.random((6, 6), dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        g *= 1.0 - float(rng.uniform(0.05, 0.25)) * np.clip(low, 0.0, 1.0)
    if rng.random() < 0.3:
        g = cv2.GaussianBlur(g, (0, 0), float(rng.uniform(0.4, 1.3)))
    if rng.random() < 0.3:  # grain about two pixels across, drawn at half size (cheaper)
        grain = rng.standard_normal((h // 2 + 1, w // 2 + 1), dtype=np.float32)
        g += float(rng.uniform(3.0, 14.0)) * cv2.resize(grain, (w, h), interpolation=cv2.INTER_LINEAR)
    out = np.clip(g, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        quality = int(rng.integers(20, 85))
        out = cv2.imdecode(cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_GRAYSCALE)
    return out


def repeat_rare(items: list[dict[str, Any]], threshold: float, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Repeat-factor sampling (Gupta et al., LVIS 2019) over packed real entries, shuffled."""
    classes = [{c for c, *_ in e["boxes"]} for e in items]
    freq = Counter(c for cs in classes for c in cs)
    out = []
    for e, cs in zip(items, classes):
        r = max([1.0] + [math.sqrt(threshold * len(items) / freq[c]) for c in cs])
        out += [e] * (int(r) + int(rng.random() < r - int(r)))
    return [out[k] for k in rng.permutation(len(out))]


class Mixed(torch.utils.data.Dataset):
    """Interleave synthetic, real and repaired samples, counted from the start of training: item i is real when
    `i % period == 0`, else repaired when `i % repaired_period == repaired_period - 1`, else synthetic."""

    def __init__(
        self,
        synth: SynthDataset,
        real: RealDataset | None,
        period: int = 6,
        repaired: RepairedDataset | None = None,
        repaired_period: int = 4,
    ) -> None:
        self.synth, self.real, self.period = synth, real, period
        self.repaired, self.repaired_period = repaired, repaired_period

    def __len__(self) -> int:
        return len(self.synth)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if self.real is not None and len(self.real) and i % self.period == 0:
            return self.real[i // self.period]
        if self.repaired is not None and i % self.repaired_period == self.repaired_period - 1:
            return self.repaired[i // self.repaired_period]
        return self.synth[i]


# -- loss -------------------------------------------------------------------------------------------


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, ratio: Ratio = local_ratio
) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, summed over weighted cells, per positive.

    Args:
        ratio: divides the sum by the number of positives (`DistContext.ratio` counts them over all processes).
    """
    p = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    pos = (target >= 0.999).float()
    neg = 1.0 - pos
    lp = -torch.log(p) * (1 - p) ** 2 * pos
    ln = -torch.log(1 - p) * p**2 * (1 - target) ** 4 * neg
    return ratio(((lp + ln) * weight).sum(), (pos * weight).sum(), 1.0)


def giou_loss(
    pred_ltrb: torch.Tensor, target_box: torch.Tensor, weight: torch.Tensor, ratio: Ratio = local_ratio
) -> torch.Tensor:
    """GIoU loss of boxes predicted per cell (log side distances in cells) against target boxes (px), per unit
    of weight (`ratio` as in `focal_loss`)."""
    b, _, h, w = pred_ltrb.shape
    ys = (torch.arange(h, device=pred_ltrb.device, dtype=torch.float32) + 0.5) * STRIDE
    xs = (torch.arange(w, device=pred_ltrb.device, dtype=torch.float32) + 0.5) * STRIDE
    d = torch.exp(pred_ltrb.float().clamp(-4, 7)) * STRIDE
    px0, py0 = xs[None, None, :] - d[:, 0], ys[None, :, None] - d[:, 1]
    px1, py1 = xs[None, None, :] + d[:, 2], ys[None, :, None] + d[:, 3]
    tx0, ty0, tx1, ty1 = target_box.unbind(1)
    iw = (torch.minimum(px1, tx1) - torch.maximum(px0, tx0)).clamp(min=0)
    ih = (torch.minimum(py1, ty1) - torch.maximum(py0, ty0)).clamp(min=0)
    inter = iw * ih
    union = (px1 - px0) * (py1 - py0) + (tx1 - tx0) * (ty1 - ty0) - inter
    iou = inter / union.clamp(min=1e-6)
    cw = torch.maximum(px1, tx1) - torch.minimum(px0, tx0)
    ch = torch.maximum(py1, ty1) - torch.minimum(py0, ty0)
    carea = (cw * ch).clamp(min=1e-6)
    giou = iou - (carea - union) / carea
    m = weight > 0  # a batch without boxes still sums (to zero) so that every process takes part in `ratio`
    return ratio(((1 - giou) * weight)[m].sum(), weight.sum(), 1e-6)


def detector_loss(
    out: dict[str, torch.Tensor], t: dict[str, torch.Tensor], ratio: Ratio = local_ratio
) -> dict[str, torch.Tensor]:
    """Heatmap focal losses, box GIoU and pin offset L1 (`ratio` as in `focal_loss`)."""
    nc = len(DETECT_CLASSES)
    valid = t["valid"][:, None]
    hw_c = valid * t["chan"][:, :nc, None, None]
    hw_r = valid * t["chan"][:, nc:, None, None]
    l_heat = focal_loss(out["heat"], t["heat"], hw_c, ratio)
    l_pin = focal_loss(out["pin"], t["pin_heat"], hw_r, ratio)
    l_box = giou_loss(out["box"], t["box_t"], t["box_w"], ratio)
    off = torch.sigmoid(out["pin_off"].float())
    l_off = ratio((torch.abs(off - t["pin_off"]).sum(1) * t["pin_w"]).sum(), t["pin_w"].sum(), 1.0)
    total = l_heat + l_pin + 2.0 * l_box + l_off
    return {"total": total, "heat": l_heat, "pin": l_pin, "box": l_box, "off": l_off}


# -- training loop ----------------------------------------------------------------------------------


def save_checkpoint(path: Path, model: SchematicDetector, opt: torch.optim.Optimizer, step: int) -> None:
    """Model + optimiser state + step in one safetensors file (atomic replace)."""
    from safetensors.torch import save_file

    state = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        for k, v in opt.state.get(p, {}).items():
            if torch.is_tensor(v):
                state[f"opt.{i}.{k}"] = v.detach().cpu().contiguous().reshape(v.shape)
    meta = {"step": str(step), "config": json.dumps(model.config.__dict__)}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=meta)
    os.replace(tmp, path)


def load_checkpoint(path: Path, model: SchematicDetector, opt: torch.optim.Optimizer) -> int:
    """Restore what `save_checkpoint` wrote; returns the step to continue from."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    state = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        st = {k.split(".", 2)[2]: v.to(p.device) for k, v in state.items() if k.startswith(f"opt.{i}.")}
        if st:
            opt.state[p] = st
    return int(meta.get("step", 0))


def _export(model: SchematicDetector, path: Path) -> None:
    """`save_detector`, atomically: a crash mid-write leaves the previous weights in place."""
    tmp = path.with_name(f".{path.name}.tmp")
    save_detector(model, tmp)
    os.replace(tmp, path)


def train(args: argparse.Namespace, ctx: DistContext | None = None) -> dict[str, Any]:
    """Run (or resume) training for a wall-clock budget; writes checkpoints and fp16 weights.

    Args:
        args: the `train` command's options.
        ctx: the processes to train on (default: those torchrun describes, else this one alone).
    """
    with process_group(args.cpu) if ctx is None else nullcontext(ctx) as ctx:
        return _train(args, ctx)


def _train(args: argparse.Namespace, ctx: DistContext) -> dict[str, Any]:
    local_batch = ctx.local_batch(args.batch)
    torch.manual_seed(args.seed)
    dev = ctx.device
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = DetectorConfig(backbone=args.backbone, head_channels=args.head_channels, input_side=args.infer_side)
    model = ctx.sync_batchnorm(SchematicDetector(cfg)).to(dev).to(memory_format=ctx.memory_format)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    ckpt = out / "checkpoint.safetensors"
    step = load_checkpoint(ckpt, model, opt) if ckpt.exists() else 0
    if step == 0 and args.init:  # fine-tune from shipped weights (fresh optimiser)
        from safetensors.torch import load_file

        model.load_state_dict({k: v.float() for k, v in load_file(args.init).items()})
    net = ctx.wrap(model)
    # Samples are numbered from the start of training: a resumed run, on any number of processes, continues
    # the stream an uninterrupted run would have read.
    synth = SynthDataset(args.seed * 10_000_000, args.steps * args.batch, args.side, scale=args.synth_scale)
    real = (
        RealDataset(
            Path(args.real), "train", args.side, args.seed, args.real_aug, args.real_scale, args.real_repeat
        )
        if args.real
        else None
    )
    repaired = RepairedDataset(Path(args.repaired), args.side, args.seed, args.synth_scale) if args.repaired else None
    loader = torch.utils.data.DataLoader(
        Mixed(synth, real, args.real_period, repaired, args.repaired_period),
        batch_size=local_batch,
        sampler=ShardSampler(args.batch, ctx.rank, ctx.world_size, step * args.batch, args.steps * args.batch),
        num_workers=args.workers,
        pin_memory=dev.type == "cuda",
        drop_last=True,
        persistent_workers=args.workers > 0,
        prefetch_factor=2 if args.workers > 0 else None,
    )
    t0 = time.time()
    budget = args.minutes * 60
    log = []
    model.train()
    amp = dev.type == "cuda"
    last_save = 0.0
    for batch in loader:
        elapsed = ctx.agree(time.time() - t0)  # rank 0's clock, so that every rank stops at the same step
        if step >= args.steps or elapsed > budget:
            break
        frac = min(1.0, elapsed / budget) if args.time_schedule else step / args.steps
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.5 * (1 + math.cos(math.pi * frac)) * 0.95 + 0.05)
        for g in opt.param_groups:
            g["lr"] = lr
        t = {k: v.to(dev, non_blocking=True).float() for k, v in batch.items()}
        x = t["image"].contiguous(memory_format=ctx.memory_format)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            o = net(x)
        losses = detector_loss({k: v.float() for k, v in o.items()}, t, ctx.ratio)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        if step % args.log_every == 0:
            means = ctx.mean(torch.stack(list(losses.values())))  # the global batch's losses
            rec: dict[str, float] = {k: round(float(v), 6) for k, v in zip(losses, means)}
            rec.update(step=step, lr=round(lr, 8), sec=round(time.time() - t0, 1))
            log.append(rec)
            if ctx.is_main:
                print(json.dumps(rec), flush=True)
                with (out / "train_log.jsonl").open("a", encoding="utf-8") as f:
                    f.write(json.dumps(rec) + "\n")
        if ctx.is_main and elapsed - last_save > args.save_every:
            save_checkpoint(ckpt, model, opt, step)
            _export(model, out / "detector.safetensors")
            last_save = elapsed
    summary = {
        "steps": step,
        "seconds": round(time.time() - t0, 1),
        "device": str(dev),
        "processes": ctx.world_size,
        "options": {k: v for k, v in vars(args).items() if k != "cmd"},  # the run's command line, for the card
        "log": log[-5:],
    }
    if ctx.is_main:
        save_checkpoint(ckpt, model, opt, step)
        _export(model, out / "detector.safetensors")
        (out / "train_summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    ctx.barrier()  # no rank returns before the files are there
    return summary


def scale_range(text: str) -> tuple[float, float]:
    """An argparse type: "LO,HI" as two positive floats, LO <= HI."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (two numbers), got {text!r}") from None
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"need 0 < LO <= HI, got {text!r}")
    return lo, hi


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack-real", help="pack circuits-real for training")
    pk.add_argument("--src", required=True)
    pk.add_argument("--out", required=True)
    tr = sub.add_parser("train", help="train (resumes from OUT/checkpoint.safetensors)")
    tr.add_argument("--out", required=True)
    tr.add_argument("--real", default="")
    tr.add_argument("--init", default="", help="start from these detector weights (when no checkpoint)")
    tr.add_argument("--backbone", default="lcnet_100")
    tr.add_argument("--head-channels", type=int, default=64)
    tr.add_argument("--side", type=int, default=768, help="training canvas side")
    tr.add_argument("--infer-side", type=int, default=768, help="inference input side stored in the weights")
    tr.add_argument("--batch", type=int, default=32)
    tr.add_argument("--steps", type=int, default=100_000)
    tr.add_argument("--minutes", type=float, default=6.0)
    tr.add_argument("--time-schedule", action="store_true", help="cosine over the time budget, not steps")
    tr.add_argument("--lr", type=float, default=3e-3)
    tr.add_argument("--warmup", type=int, default=100)
    tr.add_argument("--workers", type=int, default=default_workers(0), help="DataLoader workers per process")
    tr.add_argument("--real-period", type=int, default=6)
    tr.add_argument("--real-aug", choices=REAL_AUGS, default="flip", help="augmentation of real samples")
    tr.add_argument(
        "--real-scale",
        type=scale_range,
        default=(0.6, 1.0),
        help="LO,HI: a real image's longer side as a fraction of --side (above 1: zoomed-in crops)",
    )
    tr.add_argument(
        "--synth-scale",
        type=scale_range,
        default=(0.6, 1.0),
        help="LO,HI: a synthetic drawing's longer side as a fraction of --side (above 1: zoomed-in crops)",
    )
    tr.add_argument(
        "--real-repeat",
        type=float,
        default=0.0,
        help="repeat-factor threshold for real images (0: each once; e.g. 0.3 shows rare classes more often)",
    )
    tr.add_argument("--repaired", default="", help="packed repaired drawings (`python -m pipelines.pack_repaired`)")
    tr.add_argument(
        "--repaired-period", type=int, default=4, help="every N-th sample is a repaired drawing (with --repaired)"
    )
    tr.add_argument("--seed", type=int, default=1)
    tr.add_argument("--log-every", type=int, default=20)
    tr.add_argument("--save-every", type=float, default=60.0, help="seconds between checkpoints")
    tr.add_argument("--cpu", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "pack-real":
        print(json.dumps(pack_real(Path(args.src), Path(args.out))))
        return
    if args.repaired_period < 1:
        ap.error("--repaired-period must be at least 1")
    if args.repaired and not any(Path(args.repaired).glob("*.json")):
        ap.error(f"no packed repaired drawings in {args.repaired} (python -m pipelines.pack_repaired)")
    try:
        with process_group(args.cpu) as ctx:
            summary = train(args, ctx)
    except DistributedSetupError as exc:
        ap.error(str(exc))
    if ctx.is_main:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
