"""Schematic symbol detector: a timm backbone with an anchor-free (CenterNet/TTFNet-style) head.

One forward pass at stride 4 gives
- a heatmap per box class (`DETECT_CLASSES`: component types, text labels, junction dots) whose
  peaks are object centres, and four side distances (left, top, right, bottom) per cell;
- a heatmap per pin role (`PIN_ROLES`) whose peaks are pin points, with a sub-cell offset.

Images are read as ink on paper: grayscale, resized so the longer side is `input_side`, padded to
a multiple of 32, and inverted so that ink is 1 and paper 0. Weights load only from safetensors.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import nn

from vision.synth import DETECT_CLASSES, PIN_ROLES

STRIDE = 4
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "detector.safetensors"


class DetectorWeightsError(ValueError):
    """A weights file that is missing or does not fit the detector."""


# Pen width (px at the input side) below which a drawing is read enlarged: about the median real drawing's pen
# (circuits-real training split 2.6 px at 768; synthetic drawings median 4.2, one in ten below 2.5). Thin-pen real
# drawings also have smaller symbols (per drawing median shorter side 25 px at 768, against 33 over the validation
# split); thin-pen synthetic ones do not, and the detector has not seen those above the reader's scale (enlarging
# every synthetic drawing under 3.5 px cost one in five of them its exact netlist), so the threshold stays low.
THIN_PEN = 2.5
MAX_ZOOM = 1.4  # the largest scale real drawings were trained at (train_detector --real-scale 0.7,1.4)


@dataclass
class DetectorConfig:
    """Architecture and vocabulary; stored in the weights file's metadata."""

    backbone: str = "lcnet_100"
    head_channels: int = 64
    input_side: int = 640
    classes: list[str] = field(default_factory=lambda: list(DETECT_CLASSES))
    roles: list[str] = field(default_factory=lambda: list(PIN_ROLES))


@dataclass
class Detection:
    """A box (component, text or junction) in original image pixels."""

    cls: str
    score: float
    box: tuple[float, float, float, float]


@dataclass
class PinPoint:
    """A pin point in original image pixels."""

    role: str
    score: float
    xy: tuple[float, float]


def _sep_conv(ch: int) -> nn.Sequential:
    """Depthwise 3x3 + pointwise 1x1: cheap enough for full stride-4 maps on a CPU."""
    return nn.Sequential(
        nn.Conv2d(ch, ch, 3, padding=1, groups=ch, bias=False),
        nn.Conv2d(ch, ch, 1, bias=False),
        nn.BatchNorm2d(ch),
        nn.ReLU(inplace=True),
    )


class SchematicDetector(nn.Module):
    """Backbone (random init) + top-down feature merge to stride 4 + heatmap/box/pin heads."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        super().__init__()
        self.config = config or DetectorConfig()
        c = self.config
        self.backbone = timm.create_model(
            c.backbone, pretrained=False, features_only=True, in_chans=1, out_indices=(1, 2, 3, 4)
        )
        chans = self.backbone.feature_info.channels()
        reds = self.backbone.feature_info.reduction()
        if reds[0] != STRIDE:
            raise DetectorWeightsError(f"backbone {c.backbone} has first feature stride {reds[0]}, need {STRIDE}")
        hc = c.head_channels
        self.lateral = nn.ModuleList([nn.Conv2d(ch, hc, 1) for ch in chans])
        self.merge = nn.Sequential(_sep_conv(hc), _sep_conv(hc))
        self.cls_head = nn.Sequential(_sep_conv(hc), nn.Conv2d(hc, len(c.classes), 1))
        self.box_head = nn.Sequential(_sep_conv(hc), nn.Conv2d(hc, 4, 1))
        self.pin_head = nn.Sequential(_sep_conv(hc), nn.Conv2d(hc, len(c.roles) + 2, 1))
        prior = -2.19  # sigmoid(-2.19) = 0.1: a calm start for focal loss
        nn.init.constant_(self.cls_head[-1].bias, prior)
        with torch.no_grad():
            self.pin_head[-1].bias[: len(c.roles)].fill_(prior)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Maps at stride 4: `heat` (logits per class), `box` (log side distances in cells),
        `pin` (logits per role), `pin_off` (sub-cell offset in cells)."""
        feats = self.backbone(x)
        y = self.lateral[-1](feats[-1])
        for lat, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            y = F.interpolate(y, size=f.shape[-2:], mode="nearest") + lat(f)
        y = self.merge(y)
        pin = self.pin_head(y)
        nr = len(self.config.roles)
        return {"heat": self.cls_head(y), "box": self.box_head(y), "pin": pin[:, :nr], "pin_off": pin[:, nr:]}


