"""Transistor polarity: a second look at the detector's NPN/PNP and NMOS/PMOS boxes.

The detector reads a drawing at about 768 px, where a MOSFET's source arrow or a BJT's emitter arrow is a few
pixels long, and swaps polarities more often than it misses symbols. This small CNN looks again at each
transistor box, cut from the full-resolution drawing with some context and scaled to `side` pixels, and scores
the four transistor classes. `refine_polarity` flips a detection to the other polarity of its family (NPN<->PNP,
NMOS<->PMOS) only when the classifier gives that polarity at least `flip_threshold`; the family always stays the
detector's. Polarity does not change when a symbol is turned or mirrored, so training turns and mirrors every
crop, and inference averages the eight turns and mirrors.

Training data: crops of the circuits-real training split (never its validation split; one image in five of the
training split is held out) and of synthetic drawings from `vision.synth` (clean and scanned), boxes jittered
as the detector's boxes are. Training runs on the CPU; it ends by choosing `flip_threshold` on the held-out
images, read by the shipped detector: the lowest threshold with the most swaps fixed less right labels flipped
(`threshold` does that step alone, for weights trained before a detector change):

    python -m vision.polarity train --real ../shared/data/circuits-real --out runs/polarity --minutes 10 --workers 2
    python -m vision.polarity threshold --weights vision/weights/polarity.safetensors

Weights load only from safetensors (fp16, config in the metadata); without the file, detection is unchanged.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS = Path(__file__).resolve().parent / "weights" / "polarity.safetensors"
CLASSES: tuple[str, ...] = ("npn", "pnp", "nmos", "pmos")
OTHER = {"npn": "pnp", "pnp": "npn", "nmos": "pmos", "pmos": "nmos"}
# circuit families that draw transistors; the others rarely do
TRANSISTOR_TEMPLATES = ("bjt_amp", "mos_stage", "mirror", "diffpair", "regulator")
SYNTH_SEED = 300_000_000  # apart from the detector's training seeds (< 100 million) and the benchmark's (900 million)


@dataclass
class PolarityConfig:
    """Architecture, crop geometry and decision rule; stored in the weights file's metadata.

    Attributes:
        side: crop side in pixels (the box, its margin and padding to a square, resized).
        margin: context added on each side of the box, as a fraction of its longer side.
        channels: conv widths of the four stages (two 3x3 convs each, 2x2 max-pool between stages).
        flip_threshold: the probability of the other polarity above which a detection is flipped.
    """

    side: int = 64
    margin: float = 0.15
    channels: list[int] = field(default_factory=lambda: [16, 32, 48, 64])
    flip_threshold: float = 0.9


class HasBox(Protocol):
    """What `refine_polarity` needs of a detection (`vision.detect.Detection`)."""

    cls: str
    box: tuple[float, float, float, float]


# -- crops ------------------------------------------------------------------------------------------


def crop(gray: np.ndarray, box: tuple[float, ...], side: int, margin: float) -> np.ndarray:
    """The box with `margin` context, padded to a centred square with paper, as ink in [0, 1].

    Args:
        gray: uint8 grayscale drawing (dark ink on light paper).
        box: x0, y0, x1, y1 in the drawing's pixels.
        side: output side in pixels.
        margin: context on each side as a fraction of the box's longer side.

    Returns:
        float32 (side, side), ink 1 and paper 0, scaled so that the darkest ink is about 1.
    """
    x0, y0, x1, y1 = box
    n = max(1, int(round(max(x1 - x0, y1 - y0, 1.0) * (1 + 2 * margin))))
    left, top = int(round(0.5 * (x0 + x1 - n))), int(round(0.5 * (y0 + y1 - n)))
    # cut the square first (paper outside the drawing), so that the cost does not grow with the drawing
    h, w = gray.shape
    patch = np.full((n, n), 255, np.uint8)
    sx0, sy0, sx1, sy1 = max(0, left), max(0, top), min(w, left + n), min(h, top + n)
    if sx1 > sx0 and sy1 > sy0:
        patch[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = gray[sy0:sy1, sx0:sx1]
    out = cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA if n > side else cv2.INTER_LINEAR)
    ink = 1.0 - out.astype(np.float32) / 255.0
    peak = float(np.percentile(ink, 99.5))
    return np.clip(ink / max(peak, 0.25), 0.0, 1.0)


def jitter_box(box: tuple[float, ...], rng: np.random.Generator, amount: float = 0.12) -> tuple[float, ...]:
    """A box moved and resized as the detector's boxes differ from the truth (up to about `amount`)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    dx0, dy0, dx1, dy1 = np.clip(rng.normal(0, amount / 2, 4), -amount, amount)
    return (x0 + dx0 * w, y0 + dy0 * h, x1 + dx1 * w, y1 + dy1 * h)


