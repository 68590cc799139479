"""Damage-mask network: a small U-Net that marks the damaged pixels of a drawing.

The net reads the gray image at full resolution through a 4× pixel-unshuffle stem (so every pixel reaches the
first convolution, yet the convolutions run at a quarter of the resolution), goes down to 1/32 for context,
and comes back up with additive skips. A pixel-shuffle head turns each quarter-resolution feature into the
logits of its 4×4 pixels. Sized for CPU inference on megapixel drawings (no convolution runs at full size).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from vision.inpaint import load_module, pad_to, save_module, upsample_like

WEIGHTS = Path(__file__).resolve().parent / "weights" / "damage_net.safetensors"
# The same net trained with real drawings (circuits-real) in its stream: it confirms the pieces `WEIGHTS` marks.
CONFIRM_WEIGHTS = WEIGHTS.with_name("damage_confirm.safetensors")
STRIDE = 32  # inputs are padded to a multiple of this
THRESHOLD = 0.4  # on the probability; tuned for mask IoU on held-out synthetic damage
MIN_PIECE = 6  # pixels; smaller marked pieces are specks, not damage
CONFIRM_SHARE = 0.5  # of a marked piece's pixels that the confirming net must mark too
EDGE_THRESHOLD = 0.2  # a marked piece takes in the pixels around it over this probability (hysteresis): damage's
# soft edges (a stain's rim, the ends of a cut) fall short of THRESHOLD and would stay half-damaged


def conv_block(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """3×3 convolution, batch norm, SiLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.SiLU(inplace=True),
    )


class DamageNet(nn.Module):
    """U-Net over a gray drawing in [0, 1] (N, 1, H, W) → damage logits (N, 1, H, W); H, W multiples of 32."""

    def __init__(self, widths: tuple[int, int, int, int] = (24, 40, 64, 96)) -> None:
        super().__init__()
        c0, c1, c2, c3 = widths
        self.widths = widths
        self.stem = nn.Sequential(nn.PixelUnshuffle(4), conv_block(16, c0), conv_block(c0, c0))
        self.down1 = nn.Sequential(conv_block(c0, c1, 2), conv_block(c1, c1))
        self.down2 = nn.Sequential(conv_block(c1, c2, 2), conv_block(c2, c2))
        self.down3 = nn.Sequential(conv_block(c2, c3, 2), conv_block(c3, c3, dilation=2), conv_block(c3, c3))
        self.lat2 = nn.Conv2d(c3, c2, 1)
        self.up2 = conv_block(c2, c2)
        self.lat1 = nn.Conv2d(c2, c1, 1)
        self.up1 = conv_block(c1, c1)
        self.lat0 = nn.Conv2d(c1, c0, 1)
        self.up0 = conv_block(c0, c0)
        self.head = nn.Sequential(nn.Conv2d(c0, 16, 1), nn.PixelShuffle(4))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image - 0.5
        s0 = self.stem(x)
        s1 = self.down1(s0)
        s2 = self.down2(s1)
        s3 = self.down3(s2)
        u2 = self.up2(s2 + upsample_like(self.lat2(s3), s2))
        u1 = self.up1(s1 + upsample_like(self.lat1(u2), s1))
        u0 = self.up0(s0 + upsample_like(self.lat0(u1), s0))
        return self.head(u0)

    def save(self, path: Path = WEIGHTS) -> None:
        """Write fp16 weights and the architecture to a safetensors file."""
        save_module(self, path, {"arch": "DamageNet", "widths": ",".join(map(str, self.widths))})

    @classmethod
    def load(cls, path: Path = WEIGHTS) -> DamageNet:
        """Build the net described by a weights file and load it (eval mode, fp32)."""
        return load_module(path, lambda meta: cls(tuple(int(v) for v in meta["widths"].split(","))))


@torch.inference_mode()
def predict_damage(net: DamageNet, gray: torch.Tensor) -> torch.Tensor:
    """Damage probability (H, W) for one gray image (H, W) in [0, 1]."""
    x, (h, w) = pad_to(gray[None, None], STRIDE)
    return torch.sigmoid(net(x))[0, 0, :h, :w]


def damage_mask(net: DamageNet, gray: np.ndarray, confirm: DamageNet | None = None) -> np.ndarray:
    """The net's verdict on a gray uint8 image: bool (H, W), probability over `THRESHOLD`, specks dropped, and the
    pixels next to what is left over `EDGE_THRESHOLD`.

    Args:
        confirm: a second opinion. The net trained on synthetic drawings alone takes the dashed lines and thin
            diagonals of real drawings for damage; the confirming net, trained with real drawings among its crops,
            does not, but draws synthetic damage less exactly. A piece of the mask is kept only when `confirm`
            marks at least `CONFIRM_SHARE` of its pixels, and then with the first net's outline.
    """
    image = torch.from_numpy(gray).float() / 255.0
    prob = predict_damage(net, image).numpy()
    n, labels, stats, _ = cv2.connectedComponentsWithStats((prob > THRESHOLD).astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= MIN_PIECE
    if confirm is not None:
        confirmed = predict_damage(confirm, image).numpy() > THRESHOLD
        agreed = np.bincount(labels.ravel(), weights=confirmed.ravel(), minlength=n)  # confirmed pixels per piece
        keep &= agreed >= CONFIRM_SHARE * stats[:, cv2.CC_STAT_AREA]
    marked = keep[labels]
    beside = cv2.dilate(marked.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return marked | (beside & (prob > EDGE_THRESHOLD))
