"""Train the damage-mask net and the VAE/GAN inpainter on synthetic damaged drawings.

Two steps (the pack can be made here and carried, or on the GPU machine with schemdraw installed there):

    python -m vision.train_inpaint pack --out .devdata/repair_pack.npz --count 1500 --workers 2
    python -m vision.train_inpaint train --data .devdata/repair_pack.npz --minutes 3.5 --ckpt runs/repair

`pack` renders intact drawings (mostly the synthetic engine's `render_sample`, some from a small built-in
schemdraw ladder generator for a second drawing style) into one npz of PNG bytes, with each drawing's label and
symbol boxes (the engine's truth; glyph-sized ink pieces for the ladders). `train` damages random crops on the fly
with `vision.synth.damage.apply_damage` (so no two batches repeat), trains both nets together, and writes a
resumable checkpoint (safetensors) every `--save-every` seconds plus fp16 weights for shipping. Running `train`
again with the same `--ckpt` resumes where it stopped; `export` ships the nets of a checkpoint folder.

Options for what the nets get wrong on evaluation drawings (all off by default, which reproduces earlier runs):
`--aim` places that share of holes and gap cuts on label glyphs and symbol strokes (packs without boxes aim at
glyph-sized ink pieces), `--page-size` sizes the damage to the whole drawing as the evaluation does (a crop
otherwise gets holes, fades and stains about half as large), `--restore` weights the intact ink under fade and
gap damage in the inpainter's loss (so faded strokes are given back, not erased), `--clean` is the share of
undamaged crops.

Under `torchrun --nproc_per_node N` the same `train` command trains with DDP (see `vision.distributed`): `--batch`
stays the global batch, crop `k` of the run is made from seed (`--seed`, k) whichever process makes it, and losses,
weights and checkpoints are those of one process, so a run resumes on any number of processes.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset

from vision.damage_net import DamageNet
from vision.distributed import (
    DistContext,
    DistributedSetupError,
    Ratio,
    ShardSampler,
    default_workers,
    local_ratio,
    process_group,
)
from vision.inpaint import STRIDE, InpaintNet, PatchDiscriminator, composite, kl_divergence
from vision.synth.damage import DamageAim, apply_damage_by_kind

CROP = 256
LABEL, SYMBOL = 0, 1  # box kinds in a pack: (x0, y0, x1, y1, kind) in the drawing's pixels


# ----------------------------------------------------------------------------------------------- drawings
def ladder_drawing(seed: int) -> np.ndarray:
    """A random ladder circuit drawn with schemdraw: a source, series parts on the top rail, shunt parts to a
    bottom rail, junction dots and labels, in a random line width, font size and resolution. Gray uint8."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import schemdraw
    import schemdraw.elements as e

    rng = np.random.default_rng(seed)
    schemdraw.use("matplotlib")
    parts = [
        e.Resistor,
        e.ResistorIEC,
        e.Capacitor,
        e.Capacitor2,
        e.Inductor,
        e.Inductor2,
        e.Diode,
        e.LED,
        e.Zener,
        e.Crystal,
        e.Switch,
        e.Fuse,
        e.Potentiometer,
        e.Battery,
    ]
    d = schemdraw.Drawing(show=False)
    d.config(
        lw=float(rng.uniform(1.0, 3.2)),
        fontsize=float(rng.uniform(9, 16)),
        unit=float(rng.uniform(2.5, 4)),
        font=str(rng.choice(["sans-serif", "serif", "monospace"])),
    )

    def part(i: int) -> e.Element:
        el = parts[int(rng.integers(len(parts)))]()
        return el.label(f"{'RCLDXSQ'[i % 7]}{i}\n{rng.integers(1, 999)}{rng.choice(['', 'k', 'n', 'u', 'm'])}")

    height = float(rng.uniform(2.5, 4.5))
    src = d.add((e.SourceV() if rng.random() < 0.6 else e.SourceSin()).up().length(height).label("V1"))
    top0 = src.end
    n = int(rng.integers(2, 6))
    for i in range(n):
        d.add(part(i).right() if rng.random() < 0.6 else e.Line().right())
        if rng.random() < 0.8 or i == n - 1:
            d.add(e.Dot())
            d.push()
            d.add(part(10 + i).down().toy(top0[1] - height))
            d.add(e.Dot())
            d.pop()
    d.add(e.Line().down().toy(top0[1] - height))
    d.add(e.Line().left().tox(top0[0]))
    if rng.random() < 0.5:
        d.add(e.Ground())
    fig = d.draw(show=False)
    buf = io.BytesIO()
    fig.fig.savefig(buf, format="png", dpi=float(rng.uniform(70, 170)), facecolor="white")
    plt.close(fig.fig)
    return cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_GRAYSCALE)