# -- model ------------------------------------------------------------------------------------------


class PolarityNet(nn.Module):
    """Four stages of two 3x3 conv + BN + ReLU, max-pooled between; global average and max pool; linear."""

    def __init__(self, config: PolarityConfig | None = None) -> None:
        super().__init__()
        self.config = config or PolarityConfig()
        layers: list[nn.Module] = []
        cin = 1
        for i, ch in enumerate(self.config.channels):
            if i:
                layers.append(nn.MaxPool2d(2))
            for _ in range(2):
                layers += [nn.Conv2d(cin, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True)]
                cin = ch
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * cin, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, 4) over `CLASSES` for crops (N, 1, side, side)."""
        y = self.features(x)
        return self.head(torch.cat([y.mean((2, 3)), y.amax((2, 3))], 1))


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th (0..7) of the eight turns and mirrors of a batch (N, C, H, W)."""
    x = torch.rot90(x, k % 4, (2, 3))
    return torch.flip(x, (3,)) if k >= 4 else x


@torch.inference_mode()
def predict(model: PolarityNet, crops: np.ndarray) -> np.ndarray:
    """Class probabilities (N, 4), averaged over the eight turns and mirrors of each crop (N, side, side)."""
    x = torch.from_numpy(np.ascontiguousarray(crops, np.float32))[:, None]
    batch = torch.cat([dihedral(x, k) for k in range(8)])
    p = F.softmax(model(batch).float(), 1).view(8, len(x), -1).mean(0)
    return p.numpy()


def save_polarity(model: PolarityNet, path: str | Path) -> None:
    """Write fp16 weights with the config in the safetensors metadata."""
    from safetensors.torch import save_file

    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"config": json.dumps(asdict(model.config))})


