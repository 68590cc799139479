"""Glyph restorer: redraws the damaged characters of text labels at full resolution.

The inpainter (`vision.inpaint`) works at a quarter of the drawing's resolution, where a 12-px character is
3 px tall: it continues wires well, but a "6" with half its strokes under a blot comes back as a smudge that
OCR reads as anything. `GlyphNet` is a small U-Net over one text line at full resolution (a strip
`LINE_HEIGHT` pixels high) with a transformer over the line at 1/8 scale, so that every character sees the
whole label: the digits before "kΩ", the "p" before "F". It reads the damaged pixels and the damage mask and
predicts the intact strip; `redraw` runs it on the text boxes that the damage touches and writes its
glyphs back inside the mask only (known pixels pass through unchanged, as the inpainter's do).

A second `GlyphNet`, the symbol restorer, does the same for component symbols (`redraw` with `symbol_window`): it
reads a window round each symbol box the damage touches, at the drawing's own scale, and redraws the symbol's
strokes there, where the inpainter's coarse scale merges close strokes (capacitor plates, a crystal's
case) into a blob.

Trained by `vision.train_glyph` on label crops (and with `--task symbols` on symbol crops) of the synthetic
engine's drawings with simulated damage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vision.inpaint import load_module, save_module

WEIGHTS = Path(__file__).resolve().parent / "weights" / "glyph.safetensors"
FINDER_WEIGHTS = WEIGHTS.with_name("text_damage.safetensors")  # the text-damage finder (output="damage")
SYMBOL_WEIGHTS = WEIGHTS.with_name("symbols.safetensors")  # the symbol restorer (a GlyphNet over symbol windows)
SYMBOL_SIDE = 160  # symbol windows are at least this wide and high (px at the drawing's scale; training crops are)
LINE_HEIGHT = 48  # strip height the net reads; labels of the synthetic engine are 7-27 px high
LINE_STRIDE = 8  # strip widths are padded to a multiple of this (three halvings)
TEXT_RANGE = (8.0, 26.0)  # text box heights read at their own scale; others are scaled into this range
LINE_PAD = 12  # paper-side context (px, at reading scale) left and right of a text box


@dataclass(frozen=True)
class GlyphConfig:
    """Size of a `GlyphNet`."""

    widths: tuple[int, int, int, int] = (32, 48, 96, 160)  # channels at full, 1/2, 1/4 and 1/8 resolution
    layers: int = 2  # transformer layers over the 1/8-scale line (6 rows of tokens for a 48-px strip)
    heads: int = 4
    output: str = "glyphs"  # "glyphs": the intact strip in [0, 1]; "damage": damage logits of the strip


PRESETS: dict[str, GlyphConfig] = {
    "debug": GlyphConfig((8, 8, 16, 16), 1, 2),
    "base": GlyphConfig(),
    "wide": GlyphConfig((48, 64, 128, 256), 4, 8),
}


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.SiLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.SiLU(inplace=True),
    )


class GlyphNet(nn.Module):
    """(damaged strip (N,1,H,W) in [0,1], mask (N,1,H,W) in {0,1}) → predicted intact strip in [0,1], or with
    `output="damage"` the logits (N,1,H,W) of where the strip is damaged (the text-damage finder).

    H and W must be multiples of `LINE_STRIDE`.
    """

    def __init__(self, config: GlyphConfig = GlyphConfig()) -> None:
        super().__init__()
        self.config = config
        c0, c1, c2, c3 = config.widths
        self.enc0 = _block(2, c0)
        self.enc1 = _block(c0, c1, 2)
        self.enc2 = _block(c1, c2, 2)
        self.enc3 = _block(c2, c3, 2)
        self.pos = nn.Conv2d(c3, c3, 3, padding=1, groups=c3)  # position from neighbours: any strip width works
        layer = nn.TransformerEncoderLayer(
            c3, config.heads, 4 * c3, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.mix = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.dec2 = _block(c3 + c2, c2)
        self.dec1 = _block(c2 + c1, c1)
        self.dec0 = _block(c1 + c0, c0)
        self.head = nn.Conv2d(c0, 1, 1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        e0 = self.enc0(torch.cat([image - 0.5, mask], 1))  # (N, c0, H, W)
        e1 = self.enc1(e0)  # (N, c1, H/2, W/2)
        e2 = self.enc2(e1)  # (N, c2, H/4, W/4)
        e3 = self.enc3(e2)  # (N, c3, H/8, W/8)
        e3 = e3 + self.pos(e3)
        n, c, h, w = e3.shape
        tokens = self.mix(e3.flatten(2).transpose(1, 2))  # (N, h*w, c3): every character sees the whole line
        e3 = tokens.transpose(1, 2).reshape(n, c, h, w)
        d2 = self.dec2(torch.cat([F.interpolate(e3, scale_factor=2.0), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0), e1], 1))
        d0 = self.dec0(torch.cat([F.interpolate(d1, scale_factor=2.0), e0], 1))
        out = self.head(d0)  # (N, 1, H, W)
        return torch.sigmoid(out) if self.config.output == "glyphs" else out

    def save(self, path: Path = WEIGHTS, int8: bool = False) -> None:
        """Write the weights and the config to a safetensors file: fp16, or with `int8` the weight matrices and
        kernels as int8 with per-channel fp16 scales (`vision.inpaint.save_module`; half the size)."""
        meta = {k: ",".join(map(str, v)) if isinstance(v, tuple) else str(v) for k, v in asdict(self.config).items()}
        save_module(self, Path(path), {"arch": "GlyphNet", **meta}, int8=int8)

    @classmethod
    def load(cls, path: Path = WEIGHTS) -> GlyphNet:
        """Build the net a weights file (fp16 or int8, see `save`) describes and load it (eval mode, fp32).

        Raises:
            FileNotFoundError: no weights file at `path`.
        """

        def build(meta: dict[str, str]) -> GlyphNet:
            widths = tuple(int(v) for v in meta["widths"].split(","))
            output = meta.get("output", "glyphs")
            return cls(GlyphConfig(widths, int(meta["layers"]), int(meta["heads"]), output))  # type: ignore[arg-type]

        return load_module(Path(path), build)


@dataclass(frozen=True)
class Strip:
    """Where a text box's strip (or a symbol's window) lies: pixel (x, y) of the drawing = (origin + strip pixel) /
    scale."""

    scale: float
    ox: float
    oy: float
    width: int
    height: int = LINE_HEIGHT

    def matrix(self) -> np.ndarray:
        """Affine map from drawing pixels to strip pixels."""
        return np.array([[self.scale, 0.0, -self.ox], [0.0, self.scale, -self.oy]], np.float32)


def strip_for(box: tuple[float, float, float, float]) -> Strip:
    """The strip that holds a text box at reading scale, centred on it, with `LINE_PAD` of context either side."""
    x0, y0, x1, y1 = box
    scale = float(np.clip(1.0, TEXT_RANGE[0] / max(y1 - y0, 1.0), TEXT_RANGE[1] / max(y1 - y0, 1.0)))
    width = int(np.ceil(((x1 - x0) * scale + 2 * LINE_PAD) / LINE_STRIDE)) * LINE_STRIDE
    ox = round((x0 + x1) / 2 * scale - width / 2)
    oy = round((y0 + y1) / 2 * scale - LINE_HEIGHT / 2)
    return Strip(scale, float(ox), float(oy), width)


def symbol_window(box: tuple[float, float, float, float]) -> Strip:
    """The window a symbol restorer reads around a symbol's box: at the drawing's scale, centred on the box, at least
    `SYMBOL_SIDE` wide and high (the training crops' size) and `LINE_PAD` beyond the box."""
    x0, y0, x1, y1 = box
    width, height = (
        int(np.ceil(max(SYMBOL_SIDE, side + 2 * LINE_PAD) / LINE_STRIDE)) * LINE_STRIDE for side in (x1 - x0, y1 - y0)
    )
    return Strip(1.0, float(round((x0 + x1 - width) / 2)), float(round((y0 + y1 - height) / 2)), width, height)


def box_window(box: tuple[float, float, float, float], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The pixels (x0, y0, x1, y1) that redrawing a text box may touch: the box grown by 2 px, within the drawing."""
    x0, y0 = max(0, int(np.floor(box[0])) - 2), max(0, int(np.floor(box[1])) - 2)
    return x0, y0, min(shape[1], int(np.ceil(box[2])) + 2), min(shape[0], int(np.ceil(box[3])) + 2)


def cut_strip(gray: np.ndarray, mask: np.ndarray, strip: Strip, paper: float) -> tuple[np.ndarray, np.ndarray]:
    """The strip's damaged pixels (float [0, 1]) and mask ({0, 1}); paper beyond the drawing's edge."""
    size = (strip.width, strip.height)
    img = cv2.warpAffine(gray, strip.matrix(), size, flags=cv2.INTER_LINEAR, borderValue=paper)
    hole = cv2.warpAffine(mask.astype(np.uint8) * 255, strip.matrix(), size, flags=cv2.INTER_LINEAR, borderValue=0)
    return img.astype(np.float32) / 255.0, (hole > 64).astype(np.float32)


@torch.inference_mode()
def _read_boxes(
    net: GlyphNet,
    gray: np.ndarray,
    mask: np.ndarray,
    boxes: list[tuple[float, float, float, float]],
    window: Callable[[tuple[float, float, float, float]], Strip] = strip_for,
) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
    """Run `net` on the strips (`window`: a text box's, or a symbol's window) of the boxes that `mask` touches and
    map its output back onto each box.

    Returns:
        For each touched box, its window (x0, y0, x1, y1) in drawing pixels (`box_window`) and the net's output over
        that window (float (y1 - y0, x1 - x0): gray levels 0-255 for glyphs, probabilities for damage).
    """
    paper = float(np.percentile(gray, 90))
    border = paper if net.config.output == "glyphs" else 0.0  # beyond the drawing: paper, and no damage
    jobs = []
    for box in boxes:
        x0, y0, x1, y1 = box_window(box, gray.shape)
        if x1 <= x0 or y1 <= y0 or not mask[y0:y1, x0:x1].any():
            continue
        strip = window(box)
        jobs.append(((x0, y0, x1, y1), strip, *cut_strip(gray, mask, strip, paper)))
    # Strips of one size share a batch; padding a smaller strip would show the net an edge it never saw in training.
    pred: list[np.ndarray] = [np.empty(0)] * len(jobs)
    for size in sorted({(j[1].height, j[1].width) for j in jobs}):
        same = [i for i, j in enumerate(jobs) if (j[1].height, j[1].width) == size]
        images = torch.from_numpy(np.stack([jobs[i][2] for i in same])[:, None])  # (n, 1, height, width)
        holes = torch.from_numpy(np.stack([jobs[i][3] for i in same])[:, None])
        out = net(images, holes)
        out = out * 255.0 if net.config.output == "glyphs" else torch.sigmoid(out)
        for i, values in zip(same, out.numpy()[:, 0]):
            pred[i] = values
    found = []
    for ((x0, y0, x1, y1), strip, _, _), values in zip(jobs, pred):
        # Back to drawing pixels over the box only: the strip's margins belong to the inpainter's repair.
        back = np.concatenate(
            [strip.matrix()[:, :2], strip.matrix()[:, 2:] + [[x0 * strip.scale], [y0 * strip.scale]]], 1
        )
        size = (x1 - x0, y1 - y0)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        found.append(((x0, y0, x1, y1), cv2.warpAffine(values, back, size, flags=flags, borderValue=border)))
    return found


def redraw(
    net: GlyphNet,
    gray: np.ndarray,
    mask: np.ndarray,
    boxes: list[tuple[float, float, float, float]],
    out: np.ndarray,
    window: Callable[[tuple[float, float, float, float]], Strip] = strip_for,
) -> int:
    """Redraw the damaged glyphs of the text boxes that `mask` touches, or with `window=symbol_window` and the symbol
    restorer the damaged strokes of symbols, in place in `out`. The symbol restorer (`vision.train_glyph --task
    symbols`) reads each symbol's window at full resolution: two capacitor plates a hole cut stay two plates, where
    the inpainter at its coarser scale fills the slit between them.

    Args:
        net: the glyph restorer, or the symbol restorer (eval mode).
        gray: the damaged gray uint8 drawing (the net reads the damaged pixels, not another repair's guesses).
        mask: bool (H, W), True where damaged.
        boxes: text (or symbol) boxes (x0, y0, x1, y1) in drawing pixels.
        out: the repaired drawing (uint8, like `gray`); the masked pixels of each touched box (`box_window`) are
            replaced by the net's output, every other pixel is left as it is.
        window: where a box is read: `strip_for` (a text line) or `symbol_window`.

    Returns:
        How many boxes were redrawn.
    """
    mask = mask.astype(bool)
    read = _read_boxes(net, gray, mask, boxes, window)
    for (x0, y0, x1, y1), patch in read:
        region = mask[y0:y1, x0:x1]
        out[y0:y1, x0:x1][region] = np.clip(np.round(patch[region]), 0, 255).astype(out.dtype)
    return len(read)


def find_text_damage(
    finder: GlyphNet,
    gray: np.ndarray,
    mask: np.ndarray,
    boxes: list[tuple[float, float, float, float]],
    threshold: float = 0.5,
) -> np.ndarray:
    """The damage mask with the text-damage finder's verdict inside every text box that `mask` touches.

    The damage-mask net reads the drawing at a quarter of its resolution, where a glyph is a few pixels high: it
    misses the part of a cut that took a stroke away cleanly, and takes some decimal points for damage. The finder
    (a `GlyphNet` with `output="damage"`) reads the box at full resolution, with the mask as a hint.

    Args:
        finder: the text-damage finder (eval mode).
        gray: the damaged gray uint8 drawing.
        mask: bool (H, W), the damage-mask net's verdict.
        boxes: text boxes (x0, y0, x1, y1) in drawing pixels.
        threshold: on the finder's probability.

    Returns:
        bool (H, W): `mask` outside the touched boxes' windows, the finder's verdict inside them.
    """
    mask = mask.astype(bool)
    read = _read_boxes(finder, gray, mask, boxes)
    out = mask.copy()
    for (x0, y0, x1, y1), _ in read:
        out[y0:y1, x0:x1] = False
    for (x0, y0, x1, y1), prob in read:  # boxes can overlap: damage where any of their verdicts says so
        out[y0:y1, x0:x1] |= prob > threshold
    return out
