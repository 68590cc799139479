"""VAE/GAN inpainter for damaged drawings.

`InpaintNet` is an encoder–decoder whose bottleneck is a KL-regularised latent (a VAE posterior; inference
uses its mean). Gated convolutions let the encoder learn which pixels to trust, and fast-Fourier residual
blocks (LaMa-style spectral transforms) at the bottleneck give every output pixel the whole tile as its
receptive field, which is what continuing long straight wires across a hole needs. It reads the damaged
pixels as well as the mask: stains and faded ink still carry the drawing underneath them.

`PatchDiscriminator` is the PatchGAN critic with spectral norm used in training. `inpaint_image` runs the
generator over the damaged tiles of a large drawing and passes every known pixel through unchanged.
`see_through` then takes back, from the damaged pixels themselves, ink that a stain or fading only made
lighter or tinted, where the net left it gray.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from vision.wire_complete import stroke_width

WEIGHTS = Path(__file__).resolve().parent / "weights" / "inpaint.safetensors"
STRIDE = 16  # inputs are padded to a multiple of this
M = TypeVar("M", bound=nn.Module)


def upsample_like(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of x to the spatial size of `like`."""
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class GatedConv(nn.Module):
    """3×3 gated convolution: features times a learned per-pixel, per-channel sigmoid gate."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, 2 * c_out, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.norm = nn.BatchNorm2d(2 * c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat, gate = self.norm(self.conv(x)).chunk(2, 1)
        return F.silu(feat) * torch.sigmoid(gate)


class FourierUnit(nn.Module):
    """A 1×1 convolution in the 2-D Fourier domain: a global receptive field at the cost of two FFTs."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * channels, 2 * channels, 1, bias=False)
        self.norm = nn.BatchNorm2d(2 * channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # FFTs of odd sizes and half precision are not supported everywhere: run this unit in fp32.
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = torch.fft.rfft2(x.float(), norm="ortho")
            spec = F.silu(self.norm(self.conv(torch.cat([spec.real, spec.imag], 1))))
            re, im = spec.chunk(2, 1)
            return torch.fft.irfft2(torch.complex(re, im), s=(h, w), norm="ortho").to(x.dtype)


class FFC(nn.Module):
    """Fast Fourier convolution: a local 3×3 branch plus a global spectral branch on part of the channels."""

    def __init__(self, channels: int, global_ratio: float = 0.5) -> None:
        super().__init__()
        cg = max(4, int(channels * global_ratio) // 2 * 2)
        self.local = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.reduce = nn.Sequential(nn.Conv2d(channels, cg // 2, 1, bias=False), nn.SiLU(inplace=True))
        self.fourier = FourierUnit(cg // 2)
        self.expand = nn.Conv2d(cg // 2, channels, 1, bias=False)
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.reduce(x)
        return F.silu(self.norm(self.local(x) + self.expand(r + self.fourier(r))))


class FFCResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(FFC(channels), FFC(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Refiner(nn.Module):
    """Residual on the coarse prediction's logits at 2× the coarse net's resolution, from (damaged, mask, coarse
    prediction).

    The coarse net draws every pixel from features at 1/4 resolution, so a stroke's edges come out a pixel off
    here and there. This small net reads the same inputs at 1/2 resolution (each position holds its 2×2 pixels,
    so it still sees every pixel) and corrects each pixel from the known strokes within about 16 pixels. Its last
    convolution starts at zero, so a refiner added to trained weights leaves their output unchanged.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.PixelUnshuffle(2),  # (N, 12, H/2, W/2)
            GatedConv(12, width),
            GatedConv(width, width, dilation=2),
            GatedConv(width, width, dilation=4),
            GatedConv(width, width),
        )
        self.out = nn.Sequential(nn.Conv2d(width, 4, 1), nn.PixelShuffle(2))  # (N, 1, H, W)
        nn.init.zeros_(self.out[0].weight)
        nn.init.zeros_(self.out[0].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


class InpaintNet(nn.Module):
    """Generator: (damaged gray (N,1,H,W) in [0,1], mask (N,1,H,W) in {0,1}) → repaired gray, mu, logvar.

    H and W must be multiples of 16. The output is the raw prediction everywhere; use `composite` to keep
    the known pixels.
    """

    def __init__(
        self, widths: tuple[int, int, int] = (32, 64, 96), latent: int = 32, blocks: int = 3, refine: int = 0
    ) -> None:
        """Build the net (untrained).

        Args:
            refine: channels of the `Refiner` that corrects the coarse prediction pixel by pixel (0: none; the
                coarse prediction is the output).
        """
        super().__init__()
        c0, c1, c2 = widths
        self.widths, self.latent, self.blocks, self.refine = widths, latent, blocks, refine
        self.stem = nn.PixelUnshuffle(4)
        self.enc0 = nn.Sequential(GatedConv(32, c0), GatedConv(c0, c0))
        self.enc1 = nn.Sequential(GatedConv(c0, c1, 2), GatedConv(c1, c1))
        self.enc2 = nn.Sequential(GatedConv(c1, c2, 2), GatedConv(c2, c2, dilation=2))
        self.to_stats = nn.Conv2d(c2, 2 * latent, 1)
        self.from_z = nn.Sequential(nn.Conv2d(latent, c2, 1), nn.SiLU(inplace=True))
        self.mid = nn.Sequential(*[FFCResBlock(c2) for _ in range(blocks)])
        self.lat1 = nn.Conv2d(c2, c1, 1)
        self.dec1 = GatedConv(c1, c1)
        self.lat0 = nn.Conv2d(c1, c0, 1)
        self.dec0 = GatedConv(c0, c0)
        self.head = nn.Sequential(nn.Conv2d(c0, 16, 1), nn.PixelShuffle(4))
        self.refiner = Refiner(refine) if refine else None

    def forward(
        self, image: torch.Tensor, mask: torch.Tensor, sample: bool | None = None, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predict the intact drawing.

        Args:
            image: damaged gray drawing.
            mask: 1 where damaged.
            sample: draw z from the posterior (default: in training mode) instead of taking its mean.
            noise: the standard normal draw (shaped like the posterior's mean) that sampling uses; default a fresh one.

        Returns:
            The prediction in [0, 1], and the posterior's mean and log-variance.
        """
        logits, mu, logvar = self.coarse(image, mask, sample, noise)
        if self.refiner is not None:
            logits = logits + self.refinement(image, mask, logits)
        return torch.sigmoid(logits), mu, logvar

    def coarse(
        self, image: torch.Tensor, mask: torch.Tensor, sample: bool | None = None, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The coarse net alone (arguments as `forward`): its logits (N, 1, H, W), the posterior's mean and
        log-variance."""
        x = image - 0.5
        e0 = self.enc0(self.stem(torch.cat([x, mask], 1)))
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        mu, logvar = self.to_stats(e2).chunk(2, 1)
        logvar = logvar.clamp(-10.0, 10.0)
        z = mu
        if self.training if sample is None else sample:
            eps = torch.randn_like(mu) if noise is None else noise.to(mu)
            z = mu + eps * torch.exp(0.5 * logvar)
        m = self.mid(self.from_z(z))
        d1 = self.dec1(e1 + upsample_like(self.lat1(m), e1))
        d0 = self.dec0(e0 + upsample_like(self.lat0(d1), e0))
        return self.head(d0), mu, logvar

    def refinement(self, image: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The refiner's correction (N, 1, H, W) to the coarse logits; H and W even."""
        assert self.refiner is not None
        return self.refiner(torch.cat([image - 0.5, mask, torch.sigmoid(logits) - 0.5], 1))

    def save(self, path: Path = WEIGHTS) -> None:
        """Write fp16 weights and the architecture to a safetensors file."""
        meta = {
            "arch": "InpaintNet",
            "widths": ",".join(map(str, self.widths)),
            "latent": str(self.latent),
            "blocks": str(self.blocks),
            "refine": str(self.refine),
        }
        save_module(self, path, meta)

    @classmethod
    def load(cls, path: Path = WEIGHTS) -> InpaintNet:
        """Build the net described by a weights file and load it (eval mode, fp32)."""
        return load_module(
            path,
            lambda meta: cls(
                tuple(int(v) for v in meta["widths"].split(",")),
                int(meta["latent"]),
                int(meta["blocks"]),
                int(meta.get("refine", "0")),
            ),
        )


def composite(pred: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The prediction inside the mask, the input image unchanged outside it."""
    return torch.where(mask > 0.5, pred, image)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean KL(N(mu, σ²) ‖ N(0, 1)) per latent element."""
    return 0.5 * torch.mean(mu.pow(2) + logvar.exp() - 1.0 - logvar)


class PatchDiscriminator(nn.Module):
    """PatchGAN critic with spectral norm: (image, mask) → a map of real/fake logits, one per ~46-px patch."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        c = width
        self.net = nn.Sequential(
            sn(nn.Conv2d(2, c, 4, 2, 1)),
            nn.LeakyReLU(0.2, inplace=True),
            sn(nn.Conv2d(c, 2 * c, 4, 2, 1)),
            nn.LeakyReLU(0.2, inplace=True),
            sn(nn.Conv2d(2 * c, 4 * c, 4, 2, 1)),
            nn.LeakyReLU(0.2, inplace=True),
            sn(nn.Conv2d(4 * c, 4 * c, 3, 1, 1)),
            nn.LeakyReLU(0.2, inplace=True),
            sn(nn.Conv2d(4 * c, 1, 3, 1, 1)),
        )

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([image - 0.5, mask], 1))


def pad_to(image: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (N, C, H, W) on the bottom/right with edge values up to a multiple; returns it and the old size."""
    h, w = image.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        image = F.pad(image, (0, pw, 0, ph), mode="replicate")
    return image, (h, w)


@torch.inference_mode()
def inpaint_image(
    net: InpaintNet, gray: torch.Tensor, mask: torch.Tensor, tile: int = 256, margin: int = 32
) -> torch.Tensor:
    """Repair one gray drawing (H, W) in [0, 1] where `mask` (H, W, bool) is set; other pixels are returned as is.

    Only the `tile`-sized cells that hold damage are run, each with `margin` pixels of context on every side;
    when most cells hold damage the whole image runs at once. A refiner then runs on the `REFINE_CELL`-sized cells
    that hold damage only (`refine_cells`).
    """
    if not bool(mask.any()):
        return gray.clone()
    h, w = gray.shape
    m = mask.float()
    cells = _damaged_cells(mask, tile)
    if len(cells) * (tile + 2 * margin) ** 2 >= h * w:
        x, _ = pad_to(gray[None, None], STRIDE)
        mm, _ = pad_to(m[None, None], STRIDE)
        logits = net.coarse(x, mm)[0][0, 0, :h, :w]
    else:
        # Cells not run keep their known pixels as the coarse net's guess (the refiner reads it across cells).
        known = torch.logit(gray.clamp(1e-3, 1 - 1e-3))
        logits = _run_on_cells(
            torch.stack([gray, m]), cells, tile, margin, lambda c: net.coarse(c[:, :1], c[:, 1:])[0][:, 0], known
        )
    if net.refiner is not None:
        logits = logits + refine_cells(net, gray, m, logits)
    return composite(torch.sigmoid(logits), gray, m)


REFINE_CELL = 64  # the refiner runs on damaged cells of this size...
REFINE_MARGIN = 16  # ...with this much context: its reach, so a cell's correction is the whole image's


def refine_cells(net: InpaintNet, gray: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The refiner's correction (H, W) to the coarse logits, computed on the cells that hold damage only (zero
    elsewhere): damage is mostly sparse, and the refiner works at twice the coarse net's resolution."""
    return _run_on_cells(
        torch.stack([gray, mask, logits]),
        _damaged_cells(mask > 0, REFINE_CELL),
        REFINE_CELL,
        REFINE_MARGIN,
        lambda c: net.refinement(c[:, :1], c[:, 1:2], c[:, 2:])[:, 0],
        torch.zeros_like(gray),
    )


def _run_on_cells(
    planes: torch.Tensor,
    cells: list[list[int]],
    cell: int,
    margin: int,
    run: Callable[[torch.Tensor], torch.Tensor],
    fill: torch.Tensor,
) -> torch.Tensor:
    """`fill` (H, W) with the given `cell`-sized cells replaced by what `run` makes of them: it gets the cells
    of `planes` (C, H, W) with `margin` pixels of context (edges repeated past the border) as (K, C, S, S) and
    returns (K, S, S), of which the middle is kept."""
    h, w = planes.shape[-2:]
    rows, cols = -(-h // cell), -(-w // cell)
    size = cell + 2 * margin
    big = F.pad(planes[None], (margin, cols * cell - w + margin, margin, rows * cell - h + margin), mode="replicate")[0]
    crops = torch.stack([big[:, r * cell : r * cell + size, c * cell : c * cell + size] for r, c in cells])
    outs = run(crops)[:, margin : margin + cell, margin : margin + cell]
    full = F.pad(fill[None, None], (0, cols * cell - w, 0, rows * cell - h), mode="replicate")[0, 0].clone()
    for (r, c), out in zip(cells, outs):
        full[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] = out
    return full[:h, :w]


def _damaged_cells(mask: torch.Tensor, cell: int) -> list[list[int]]:
    """(row, column) of the `cell`-sized cells of a (H, W) bool mask that hold damage."""
    h, w = mask.shape
    rows, cols = -(-h // cell), -(-w // cell)
    grid = F.pad(mask[None, None].float(), (0, cols * cell - w, 0, rows * cell - h))
    return F.adaptive_max_pool2d(grid, (rows, cols))[0, 0].nonzero().tolist()


INK = 0.55  # a pixel darker than this share of the paper level is ink (as the evaluation counts it)
PAPER = 0.9  # lighter than this share is paper; between the two, a gray the net was unsure of
STAIN_DELTA = 24  # gray levels below the paper that count as a visible stain (as the simulator counts it)
# Faded ink: darker than the paper's grain and grid lines (by 0.06, and at least the first, never asked to be darker
# than the second), but everywhere under the last share of the drawing's ink darkness.
FADED = (0.12, 0.3, 0.75)
MAX_GAIN = 4.0  # at most this contrast stretch: ink that lost over three quarters of its darkness stays lost
# A mask piece is the drawing itself when at least the first share of it is ink, under the second (a solid blot is
# damage whatever its tone), and at least the third share of that ink lies within OWN_TONE levels of the drawing's
# own ink tone.
OWN_INK = (0.5, 0.97, 0.6)
OWN_TONE = 2


@dataclass
class SeeThroughStats:
    """Damaged pixels `see_through` changed: grays turned to ink or to paper."""

    to_ink: int = 0
    to_paper: int = 0


def _paper_level(gray: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, float]:
    """The cumulative histogram of the `known` pixels of a uint8 drawing, and their paper level (90th percentile)."""
    hist = np.cumsum(np.bincount(gray[known], minlength=256))
    return hist, float(np.searchsorted(hist, 0.9 * hist[-1]))


def fold_lines(mask: np.ndarray, width: int = 6) -> np.ndarray:
    """Damaged pixels on long straight bands (folds, creases) of any angle: bool (H, W).

    A crease is a thin dark line that looks like a faint wire, but it runs straight for over half the sheet;
    faded ink never does, since fading covers a patch of the page.
    """
    h, w = mask.shape
    side = min(h, w)
    lines = cv2.HoughLinesP(
        mask.astype(np.uint8),
        1,
        np.pi / 360,
        threshold=int(0.3 * side),
        minLineLength=int(0.5 * side),
        maxLineGap=max(8, side // 60),
    )
    out = np.zeros((h, w), np.uint8)
    for x0, y0, x1, y1 in [] if lines is None else lines.reshape(-1, 4):
        cv2.line(out, (int(x0), int(y0)), (int(x1), int(y1)), 1, 2 * width + 1)
    return out.astype(bool) & mask


def stained_paper(gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Paper darkened by a stain that a damage mask marks only in part: bool (H, W), outside `mask`.

    A detector often marks a stain's drying ring and leaves its flat inside, which then stays a gray blob. The
    paper level under the drawing (a grey closing wider than a stroke) shows the whole stain: it sits visibly
    below the sheet's paper level. Regions of it that touch the mask are the same damage.
    """
    known = ~mask
    if not mask.any() or not known.any():
        return np.zeros_like(mask)
    _, paper = _paper_level(gray, known)
    ink = known & (gray < INK * paper)
    r = int(round(2 * stroke_width(ink) + 2))
    small = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)  # a stain is broad: half size will do
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (r | 1, r | 1))
    level = cv2.resize(cv2.morphologyEx(small, cv2.MORPH_CLOSE, disc), gray.shape[::-1], interpolation=cv2.INTER_LINEAR)
    low = (level.astype(np.float32) < paper - STAIN_DELTA).astype(np.uint8)
    n, labels = cv2.connectedComponents(low, connectivity=8)
    touch = np.zeros(n, bool)
    touch[np.unique(labels[mask & (low > 0)])] = True
    touch[0] = False
    return touch[labels] & known


def own_ink_pieces(gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pieces of a predicted mask that are the drawing itself: bool (H, W), inside `mask`.

    The damage net takes some intact symbols for damage: transformer and inductor coils and source circles for
    scribbles, a diode's filled triangle or a ground symbol for a hole or a blot. Repairing them erases them. Such a
    piece is mostly ink, and that ink has exactly the tone of the drawing's own ink outside the mask, as a clean
    drawing rendered from a PDF or CAD file does; what the simulator's damage leaves (holes, pen marks, stains,
    fading) is another tone, textured or blended. A solid blot (almost no paper in the piece) stays damage.
    """
    known = ~mask
    if not mask.any() or not known.any():
        return np.zeros_like(mask)
    _, paper = _paper_level(gray, known)
    ink = gray < INK * paper
    if not (ink & known).any():
        return np.zeros_like(mask)
    level = float(np.median(gray[ink & known]))
    own = ink & (np.abs(gray.astype(np.float32) - level) <= OWN_TONE)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    area = np.maximum(stats[:, cv2.CC_STAT_AREA], 1).astype(np.float64)
    ink_px = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=n)
    own_px = np.bincount(labels.ravel(), weights=own.ravel(), minlength=n)
    least, solid, same = OWN_INK
    drawn = (ink_px >= least * area) & (ink_px < solid * area) & (own_px >= same * np.maximum(ink_px, 1))
    drawn[0] = False
    return drawn[labels]


def grain_floor(gray: np.ndarray, mask: np.ndarray, paper: float, reach: float = 10.0) -> float:
    """How dark (a share of the paper level) the paper's own grain and grid lines get, plus a margin: a mark no
    darker than this is paper, not faded ink. Measured on the known pixels more than `reach` stroke widths (at least
    3·`reach` pixels) from the damage and over 2 px from ink; between `FADED[0]` and `FADED[1]`."""
    known = ~mask
    r = max(reach * stroke_width(known & (gray < INK * paper)), 3 * reach)
    within = cv2.distanceTransform(known.astype(np.uint8), cv2.DIST_L2, 3) <= r
    bare = ~within & (cv2.erode(gray, np.ones((5, 5), np.uint8)) >= INK * paper)
    grain = np.cumsum(np.bincount(gray[bare], minlength=256))
    if not grain[-1]:
        return FADED[0]
    grain_dark = 1.0 - float(np.searchsorted(grain, 0.005 * grain[-1])) / max(paper, 1.0)
    return float(np.clip(grain_dark + 0.06, FADED[0], FADED[1]))


def faded_ink(gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Faded strokes next to a damage mask that it leaves out: bool (H, W), outside `mask`.

    A detector marks the middle of a faded patch and often misses its edge, where a wire is still visible but
    lighter than the drawing's ink; the repair then leaves that stretch as it is, and a reader can lose it. Such a
    pixel is visibly dark (darker than grid lines or paper grain), yet nothing within a pixel of it reaches the
    darkness of the drawing's own ink (which an intact stroke's anti-aliased rim does). Pieces of them that touch
    the mask are the same damage, followed as far as they run (a long faded wire the detector marked in two places
    would otherwise keep a faint stretch between them); they are returned grown by a pixel, as the simulator marks
    damage.
    """
    known = ~mask
    if not mask.any() or not known.any():
        return np.zeros_like(mask)
    _, paper = _paper_level(gray, known)
    lightest = cv2.erode(gray, np.ones((3, 3), np.uint8))  # the darkest pixel within one of each pixel
    ink = known & (gray < INK * paper)
    ink_level = float(np.median(lightest[ink])) if ink.any() else 0.1 * paper
    floor = grain_floor(gray, mask, paper)
    faded = known & (gray < paper * (1.0 - floor))
    faded &= lightest > paper - FADED[2] * (paper - ink_level)
    n, labels = cv2.connectedComponents((faded | mask).astype(np.uint8), connectivity=8)
    touch = np.zeros(n, bool)
    touch[np.unique(labels[mask])] = True
    touch[0] = False
    return cv2.dilate((touch[labels] & faded).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & known


def see_through(gray: np.ndarray, mask: np.ndarray, inpainted: np.ndarray) -> tuple[np.ndarray, SeeThroughStats]:
    """Restore stained and faded drawing from the damaged pixels where the inpainter was unsure.

    Stains darken paper and ink alike and fading lightens ink, but both leave the drawing in place. Dividing
    the damaged pixels by their local paper level (a grey closing wider than a stroke) removes the stain;
    stretching each neighbourhood's darkness to the drawing's own ink darkness brings faint strokes back.
    This restored reading replaces the inpainter's output inside the mask only where the two can be
    reconciled: a gray the net left between paper and ink follows the restored reading (no gray blobs over
    stained paper, half-faded strokes made solid). Faint marks the net erased stay erased: a light pen scribble,
    a tear's edge or a hole's rim look just like faded ink here, and the nets of run 4 on restore faded strokes
    themselves (bringing erased faint ink back cost more on scribbles, tears and holes than it gained on fades).
    Pixels near a dark mark inside the mask (a hole's backing, a tear, a scribble) and on straight folds keep the
    inpainter's value: there the dark structure is the damage, not the drawing.

    Args:
        gray: the damaged drawing, uint8 (H, W), dark ink on light paper.
        mask: damaged pixels, bool (H, W).
        inpainted: the inpainter's repair of `gray`, uint8 (H, W).

    Returns:
        The drawing with the restored pixels, uint8 (H, W) (outside `mask` equal to `inpainted`), and counts.
    """
    stats = SeeThroughStats()
    known = ~mask
    if not mask.any() or not known.any():
        return inpainted.copy(), stats
    hist, paper = _paper_level(gray, known)
    paper = max(paper, 1.0)
    below = int(np.ceil(INK * paper))  # levels 0..below-1 are ink
    n_ink = int(hist[below - 1]) if below > 0 else 0
    ink_dark = float(np.clip(1.0 - np.searchsorted(hist, 0.5 * n_ink) / paper, 0.3, 1.0)) if n_ink else 0.9
    ys, xs = np.nonzero(mask)
    pad = 80  # context around the damage: wider than every window below
    y0, y1 = max(0, int(ys.min()) - pad), min(gray.shape[0], int(ys.max()) + pad + 1)
    x0, x1 = max(0, int(xs.min()) - pad), min(gray.shape[1], int(xs.max()) + pad + 1)
    roi, m = gray[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    g = roi.astype(np.float32)
    width = stroke_width(~m & (g < INK * paper))
    r = int(round(2 * width + 2))
    # A round window: a square one reaches round a stain's curved edge with its corners and sees paper there.
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    local_paper = np.maximum(cv2.morphologyEx(g, cv2.MORPH_CLOSE, disc), 1.0)
    dark = np.clip(1.0 - g / local_paper, 0.0, 1.0)
    w = int(round(4 * width)) | 1
    nearby = cv2.dilate(dark, np.ones((w, w), np.uint8))  # square: separable, so fast
    # Stretch only where the neighbourhood holds a visible mark; flat paper keeps its noise level.
    gain = np.where(nearby > 0.12, np.clip(ink_dark / np.maximum(nearby, 1e-3), 1.0, MAX_GAIN), 1.0)
    restored = paper * (1.0 - np.minimum(dark * gain, ink_dark))
    flat = paper * (1.0 - dark)  # the stain divided out, no stretch
    net = inpainted[y0:y1, x0:x1].astype(np.float32) / paper
    unsure = m & (net >= INK) & (net < PAPER)
    erased = m & (net >= PAPER)
    rest_ink = restored < INK * paper
    clean_paper = local_paper > PAPER * paper
    overlay = (m & (g < 0.3 * paper)).astype(np.uint8)
    rv = 2 * int(round(2 * width)) + 1
    trusted = ~cv2.dilate(overlay, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (rv, rv))).astype(bool)
    trusted &= ~fold_lines(mask)[y0:y1, x0:x1]
    # Marks no darker than the paper's own grain and grid lines are not faded ink (a grid line under a light stain),
    # unless they are the rim of a darker mark.
    marks = cv2.dilate((dark > grain_floor(gray, mask, paper)).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    to_ink = unsure & rest_ink & clean_paper & trusted & marks
    # Light grays the net left over stained paper (even above the paper threshold) become the paper itself; not
    # over a dark backing, whose noise the division would blow up.
    to_paper = (unsure | (erased & (local_paper > 0.4 * paper))) & (restored >= PAPER * paper)
    region = inpainted[y0:y1, x0:x1].astype(np.float32)
    region[to_ink] = np.minimum(region, restored)[to_ink]
    region[to_paper] = flat[to_paper]
    out = inpainted.copy()
    out[y0:y1, x0:x1] = np.clip(np.round(region), 0, 255).astype(np.uint8)
    stats.to_ink, stats.to_paper = int(to_ink.sum()), int(to_paper.sum())
    return out, stats


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Fold an eval-mode batch norm into the convolution before it; returns the per-channel scale used."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight = nn.Parameter(conv.weight * scale[:, None, None, None])
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
    return scale


@torch.no_grad()
def fuse_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every batch norm of an eval-mode net into its convolution (inference only; same outputs, fewer
    passes over memory)."""
    for m in list(module.modules()):
        if isinstance(m, nn.Sequential):
            for i in range(len(m) - 1):
                if isinstance(m[i], nn.Conv2d) and isinstance(m[i + 1], nn.BatchNorm2d):
                    _fold(m[i], m[i + 1])
                    m[i + 1] = nn.Identity()
        elif isinstance(m, (GatedConv, FourierUnit)) and isinstance(m.norm, nn.BatchNorm2d):
            _fold(m.conv, m.norm)
            m.norm = nn.Identity()
        elif isinstance(m, FFC) and isinstance(m.norm, nn.BatchNorm2d):
            # norm(local(x) + expand(y)) is linear in both branches: scale both, bias once.
            scale = _fold(m.local, m.norm)
            m.expand.weight = nn.Parameter(m.expand.weight * scale[:, None, None, None])
            m.norm = nn.Identity()
    return module


def save_module(module: nn.Module, path: Path, meta: dict[str, str], int8: bool = False) -> None:
    """Save a module's weights as fp16 safetensors (integer buffers kept) with string metadata, atomically. With
    `int8` every weight matrix and kernel is stored as int8 with one fp16 scale per output channel (`name.q8`,
    `name.scale`; half the size)."""
    tensors = {}
    for name, value in module.state_dict().items():
        value = value.detach().cpu()
        if int8 and value.is_floating_point() and value.ndim >= 2:
            scale = value.flatten(1).abs().amax(1).clamp_min(1e-8) / 127.0  # (out,)
            q = torch.round(value / scale.view(-1, *[1] * (value.ndim - 1))).to(torch.int8)
            tensors[f"{name}.q8"], tensors[f"{name}.scale"] = q.contiguous(), scale.half()
        else:
            tensors[name] = (value.to(torch.float16) if value.is_floating_point() else value).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={**meta, "int8": "1"} if int8 else meta)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_module(path: Path, build: Callable[[dict[str, str]], M]) -> M:
    """Read a safetensors file written by `save_module` (fp16 or int8), build the module from its metadata and load
    it (fp32).

    Raises:
        FileNotFoundError: no weights file at `path`.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"model weights not found: {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    module = build(meta)
    stored = load_file(str(path))
    state = {}
    for key, value in stored.items():
        if key.endswith(".scale"):
            continue
        if key.endswith(".q8"):
            name = key[: -len(".q8")]
            scale = stored[f"{name}.scale"].float()
            state[name] = value.float() * scale.view(-1, *[1] * (value.ndim - 1))
        else:
            state[key] = value.float() if value.is_floating_point() else value
    module.load_state_dict(state)
    return module.eval()
