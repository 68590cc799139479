"""A schemdraw drawing surface that rasterises straight into a numpy ink map.

schemdraw elements draw themselves by calling `plot`, `poly`, `circle`, `arc`, `arrow`, `text` ...
on a figure; this one paints anti-aliased ink coverage (0..255) with OpenCV and Pillow, in image
pixels, so the caller knows the exact pixel geometry of everything it draws.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

_SHIFT = 4  # OpenCV fixed-point bits: sub-pixel positions for anti-aliased drawing
_ONE = 1 << _SHIFT

# Fonts that carry µ and Ω; matplotlib ships them, so they exist wherever matplotlib does.
FONT_FILES: tuple[str, ...] = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralItalic.ttf",
)


def _font_dir() -> str | None:
    try:
        import matplotlib
    except ImportError:
        return None
    return os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf")


@lru_cache(maxsize=256)
def load_font(name: str, size_px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A TrueType font at a pixel size; Pillow's built-in scalable font if the file is missing."""
    folder = _font_dir()
    if folder and os.path.exists(os.path.join(folder, name)):
        return ImageFont.truetype(os.path.join(folder, name), max(6, size_px))
    return ImageFont.load_default(max(6, size_px))


class RasterFigure:
    """Paints schemdraw segments onto an ink-coverage canvas.

    Args:
        width: Canvas width in pixels.
        height: Canvas height in pixels.
        origin: Drawing-unit point that maps to pixel (margin_x, margin_y) after the y flip, i.e.
            (xmin, ymax) of the drawing.
        scale: Pixels per drawing unit.
        margin: Pixel margins (x, y).
        lw_px: Line width in pixels for every stroke (schemdraw's own widths are ignored so that
            a drawing has one consistent pen).
        font: Font file name for the texts that are part of symbols (op-amp signs, source marks).
    """

    def __init__(
        self,
        width: int,
        height: int,
        origin: tuple[float, float],
        scale: float,
        margin: tuple[float, float],
        lw_px: float,
        font: str = "DejaVuSans.ttf",
    ) -> None:
        self.ink = np.zeros((height, width), np.uint8)
        self.origin = origin
        self.scale = scale
        self.margin = margin
        self.lw_px = lw_px
        self.font = font

    # -- geometry -------------------------------------------------------------------------------
    def px(self, x: float, y: float) -> tuple[float, float]:
        """Drawing units to image pixels (y down)."""
        return (
            (x - self.origin[0]) * self.scale + self.margin[0],
            (self.origin[1] - y) * self.scale + self.margin[1],
        )

    def _pts(self, xs: Sequence[float], ys: Sequence[float]) -> np.ndarray:
        out = [self.px(x, y) for x, y in zip(xs, ys)]
        return np.round(np.array(out, np.float64) * _ONE).astype(np.int32)

    def _thickness(self) -> int:
        return max(1, int(round(self.lw_px)))

    def _is_fill(self, fill: object) -> int | None:
        """Coverage value to fill with: 255 for ink, 0 to erase (white/bg fills), None for no fill."""
        if fill is None or fill is False or (isinstance(fill, str) and fill.lower() in ("none", "")):
            return None
        if isinstance(fill, str) and fill.lower() in ("white", "bg", "#ffffff", "#fff"):
            return 0
        return 255

    # -- schemdraw figure API -------------------------------------------------------------------
    def plot(
        self, x: Sequence[float], y: Sequence[float], color: str = "black", fill: object = None, **_: object
    ) -> None:
        """A polyline (NaN breaks it into pieces); closed paths may be filled."""
        pieces: list[tuple[list[float], list[float]]] = [([], [])]
        for xx, yy in zip(x, y):
            if math.isnan(xx) or math.isnan(yy):
                pieces.append(([], []))
            else:
                pieces[-1][0].append(xx)
                pieces[-1][1].append(yy)
        for xs, ys in pieces:
            if not xs:
                continue
            pts = self._pts(xs, ys)
            value = self._is_fill(fill)
            if value is not None and len(pts) > 2:
                cv2.fillPoly(self.ink, [pts], value, cv2.LINE_AA, _SHIFT)
            if len(pts) == 1:
                pts = np.concatenate([pts, pts])
            cv2.polylines(self.ink, [pts], False, 255, self._thickness(), cv2.LINE_AA, _SHIFT)

    def poly(self, verts: Sequence[tuple[float, float]], closed: bool = True, fill: object = None, **_: object) -> None:
        """A polygon or open polyline."""
        if not verts:
            return
        pts = self._pts([v[0] for v in verts], [v[1] for v in verts])
        value = self._is_fill(fill)
        if value is not None:
            cv2.fillPoly(self.ink, [pts], value, cv2.LINE_AA, _SHIFT)
        cv2.polylines(self.ink, [pts], closed, 255, self._thickness(), cv2.LINE_AA, _SHIFT)

    def circle(self, center: tuple[float, float], radius: float, fill: object = None, **_: object) -> None:
        """A circle, filled when asked (junction dots)."""
        cx, cy = self.px(*center)
        c = (int(round(cx * _ONE)), int(round(cy * _ONE)))
        r = int(round(radius * self.scale * _ONE))
        value = self._is_fill(fill)
        if value is not None:
            cv2.circle(self.ink, c, r, value, -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(self.ink, c, r, 255, self._thickness(), cv2.LINE_AA, _SHIFT)

    def arc(
        self,
        center: tuple[float, float],
        width: float,
        height: float,
        theta1: float = 0,
        theta2: float = 90,
        angle: float = 0,
        fill: object = None,
        arrow: str | None = None,
        arrowlength: float = 0.25,
        arrowwidth: float = 0.15,
        **_: object,
    ) -> None:
        """An elliptical arc from theta1 to theta2 (degrees, counter-clockwise), rotated by angle.

        The angles are polar angles of the ellipse's points (as in matplotlib and schemdraw's boxes),
        not the parameter of its equation; the two differ on ellipses that are not circles."""
        t1, t2 = (
            math.atan2(width * math.sin(math.radians(t)), height * math.cos(math.radians(t))) for t in (theta1, theta2)
        )
        while t2 <= t1:
            t2 += 2 * math.pi
        n = max(8, int((t2 - t1) / (2 * math.pi) * 64))
        t = np.linspace(t1, t2, n)
        phi = math.radians(angle)
        ex, ey = width / 2 * np.cos(t), height / 2 * np.sin(t)
        xs = center[0] + ex * math.cos(phi) - ey * math.sin(phi)
        ys = center[1] + ex * math.sin(phi) + ey * math.cos(phi)
        self.plot(list(xs), list(ys), fill=fill)
        if arrow in ("cw", "ccw"):
            i, j = (0, 1) if arrow == "cw" else (-1, -2)
            theta = math.degrees(math.atan2(ys[i] - ys[j], xs[i] - xs[j]))
            self.arrow((xs[i], ys[i]), theta, arrowwidth, arrowlength)

    def arrow(
        self,
        xy: tuple[float, float],
        theta: float,
        arrowwidth: float = 0.15,
        arrowlength: float = 0.25,
        **_: object,
    ) -> None:
        """A filled arrowhead pointing at xy along direction theta (degrees)."""
        th = math.radians(theta)
        ux, uy = math.cos(th), math.sin(th)
        bx, by = xy[0] - ux * arrowlength, xy[1] - uy * arrowlength
        nx, ny = -uy * arrowwidth / 2, ux * arrowwidth / 2
        verts = [xy, (bx + nx, by + ny), (bx - nx, by - ny)]
        pts = self._pts([v[0] for v in verts], [v[1] for v in verts])
        cv2.fillPoly(self.ink, [pts], 255, cv2.LINE_AA, _SHIFT)

    def bezier(self, p: Sequence[tuple[float, float]], arrow: str | None = None, **_: object) -> None:
        """A quadratic or cubic Bezier curve, sampled as a polyline."""
        t = np.linspace(0, 1, 32)[:, None]
        pts = np.array(p, np.float64)
        if len(pts) == 3:
            curve = (1 - t) ** 2 * pts[0] + 2 * (1 - t) * t * pts[1] + t**2 * pts[2]
        else:
            curve = (1 - t) ** 3 * pts[0] + 3 * (1 - t) ** 2 * t * pts[1] + 3 * (1 - t) * t**2 * pts[2] + t**3 * pts[3]
        self.plot(list(curve[:, 0]), list(curve[:, 1]))

    def path(self, path: Sequence[object], fill: object = None, **_: object) -> None:
        """An SVG-like path made of M, L, C, Q and Z commands."""
        pen: tuple[float, float] = (0.0, 0.0)
        start = pen
        xs: list[float] = []
        ys: list[float] = []
        items = list(path)
        i = 0
        while i < len(items):
            cmd = items[i]
            i += 1
            if cmd == "M":
                if xs:
                    self.plot(xs, ys, fill=fill)
                pen = tuple(items[i])  # type: ignore[assignment]
                start = pen
                i += 1
                xs, ys = [pen[0]], [pen[1]]
            elif cmd == "L":
                pen = tuple(items[i])  # type: ignore[assignment]
                i += 1
                xs.append(pen[0])
                ys.append(pen[1])
            elif cmd in ("C", "Q"):
                k = 3 if cmd == "C" else 2
                ctrl = [pen] + [tuple(items[i + j]) for j in range(k)]
                i += k
                t = np.linspace(0, 1, 16)[1:, None]
                c = np.array(ctrl, np.float64)
                if k == 3:
                    curve = (1 - t) ** 3 * c[0] + 3 * (1 - t) ** 2 * t * c[1] + 3 * (1 - t) * t**2 * c[2] + t**3 * c[3]
                else:
                    curve = (1 - t) ** 2 * c[0] + 2 * (1 - t) * t * c[1] + t**2 * c[2]
                xs += list(curve[:, 0])
                ys += list(curve[:, 1])
                pen = (float(curve[-1, 0]), float(curve[-1, 1]))
            elif cmd == "Z":
                xs.append(start[0])
                ys.append(start[1])
                pen = start
        if xs:
            self.plot(xs, ys, fill=fill)

    def text(
        self,
        s: str,
        x: float,
        y: float,
        fontsize: float = 14,
        halign: str = "center",
        valign: str = "center",
        rotation: float = 0,
        **_: object,
    ) -> None:
        """Symbol text (op-amp signs, source marks): 1 drawing unit is 36 pt in schemdraw."""
        s = s.replace("$", "")
        if not s.strip():
            return
        size = max(6, int(round(fontsize / 36 * self.scale)))
        self.draw_text(s, self.px(x, y), size, self.font, halign, valign)

    def draw_text(
        self, s: str, xy: tuple[float, float], size_px: int, font: str, halign: str = "left", valign: str = "top"
    ) -> tuple[float, float, float, float]:
        """Paint text anchored at a pixel position; returns its tight ink box (x0, y0, x1, y1)."""
        f = load_font(font, size_px)
        h = {"left": "l", "center": "m", "right": "r"}.get(halign, "m")
        v = {"top": "t", "center": "m", "bottom": "b", "base": "s", "baseline": "s"}.get(valign, "m")
        x0, y0, x1, y1 = (int(round(c)) for c in _text_box(f, s, xy, h + v))
        pad = 2
        H, W = self.ink.shape
        bx0, by0 = max(0, x0 - pad), max(0, y0 - pad)
        bx1, by1 = min(W, x1 + pad), min(H, y1 + pad)
        if bx1 <= bx0 or by1 <= by0:
            return (float(x0), float(y0), float(x1), float(y1))
        tile = Image.new("L", (bx1 - bx0, by1 - by0), 0)
        ImageDraw.Draw(tile).text((xy[0] - bx0, xy[1] - by0), s, font=f, fill=255, anchor=h + v)
        region = self.ink[by0:by1, bx0:bx1]
        np.maximum(region, np.asarray(tile), out=region)
        return (float(x0), float(y0), float(x1), float(y1))


def _text_box(
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont, s: str, xy: tuple[float, float], anchor: str
) -> tuple[float, float, float, float]:
    """Tight ink box of a text drawn at xy with a Pillow anchor."""
    box = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox(xy, s, font=font, anchor=anchor)
    return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))


def text_box(font_name: str, size_px: int, s: str, xy: tuple[float, float], anchor: str = "lt") -> tuple[float, ...]:
    """Tight pixel box a text would occupy, without drawing it."""
    return _text_box(load_font(font_name, size_px), s, xy, anchor)