# -- preprocessing --------------------------------------------------------------------------------


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 grayscale from gray, RGB or RGBA (alpha composited onto white)."""
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        a = image[..., 3:4].astype(np.float32) / 255.0
        rgb = image[..., :3].astype(np.float32) * a + 255.0 * (1 - a)
        return cv2.cvtColor(rgb.astype(np.uint8), cv2.COLOR_RGB2GRAY)
    return cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY)


def prepare(gray: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """Resize (longer side = `side`), pad to a multiple of 32 and invert to ink=1.

    Returns:
        The float32 array (H', W') and the scale from original to network pixels.
    """
    h, w = gray.shape
    scale = side / max(h, w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(gray, (nw, nh), interpolation=interp)
    ph, pw = -(-nh // 32) * 32, -(-nw // 32) * 32
    canvas = np.zeros((ph, pw), np.float32)
    canvas[:nh, :nw] = 1.0 - small.astype(np.float32) / 255.0
    return canvas, scale


def reading_side(base_side: int, image_side: int, stroke: float) -> int:
    """The input side at which a thin-pen drawing's strokes come out `THIN_PEN` wide.

    Drawings whose strokes come out thinner than `THIN_PEN` at `base_side` are read larger, up to `MAX_ZOOM`
    times; thicker ones are never shrunk.

    Args:
        base_side: the model's input side.
        image_side: the image's longer side in pixels.
        stroke: the pen width in image pixels.
    """
    at_base = stroke * base_side / max(1, image_side)
    zoom = min(MAX_ZOOM, max(1.0, THIN_PEN / max(at_base, 1e-3)))
    return int(round(base_side * zoom / 32)) * 32


def normalize_paper(gray: np.ndarray) -> np.ndarray:
    """Flatten uneven lighting and tinted paper: divide by a blurred background estimate."""
    h, w = gray.shape
    k = max(15, (min(h, w) // 20) | 1)
    small = cv2.resize(gray, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    bg = cv2.dilate(small, np.ones((max(3, k // 4), max(3, k // 4)), np.uint8))
    bg = cv2.resize(cv2.blur(bg, (5, 5)), (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    out = gray.astype(np.float32) / np.maximum(bg, 1.0) * 255.0
    return np.clip(out, 0, 255).astype(np.uint8)


# -- decoding ---------------------------------------------------------------------------------------


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between (N, 4) and (M, 4) boxes."""
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _peaks(heat: torch.Tensor, threshold: float, k: int) -> tuple[np.ndarray, ...]:
    """Local maxima (3x3) above a threshold: (channel, y, x, score) arrays."""
    hmax = F.max_pool2d(heat[None], 3, stride=1, padding=1)[0]
    keep = (heat == hmax) & (heat >= threshold)
    c, y, x = torch.nonzero(keep, as_tuple=True)
    s = heat[c, y, x]
    if len(s) > k:
        top = torch.topk(s, k).indices
        c, y, x, s = c[top], y[top], x[top], s[top]
    return c.numpy(), y.numpy(), x.numpy(), s.numpy()


def decode(
    out: dict[str, torch.Tensor],
    config: DetectorConfig,
    scale: float,
    box_threshold: float = 0.3,
    pin_threshold: float = 0.3,
    max_objects: int = 400,
) -> tuple[list[Detection], list[PinPoint]]:
    """Turn one image's maps (no batch dim) into boxes and pins in original pixels."""
    heat = torch.sigmoid(out["heat"].float())
    c, y, x, s = _peaks(heat, box_threshold, max_objects)
    d = torch.exp(out["box"].float().clamp(-4, 7))[:, y, x].numpy().T * STRIDE  # (N, 4) ltrb in net px
    cx, cy = (x + 0.5) * STRIDE, (y + 0.5) * STRIDE
    boxes = (
        np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], axis=1) / scale
        if len(s)
        else np.zeros((0, 4))
    )
    dets = [Detection(config.classes[int(ci)], float(si), tuple(float(v) for v in b)) for ci, si, b in zip(c, s, boxes)]
    dets = _class_agnostic_nms(dets, config)
    pheat = torch.sigmoid(out["pin"].float())
    pc, py, px, ps = _peaks(pheat, pin_threshold, max_objects)
    off = torch.sigmoid(out["pin_off"].float())[:, py, px].numpy().T if len(ps) else np.zeros((0, 2))
    pins = [
        PinPoint(config.roles[int(ci)], float(si), ((xi + o[0]) * STRIDE / scale, (yi + o[1]) * STRIDE / scale))
        for ci, si, xi, yi, o in zip(pc, ps, px, py, off)
    ]
    return dets, pins


