"""Geometric wire completion: join straight strokes that stop at the edge of a repaired region.

After inpainting, a wire that crossed a hole can still come back broken where the model was unsure. This
step looks at stroke end-points next to the damage mask, measures each stroke's direction from its
skeleton, and joins two end-points that face each other along one of the eight drawing directions
(horizontal, vertical, the two diagonals) or extends a lone end-point until it meets the stroke it was
heading for (a T-junction whose stem was cut). Only the end of a long straight stroke running along an axis is
extended, and only onto another long straight stroke: the ray passes over the inpainter's stray marks inside the
damage and stops at anything else (a glyph, a symbol). Joins are drawn no wider than one and a half stroke
widths. A join is drawn only where the gap it bridges lies mostly inside the damage mask, and only damaged
pixels are painted, so known pixels stay as they are.

`bridge_breaks`, for predicted masks, does paint outside the mask: such a mask often covers a cut through a wire
only in part, and the erased piece it missed stays a paper gap a few pixels long between two ends of one straight
wire. Such a gap is closed where it touches the mask, lies mostly outside it, and nothing is drawn across it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.morphology import skeletonize

_DIRS = np.array([(np.cos(a), np.sin(a)) for a in np.arange(8) * np.pi / 4])  # (dx, dy), 45° apart
_NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


@dataclass(frozen=True)
class _End:
    y: int
    x: int
    d: int  # index into _DIRS of the way the stroke was heading when it stopped
    width: float
    fy: float  # the end-point moved onto the straight line fitted to its stroke
    fx: float
    run: int  # pixels of straight stroke traced back from the end


@dataclass
class WireStats:
    """What wire completion did: end-points examined, pairs joined, stems extended onto a stroke."""

    endpoints: int = 0
    joined: int = 0
    extended: int = 0


def _trace(skel: np.ndarray, y: int, x: int, length: int) -> list[tuple[int, int]]:
    """Follow a skeleton from an end-point for up to `length` pixels; stops at a branch."""
    path = [(y, x)]
    prev = None
    h, w = skel.shape
    for _ in range(length):
        nxt = [
            (y + dy, x + dx)
            for dy, dx in _NEIGHBOURS
            if 0 <= y + dy < h and 0 <= x + dx < w and skel[y + dy, x + dx] and (y + dy, x + dx) not in path[-3:]
        ]
        if prev is not None:
            nxt = [p for p in nxt if p != prev]
        if len(nxt) != 1:
            break
        prev = (y, x)
        y, x = nxt[0]
        path.append((y, x))
    return path


def _ink_width(dark: np.ndarray, pts: np.ndarray, k: int) -> float:
    """Stroke width as the ink mass (darkness summed) across the stroke, averaged over traced points."""
    # Normal (dy, dx) of direction k in whole-pixel steps: length 1 for axis directions, √2 for diagonals.
    ny, nx = int(round(_DIRS[k][0] * (1 + k % 2))), int(round(-_DIRS[k][1] * (1 + k % 2)))
    t = np.arange(-8, 9)
    ys = np.clip(pts[:, :1].astype(int) + ny * t, 0, dark.shape[0] - 1)
    xs = np.clip(pts[:, 1:].astype(int) + nx * t, 0, dark.shape[1] - 1)
    step = np.sqrt(2.0) if k % 2 else 1.0
    return float(np.clip(np.median(dark[ys, xs].sum(1)) * step, 1.0, 12.0))


def _endpoints(skel: np.ndarray, near: np.ndarray, dark: np.ndarray, min_len: int) -> list[_End]:
    """Skeleton end-points inside `near` whose last `min_len`+ pixels run straight in one of 8 directions."""
    count = cv2.filter2D(skel.astype(np.uint8), -1, np.ones((3, 3), np.float32), borderType=cv2.BORDER_CONSTANT)
    ends = np.argwhere(skel & (count == 2) & near)
    out = []
    for y, x in ends:
        path = _trace(skel, int(y), int(x), 3 * min_len)
        if len(path) < min_len:
            continue
        pts = np.array(path, np.float32)
        vec = pts[0] - pts[-1]  # from inside the stroke towards its end: (dy, dx)
        norm = float(np.hypot(*vec))
        if norm < 0.8 * (len(path) - 1) * 0.7:
            continue  # curls back: text or a symbol, not a wire
        dx, dy = vec[1] / norm, vec[0] / norm
        k = int(np.argmax(_DIRS @ np.array([dx, dy])))
        if float(_DIRS[k] @ np.array([dx, dy])) < np.cos(np.deg2rad(12)):
            continue
        # Straightness: every traced point within 1.5 px of the line through the end-point.
        perp = np.abs((pts[:, 1] - x) * _DIRS[k][1] - (pts[:, 0] - y) * _DIRS[k][0])
        if perp.max() > 1.5:
            continue
        # Project the end-point onto the line of direction k through the traced points' centroid.
        cy, cx = pts.mean(0)
        t = (x - cx) * _DIRS[k][0] + (y - cy) * _DIRS[k][1]
        width = _ink_width(dark, pts[len(pts) // 3 :], k)
        out.append(_End(int(y), int(x), k, width, cy + t * _DIRS[k][1], cx + t * _DIRS[k][0], len(path)))
    return out


def _segment(a: tuple[int, int], b: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    n = int(max(abs(b[0] - a[0]), abs(b[1] - a[1]))) + 1
    return np.linspace(a[0], b[0], n).round().astype(int), np.linspace(a[1], b[1], n).round().astype(int)


def stroke_width(ink: np.ndarray) -> float:
    """Typical stroke width in pixels of a bool ink map (twice the median distance to paper over ink)."""
    if not ink.any():
        return 2.0
    dist = cv2.distanceTransform(ink.astype(np.uint8), cv2.DIST_L2, 3)
    return float(np.clip(2.0 * np.median(dist[ink]), 1.0, 12.0))


def complete_wires(
    gray: np.ndarray,
    mask: np.ndarray,
    max_gap: int | None = None,
    inside: float = 0.6,
    solid: float = 0.55,
    beside: float = 0.0,
    avoid: np.ndarray | None = None,
) -> tuple[np.ndarray, WireStats]:
    """Join broken straight wires across damaged regions.

    Args:
        gray: repaired gray drawing, uint8 (H, W), dark ink on light paper.
        mask: damaged pixels (H, W), bool or 0/255; only these pixels may be painted.
        max_gap: longest gap to bridge in pixels (default: 20% of the shorter side, at least 60).
        inside: share of a bridged gap that must lie in the (slightly grown) mask.
        solid: a pixel is ink when darker than this share of the paper level; a lower value also treats faint,
            half-restored strokes as broken, so they get re-drawn solid.
        beside: pixels this many stroke widths from the mask count as damaged for the joins (0: the mask only): they
            may be painted and count as inside. A predicted mask often misses the end of a cut through a wire.
        avoid: pixels no join or extension crosses, bool (H, W): the drawing's labels. A symbol's short stroke
            (a battery plate) extended through a damaged label paints bars over its characters.

    Returns:
        The drawing with the joins painted in, and what was done.
    """
    stats = WireStats()
    damaged = mask.astype(bool)
    if not damaged.any():
        return gray.copy(), stats
    h, w = gray.shape
    max_gap = max_gap or max(60, int(0.2 * min(h, w)))
    paper = float(np.percentile(gray, 90))
    ink = gray < paper * solid
    if not ink.any():
        return gray.copy(), stats
    ink_level = float(np.median(gray[ink]))
    dark = np.clip(1.0 - gray.astype(np.float32) / max(paper, 1.0), 0.0, 1.0)
    stroke = stroke_width(ink)
    reach = int(round(2 * stroke + 3))
    grown = cv2.dilate(damaged.astype(np.uint8), np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)).astype(bool)
    paintable = damaged
    if beside > 0:
        side = 2 * int(round(beside * stroke)) + 1
        paintable = cv2.dilate(damaged.astype(np.uint8), np.ones((side, side), np.uint8)) > 0
    near_mask = cv2.dilate(paintable.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    min_len = max(6, int(3 * stroke))
    widest = 1.5 * stroke + 0.5  # a join is drawn no wider: the ink mass beside an end can include a label's glyphs
    wire_len = max(12, int(round(4 * stroke + 4)))  # straight strokes this long are wires, not glyphs
    out = gray.copy()
    keep_out = np.zeros((h, w), bool) if avoid is None else avoid.astype(bool)
    n, labels, boxes, _ = cv2.connectedComponentsWithStats(grown.astype(np.uint8), connectivity=8)
    margin = 3 * min_len + 2
    for i in range(1, n):
        x0, y0, bw, bh = boxes[i, :4]
        ya, yb = max(0, y0 - margin), min(h, y0 + bh + margin)
        xa, xb = max(0, x0 - margin), min(w, x0 + bw + margin)
        roi_ink = ink[ya:yb, xa:xb]
        skel = skeletonize(roi_ink)
        ends = _endpoints(skel, (labels[ya:yb, xa:xb] == i), dark[ya:yb, xa:xb], min_len)
        stats.endpoints += len(ends)
        roi_mask = near_mask[ya:yb, xa:xb]
        pairs = []
        for p, a in enumerate(ends):
            da = _DIRS[a.d]
            for q in range(p + 1, len(ends)):
                b = ends[q]
                if (a.d + 4) % 8 != b.d:
                    continue  # not facing each other
                vx, vy = b.x - a.x, b.y - a.y
                along = vx * da[0] + vy * da[1]
                off = abs(vx * da[1] - vy * da[0])
                if 0 < along <= max_gap and off <= max(2.0, 0.75 * max(a.width, b.width)):
                    pairs.append((along + 4 * off, p, q))
        used: set[int] = set()
        for _, p, q in sorted(pairs):
            if p in used or q in used:
                continue
            a, b = ends[p], ends[q]
            sy, sx = _segment((a.y, a.x), (b.y, b.x))
            if roi_mask[sy, sx].mean() < inside or keep_out[sy + ya, sx + xa].any():
                continue
            used.update((p, q))
            width = min(max(a.width, b.width), widest)
            _paint(out, paintable, (a.fx + xa, a.fy + ya), (b.fx + xa, b.fy + ya), width, ink_level)
            stats.joined += 1
        roi_ink = out[ya:yb, xa:xb] < paper * solid  # joins just drawn can be what a stem runs into
        # a stub left at a wire (a stem cut just below its rail) belongs to that wire
        stub = 2 * int(np.ceil(stroke)) + 3
        wires = cv2.dilate(_wire_strokes(roi_ink, wire_len).astype(np.uint8), np.ones((stub, stub), np.uint8)) > 0
        roi_damaged = damaged[ya:yb, xa:xb]
        for p, a in enumerate(ends):
            # Only a wire's stem is extended, and only along an axis: glyph strokes and diagonals of symbols are
            # short, and what they point at is not theirs to reach.
            if p in used or a.d % 2 or a.run < 2 * min_len:
                continue
            hit = _ray_to_wire(roi_ink, wires, roi_damaged, a, max_gap)
            if hit is None:
                continue
            sy, sx = _segment((a.y, a.x), hit)
            if roi_mask[sy, sx].mean() < inside or keep_out[sy + ya, sx + xa].any():
                continue
            _paint(out, paintable, (a.fx + xa, a.fy + ya), (hit[1] + xa, hit[0] + ya), min(a.width, widest), ink_level)
            stats.extended += 1
    return out, stats


def bridge_breaks(gray: np.ndarray, mask: np.ndarray, solid: float = 0.55) -> tuple[np.ndarray, int]:
    """Close short breaks in straight horizontal and vertical wires that a partial mask left beside it.

    A break is a run of paper, about three stroke widths (at least 6 px) long at most, between two straight stretches
    of one wire (each at least `_wire_strokes`' length) along the wire's axis. It is closed when it touches the mask
    (within 2 px), lies mostly outside it (inside, the inpainter and the joins decide), does not lie between two
    strokes drawn across the wire (a capacitor's plates: the leads run into them), and no ink reaching further
    across than the break is wide stands in it (a crossing wire).

    Args:
        gray: the repaired drawing, uint8 (H, W).
        mask: damaged pixels (H, W), bool.
        solid: a pixel is ink when darker than this share of the paper level.

    Returns:
        The drawing with the breaks filled at the ink's median level, and how many were closed.
    """
    paper = float(np.percentile(gray, 90))
    ink = gray < paper * solid
    if not ink.any() or not mask.any():
        return gray, 0
    stroke = stroke_width(ink)
    wire_len = max(12, int(round(4 * stroke + 4)))
    longest = max(6, int(round(3 * stroke)))
    near = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    _, owner, extent, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    fill = np.zeros_like(ink)
    closed = 0
    h_img, w_img = ink.shape
    rows = cv2.morphologyEx(ink.astype(np.uint8), cv2.MORPH_OPEN, np.ones((1, wire_len), np.uint8))
    cols = cv2.morphologyEx(ink.astype(np.uint8), cv2.MORPH_OPEN, np.ones((wire_len, 1), np.uint8))
    reach = longest + 1 + longest % 2  # odd: an even kernel's closing shifts every run by a pixel
    for runs, across_runs in ((rows, cols), (cols, rows)):  # horizontal wires, then vertical ones
        horizontal = runs is rows
        crossing = across_runs > 0
        span = (1, reach) if horizontal else (reach, 1)
        gaps = cv2.morphologyEx(runs, cv2.MORPH_CLOSE, np.ones(span, np.uint8)).astype(bool) & ~runs.astype(bool)
        n, pieces, boxes, _ = cv2.connectedComponentsWithStats(gaps.astype(np.uint8), connectivity=8)
        for i in range(1, n):
            x, y, w, h = boxes[i, :4]
            window = (slice(y, y + h), slice(x, x + w))
            piece = pieces[window] == i
            if not near[window][piece].any() or mask[window][piece].mean() > 0.5:
                continue
            if horizontal:
                sides = crossing[y : y + h, max(0, x - 1)], crossing[y : y + h, min(w_img - 1, x + w)]
            else:
                sides = crossing[max(0, y - 1), x : x + w], crossing[min(h_img - 1, y + h), x : x + w]
            if sides[0].any() and sides[1].any():
                continue  # between two strokes drawn across the wire: a capacitor's plates, not a break
            inside = np.unique(owner[window][piece])
            inside = inside[inside > 0]
            across = extent[inside, cv2.CC_STAT_HEIGHT if horizontal else cv2.CC_STAT_WIDTH]
            if len(inside) and across.max() > (h if horizontal else w) + 2:
                continue  # something drawn across the break
            fill[window] |= piece & ~ink[window]
            closed += 1
    out = gray.copy()
    out[fill] = np.minimum(out[fill], int(round(float(np.median(gray[ink])))))
    return out, closed


def _wire_strokes(ink: np.ndarray, length: int) -> np.ndarray:
    """Ink on horizontal or vertical straight runs at least `length` pixels long: bool (H, W)."""
    u = ink.astype(np.uint8)
    rows = cv2.morphologyEx(u, cv2.MORPH_OPEN, np.ones((1, length), np.uint8))
    cols = cv2.morphologyEx(u, cv2.MORPH_OPEN, np.ones((length, 1), np.uint8))
    return (rows | cols).astype(bool)


def _ray_to_wire(
    ink: np.ndarray, wires: np.ndarray, damaged: np.ndarray, end: _End, max_gap: int
) -> tuple[int, int] | None:
    """The first wire pixel straight ahead of an end-point, once the ray has left its own stroke.

    Ink that is no wire (`wires` False) is passed through inside the damage, where it is the inpainter's guess at
    the missing stroke; outside the damage it is a glyph or a symbol in the way, and the ray stops there.
    """
    dx, dy = _DIRS[end.d]
    h, w = ink.shape
    left = False
    for t in range(1, max_gap + 1):  # from the first pixel: a break thinner than the stroke counts too
        y, x = int(round(end.y + dy * t)), int(round(end.x + dx * t))
        if not (0 <= y < h and 0 <= x < w):
            return None
        if not ink[y, x]:
            left = True
        elif left and wires[y, x]:
            return y, x
        elif left and not damaged[y, x]:
            return None
    return None


def _paint(
    out: np.ndarray, damaged: np.ndarray, a: tuple[float, float], b: tuple[float, float], width: float, level: float
) -> None:
    """Draw a stroke of ink mass `width` from a to b (x, y), anti-aliased by distance, darkening damaged pixels only."""
    r = width / 2 + 1
    x0, x1 = int(max(0, min(a[0], b[0]) - r - 1)), int(min(out.shape[1], max(a[0], b[0]) + r + 2))
    y0, y1 = int(max(0, min(a[1], b[1]) - r - 1)), int(min(out.shape[0], max(a[1], b[1]) + r + 2))
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    ax, ay, bx, by = float(a[0]), float(a[1]), float(b[0]), float(b[1])
    vx, vy = bx - ax, by - ay
    t = np.clip(((xx - ax) * vx + (yy - ay) * vy) / max(vx * vx + vy * vy, 1e-6), 0.0, 1.0)
    d = np.hypot(xx - ax - t * vx, yy - ay - t * vy)
    alpha = np.clip(width / 2 + 0.5 - d, 0.0, 1.0)
    region = out[y0:y1, x0:x1]
    stroke = region.astype(np.float32) * (1 - alpha) + level * alpha
    update = damaged[y0:y1, x0:x1] & (stroke < region)
    region[update] = np.round(stroke[update]).astype(out.dtype)
