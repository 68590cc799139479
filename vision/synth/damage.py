"""Damage simulator for circuit drawings: tears and holes, stains, faded ink, line gaps, folds, scribbles.

`apply_damage` returns the damaged image and an exact mask of the damaged pixels. A pixel is in the mask
when a damage event moved it visibly (by more than `VISIBLE_DELTA` of full scale) or when it lies inside a
region whose paper is gone (holes, tears). Damage that changes nothing visible (a gap cut into blank paper)
therefore leaves no mask, so the mask is something a detector can learn to see.

Everything is deterministic given the `numpy.random.Generator`. Sizes scale with the drawing's stroke width
so that damage looks alike at any resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

DAMAGE_KINDS: tuple[str, ...] = ("hole", "tear", "stain", "fade", "gap", "fold", "scribble")
VISIBLE_DELTA = 24 / 255
# Order in which events are applied: page-wide effects first, missing paper and pen marks last.
_ORDER = ("fade", "gap", "stain", "fold", "scribble", "hole", "tear")


class DamageInputError(ValueError):
    """The image or the damage kinds given to `apply_damage` are not usable."""


@dataclass(frozen=True)
class DamageAim:
    """Training-time steering of `apply_damage` (the evaluation uses none).

    Attributes:
        where: non-negative float (H, W) map over the image: holes and gap cuts are aimed at its ink pixels
            (e.g. labels and symbol strokes) with chance `share`, each pixel in proportion to its value.
        share: chance that a hole or one gap cut is aimed at `where`, otherwise placed as usual.
        page_size: the side length that area-sized damage (holes, tears, stains, fades, scribbles) scales with,
            e.g. the whole drawing's shorter side when the image is a crop of it (default: the image's).
    """

    where: np.ndarray | None = None
    share: float = 0.5
    page_size: float | None = None


class _Page:
    """The image being damaged, in float [0, 1], with what the events need to know about it."""

    def __init__(self, image: np.ndarray, aim: DamageAim | None = None) -> None:
        self.img = image.astype(np.float32) / 255.0
        self.colour = self.img.ndim == 3
        self.h, self.w = self.img.shape[:2]
        self.size = float(aim.page_size) if aim is not None and aim.page_size else float(min(self.h, self.w))
        gray = self.gray()
        self.paper = float(np.percentile(gray, 75))
        self.ink = gray < self.paper - 0.3
        self.ink_points = np.argwhere(self.ink)
        if len(self.ink_points):
            dist = cv2.distanceTransform(self.ink.astype(np.uint8), cv2.DIST_L2, 3)
            # Twice the median distance-to-background over stroke pixels approximates the stroke width.
            self.stroke = float(np.clip(2.0 * np.median(dist[self.ink]), 1.0, 12.0))
        else:
            self.stroke = max(1.0, min(self.h, self.w) / 400.0)
        self.aim_points = np.zeros((0, 2), np.int64)
        self.aim_cdf = np.zeros(0)
        self.aim_share = 0.0
        if aim is not None and aim.where is not None:
            weight = np.where(self.ink, aim.where, 0.0)
            self.aim_points = np.argwhere(weight > 0)
            if len(self.aim_points):
                w = weight[weight > 0].astype(np.float64)
                self.aim_cdf = np.cumsum(w) / w.sum()
                self.aim_share = aim.share

    def gray(self) -> np.ndarray:
        if not self.colour:
            return self.img
        return self.img @ np.array([0.114, 0.587, 0.299], np.float32)  # BGR, as OpenCV reads

    def point(self, rng: np.random.Generator, on_ink: float, aimed: bool = False) -> tuple[int, int]:
        """A random (y, x), drawn from the ink pixels with probability `on_ink`; an `aimed` event first goes to
        the aim's ink with the aim's share (no draw at all without an aim, so unaimed damage is unchanged)."""
        if aimed and self.aim_share > 0 and rng.random() < self.aim_share:
            i = min(int(np.searchsorted(self.aim_cdf, rng.random())), len(self.aim_points) - 1)
            return int(self.aim_points[i, 0]), int(self.aim_points[i, 1])
        if len(self.ink_points) and rng.random() < on_ink:
            y, x = self.ink_points[rng.integers(len(self.ink_points))]
            return int(y), int(x)
        return int(rng.integers(self.h)), int(rng.integers(self.w))

    def tone(self, value: float, rng: np.random.Generator, tint: float = 0.0) -> np.ndarray:
        """A pixel value of this page's type: a gray level, or a BGR colour near it when the page is colour."""
        if not self.colour:
            return np.float32(value)
        shift = rng.uniform(-tint, tint, 3).astype(np.float32)
        return np.clip(value + shift, 0.0, 1.0)

    def blend(self, alpha: np.ndarray, value: np.ndarray) -> None:
        """img ← img·(1−alpha) + value·alpha, alpha per pixel."""
        a = alpha[..., None] if self.colour else alpha
        self.img = self.img * (1.0 - a) + value * a


