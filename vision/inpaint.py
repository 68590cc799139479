"""VAE/GAN inpainter for damaged drawings.

`InpaintNet` is an encoder–decoder whose bottleneck is a KL-regularised latent (a VAE posterior; inference
uses its mean). Gated convolutions let the encoder learn which pixels to trust, and fast-Fourier residual
blocks (LaMa-style spectral transforms) at the bottleneck give every output pixel the whole tile as its
receptive field, which is what continuing long straight wires across a hole needs. It reads the damaged
pixels as well as the mask: stains and faded ink still carry the drawing underneath them.

`PatchDiscriminator` is the PatchGAN critic with spectral norm used in training. `inpaint_image` runs the
generator over the damaged tiles of a large drawing and passes every known pixel through unchanged.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

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


class InpaintNet(nn.Module):
    """Generator: (damaged gray (N,1,H,W) in [0,1], mask (N,1,H,W) in {0,1}) → repaired gray, mu, logvar.

    H and W must be multiples of 16. The output is the raw prediction everywhere; use `composite` to keep
    the known pixels.
    """

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 96), latent: int = 32, blocks: int = 3) -> None:
        super().__init__()
        c0, c1, c2 = widths
        self.widths, self.latent, self.blocks = widths, latent, blocks
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
        return torch.sigmoid(self.head(d0)), mu, logvar

    def save(self, path: Path = WEIGHTS) -> None:
        """Write fp16 weights and the architecture to a safetensors file."""
        meta = {
            "arch": "InpaintNet",
            "widths": ",".join(map(str, self.widths)),
            "latent": str(self.latent),
            "blocks": str(self.blocks),
        }
        save_module(self, path, meta)

    @classmethod
    def load(cls, path: Path = WEIGHTS) -> InpaintNet:
        """Build the net described by a weights file and load it (eval mode, fp32)."""
        return load_module(
            path,
            lambda meta: cls(
                tuple(int(v) for v in meta["widths"].split(",")), int(meta["latent"]), int(meta["blocks"])
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
    when most cells hold damage the whole image runs at once.
    """
    if not bool(mask.any()):
        return gray.clone()
    h, w = gray.shape
    rows, cols = -(-h // tile), -(-w // tile)
    cells = (
        F.adaptive_max_pool2d(F.pad(mask[None, None].float(), (0, cols * tile - w, 0, rows * tile - h)), (rows, cols))[
            0, 0
        ]
        .nonzero()
        .tolist()
    )
    m = mask.float()
    if len(cells) * (tile + 2 * margin) ** 2 >= h * w:
        x, _ = pad_to(gray[None, None], STRIDE)
        mm, _ = pad_to(m[None, None], STRIDE)
        pred = net(x, mm)[0][0, 0, :h, :w]
        return composite(pred, gray, m)
    size = tile + 2 * margin
    pad = (margin, cols * tile - w + margin, margin, rows * tile - h + margin)
    big_x = F.pad(gray[None, None], pad, mode="replicate")[0, 0]
    big_m = F.pad(m[None, None], pad, mode="replicate")[0, 0]  # damage at the border continues past it
    xs = torch.stack([big_x[r * tile : r * tile + size, c * tile : c * tile + size] for r, c in cells])[:, None]
    ms = torch.stack([big_m[r * tile : r * tile + size, c * tile : c * tile + size] for r, c in cells])[:, None]
    preds = net(xs, ms)[0][:, 0, margin : margin + tile, margin : margin + tile]
    full = F.pad(gray[None, None], (0, cols * tile - w, 0, rows * tile - h), mode="replicate")[0, 0].clone()
    for (r, c), p in zip(cells, preds):
        full[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = p
    return composite(full[:h, :w], gray, m)


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


def save_module(module: nn.Module, path: Path, meta: dict[str, str]) -> None:
    """Save a module's weights as fp16 safetensors (integer buffers kept) with string metadata, atomically."""
    tensors = {
        k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in module.state_dict().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_module(path: Path, build: Callable[[dict[str, str]], M]) -> M:
    """Read a safetensors file written by `save_module`, build the module from its metadata and load it.

    Raises:
        FileNotFoundError: no weights file at `path`.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"model weights not found: {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    module = build(meta)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(path)).items()}
    module.load_state_dict(state)
    return module.eval()