def load_polarity(path: str | Path = WEIGHTS) -> PolarityNet:
    """The classifier from a safetensors file (config in its metadata), in eval mode on the CPU.

    Raises:
        FileNotFoundError: no such file.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(p)
    with safe_open(str(p), framework="pt") as f:
        config = PolarityConfig(**json.loads((f.metadata() or {})["config"]))
    model = PolarityNet(config)
    model.load_state_dict({k: v.float() for k, v in load_file(str(p)).items()})
    return model.eval()


@lru_cache(maxsize=1)
def _shipped() -> PolarityNet | None:
    return load_polarity() if WEIGHTS.is_file() else None


def refine_polarity(gray: np.ndarray, dets: list[HasBox], model: PolarityNet | None = None) -> list[HasBox]:
    """Flip confident polarity mistakes in place (NPN<->PNP, NMOS<->PMOS); other detections are untouched.

    Args:
        gray: the uint8 grayscale drawing the boxes are in (paper-normalised, as the detector read it).
        dets: detections with `cls` and `box` in `gray`'s pixels.
        model: the classifier; the shipped weights when None (and nothing changes if there are none).

    Returns:
        `dets`, with flipped classes.
    """
    model = model or _shipped()
    todo = [d for d in dets if d.cls in OTHER]
    if model is None or not todo:
        return dets
    c = model.config
    p = predict(model, np.stack([crop(gray, d.box, c.side, c.margin) for d in todo]))
    for d, pi in zip(todo, p):
        mine, other = pi[CLASSES.index(d.cls)], pi[CLASSES.index(OTHER[d.cls])]
        if other / max(mine + other, 1e-9) >= c.flip_threshold:
            d.cls = OTHER[d.cls]
    return dets


# -- training data ----------------------------------------------------------------------------------


def real_crops(root: Path, config: PolarityConfig, jitters: int, seed: int) -> dict[str, np.ndarray]:
    """Crops of the circuits-real training split, `jitters` jittered boxes per transistor.

    Returns:
        `x` (N, side, side) uint8 ink, `y` class indices, `held` (one image in five of the split, by id).
    """
    from vision.detect import normalize_paper
    from vision.train_detector import read_real_annotation, real_split

    rng = np.random.default_rng(seed)
    xs, ys, held = [], [], []
    for js in sorted((root / "images").glob("*.json")):
        if real_split(js.stem) != "train":  # the validation split is never read here
            continue
        ann = read_real_annotation(js)
        boxes = [(c, b) for c, *b in ann["boxes"] if c in OTHER]
        if not boxes:
            continue
        img = cv2.imread(str(js.with_suffix(".png")), cv2.IMREAD_GRAYSCALE)
        if img is None:
            continue
        norm = normalize_paper(img)
        is_held = _held_out(js.stem)
        for cls, b in boxes:
            for j in range(1 if is_held else jitters):
                xs.append(_u8(crop(norm, jitter_box(b, rng) if j or is_held else b, config.side, config.margin)))
                ys.append(CLASSES.index(cls))
                held.append(is_held)
    return {"x": np.stack(xs), "y": np.array(ys, np.int64), "held": np.array(held)}


def _held_out(stem: str) -> bool:
    """About one in five training-split images (blocks of 25 ids), for accuracy and the flip threshold."""
    digits = "".join(ch for ch in stem if ch.isdigit()) or "0"
    return (int(digits) // 25) % 5 == 2


def _u8(ink: np.ndarray) -> np.ndarray:
    return np.round(ink * 255).astype(np.uint8)


def synth_crops(seeds: range, config: PolarityConfig, jitters: int) -> dict[str, np.ndarray]:
    """Crops of transistors in the synthetic drawings `seeds`, two in five through the scan simulator.

    Returns:
        `x` (N, side, side) uint8 ink and `y` class indices.
    """
    from vision.detect import normalize_paper, to_gray
    from vision.synth.render import render_sample
    from vision.synth.scan import scan

    xs, ys = [], []
    for s_seed in seeds:
        rng = np.random.default_rng([s_seed, 7])
        s = render_sample(s_seed, template=TRANSISTOR_TEMPLATES[s_seed % len(TRANSISTOR_TEMPLATES)])
        if rng.random() < 0.4:
            s = scan(s, s_seed, float(rng.uniform(0.5, 1.5)))
        norm = normalize_paper(to_gray(s.image))
        for comp in s.truth["components"]:
            if comp["type"] not in OTHER:
                continue
            for _ in range(jitters):
                xs.append(_u8(crop(norm, jitter_box(comp["bbox"], rng), config.side, config.margin)))
                ys.append(CLASSES.index(comp["type"]))
    side = config.side
    return {"x": np.stack(xs) if xs else np.zeros((0, side, side), np.uint8), "y": np.array(ys, np.int64)}


def synth_crops_parallel(seeds: range, config: PolarityConfig, jitters: int, workers: int) -> dict[str, np.ndarray]:
    """`synth_crops` over `workers` processes (chunks of 50 seeds); the same crops in the same order."""
    from concurrent.futures import ProcessPoolExecutor

    chunks = [seeds[i : i + 50] for i in range(0, len(seeds), 50)]
    if workers <= 1:
        parts = [synth_crops(c, config, jitters) for c in chunks]
    else:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(synth_crops, chunks, [config] * len(chunks), [jitters] * len(chunks)))
    return {k: np.concatenate([p[k] for p in parts]) for k in ("x", "y")}


# -- training ---------------------------------------------------------------------------------------


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random turn/mirror per batch quarter, ink contrast and gamma, a little noise (random draws on the CPU)."""
    n = len(x)
    turns = torch.randint(0, 8, (4,), generator=gen).tolist()
    x = torch.cat([dihedral(chunk, k) for chunk, k in zip(x.chunk(4), turns)])
    gain = torch.empty(n, 1, 1, 1).uniform_(0.6, 1.0, generator=gen).to(x.device)
    gamma = torch.empty(n, 1, 1, 1).uniform_(0.7, 1.4, generator=gen).to(x.device)
    noise = 0.03 * torch.randn(x.shape, generator=gen).to(x.device)
    return (x.clamp(0, 1) ** gamma * gain + noise).clamp(0, 1)