def _blob(h: int, w: int, cy: float, cx: float, radius: float, rng: np.random.Generator, rough: float) -> np.ndarray:
    """A filled irregular blob: a polygon whose radius wobbles by up to `rough` of itself."""
    n = 72
    theta = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(2, 7):
        r += rough / k * rng.uniform(0.3, 1.0) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    r += rough * 0.25 * rng.uniform(-1, 1, n)  # fine jags of a torn edge
    r = np.maximum(r, 0.2) * radius
    pts = np.stack([cx + r * np.cos(theta), cy + r * np.sin(theta)], 1)
    out = np.zeros((h, w), np.uint8)
    cv2.fillPoly(out, [np.round(pts * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    return out.astype(bool)


def _smooth_noise(h: int, w: int, cell: float, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency noise in [0, 1] with features about `cell` pixels across."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    small = rng.random((gh, gw)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0.0, 1.0)


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    diff = np.abs(after - before)
    if diff.ndim == 3:
        diff = diff.max(axis=2)
    return diff > VISIBLE_DELTA


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), k).astype(bool)


def _hole(page: _Page, rng: np.random.Generator) -> np.ndarray:
    """Paper missing: the backing (desk, scanner lid) shows through an irregular blob."""
    low, high = sorted((np.log(max(5.0, 2.5 * page.stroke)), np.log(max(8.0, 0.045 * page.size))))
    radius = float(np.exp(rng.uniform(low, high)))
    cy, cx = page.point(rng, on_ink=0.8, aimed=True)
    region = _blob(page.h, page.w, cy, cx, radius, rng, rough=rng.uniform(0.15, 0.5))
    if rng.random() < 0.2:
        # White backing: the hole shows only by the shadow its torn edge throws onto the backing.
        inner = ~_dilate(~region, max(1, int(round(page.stroke * rng.uniform(0.5, 1.2)))))
        backing = np.where(inner, page.paper * rng.uniform(0.95, 1.0), rng.uniform(0.35, 0.6)).astype(np.float32)
        value = backing[..., None] if page.colour else backing
    else:
        shade = rng.uniform(0.05, 0.6)
        texture = (rng.normal(0.0, 0.03, (page.h, page.w))).astype(np.float32)
        value = page.tone(shade, rng, tint=0.1) + (texture[..., None] if page.colour else texture)
    page.blend(region.astype(np.float32), np.clip(value, 0.0, 1.0))
    return region


def _tear(page: _Page, rng: np.random.Generator) -> np.ndarray:
    """A jagged crack running in from one edge of the sheet."""
    size = page.size
    side = rng.integers(4)
    t = rng.uniform(0.15, 0.85)
    start = {0: (0.0, t * page.w), 1: (page.h - 1.0, t * page.w), 2: (t * page.h, 0.0), 3: (t * page.h, page.w - 1.0)}
    y, x = start[int(side)]
    heading = {0: np.pi / 2, 1: -np.pi / 2, 2: 0.0, 3: np.pi}[int(side)] + rng.uniform(-0.5, 0.5)
    length = rng.uniform(0.15, 0.5) * size
    step = max(3.0, size / 80.0)
    pts = [(x, y)]
    for _ in range(int(length / step)):
        heading += rng.normal(0.0, 0.35)
        x, y = x + step * np.cos(heading), y + step * np.sin(heading)
        pts.append((x, y))
    width = int(round(rng.uniform(1.5, 4.0) * max(1.0, page.stroke)))
    canvas = np.zeros((page.h, page.w), np.uint8)
    cv2.polylines(canvas, [np.round(np.array(pts) * 16).astype(np.int32)], False, 1, width, cv2.LINE_8, shift=4)
    region = canvas.astype(bool)
    page.blend(region.astype(np.float32), page.tone(rng.uniform(0.05, 0.5), rng, tint=0.1))
    return region


def _stain(page: _Page, rng: np.random.Generator) -> np.ndarray:
    """A translucent tinted blob (coffee, water) with a darker drying ring; the ink stays visible under it."""
    radius = rng.uniform(0.04, 0.14) * page.size
    cy, cx = page.point(rng, on_ink=0.6)
    region = _blob(page.h, page.w, cy, cx, radius, rng, rough=rng.uniform(0.1, 0.35)).astype(np.float32)
    soft = cv2.GaussianBlur(region, (0, 0), max(1.0, radius * 0.08))
    ring = np.clip(soft * (1.0 - soft) * 4.0, 0.0, 1.0) * rng.uniform(0.0, 0.6)
    strength = rng.uniform(0.25, 0.6)
    alpha = np.clip(
        soft * strength * (0.7 + 0.6 * _smooth_noise(page.h, page.w, radius / 2, rng)) + ring * strength, 0.0, 1.0
    )
    if page.colour:
        tint = np.array([rng.uniform(0.2, 0.6), rng.uniform(0.45, 0.8), rng.uniform(0.65, 0.95)], np.float32)
    else:
        tint = np.float32(rng.uniform(0.3, 0.75))
    before = page.img.copy()
    factor = 1.0 - (alpha[..., None] if page.colour else alpha) * (1.0 - tint)
    page.img = page.img * factor
    # The stained region is what darkens the paper visibly; ink under it is damaged too (tinted).
    paper_change = page.paper * (1.0 - (factor.min(axis=2) if page.colour else factor))
    return (paper_change > VISIBLE_DELTA) | _changed(before, page.img)


def _fade(page: _Page, rng: np.random.Generator) -> np.ndarray:
    """Ink that has faded or rubbed off unevenly in a region."""
    radius = rng.uniform(0.05, 0.2) * page.size
    cy, cx = page.point(rng, on_ink=0.9)
    region = _blob(page.h, page.w, cy, cx, radius, rng, rough=0.3).astype(np.float32)
    soft = cv2.GaussianBlur(region, (0, 0), max(1.0, radius * 0.15))
    uneven = 0.6 + 0.4 * _smooth_noise(page.h, page.w, max(4.0, 3 * page.stroke), rng)
    loss = np.clip(
        soft * rng.uniform(0.55, 0.9) * uneven + soft * (rng.random((page.h, page.w)) < 0.1) * 0.3, 0.0, 0.97
    )
    before = page.img.copy()
    a = loss[..., None] if page.colour else loss
    page.img = page.img + (page.paper - page.img) * a * (page.img < page.paper)
    return _dilate(_changed(before, page.img), 1)


def _gap(page: _Page, rng: np.random.Generator) -> np.ndarray:
    """Short breaks cut into strokes (erased or dropped-out line segments)."""
    before = page.img.copy()
    for _ in range(int(rng.integers(2, 8))):
        cy, cx = page.point(rng, on_ink=1.0, aimed=True)
        half = rng.uniform(max(2.0, 1.2 * page.stroke), max(4.0, 5.0 * page.stroke))
        angle = rng.uniform(0, 180)
        rect = ((float(cx), float(cy)), (2 * half, 2 * half * rng.uniform(0.5, 1.0)), float(angle))
        cut = np.zeros((page.h, page.w), np.uint8)
        cv2.fillPoly(cut, [np.round(cv2.boxPoints(rect)).astype(np.int32)], 1)
        page.blend(cut.astype(np.float32), page.tone(page.paper * rng.uniform(0.97, 1.0), rng))
    return _dilate(_changed(before, page.img), 1)


def _fold(page: _Page, rng: np.random.Generator) -> np.ndarray:
    """A crease across the sheet: a dark fold line with a soft shadow on one side."""
    if rng.random() < 0.8:
        base = 0.0 if rng.random() < 0.5 else np.pi / 2
        angle = base + rng.normal(0.0, 0.04)
    else:
        angle = rng.uniform(0, np.pi)
    cy, cx = rng.uniform(0.15, 0.85) * page.h, rng.uniform(0.15, 0.85) * page.w
    yy, xx = np.mgrid[0 : page.h, 0 : page.w].astype(np.float32)
    d = (xx - cx) * np.sin(angle) - (yy - cy) * np.cos(angle)  # signed distance to the fold line
    core = rng.uniform(0.7, 1.8) * max(1.0, page.stroke * 0.6)
    shadow_w = rng.uniform(4.0, 16.0) * max(1.0, page.stroke * 0.5)
    darken = rng.uniform(0.2, 0.5) * np.exp(-0.5 * (d / core) ** 2)
    darken += rng.uniform(0.04, 0.14) * np.exp(-np.maximum(d, 0.0) / shadow_w) * (d > 0)
    darken = darken.astype(np.float32)
    before = page.img.copy()
    page.img = page.img * (1.0 - (darken[..., None] if page.colour else darken))
    return (page.paper * darken > VISIBLE_DELTA) | _changed(before, page.img)


def _scribble(page: _Page, rng: np.random.Generator) -> np.ndarray:
    """Pen or pencil marks drawn over the sheet: loops, zig-zags and hatching."""
    cy, cx = page.point(rng, on_ink=0.7)
    extent = rng.uniform(0.03, 0.12) * page.size
    n = int(rng.integers(15, 80))
    heading = rng.uniform(0, 2 * np.pi)
    turn = rng.uniform(0.2, 0.9) * rng.choice([-1.0, 1.0])
    step = extent / 8.0
    x, y = float(cx), float(cy)
    pts = []
    for _ in range(n):
        heading += turn + rng.normal(0.0, 0.4)
        x += step * np.cos(heading)
        y += step * np.sin(heading)
        # Pull back towards the centre so the scribble stays a compact tangle.
        x += (cx - x) * 0.08
        y += (cy - y) * 0.08
        pts.append((x, y))
    thickness = int(rng.integers(1, max(2, int(round(1.6 * page.stroke))) + 1))
    canvas = np.zeros((page.h, page.w), np.uint8)
    cv2.polylines(canvas, [np.round(np.array(pts) * 16).astype(np.int32)], False, 255, thickness, cv2.LINE_AA, 4)
    alpha = canvas.astype(np.float32) / 255.0 * rng.uniform(0.7, 1.0)
    before = page.img.copy()
    page.blend(alpha, page.tone(rng.uniform(0.0, 0.35), rng, tint=0.35))
    return _dilate(_changed(before, page.img), 1)


_EVENTS: dict[str, Callable[[_Page, np.random.Generator], np.ndarray]] = {
    "hole": _hole,
    "tear": _tear,
    "stain": _stain,
    "fade": _fade,
    "gap": _gap,
    "fold": _fold,
    "scribble": _scribble,
}


def apply_damage(
    image: np.ndarray, rng: np.random.Generator, kinds: Sequence[str] | None = None, aim: DamageAim | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Damage a drawing the way old paper gets damaged, and say exactly where.

    Args:
        image: uint8 drawing, gray (H, W) or BGR (H, W, 3), dark ink on light paper.
        rng: source of all randomness; the same state gives the same damage.
        kinds: damage kinds to draw from (see `DAMAGE_KINDS`); all of them when None. The number of
            events grows with the image area; each event picks one kind.
        aim: where holes and gap cuts go and what damage sizes scale with, for training (see `DamageAim`);
            None (the default) leaves the damage and its random draws exactly as without it.

    Returns:
        The damaged image (same shape and dtype as `image`) and a uint8 mask, 255 where damaged, 0 elsewhere.

    Raises:
        DamageInputError: the image is not a uint8 gray/BGR array of at least 16×16, or a kind is unknown.
    """
    out, mask, _ = apply_damage_by_kind(image, rng, kinds, aim)
    return out, mask


def apply_damage_by_kind(
    image: np.ndarray, rng: np.random.Generator, kinds: Sequence[str] | None = None, aim: DamageAim | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """`apply_damage`, also saying which kind of damage made each damaged pixel.

    The image and mask are exactly those `apply_damage` returns for the same `rng` state and `aim`.

    Returns:
        The damaged image, the uint8 mask (255 = damaged), and for each kind of event applied, a bool (H, W)
        map of the pixels it changed (inside the mask; kinds can overlap; a pixel only the sum of events or
        the mask's closing made visible belongs to no kind).

    Raises:
        DamageInputError: as `apply_damage`.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise DamageInputError("image must be a uint8 numpy array")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise DamageInputError(f"image must be (H, W) or (H, W, 3), got shape {image.shape}")
    if min(image.shape[:2]) < 16:
        raise DamageInputError(f"image too small to damage: {image.shape[1]}x{image.shape[0]}")
    chosen = tuple(DAMAGE_KINDS if kinds is None else kinds)
    unknown = [k for k in chosen if k not in _EVENTS]
    if unknown or not chosen:
        raise DamageInputError(f"unknown damage kinds {unknown} (known: {', '.join(DAMAGE_KINDS)})")
    if aim is not None and aim.where is not None and aim.where.shape != image.shape[:2]:
        raise DamageInputError(f"aim map {aim.where.shape} does not match the image {image.shape[:2]}")
    page = _Page(image, aim)
    area = page.h * page.w / 512.0**2
    n_events = int(np.clip(1 + rng.poisson(1.5 * np.sqrt(area)), 1, 12))
    events = sorted(rng.choice(len(chosen), n_events).tolist(), key=lambda i: _ORDER.index(chosen[i]))
    original = page.img.copy()
    mask = np.zeros((page.h, page.w), bool)
    by_kind: dict[str, np.ndarray] = {}
    for i in events:
        event = _EVENTS[chosen[i]](page, rng)
        mask |= event
        by_kind[chosen[i]] = by_kind.get(chosen[i], np.zeros_like(mask)) | event
    mask |= _changed(original, page.img)  # overlapping events can add up to a visible change
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)).astype(bool)
    out = np.clip(np.round(page.img * 255.0), 0, 255).astype(np.uint8)
    return out, mask.astype(np.uint8) * 255, {k: v & mask for k, v in by_kind.items()}
