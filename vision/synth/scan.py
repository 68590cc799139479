"""Scan simulator: what a flatbed scan or a phone photo does to a clean drawing.

Geometry (skew, small rotation, perspective, rescale) moves the ground truth with the pixels, so a
scanned `Sample` keeps exact boxes and pins. Photometric effects (uneven light, paper tint,
bleed-through, blur, sensor noise, JPEG) change only the pixels.
"""

from __future__ import annotations

import copy
from typing import Any

import cv2
import numpy as np

from vision.synth.render import Sample


def _warp_points(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.concatenate([pts, np.ones((len(pts), 1))], axis=1) @ H.T
    return p[:, :2] / p[:, 2:3]


def _warp_box(H: np.ndarray, box: list[float]) -> list[float]:
    x0, y0, x1, y1 = box
    q = _warp_points(H, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64))
    return [round(float(v), 2) for v in (q[:, 0].min(), q[:, 1].min(), q[:, 0].max(), q[:, 1].max())]


def _warp_xy(H: np.ndarray, xy: list[float]) -> list[float]:
    q = _warp_points(H, np.array([xy], np.float64))[0]
    return [round(float(q[0]), 2), round(float(q[1]), 2)]


def transform_truth(truth: dict[str, Any], H: np.ndarray, size: tuple[int, int]) -> dict[str, Any]:
    """The ground truth moved by a 3x3 homography onto an image of `size` (width, height)."""
    t = copy.deepcopy(truth)
    for c in t["components"]:
        c["bbox"] = _warp_box(H, c["bbox"])
        c["pins"] = {k: _warp_xy(H, v) for k, v in c["pins"].items()}
    for lb in t["labels"]:
        lb["bbox"] = _warp_box(H, lb["bbox"])
    t["junctions"] = [_warp_xy(H, j) for j in t["junctions"]]
    t["crossings"] = [_warp_xy(H, j) for j in t["crossings"]]
    t["wires"] = [[_warp_xy(H, a), _warp_xy(H, b)] for a, b in t["wires"]]
    scale = float(np.sqrt(abs(np.linalg.det(H[:2, :2]))))
    t["px_per_unit"] = t.get("px_per_unit", 1.0) * scale
    t["line_width"] = t.get("line_width", 1.0) * scale
    t["size"] = [int(size[0]), int(size[1])]
    return t


def scan(sample: Sample, seed: int, strength: float = 1.0) -> Sample:
    """A scanned copy of a sample (deterministic by seed).

    Args:
        sample: The clean drawing and its truth.
        seed: Random seed for this scan.
        strength: 0 leaves the pixels nearly untouched; 1 is a typical office scan; up to 2 is a poor
            phone photo.
    """
    rng = np.random.default_rng(seed)
    img = sample.image
    colour = img.ndim == 3
    h, w = img.shape[:2]
    f = img.astype(np.float32) / 255.0

    # geometry: rotate/skew about the centre, perspective jitter on the corners, rescale
    ang = float(rng.normal(0, 1.2 * strength))
    scale = float(np.clip(rng.normal(1.0, 0.08 * strength), 0.7, 1.3))
    cx, cy = w / 2, h / 2
    A = cv2.getRotationMatrix2D((cx, cy), ang, scale)
    A = np.vstack([A, [0, 0, 1]])
    jit = 0.015 * strength * min(w, h)
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = src + rng.uniform(-jit, jit, (4, 2)).astype(np.float32)
    P = cv2.getPerspectiveTransform(src, dst).astype(np.float64)
    H = P @ A
    corners = _warp_points(H, src.astype(np.float64))
    ox, oy = corners[:, 0].min(), corners[:, 1].min()
    T = np.array([[1, 0, -ox], [0, 1, -oy], [0, 0, 1]], np.float64)
    H = T @ H
    nw = int(np.ceil(corners[:, 0].max() - ox))
    nh = int(np.ceil(corners[:, 1].max() - oy))
    paper_tone = float(np.percentile(f if not colour else f.mean(axis=2), 90))
    border = (paper_tone,) * (3 if colour else 1)
    f = cv2.warpPerspective(f, H, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=border)

    if not colour and rng.random() < 0.5:
        f = np.repeat(f[..., None], 3, axis=2)
        colour = True
    # paper tint and uneven light (a smooth multiplicative field)
    if colour:
        tint = 1.0 - rng.uniform(0, 0.08 * strength, 3).astype(np.float32)
        f = f * tint
    gy, gx = np.mgrid[0:nh, 0:nw].astype(np.float32)
    lx, ly = rng.uniform(-1, 1, 2)
    light = 1.0 - 0.18 * strength * rng.random() * ((gx / nw - 0.5) * lx + (gy / nh - 0.5) * ly + 0.5)
    vig = 1.0 - 0.15 * strength * rng.random() * (((gx / nw - 0.5) ** 2 + (gy / nh - 0.5) ** 2) * 2)
    field = (light * vig).astype(np.float32)
    f = f * (field[..., None] if colour else field)

    # bleed-through: the page's own drawing, mirrored, faint and blurred
    if rng.random() < 0.35 * strength:
        back = cv2.flip(f, 1)
        back = cv2.GaussianBlur(back, (0, 0), 2.0)
        alpha = float(rng.uniform(0.05, 0.15))
        f = f * (1 - alpha) + np.minimum(f, back) * alpha

    # optics and sensor
    sigma = float(rng.uniform(0.2, 0.9) * strength)
    if sigma > 0.25:
        f = cv2.GaussianBlur(f, (0, 0), sigma)
    if rng.random() < 0.3 * strength:
        # resolution loss: down and back up
        k = float(rng.uniform(0.5, 0.8))
        small = cv2.resize(f, (max(1, int(nw * k)), max(1, int(nh * k))), interpolation=cv2.INTER_AREA)
        f = cv2.resize(small, (nw, nh), interpolation=cv2.INTER_LINEAR)
    noise = float(rng.uniform(0.005, 0.035) * strength)
    f = f + rng.normal(0, noise, f.shape).astype(np.float32)
    out = np.clip(f * 255.0, 0, 255).astype(np.uint8)
    quality = int(rng.uniform(35, 92) if strength > 0 else 95)
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if ok:
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR if colour else cv2.IMREAD_GRAYSCALE)
    truth = transform_truth(sample.truth, H, (nw, nh))
    truth["scan"] = {"seed": seed, "strength": strength, "homography": [[float(v) for v in r] for r in H]}
    return Sample(image=out, truth=truth)
