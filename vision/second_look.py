"""A second look at the detector's boxes: small CNNs that relabel confident mistakes within a family of classes.

The detector reads a drawing at about 768 px, where a MOSFET's source arrow or a BJT's emitter arrow is a few
pixels long and a small diode looks much like a capacitor. Each classifier here (a `Kind`) looks again at the boxes
of its classes, cut from the full-resolution drawing with some context and scaled to `side` pixels, and scores its
classes. `refine` relabels a detection to another class of its family only when the classifier gives that class at
least `flip_threshold` of the family's probability; detections outside every family are untouched. Shipped kinds:

- `polarity`: NPN/PNP and NMOS/PMOS (two families; the transistor type always stays the detector's);
- `passives`: one family of two-terminal parts, resistor, capacitor, inductor, diode, current and voltage source.

These classes do not change when a symbol is turned or mirrored, so training turns and mirrors every crop, and
inference averages the eight turns and mirrors.

Training data: crops of the circuits-real training split (never its validation split; one image in five of the
training split is held out) and of synthetic drawings from `vision.synth` (clean and scanned), boxes jittered
as the detector's boxes are, classes sampled evenly. Training runs on the CPU; it ends by choosing
`flip_threshold` on the held-out images, read by the shipped detector: the lowest threshold with the most wrong
labels made right less right labels changed (`threshold` does that step alone, for weights trained before a
detector change):

    python -m vision.second_look train --kind polarity --out runs/polarity --minutes 10 --workers 2
    python -m vision.second_look train --kind passives --out runs/passives --minutes 10 --workers 2 --balance 0.75
    python -m vision.second_look threshold --kind passives

Weights load only from safetensors (fp16, config in the metadata); without the files, detection is unchanged.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# apart from the detector's training seeds (< 100 million) and the benchmark's (900 million); a kind's held-out
# synthetic drawings start HELD_SEEDS after its training seeds
HELD_SEEDS = 10_000_000


@dataclass(frozen=True)
class Kind:
    """One second-look classifier: its classes and families, and the synthetic drawings it trains on.

    Attributes:
        name: the weights are `WEIGHTS_DIR / f"{name}.safetensors"`.
        classes: the classifier's outputs.
        families: groups of `classes` a detection may be relabelled within.
        templates: `vision.synth` circuit templates that draw these classes (taken in turn by seed).
        synth_seed: first synthetic training seed.
    """

    name: str
    classes: tuple[str, ...]
    families: tuple[tuple[str, ...], ...]
    templates: tuple[str, ...]
    synth_seed: int

    @property
    def weights(self) -> Path:
        """The shipped weights file (it may not exist)."""
        return WEIGHTS_DIR / f"{self.name}.safetensors"


POLARITY = Kind(
    "polarity",
    ("npn", "pnp", "nmos", "pmos"),
    (("npn", "pnp"), ("nmos", "pmos")),
    ("bjt_amp", "mos_stage", "mirror", "diffpair", "regulator"),  # the templates that draw transistors
    300_000_000,
)
PASSIVES = Kind(
    "passives",
    ("resistor", "capacitor", "inductor", "diode", "isource", "vsource"),
    (("resistor", "capacitor", "inductor", "diode", "isource", "vsource"),),
    # inductors (rlc_tank, simple_loop, mos_stage), current sources (mirror, diffpair) and diodes (rectifier,
    # ladder) are rare elsewhere
    ("rlc_tank", "simple_loop", "rectifier", "mirror", "diffpair", "mos_stage", "ladder", "opamp", "bridge"),
    320_000_000,  # apart from polarity's training and held-out seeds
)
KINDS: dict[str, Kind] = {k.name: k for k in (POLARITY, PASSIVES)}


@dataclass
class SecondLookConfig:
    """Architecture, crop geometry and decision rule; stored in the weights file's metadata.

    Attributes:
        side: crop side in pixels (the box, its margin and padding to a square, resized).
        margin: context added on each side of the box, as a fraction of its longer side.
        channels: conv widths of the four stages (two 3x3 convs each, 2x2 max-pool between stages).
        flip_threshold: the share of its family's probability another class needs to relabel a detection.
        classes: the classifier's outputs (the polarity classes when the metadata lacks them: weights from
            before the families).
        families: groups of `classes` a detection may be relabelled within; a class is in at most one.
    """

    side: int = 64
    margin: float = 0.15
    channels: list[int] = field(default_factory=lambda: [16, 32, 48, 64])
    flip_threshold: float = 0.9
    classes: list[str] = field(default_factory=lambda: list(POLARITY.classes))
    families: list[list[str]] = field(default_factory=lambda: [list(f) for f in POLARITY.families])

    def family(self, cls: str) -> list[str] | None:
        """The family of `cls`, None outside every family."""
        return next((f for f in self.families if cls in f), None)


class HasBox(Protocol):
    """What `refine` needs of a detection (`vision.detect.Detection`)."""

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


class SecondLookNet(nn.Module):
    """Four stages of two 3x3 conv + BN + ReLU, max-pooled between; global average and max pool; linear."""

    def __init__(self, config: SecondLookConfig | None = None) -> None:
        super().__init__()
        self.config = config or SecondLookConfig()
        layers: list[nn.Module] = []
        cin = 1
        for i, ch in enumerate(self.config.channels):
            if i:
                layers.append(nn.MaxPool2d(2))
            for _ in range(2):
                layers += [nn.Conv2d(cin, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True)]
                cin = ch
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * cin, len(self.config.classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes) over `config.classes` for crops (N, 1, side, side)."""
        y = self.features(x)
        return self.head(torch.cat([y.mean((2, 3)), y.amax((2, 3))], 1))


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th (0..7) of the eight turns and mirrors of a batch (N, C, H, W)."""
    x = torch.rot90(x, k % 4, (2, 3))
    return torch.flip(x, (3,)) if k >= 4 else x


@torch.inference_mode()
def predict(model: SecondLookNet, crops: np.ndarray) -> np.ndarray:
    """Class probabilities (N, classes), averaged over the eight turns and mirrors of each crop (N, side, side)."""
    x = torch.from_numpy(np.ascontiguousarray(crops, np.float32))[:, None]
    batch = torch.cat([dihedral(x, k) for k in range(8)])
    p = F.softmax(model(batch).float(), 1).view(8, len(x), -1).mean(0)
    return p.numpy()


def save_model(model: SecondLookNet, path: str | Path) -> None:
    """Write fp16 weights with the config in the safetensors metadata."""
    from safetensors.torch import save_file

    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"config": json.dumps(asdict(model.config))})


def load_model(path: str | Path) -> SecondLookNet:
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
        config = SecondLookConfig(**json.loads((f.metadata() or {})["config"]))
    model = SecondLookNet(config)
    model.load_state_dict({k: v.float() for k, v in load_file(str(p)).items()})
    return model.eval()


@cache
def _shipped(path: Path) -> SecondLookNet | None:
    return load_model(path) if path.is_file() else None


def best_other(config: SecondLookConfig, cls: str, p: np.ndarray) -> tuple[str, float]:
    """The likeliest other class of `cls`'s family and its share of the family's probability.

    Args:
        config: gives the classes and families.
        cls: a class in one of the families.
        p: class probabilities over `config.classes`.
    """
    family = config.family(cls)
    assert family is not None, cls
    idx = [config.classes.index(c) for c in family]
    total = max(p[idx].sum(), 1e-9)
    other = max((c for c in family if c != cls), key=lambda c: p[config.classes.index(c)])
    return other, p[config.classes.index(other)] / total


def relabel(gray: np.ndarray, dets: list[HasBox], model: SecondLookNet) -> list[HasBox]:
    """Relabel, in place, detections of `model`'s families that it reads as another class of the same family.

    A detection takes the likeliest other class of its family when that class has at least `flip_threshold` of
    the family's probability; detections outside every family are untouched.

    Args:
        gray: the uint8 grayscale drawing the boxes are in (paper-normalised, as the detector read it).
        dets: detections with `cls` and `box` in `gray`'s pixels.
        model: the classifier.

    Returns:
        `dets`, with relabelled classes.
    """
    c = model.config
    todo = [d for d in dets if c.family(d.cls) is not None]
    if not todo:
        return dets
    p = predict(model, np.stack([crop(gray, d.box, c.side, c.margin) for d in todo]))
    for d, pi in zip(todo, p):
        other, share = best_other(c, d.cls, pi)
        if share >= c.flip_threshold:
            d.cls = other
    return dets


def refine(gray: np.ndarray, dets: list[HasBox]) -> list[HasBox]:
    """`relabel` with every shipped classifier (`KINDS` whose weights exist); nothing changes without any."""
    for kind in KINDS.values():
        model = _shipped(kind.weights)
        if model is not None:
            relabel(gray, dets, model)
    return dets


# -- training data ----------------------------------------------------------------------------------


def real_crops(root: Path, kind: Kind, config: SecondLookConfig, jitters: int, seed: int) -> dict[str, np.ndarray]:
    """Crops of the circuits-real training split, `jitters` jittered boxes per box of `kind`'s classes.

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
        boxes = [(c, b) for c, *b in ann["boxes"] if c in kind.classes]
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
                ys.append(kind.classes.index(cls))
                held.append(is_held)
    return {"x": np.stack(xs), "y": np.array(ys, np.int64), "held": np.array(held)}