def _class_agnostic_nms(dets: list[Detection], config: DetectorConfig, iou: float = 0.6) -> list[Detection]:
    """One symbol, one box: among overlapping component boxes keep the best-scoring class."""
    comp = [d for d in dets if d.cls not in ("text", "junction")]
    rest = [d for d in dets if d.cls in ("text", "junction")]
    keep: list[Detection] = []
    for group in (comp, [d for d in rest if d.cls == "text"], [d for d in rest if d.cls == "junction"]):
        group = sorted(group, key=lambda d: -d.score)
        if not group:
            continue
        boxes = np.array([d.box for d in group])
        ious = _box_iou(boxes, boxes)
        alive = np.ones(len(group), bool)
        for i in range(len(group)):
            if not alive[i]:
                continue
            keep.append(group[i])
            alive[i + 1 :] &= ious[i, i + 1 :] < iou
    return keep


# -- loading and running ----------------------------------------------------------------------------


def load_detector(path: str | Path | None = None, device: str = "cpu", fuse_bn: bool = False) -> SchematicDetector:
    """Build the detector from a safetensors file (config in its metadata).

    With `fuse_bn`, batch norms are folded into the convolutions before them (torch.fx): same
    outputs, about a third less CPU time; the returned module still carries `.config`.

    Raises:
        DetectorWeightsError: the file is missing or does not match the architecture.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    p = Path(path) if path else DEFAULT_WEIGHTS
    if not p.is_file():
        raise DetectorWeightsError(f"detector weights not found: {p}")
    with safe_open(str(p), framework="pt") as f:
        meta = f.metadata() or {}
    try:
        config = DetectorConfig(**json.loads(meta["config"]))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise DetectorWeightsError(f"{p.name}: no detector config in metadata") from exc
    model = SchematicDetector(config)
    state = {k: v.float() for k, v in load_file(str(p), device="cpu").items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DetectorWeightsError(
            f"{p.name}: weights do not fit ({len(missing)} missing, {len(unexpected)} unexpected)"
        )
    model = model.to(device).eval()
    if fuse_bn:
        from torch.fx.experimental.optimization import fuse

        fused = fuse(model)
        fused.config = config
        return fused  # type: ignore[return-value]
    return model


def save_detector(model: SchematicDetector, path: str | Path, half: bool = True) -> None:
    """Write weights (fp16 by default) with the config in the safetensors metadata."""
    from safetensors.torch import save_file

    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if half and v.is_floating_point():
            v = v.half()
        state[k] = v.contiguous()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"config": json.dumps(asdict(model.config))})


@torch.inference_mode()
def _detect_at(
    model: SchematicDetector, gray: np.ndarray, side: int, box_threshold: float, pin_threshold: float
) -> tuple[list[Detection], list[PinPoint]]:
    x, scale = prepare(gray, side)
    t = torch.from_numpy(x)[None, None]
    dev = next(model.parameters()).device
    out = model(t.to(dev))
    out = {k: v[0].cpu() for k, v in out.items()}
    return decode(out, model.config, scale, box_threshold, pin_threshold)


def detect(
    model: SchematicDetector,
    gray: np.ndarray,
    box_threshold: float = 0.3,
    pin_threshold: float = 0.3,
    side: int | None = None,
    second_look: bool = True,
) -> tuple[list[Detection], list[PinPoint]]:
    """Detect symbols, labels, junctions and pins on a grayscale uint8 image.

    Args:
        side: a second, larger input side (`reading_side`): the image is also read there, and each symbol keeps
            the more confident of its two boxes. Labels, junctions and pins come from the model's `input_side`.
        second_look: let the second-look classifiers (`vision.second_look`, those whose weights are shipped) look
            again at full resolution at each transistor and two-terminal part and relabel confident mistakes within
            a family (NPN/PNP, NMOS/PMOS; resistor, capacitor, inductor, diode, current and voltage source).
    """
    base = model.config.input_side
    dets, pins = _detect_at(model, gray, base, box_threshold, pin_threshold)
    if side is not None and side > base:
        # Enlarged, thin-pen real drawings lose fewer symbols, but thin-pen synthetic ones (symbols of the usual
        # size) sometimes gain a wrong box there: the two readings are pooled rather than replaced.
        enlarged, _ = _detect_at(model, gray, side, box_threshold, pin_threshold)
        symbols = [d for d in dets + enlarged if d.cls not in ("text", "junction")]
        rest = [d for d in dets if d.cls in ("text", "junction")]
        dets = _class_agnostic_nms(symbols, model.config, iou=0.5) + rest
    if second_look:
        from vision.second_look import refine

        refine(gray, dets)
    return dets, pins