def glyph_boxes(gray: np.ndarray) -> np.ndarray:
    """Label boxes guessed from ink alone: the ink pieces no larger than a glyph (text, ground bars, dots), which
    wires and symbol bodies, all joined up, never are. (k, 5) float32 rows (x0, y0, x1, y1, LABEL)."""
    ink = (gray < 0.6 * float(np.percentile(gray, 90))).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    limit = max(12, 0.06 * max(gray.shape))
    x, y, w, h, area = (stats[1:, i] for i in range(5))
    keep = (w <= limit) & (h <= limit) & (area >= 4)
    boxes = np.stack([x, y, x + w, y + h, np.full_like(x, LABEL)], 1)[keep]
    return boxes.astype(np.float32).reshape(-1, 5)


def intact_drawing(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An intact gray drawing and its label and symbol boxes ((k, 5) float32, see `LABEL`): three in four from
    the synthetic schematic engine (when it is installed; boxes from its truth), the rest from `ladder_drawing`,
    whose pen and fonts differ (boxes from `glyph_boxes`)."""
    try:
        from vision.synth.render import render_sample
    except ImportError:
        render_sample = None
    if render_sample is None or seed % 4 == 3:
        gray = ladder_drawing(seed)
        return gray, glyph_boxes(gray)
    sample = render_sample(seed)
    image = sample.image
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    rows = [[*lb["bbox"], LABEL] for lb in sample.truth["labels"]]
    rows += [[*c["bbox"], SYMBOL] for c in sample.truth["components"]]
    return gray, np.array(rows, np.float32).reshape(-1, 5)


def encoded_drawing(seed: int) -> tuple[bytes, np.ndarray]:
    """The intact drawing of `seed` as PNG bytes, and its boxes."""
    gray, boxes = intact_drawing(seed)
    ok, png = cv2.imencode(".png", gray, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise RuntimeError(f"could not encode drawing {seed}")
    return png.tobytes(), boxes


def pack(out: Path, count: int, first_seed: int, workers: int = 0) -> None:
    """Render `count` drawings (seeds first_seed…) into one npz: PNG bytes back to back plus offsets, and the
    drawings' boxes back to back plus offsets (`boxes`, `box_offsets`; packs written before them have neither).

    With `workers` > 0 the drawings are rendered by that many processes; the pack is the same either way.
    """
    seeds = range(first_seed, first_seed + count)
    if workers > 0:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            drawn = pool.map(encoded_drawing, seeds, chunksize=8)
    else:
        drawn = [encoded_drawing(seed) for seed in seeds]
    mib = write_pack(out, [png for png, _ in drawn], [b for _, b in drawn])
    print(f"packed {count} drawings, {mib:.1f} MiB, {sum(len(b) for _, b in drawn)} boxes -> {out}")


def write_pack(out: Path, blobs: list[bytes], boxes: list[np.ndarray]) -> float:
    """Write encoded drawings and their (k, 5) box arrays as a pack file; returns the drawings' MiB."""
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        data=np.frombuffer(b"".join(blobs), np.uint8),
        offsets=offsets,
        boxes=np.concatenate(boxes).reshape(-1, 5),
        box_offsets=np.cumsum([0] + [len(b) for b in boxes]).astype(np.int64),
    )
    return float(offsets[-1]) / 2**20