def _held_out(stem: str) -> bool:
    """About one in five training-split images (blocks of 25 ids), for accuracy and the flip threshold."""
    digits = "".join(ch for ch in stem if ch.isdigit()) or "0"
    return (int(digits) // 25) % 5 == 2


def _u8(ink: np.ndarray) -> np.ndarray:
    return np.round(ink * 255).astype(np.uint8)


def synth_crops(seeds: range, kind: Kind, config: SecondLookConfig, jitters: int) -> dict[str, np.ndarray]:
    """Crops of `kind`'s classes in the synthetic drawings `seeds`, two in five through the scan simulator.

    Returns:
        `x` (N, side, side) uint8 ink and `y` class indices.
    """
    from vision.detect import normalize_paper, to_gray
    from vision.synth.render import render_sample
    from vision.synth.scan import scan

    xs, ys = [], []
    for s_seed in seeds:
        rng = np.random.default_rng([s_seed, 7])
        s = render_sample(s_seed, template=kind.templates[s_seed % len(kind.templates)])
        if rng.random() < 0.4:
            s = scan(s, s_seed, float(rng.uniform(0.5, 1.5)))
        norm = normalize_paper(to_gray(s.image))
        for comp in s.truth["components"]:
            if comp["type"] not in kind.classes:
                continue
            for _ in range(jitters):
                xs.append(_u8(crop(norm, jitter_box(comp["bbox"], rng), config.side, config.margin)))
                ys.append(kind.classes.index(comp["type"]))
    side = config.side
    return {"x": np.stack(xs) if xs else np.zeros((0, side, side), np.uint8), "y": np.array(ys, np.int64)}


def synth_crops_parallel(
    seeds: range, kind: Kind, config: SecondLookConfig, jitters: int, workers: int
) -> dict[str, np.ndarray]:
    """`synth_crops` over `workers` processes (chunks of 50 seeds); the same crops in the same order."""
    from concurrent.futures import ProcessPoolExecutor

    chunks = [seeds[i : i + 50] for i in range(0, len(seeds), 50)]
    rest = [[kind] * len(chunks), [config] * len(chunks), [jitters] * len(chunks)]
    if workers <= 1:
        parts = list(map(synth_crops, chunks, *rest))
    else:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(synth_crops, chunks, *rest))
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