def _accuracy(model: PolarityNet, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Polarity accuracy within the true family, and P(true polarity) per crop."""
    p = np.concatenate([predict(model, x[i : i + 256].astype(np.float32) / 255) for i in range(0, len(x), 256)])
    other = np.array([CLASSES.index(OTHER[CLASSES[t]]) for t in y])
    p_true = p[np.arange(len(y)), y] / np.maximum(p[np.arange(len(y)), y] + p[np.arange(len(y)), other], 1e-9)
    return float((p_true > 0.5).mean()), p_true


def held_out_flips(root: Path, model: PolarityNet) -> tuple[np.ndarray, np.ndarray]:
    """The shipped detector's transistor boxes on the held-out training-split images, matched to the truth.

    Returns:
        Whether the detector swapped the polarity, and the classifier's P(other polarity), per matched box.
    """
    from vision.detect import _box_iou, detect, load_detector, normalize_paper
    from vision.train_detector import read_real_annotation, real_split

    detector = load_detector()
    swapped, p_other = [], []
    for js in sorted((root / "images").glob("*.json")):
        if real_split(js.stem) != "train" or not _held_out(js.stem):
            continue
        ann = read_real_annotation(js)
        if not any(c in OTHER for c, *_ in ann["boxes"]):
            continue
        norm = normalize_paper(cv2.imread(str(js.with_suffix(".png")), cv2.IMREAD_GRAYSCALE))
        dets = [d for d in detect(detector, norm, box_threshold=0.35, polarity=False)[0] if d.cls in OTHER]
        if not dets:
            continue
        p = predict(model, np.stack([crop(norm, d.box, model.config.side, model.config.margin) for d in dets]))
        ious = _box_iou(np.array([d.box for d in dets]), np.array([b for _, *b in ann["boxes"]], dtype=float))
        for d, pi, row in zip(dets, p, ious):
            truth = [c for (c, *_), o in zip(ann["boxes"], row) if c in (d.cls, OTHER[d.cls]) and o >= 0.5]
            if truth:
                mine, other = pi[CLASSES.index(d.cls)], pi[CLASSES.index(OTHER[d.cls])]
                swapped.append(truth[0] != d.cls)
                p_other.append(other / max(mine + other, 1e-9))
    return np.array(swapped), np.array(p_other)


def choose_threshold(swapped: np.ndarray, p_other: np.ndarray) -> float:
    """The lowest flip threshold with the most swaps fixed less correct labels flipped."""
    best, best_gain = 0.99, -np.inf
    for t in np.round(np.arange(0.5, 0.995, 0.01), 2):
        flipped = p_other >= t
        gain = int((flipped & swapped).sum()) - int((flipped & ~swapped).sum())
        if gain > best_gain:
            best, best_gain = float(t), gain
    return best


def set_threshold(path: Path, root: Path) -> dict[str, Any]:
    """Choose the flip threshold on the training split's hold-out (`held_out_flips`) and store it in `path`."""
    model = load_polarity(path)
    swapped, p_other = held_out_flips(root, model)
    model.config.flip_threshold = choose_threshold(swapped, p_other)
    save_polarity(model, path)
    t = model.config.flip_threshold
    return {
        "held_out_detector_boxes": len(swapped),
        "held_out_detector_swaps": int(swapped.sum()),
        "flip_threshold": t,
        "swaps_fixed": int(((p_other >= t) & swapped).sum()),
        "right_labels_flipped": int(((p_other >= t) & ~swapped).sum()),
    }


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Build the crops, train for `args.minutes` on the CPU, choose the flip threshold, write the weights."""
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    config = PolarityConfig(side=args.side, channels=[int(c) for c in args.channels.split(",")])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data: dict[str, np.ndarray] = {}
    real_cache, synth_cache = out / "real_crops.npz", out / "synth_crops.npz"
    if real_cache.is_file() and not args.rebuild:
        data.update(np.load(real_cache))
    else:
        real = real_crops(Path(args.real), config, args.real_jitters, args.seed)
        part = {"real_x": real["x"], "real_y": real["y"], "real_held": real["held"]}
        np.savez_compressed(real_cache, **part)
        data.update(part)
    if synth_cache.is_file() and not args.rebuild:
        data.update(np.load(synth_cache))
    else:
        syn = synth_crops_parallel(range(SYNTH_SEED, SYNTH_SEED + args.synth), config, args.synth_jitters, args.workers)
        held_seeds = range(SYNTH_SEED + 10_000_000, SYNTH_SEED + 10_000_000 + args.synth_held)
        syn_held = synth_crops_parallel(held_seeds, config, 1, args.workers)
        part = {"syn_x": syn["x"], "syn_y": syn["y"], "synh_x": syn_held["x"], "synh_y": syn_held["y"]}
        np.savez_compressed(synth_cache, **part)
        data.update(part)
    print(f"crops ready in {time.time() - t0:.0f} s", flush=True)
    held = data["real_held"]
    x = np.concatenate([data["real_x"][~held], data["syn_x"]])
    y = np.concatenate([data["real_y"][~held], data["syn_y"]])
    # real crops count twice: they are fewer and are the drawings the reader meets
    w = np.concatenate([np.full((~held).sum(), 2.0), np.ones(len(data["syn_y"]))])
    print(
        f"train crops: {(~held).sum()} real, {len(data['syn_y'])} synthetic; held out: {held.sum()} real, "
        f"{len(data['synh_y'])} synthetic",
        flush=True,
    )
    dev = torch.device(args.device)
    model = PolarityNet(config).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(args.seed)
    xt, yt = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
    sampler = torch.distributions.Categorical(torch.from_numpy(w / w.sum()))
    t0, step = time.time(), 0
    budget = args.minutes * 60
    while (elapsed := time.time() - t0) < budget:
        lr = args.lr * 0.5 * (1 + np.cos(np.pi * min(1.0, elapsed / budget)))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = sampler.sample((args.batch,)).to(dev)
        xb = _augment(xt[idx].float()[:, None] / 255, gen)
        loss = F.cross_entropy(model(xb), yt[idx], label_smoothing=0.05)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            print(f"step {step} {elapsed:.0f}s loss {loss.item():.3f} lr {lr:.2e}", flush=True)
    model = model.cpu().eval()
    acc_real, _ = _accuracy(model, data["real_x"][held], data["real_y"][held])
    acc_syn, _ = _accuracy(model, data["synh_x"], data["synh_y"])
    save_polarity(model, out / "polarity.safetensors")
    report = {
        "steps": step,
        "held_out_real_accuracy": round(acc_real, 4),
        "held_out_real_crops": int(held.sum()),
        "held_out_synthetic_accuracy": round(acc_syn, 4),
        "held_out_synthetic_crops": len(data["synh_y"]),
        "parameters": sum(p.numel() for p in model.parameters()),
        **set_threshold(out / "polarity.safetensors", Path(args.real)),
    }
    (out / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(json.dumps(report), flush=True)
    return report


def main(argv: list[str] | None = None) -> None:
    """Command line: `train`, `threshold`."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="build crops and train on the CPU")
    t.add_argument("--real", default="../shared/data/circuits-real", help="circuits-real folder (training split)")
    t.add_argument("--out", default="runs/polarity")
    t.add_argument("--minutes", type=float, default=10.0)
    t.add_argument("--synth", type=int, default=1500, help="synthetic drawings for training")
    t.add_argument("--synth-held", type=int, default=150, help="synthetic drawings held out")
    t.add_argument("--real-jitters", type=int, default=4, help="jittered boxes per real transistor")
    t.add_argument("--synth-jitters", type=int, default=2, help="jittered boxes per synthetic transistor")
    t.add_argument("--side", type=int, default=64)
    t.add_argument("--channels", default="16,32,48,64", help="conv widths of the four stages")
    t.add_argument("--batch", type=int, default=96)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--workers", type=int, default=1, help="processes rendering synthetic drawings")
    t.add_argument("--device", default="cpu")
    t.add_argument("--rebuild", action="store_true", help="rebuild the crop cache")
    th = sub.add_parser("threshold", help="choose the flip threshold on the training split's hold-out")
    th.add_argument("--weights", default=str(WEIGHTS))
    th.add_argument("--real", default="../shared/data/circuits-real")
    args = ap.parse_args(argv)
    if args.cmd == "train":
        train(args)
    else:
        print(json.dumps(set_threshold(Path(args.weights), Path(args.real))))


if __name__ == "__main__":
    main()