def pack_real_drawings(folder: Path, out: Path) -> None:
    """Pack the training split of a `vision.train_detector.pack_real` folder (real drawings, taken as intact) in the
    format of `pack`: symbol boxes from the annotations, label boxes guessed by `glyph_boxes` (the set marks no
    text). Validation drawings are left out, so they stay a check of the repair on real drawings. Gray levels are
    rounded to 16 (4-bit PNG, a third of the bytes, so the pack travels to a GPU machine; line art loses nothing)."""
    from PIL import Image

    index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    blobs, boxes = [], []
    for entry in index:
        if entry["split"] != "train":
            continue
        gray = cv2.imread(str(folder / entry["file"]), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            continue
        symbols = np.array([[*b[1:5], SYMBOL] for b in entry["boxes"]], np.float32).reshape(-1, 5)
        boxes.append(np.concatenate([symbols, glyph_boxes(gray)]))
        levels = np.round(gray / 17.0).astype(np.uint8)  # 0..15
        png = io.BytesIO()
        image = Image.fromarray(levels, "L").convert("P")
        image.putpalette([v * 17 for v in range(16) for _ in range(3)])
        image.save(png, "PNG", optimize=True, bits=4)
        blobs.append(png.getvalue())
    print(f"packed {len(blobs)} real drawings, {write_pack(out, blobs, boxes):.1f} MiB -> {out}")


class Pack:
    """The drawings of a pack file, decoded on demand."""

    def __init__(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as z:
            self.data, self.offsets = z["data"], z["offsets"]
            self.box_data = z["boxes"] if "boxes" in z.files else None
            self.box_offsets = z["box_offsets"] if "box_offsets" in z.files else None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return cv2.imdecode(self.data[self.offsets[i] : self.offsets[i + 1]], cv2.IMREAD_GRAYSCALE)

    def boxes(self, i: int, gray: np.ndarray | None = None) -> np.ndarray:
        """Drawing `i`'s label and symbol boxes; for a pack without boxes, `glyph_boxes` of the drawing (`gray`,
        when already decoded)."""
        if self.box_data is None or self.box_offsets is None:
            return glyph_boxes(self[i] if gray is None else gray)
        return self.box_data[self.box_offsets[i] : self.box_offsets[i + 1]]


# ---------------------------------------------------------------------------------------------- samples
def random_crop(drawing: np.ndarray, rng: np.random.Generator, size: int) -> tuple[np.ndarray, float, int, int]:
    """A size×size crop at a random scale, preferring crops with some ink; pads with paper when small.

    Returns:
        The crop, the scale, and the crop's top-left corner (y, x) in the scaled drawing.
    """
    scale = rng.uniform(0.6, 1.4)
    img = cv2.resize(drawing, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    h, w = img.shape
    if h < size or w < size:
        img = cv2.copyMakeBorder(img, 0, max(0, size - h), 0, max(0, size - w), cv2.BORDER_CONSTANT, value=255)
        h, w = img.shape
    best, best_at, best_ink = img[:size, :size], (0, 0), -1.0
    for _ in range(4):
        y, x = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
        crop = img[y : y + size, x : x + size]
        ink = float((crop < 128).mean())
        if ink > best_ink:
            best, best_at, best_ink = crop, (y, x), ink
        if ink > 0.02:
            break
    return np.ascontiguousarray(best), scale, *best_at


def aim_map(boxes: np.ndarray, scale: float, y: int, x: int, size: int) -> np.ndarray | None:
    """Where aimed damage goes in a crop (see `DamageAim.where`): label boxes and symbol boxes each get half of
    the aim (all of it when the crop holds only one kind), spread evenly over their area. None without boxes."""
    where = np.zeros((size, size), np.float32)
    for kind in (LABEL, SYMBOL):
        part = np.zeros((size, size), np.float32)
        for x0, y0, x1, y1 in boxes[boxes[:, 4] == kind, :4] * scale - [x, y, x, y]:
            # A pixel of slack: label boxes are tight around the glyphs.
            c0, r0 = max(0, int(np.floor(x0)) - 1), max(0, int(np.floor(y0)) - 1)
            c1, r1 = min(size, int(np.ceil(x1)) + 1), min(size, int(np.ceil(y1)) + 1)
            if c1 > c0 and r1 > r0:
                part[r0:r1, c0:c1] = 1.0
        if part.any():
            where += part / part.sum()
    return where if where.any() else None


def make_example(
    drawing: np.ndarray,
    rng: np.random.Generator,
    size: int = CROP,
    boxes: np.ndarray | None = None,
    aim: float = 0.0,
    page_size: bool = False,
    clean: float = 0.1,
) -> tuple[np.ndarray, ...]:
    """(damaged gray, mask 0/255, intact gray, restore 0/255) from one crop of a drawing; sometimes in colour
    before graying, sometimes left undamaged so the mask net learns to leave clean drawings alone. `restore`
    marks the damaged pixels that fade and gap damage made (the ink under them is still to be given back).

    Args:
        boxes: the drawing's label and symbol boxes (needed for `aim`).
        aim: share of holes and gap cuts placed on the ink in `boxes`.
        page_size: size the damage to the whole (scaled) drawing instead of the crop.
        clean: share of crops left undamaged.
    """
    crop, scale, y, x = random_crop(drawing, rng, size)
    if rng.random() < 0.25:
        ink = rng.uniform(0.0, 0.45, 3)
        paper = 1.0 - rng.uniform(0.0, 0.12, 3)
        t = crop.astype(np.float32)[..., None] / 255.0
        crop = np.clip((ink + (paper - ink) * t) * 255.0, 0, 255).astype(np.uint8)
    restore = np.zeros(crop.shape[:2], np.uint8)
    if rng.random() < clean:
        damaged, mask = crop, np.zeros(crop.shape[:2], np.uint8)
    else:
        where = aim_map(boxes, scale, y, x, size) if aim > 0 and boxes is not None and len(boxes) else None
        steer = DamageAim(where, aim, min(drawing.shape[:2]) * scale if page_size else None)
        damaged, mask, by_kind = apply_damage_by_kind(crop, rng, aim=steer)
        for kind in ("fade", "gap"):
            if kind in by_kind:
                restore[by_kind[kind]] = 255
    if crop.ndim == 3:
        crop, damaged = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), cv2.cvtColor(damaged, cv2.COLOR_BGR2GRAY)
    return damaged, mask, crop, restore


class DamagedCrops(Dataset):
    """An endless numbered stream of damaged crops: crop `k` is made from seed (seed, k) alone, so any worker of
    any process makes the same crop `k`. Crops `per_drawing * j` to `per_drawing * (j + 1) - 1` share one drawing
    (decoded once by the worker that makes them in a row). `aim`, `page_size` and `clean` are `make_example`'s;
    with a second pack (`real_path`, from `pack_real_drawings`) a `real_share` of the drawings come from it."""

    def __init__(
        self,
        pack_path: Path,
        seed: int,
        size: int = CROP,
        per_drawing: int = 4,
        aim: float = 0.0,
        page_size: bool = False,
        clean: float = 0.1,
        real_path: Path | None = None,
        real_share: float = 0.0,
    ) -> None:
        self.pack_path, self.seed, self.size, self.per_drawing = pack_path, seed, size, per_drawing
        self.aim, self.page_size, self.clean = aim, page_size, clean
        self.real_path, self.real_share = real_path, real_share if real_path is not None else 0.0
        self.packs: list[Pack] | None = None  # opened in the worker that first needs them
        self.last: tuple[int, np.ndarray, np.ndarray | None] | None = None

    def __getitem__(self, k: int) -> tuple[torch.Tensor, ...]:
        """Crop `k`: damaged, mask, intact and restore (see `make_example`), each uint8 (1, size, size)."""
        if self.packs is None:
            cv2.setNumThreads(1)  # workers already run in parallel; OpenCV's own pool would oversubscribe
            self.packs = [Pack(p) for p in (self.pack_path, self.real_path) if p is not None]
        group = k // self.per_drawing
        if self.last is None or self.last[0] != group:
            pick_rng = np.random.default_rng([self.seed, group, 0])
            drawings = self.packs[-1] if pick_rng.random() < self.real_share else self.packs[0]
            pick = int(pick_rng.integers(len(drawings)))
            gray = drawings[pick]
            self.last = (group, gray, drawings.boxes(pick, gray) if self.aim > 0 else None)
        rng = np.random.default_rng([self.seed, k, 1])
        arrays = make_example(self.last[1], rng, self.size, self.last[2], self.aim, self.page_size, self.clean)
        return tuple(torch.from_numpy(a)[None] for a in arrays)


# ----------------------------------------------------------------------------------------------- losses
def sobel(x: torch.Tensor) -> torch.Tensor:
    """Horizontal and vertical Sobel responses of (N, 1, H, W), stacked as 2 channels."""
    k = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device, dtype=x.dtype) / 4
    return F.conv2d(x, torch.stack([k, k.t()])[:, None], padding=1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    inter = (p * target).sum((1, 2, 3))
    return (1 - (2 * inter + 1) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)).mean()


def lovasz_hinge(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Lovász hinge (Berman et al., 2018): a convex surrogate of 1 − IoU of the mask `logits > 0`, per image, mean
    over the batch. Unlike Dice it weighs every pixel by how much flipping it would change the IoU.

    Args:
        logits: (N, 1, H, W) raw scores.
        target: (N, 1, H, W) in {0, 1}.
    """
    logits, target = logits.flatten(1), target.flatten(1)
    errors = 1.0 - logits * (2.0 * target - 1.0)
    errors_sorted, order = torch.sort(errors, dim=1, descending=True)
    gt = torch.gather(target, 1, order)
    # The IoU loss after the k most wrong pixels, and its increments: the gradient of the Lovász extension.
    total = gt.sum(1, keepdim=True)
    jaccard = 1.0 - (total - gt.cumsum(1)) / (total + (1.0 - gt).cumsum(1))
    grad = torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], 1)
    return (F.relu(errors_sorted) * grad).sum(1).mean()


def critic_weights(hole: torch.Tensor, logits_shape: torch.Size, in_hole: bool) -> torch.Tensor:
    """Per-patch weights of the critic's logit map (N, 1, h, w), each set of weights summing to 1: uniform, or (with
    `in_hole`) only the patches that see the hole. Most of a crop is known pixels, identical in real and repaired
    crops; averaged over every patch, the critic's verdict on the few patches that differ is drowned out."""
    if not in_hole:
        return torch.full(logits_shape, 1.0 / logits_shape[-1] / logits_shape[-2], device=hole.device)
    w = F.adaptive_max_pool2d(hole, logits_shape[-2:])
    # A crop with no hole (left undamaged) falls back to every patch.
    w = torch.where(w.sum((2, 3), keepdim=True) > 0, w, torch.ones_like(w))
    return w / w.sum((2, 3), keepdim=True)


def generator_losses(
    pred: torch.Tensor,
    intact: torch.Tensor,
    damaged: torch.Tensor,
    hole: torch.Tensor,
    restore: torch.Tensor | None = None,
    ratio: Ratio = local_ratio,
) -> dict[str, torch.Tensor]:
    """Reconstruction terms: L1 in the hole (ink pixels weighted up) and outside it, an edge term, an ink term,
    and a restore term.

    The ink term is a binary cross-entropy in the hole between "the prediction is ink" (darker than 55 % of the
    crop's paper level, softened over ±5 % of full scale) and the intact drawing's ink, the pixel classes that the
    ink F-measure counts. L1 alone leaves strokes the net is unsure of as light gray, which counts as paper.
    The restore term is the L1 over the intact drawing's ink (in that sense) where `restore` marks fade and gap
    damage inside the hole: the strokes the net tends to erase with the rest of a faded patch.

    Args:
        restore: 1 where fade or gap damage is (N, 1, H, W); None: no restore term (it is zero).
        ratio: divides the hole, edge, ink and restore sums by their pixel counts (`DistContext.ratio` counts
            over all processes).
    """
    ink = F.max_pool2d((intact < 0.6).float(), 3, 1, 1)  # strokes and a pixel around them
    weight = 1.0 + 4.0 * ink
    err = (pred - intact).abs()
    comp = composite(pred, damaged, hole)
    near = F.max_pool2d(hole, 5, 1, 2)
    edge = ratio(((sobel(comp) - sobel(intact)).abs().sum(1, keepdim=True) * near).sum(), near.sum(), 1.0)
    level = 0.55 * torch.quantile(intact.flatten(1), 0.9, dim=1)[:, None, None, None]
    true_ink = (intact < level).float()
    ink_bce = F.binary_cross_entropy_with_logits((level - pred) / 0.05, true_ink, reduction="none")
    keep = true_ink * hole * (restore if restore is not None else torch.zeros_like(hole))
    return {
        "hole": ratio((err * weight * hole).sum(), hole.sum(), 1.0),
        "valid": (err * (1 - hole)).mean(),
        "edge": edge,
        "ink": ratio((ink_bce * hole).sum(), hole.sum(), 1.0),
        "restore": ratio((err * keep).sum(), keep.sum(), 1.0),
    }


# ------------------------------------------------------------------------------------------- checkpoint
def save_checkpoint(
    folder: Path, state: dict[str, object], parts: dict[str, torch.nn.Module | torch.optim.Optimizer]
) -> None:
    """Write models.safetensors (fp32 weights), optim.safetensors (optimizer moments, param groups in the
    metadata) and state.json (counters) into `folder`, each file atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    models: dict[str, torch.Tensor] = {}
    optims: dict[str, torch.Tensor] = {}
    meta: dict[str, str] = {}
    for name, part in parts.items():
        sd = part.state_dict()
        if isinstance(part, torch.optim.Optimizer):
            optims.update({f"{name}.{i}.{k}": v for i, s in sd["state"].items() for k, v in s.items()})
            meta[name] = json.dumps(sd["param_groups"])
        else:
            models.update({f"{name}.{k}": v for k, v in sd.items()})
    for file, tensors, md in (("models", models, {}), ("optim", optims, meta)):
        tmp = folder / f".{file}.safetensors.tmp"
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=md)
    (folder / ".state.json.tmp").write_text(json.dumps(state))
    # The files replace their predecessors only once all three are written: a crash while writing leaves the
    # previous set whole.
    for name in ("models.safetensors", "optim.safetensors", "state.json"):
        os.replace(folder / f".{name}.tmp", folder / name)


def load_weights(
    folder: Path,
    modules: dict[str, torch.nn.Module],
    load: Callable[[torch.nn.Module, dict[str, torch.Tensor]], object] = torch.nn.Module.load_state_dict,
) -> None:
    """Load the given modules' weights from a checkpoint folder's models.safetensors (no optimizer state), each
    with `load` (module, its state dict)."""
    with safe_open(str(folder / "models.safetensors"), framework="pt") as f:
        models = {k: f.get_tensor(k) for k in f.keys()}
    for name, module in modules.items():
        prefix = name + "."
        load(module, {k[len(prefix) :]: v for k, v in models.items() if k.startswith(prefix)})


def warm_start(folder: Path, mask_net: DamageNet, gen: InpaintNet, disc: PatchDiscriminator) -> None:
    """Load starting weights from a checkpoint folder, or from a folder of shipped weights (the critic, which is
    not shipped, then starts fresh).

    Raises:
        FileNotFoundError: the folder holds neither.
    """
    if (folder / "models.safetensors").is_file():
        load_weights(folder, {"mask_net": mask_net, "gen": gen, "disc": disc}, _load_new_refiner)
        return
    shipped = {"damage_net.safetensors": mask_net, "inpaint.safetensors": gen}
    if not all((folder / name).is_file() for name in shipped):
        raise FileNotFoundError(f"no checkpoint or shipped weights to start from in {folder}")
    for name, module in shipped.items():
        with safe_open(str(folder / name), framework="pt") as f:
            _load_new_refiner(module, {k: f.get_tensor(k) for k in f.keys()})


def _load_new_refiner(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load weights into a module, strictly but for one thing: an inpainter given a `Refiner` its weights lack keeps
    the refiner's fresh weights (which leave the output as it was)."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("refiner.") for k in missing):
        raise RuntimeError(f"weights do not fit {type(module).__name__}: missing {missing}, unexpected {unexpected}")


def load_checkpoint(folder: Path, parts: dict[str, torch.nn.Module | torch.optim.Optimizer]) -> dict[str, object]:
    """Restore what `save_checkpoint` wrote into the given modules and optimizers; returns the counters."""
    load_weights(folder, {n: p for n, p in parts.items() if isinstance(p, torch.nn.Module)})
    with safe_open(str(folder / "optim.safetensors"), framework="pt") as f:
        optims = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata() or {}
    for name, part in parts.items():
        if isinstance(part, torch.optim.Optimizer):
            state: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in optims.items():
                owner, idx, k = key.split(".", 2)
                if owner == name:
                    state.setdefault(int(idx), {})[k] = value
            part.load_state_dict({"state": state, "param_groups": json.loads(meta[name])})
    return json.loads((folder / "state.json").read_text())


# --------------------------------------------------------------------------------------------- training
def vae_noise(
    seed: int, step: int, global_batch: int, shape: tuple[int, ...], rows: slice, device: torch.device
) -> torch.Tensor:
    """The inpainter's posterior noise for `rows` of a step's global batch: drawn for the whole batch from
    (seed, step) on `device`, so it does not depend on how the batch is split over processes."""
    gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + step)
    return torch.randn((global_batch, *shape), generator=gen, device=device)[rows]


def train(args: argparse.Namespace, ctx: DistContext | None = None) -> None:
    """Train both nets for `args.minutes` of wall time (or `args.steps`), resuming from `args.ckpt`.

    Args:
        args: the `train` command's options.
        ctx: the processes to train on (default: those torchrun describes, else this one alone).
    """
    with process_group(args.cpu) if ctx is None else nullcontext(ctx) as ctx:
        _train(args, ctx)


def _train(args: argparse.Namespace, ctx: DistContext) -> None:
    local_batch = ctx.local_batch(args.batch)
    device, fmt = ctx.device, ctx.memory_format
    torch.manual_seed(args.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    mask_net = ctx.sync_batchnorm(DamageNet()).to(device).to(memory_format=fmt)
    gen = ctx.sync_batchnorm(InpaintNet(refine=args.refine)).to(device).to(memory_format=fmt)
    disc = PatchDiscriminator().to(device).to(memory_format=fmt)
    opt_m = torch.optim.AdamW(mask_net.parameters(), lr=args.lr, weight_decay=1e-4)
    refiner = [p for n, p in gen.named_parameters() if n.startswith("refiner.")]
    coarse = [p for n, p in gen.named_parameters() if not n.startswith("refiner.")]
    groups = [{"params": coarse, "lr_scale": args.coarse_lr}] + (
        [{"params": refiner, "lr_scale": 1.0}] if refiner else []
    )
    opt_g = torch.optim.AdamW(groups, lr=args.lr, weight_decay=1e-4, betas=(0.5, 0.99))
    opt_d = torch.optim.AdamW(disc.parameters(), lr=args.lr * 0.5, weight_decay=0.0, betas=(0.5, 0.99))
    parts = {"mask_net": mask_net, "gen": gen, "disc": disc, "opt_m": opt_m, "opt_g": opt_g, "opt_d": opt_d}
    ckpt = Path(args.ckpt)
    if ctx.is_main:
        ckpt.mkdir(parents=True, exist_ok=True)
    state: dict[str, object] = {"step": 0, "seconds": 0.0}
    if (ckpt / "state.json").exists():
        state = load_checkpoint(ckpt, parts)
        if ctx.is_main:
            print(f"resumed at step {state['step']} ({float(state['seconds']):.0f} s trained)")
    elif args.init:
        # A warm start: earlier weights, fresh optimizers and a schedule of its own.
        warm_start(Path(args.init), mask_net, gen, disc)
        if ctx.is_main:
            print(f"weights from {args.init}")
    mask_ddp, gen_ddp, disc_ddp = ctx.wrap(mask_net), ctx.wrap(gen), ctx.wrap(disc)
    budget = args.minutes * 60.0
    step, trained = int(state["step"]), float(state["seconds"])
    crops = DamagedCrops(
        Path(args.data),
        args.seed,
        args.crop,
        aim=args.aim,
        page_size=args.page_size,
        clean=args.clean,
        real_path=Path(args.real_data) if args.real_data else None,
        real_share=args.real_share,
    )
    if ctx.is_main:
        print("options " + json.dumps({k: v for k, v in sorted(vars(args).items()) if k != "cmd"}), flush=True)
    loader = DataLoader(
        crops,
        batch_size=local_batch,
        # Crops are numbered from the start of training: a resumed run continues the uninterrupted stream.
        sampler=ShardSampler(args.batch, ctx.rank, ctx.world_size, start=step * args.batch),
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers > 0 else None,
    )
    rows = slice(ctx.rank * local_batch, (ctx.rank + 1) * local_batch)
    latent_shape = (gen.latent, args.crop // STRIDE, args.crop // STRIDE)  # the posterior is at 1/16 resolution
    amp = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    start = time.time()
    last_save = last_log = 0.0
    for damaged, mask, intact, restore in loader:
        elapsed = ctx.agree(time.time() - start)  # rank 0's clock: every rank schedules and stops alike
        progress = min(1.0, (trained + elapsed) / budget) if budget > 0 else step / max(1, args.steps)
        if progress >= 1.0 or (args.steps and step >= args.steps):
            break
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
        for opt, scale in ((opt_m, 1.0), (opt_g, 1.0), (opt_d, 0.5)):
            for g in opt.param_groups:
                g["lr"] = lr * scale * g.get("lr_scale", 1.0)
        to = dict(device=device, non_blocking=True, memory_format=fmt)
        damaged = damaged.to(**to).float() / 255.0
        mask = mask.to(**to).float() / 255.0
        intact = intact.to(**to).float() / 255.0
        restore = restore.to(**to).float() / 255.0
        # The inpainter sees a mask that may be a little larger than the truth, as a predicted one is.
        grow = int(np.random.default_rng(step).integers(0, 3))
        hole = F.max_pool2d(mask, 2 * grow + 1, 1, grow) if grow else mask
        noise = vae_noise(args.seed, step, args.batch, latent_shape, rows, device)
        use_gan = progress >= args.gan_start
        with amp:
            logits = mask_ddp(damaged)
            loss_m = F.binary_cross_entropy_with_logits(logits.float(), mask) + dice_loss(logits.float(), mask)
            if args.lovasz:
                loss_m = loss_m + args.lovasz * lovasz_hinge(logits.float(), mask)
            pred, mu, logvar = gen_ddp(damaged, hole, noise=noise)
            pred = pred.float()
            parts_g = generator_losses(pred, intact, damaged, hole, restore, ctx.ratio)
            kl = kl_divergence(mu.float(), logvar.float())
            loss_g = 6 * parts_g["hole"] + parts_g["valid"] + 2 * parts_g["edge"] + args.ink * parts_g["ink"]
            loss_g = loss_g + args.restore * parts_g["restore"]
            loss_g = loss_g + args.kl * kl
            comp = composite(pred, damaged, hole)
            if use_gan:  # the critic itself, not its DDP wrapper: this pass only trains the generator
                d_gen = disc(comp, hole).float()
                loss_adv = -(d_gen * critic_weights(hole, d_gen.shape, args.gan_in_hole)).sum((1, 2, 3)).mean()
                loss_g = loss_g + args.adv * loss_adv
        opt_m.zero_grad(set_to_none=True)
        opt_g.zero_grad(set_to_none=True)
        (loss_m + loss_g).backward()
        torch.nn.utils.clip_grad_norm_(gen.parameters(), 1.0)
        opt_m.step()
        opt_g.step()
        if use_gan:
            with amp:
                d_real = disc_ddp(intact, hole).float()
                d_fake = disc_ddp(comp.detach(), hole).float()
                w = critic_weights(hole, d_real.shape, args.gan_in_hole)
                loss_d = ((F.relu(1 - d_real) + F.relu(1 + d_fake)) * w).sum((1, 2, 3)).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        step += 1
        if elapsed - last_log >= args.log_every:
            last_log = elapsed
            names = ["mask", "hole", "valid", "edge", "ink", "restore", "kl"] + (["d"] if use_gan else [])
            values = [loss_m, *(parts_g[n] for n in names[1:6]), kl] + ([loss_d] if use_gan else [])
            means = ctx.mean(torch.stack([v.detach().float() for v in values]))  # the global batch's losses
            rec = {"step": step, "sec": round(trained + elapsed, 1), "lr": lr}
            rec.update({n: float(v) for n, v in zip(names, means)})
            if ctx.is_main:
                print(
                    f"step {step} t={rec['sec']:.0f}s lr={lr:.2e} "
                    + " ".join(f"{n}={rec[n]:.4f}" for n in names if n != "kl")
                    + f" kl={rec['kl']:.3f}",
                    flush=True,
                )
                with (ckpt / "train_log.jsonl").open("a", encoding="utf-8") as f:
                    f.write(json.dumps(rec) + "\n")
        if ctx.is_main and elapsed - last_save > args.save_every:
            last_save = elapsed
            save_checkpoint(ckpt, {"step": step, "seconds": trained + time.time() - start}, parts)
    if ctx.is_main:
        save_checkpoint(ckpt, {"step": step, "seconds": trained + time.time() - start}, parts)
        ship(mask_net, gen, Path(args.weights))
        print(f"done: {step} steps in {trained + time.time() - start:.0f} s; weights in {args.weights}")
    ctx.barrier()  # no rank returns before the files are there


def ship(mask_net: DamageNet, gen: InpaintNet, weights: Path) -> None:
    """Write both nets in the shipped format (fp16 safetensors with their architecture) into `weights`."""
    mask_net.cpu().to(memory_format=torch.contiguous_format).save(weights / "damage_net.safetensors")
    gen.cpu().to(memory_format=torch.contiguous_format).save(weights / "inpaint.safetensors")


def export(ckpt: Path, weights: Path) -> None:
    """Ship the nets of a checkpoint folder (e.g. the last one a run saved before it was stopped)."""
    with safe_open(str(ckpt / "models.safetensors"), framework="pt") as f:
        first = "gen.refiner.body.1.conv.weight"  # (2·width, 12, 3, 3)
        refine = f.get_slice(first).get_shape()[0] // 2 if first in f.keys() else 0
    mask_net, gen = DamageNet(), InpaintNet(refine=refine)
    load_weights(ckpt, {"mask_net": mask_net, "gen": gen})
    ship(mask_net, gen, weights)
    step = json.loads((ckpt / "state.json").read_text())["step"]
    print(f"exported step {step} of {ckpt} -> {weights}")


def main(argv: list[str] | None = None) -> None:
    """Command line: `pack` or `train` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m vision.train_inpaint", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="render intact drawings into a pack file")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--count", type=int, default=1500)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="rendering processes (0: render in this one)")
    p.add_argument("--real", type=Path, help="pack this `train_detector pack-real` folder's training split instead")
    x = sub.add_parser("export", help="write a checkpoint's nets in the shipped format")
    x.add_argument("--ckpt", type=Path, required=True)
    x.add_argument("--weights", type=Path, required=True)
    t = sub.add_parser("train", help="train the damage-mask net and the inpainter")
    t.add_argument("--data", required=True)
    t.add_argument("--real-data", help="a pack of real drawings (`pack --real`) to draw `--real-share` of crops from")
    t.add_argument("--real-share", type=float, default=0.25, help="share of drawings taken from --real-data")
    t.add_argument("--ckpt", default="runs/repair")
    t.add_argument("--init", help="checkpoint or shipped-weights folder to start from (ignored when --ckpt resumes)")
    t.add_argument("--weights", default=str(Path(__file__).resolve().parent / "weights"))
    t.add_argument("--minutes", type=float, default=3.5, help="wall-time budget (0: use --steps)")
    t.add_argument("--steps", type=int, default=0)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--crop", type=int, default=CROP, help="training crop side in pixels (a multiple of 32)")
    t.add_argument("--workers", type=int, default=default_workers(1), help="DataLoader workers per process")
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--warmup", type=int, default=200, help="steps of linear learning-rate warm-up")
    t.add_argument("--kl", type=float, default=1e-3)
    t.add_argument(
        "--refine", type=int, default=0, help="channels of the inpainter's pixel-wise refiner (`Refiner`; 0: none)"
    )
    t.add_argument("--coarse-lr", type=float, default=1.0, help="learning-rate scale of the inpainter's coarse net")
    t.add_argument("--lovasz", type=float, default=0.5, help="weight of the Lovász hinge (IoU) term of the mask net")
    t.add_argument("--ink", type=float, default=0.0, help="weight of the inpainter's ink cross-entropy in the hole")
    t.add_argument(
        "--restore", type=float, default=0.0, help="weight of the inpainter's L1 on intact ink under fade/gap damage"
    )
    t.add_argument("--aim", type=float, default=0.0, help="share of holes and gap cuts placed on labels and symbols")
    t.add_argument("--page-size", action="store_true", help="size damage to the whole drawing, as evaluation does")
    t.add_argument("--clean", type=float, default=0.1, help="share of crops left undamaged")
    t.add_argument("--adv", type=float, default=0.02)
    t.add_argument("--gan-start", type=float, default=0.3, help="fraction of training before the GAN term")
    t.add_argument(
        "--gan-in-hole", action="store_true", help="the critic's losses on the patches that see the hole only"
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--log-every", type=float, default=15.0)
    t.add_argument("--save-every", type=float, default=60.0)
    t.add_argument("--cpu", action="store_true", help="train on CPUs (gloo between processes) even with GPUs")
    args = parser.parse_args(argv)
    if args.cmd == "pack":
        if args.real:
            pack_real_drawings(args.real, args.out)
        else:
            pack(args.out, args.count, args.first_seed, args.workers)
        return
    if args.cmd == "export":
        export(args.ckpt, args.weights)
        return
    try:
        train(args)
    except DistributedSetupError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    main()