def _accuracy(model: SecondLookNet, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy within the true family: the true class beats every other class of its family."""
    c = model.config
    p = np.concatenate([predict(model, x[i : i + 256].astype(np.float32) / 255) for i in range(0, len(x), 256)])
    right = [pi[t] > pi[c.classes.index(best_other(c, c.classes[t], pi)[0])] for pi, t in zip(p, y)]
    return float(np.mean(right))


def held_out_relabels(root: Path, model: SecondLookNet) -> dict[str, np.ndarray]:
    """The shipped detector's boxes of `model`'s families on the held-out training-split images, read by `model`.

    Only boxes matched (IoU >= 0.5) to a truth box of the detection's family count.

    Returns:
        Per matched box: `right` (the detector's class is the truth's), `other_right` (the class `model` would
        relabel it to is the truth's) and `share` (that class's share of the family's probability).
    """
    from vision.detect import _box_iou, detect, load_detector, normalize_paper
    from vision.train_detector import read_real_annotation, real_split

    c = model.config
    detector = load_detector()
    right, other_right, shares = [], [], []
    for js in sorted((root / "images").glob("*.json")):
        if real_split(js.stem) != "train" or not _held_out(js.stem):
            continue
        ann = read_real_annotation(js)
        if not any(c.family(k) is not None for k, *_ in ann["boxes"]):
            continue
        norm = normalize_paper(cv2.imread(str(js.with_suffix(".png")), cv2.IMREAD_GRAYSCALE))
        found = detect(detector, norm, box_threshold=0.35, second_look=False)[0]
        dets = [d for d in found if c.family(d.cls) is not None]
        if not dets:
            continue
        p = predict(model, np.stack([crop(norm, d.box, c.side, c.margin) for d in dets]))
        ious = _box_iou(np.array([d.box for d in dets]), np.array([b for _, *b in ann["boxes"]], dtype=float))
        for d, pi, row in zip(dets, p, ious):
            family = c.family(d.cls)
            truth = [k for (k, *_), o in zip(ann["boxes"], row) if k in family and o >= 0.5]
            if truth:
                other, share = best_other(c, d.cls, pi)
                right.append(truth[0] == d.cls)
                other_right.append(truth[0] == other)
                shares.append(share)
    return {"right": np.array(right, bool), "other_right": np.array(other_right, bool), "share": np.array(shares)}


def choose_threshold(right: np.ndarray, other_right: np.ndarray, share: np.ndarray) -> tuple[float, int]:
    """The lowest flip threshold with the most wrong labels made right less right labels changed, and that gain."""
    best, best_gain = 0.99, -np.inf
    for t in np.round(np.arange(0.5, 0.995, 0.01), 2):
        flipped = share >= t
        gain = int((flipped & other_right).sum()) - int((flipped & right).sum())
        if gain > best_gain:
            best, best_gain = float(t), gain
    return best, int(best_gain)


def set_threshold(path: Path, root: Path) -> dict[str, Any]:
    """Choose the flip threshold on the training split's hold-out (`held_out_relabels`) and store it in `path`."""
    model = load_model(path)
    h = held_out_relabels(root, model)
    model.config.flip_threshold, gain = choose_threshold(h["right"], h["other_right"], h["share"])
    save_model(model, path)
    flipped = h["share"] >= model.config.flip_threshold
    return {
        "held_out_detector_boxes": len(h["right"]),
        "held_out_detector_wrong": int((~h["right"]).sum()),
        "flip_threshold": model.config.flip_threshold,
        "wrong_made_right": int((flipped & h["other_right"]).sum()),
        "right_labels_changed": int((flipped & h["right"]).sum()),
        "gain": gain,
    }


def _load_crops(kind: Kind, config: SecondLookConfig, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """Real and synthetic crops (training and held out), cached in `args.out`."""
    out = Path(args.out)
    data: dict[str, np.ndarray] = {}
    real_cache, synth_cache = out / "real_crops.npz", out / "synth_crops.npz"
    if real_cache.is_file() and not args.rebuild:
        data.update(np.load(real_cache))
    else:
        real = real_crops(Path(args.real), kind, config, args.real_jitters, args.seed)
        part = {"real_x": real["x"], "real_y": real["y"], "real_held": real["held"]}
        np.savez_compressed(real_cache, **part)
        data.update(part)
    if synth_cache.is_file() and not args.rebuild:
        data.update(np.load(synth_cache))
    else:
        first = kind.synth_seed
        syn = synth_crops_parallel(range(first, first + args.synth), kind, config, args.synth_jitters, args.workers)
        held_seeds = range(first + HELD_SEEDS, first + HELD_SEEDS + args.synth_held)
        syn_held = synth_crops_parallel(held_seeds, kind, config, 1, args.workers)
        part = {"syn_x": syn["x"], "syn_y": syn["y"], "synh_x": syn_held["x"], "synh_y": syn_held["y"]}
        np.savez_compressed(synth_cache, **part)
        data.update(part)
    return data


def _sample_weights(real_y: np.ndarray, syn_y: np.ndarray, n_classes: int, balance: float) -> np.ndarray:
    """Sampling weight per training crop: real crops twice a synthetic one (they are fewer and are the drawings
    the reader meets), times count(class) ** -balance (0: as they come, 1: every class equally often)."""
    w = np.concatenate([np.full(len(real_y), 2.0), np.ones(len(syn_y))])
    y = np.concatenate([real_y, syn_y])
    mass = np.bincount(y, weights=w, minlength=n_classes)
    return w * np.maximum(mass[y], 1e-9) ** -balance


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Build the crops, train for `args.minutes` on the CPU, choose the flip threshold, write the weights."""
    kind = KINDS[args.kind]
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    config = SecondLookConfig(
        side=args.side,
        channels=[int(c) for c in args.channels.split(",")],
        classes=list(kind.classes),
        families=[list(f) for f in kind.families],
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = _load_crops(kind, config, args)
    print(f"crops ready in {time.time() - t0:.0f} s", flush=True)
    held = data["real_held"]
    x = np.concatenate([data["real_x"][~held], data["syn_x"]])
    y = np.concatenate([data["real_y"][~held], data["syn_y"]])
    w = _sample_weights(data["real_y"][~held], data["syn_y"], len(kind.classes), args.balance)
    print(
        f"train crops: {(~held).sum()} real, {len(data['syn_y'])} synthetic; held out: {held.sum()} real, "
        f"{len(data['synh_y'])} synthetic; per class real {np.bincount(data['real_y'], minlength=len(kind.classes))}"
        f" synthetic {np.bincount(data['syn_y'], minlength=len(kind.classes))}",
        flush=True,
    )
    dev = torch.device(args.device)
    model = SecondLookNet(config).to(dev)
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
    weights = out / f"{kind.name}.safetensors"
    save_model(model, weights)
    report = {
        "steps": step,
        "held_out_real_accuracy": round(_accuracy(model, data["real_x"][held], data["real_y"][held]), 4),
        "held_out_real_crops": int(held.sum()),
        "held_out_synthetic_accuracy": round(_accuracy(model, data["synh_x"], data["synh_y"]), 4),
        "held_out_synthetic_crops": len(data["synh_y"]),
        "parameters": sum(p.numel() for p in model.parameters()),
        **set_threshold(weights, Path(args.real)),
    }
    (out / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(json.dumps(report), flush=True)
    return report


def main(argv: list[str] | None = None) -> None:
    """Command line: `train`, `threshold`."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="build crops and train on the CPU")
    t.add_argument("--kind", choices=sorted(KINDS), default="polarity")
    t.add_argument("--real", default="../shared/data/circuits-real", help="circuits-real folder (training split)")
    t.add_argument("--out", help="run folder (runs/KIND when not given)")
    t.add_argument("--minutes", type=float, default=10.0)
    t.add_argument("--synth", type=int, default=1500, help="synthetic drawings for training")
    t.add_argument("--synth-held", type=int, default=150, help="synthetic drawings held out")
    t.add_argument("--real-jitters", type=int, default=4, help="jittered boxes per real box")
    t.add_argument("--synth-jitters", type=int, default=2, help="jittered boxes per synthetic box")
    t.add_argument("--balance", type=float, default=0.0, help="sample crops by count(class) ** -balance")
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
    th.add_argument("--kind", choices=sorted(KINDS), default="polarity")
    th.add_argument("--weights", help="weights file (the kind's shipped weights when not given)")
    th.add_argument("--real", default="../shared/data/circuits-real")
    args = ap.parse_args(argv)
    if args.cmd == "train":
        args.out = args.out or f"runs/{args.kind}"
        train(args)
    else:
        print(json.dumps(set_threshold(Path(args.weights or KINDS[args.kind].weights), Path(args.real))))


if __name__ == "__main__":
    main()
