"""Train the glyph restorer (`vision.glyph.GlyphNet`) on damaged text labels of synthetic drawings.

    python -m vision.train_glyph --minutes 8 --ckpt runs/glyph --workers 15       # on the GPU machine
    python -m vision.train_glyph --preset debug --steps 20 --batch 8 --workers 0  # a smoke run on the CPU

Examples are made on the fly, none repeats: a DataLoader worker renders a drawing with the synthetic engine
(`render_sample`, seeds from `--first-seed`), and for every label cuts the strip `strip_for` would read around
its true box (at a random scale and offset, as a detector's box would sit), then damages the strip twice with
the damage simulator, holes and gap cuts aimed at the glyphs, sized to the whole drawing as the evaluation's
damage is. Strips whose glyphs the damage missed are mostly dropped (`--keep-clean` keeps that share). The net
sees the true mask grown by 0-2 pixels (a predicted mask is a little larger), or with `--spoil` on that share of
strips a mask spoilt the ways a predicted one is (`predicted_like`: pieces missed, the rest shrunk or grown), and
with `--net-hints` on that share the shipped damage net's own mask of the strip (`net_hint`), with `--partial` on
that share the pieces only partly found (`partly_found`: the damage net at a quarter of the resolution misses the
part of a cut that took a stroke away cleanly), and with `--alarms` on that share blots on sound ink added to it
(`false_alarms`: a damage net that takes a decimal point for a speck). With `--finder-masks` on that share the net
is then given the shipped text-damage finder's verdict from that mask instead (`finder_masks`), which is the mask
`pipelines.repair.repair_gray` gives it with a predicted mask: it does not trace the erased strokes the way the
simulator's exact mask does. The loss is L1 over the strip, plus L1 and a Sobel-edge L1 inside the mask where the
intact ink weighs three times the paper (ink is the minority that OCR reads). With `--adv` a PatchGAN critic with
spectral norm (`vision.inpaint.PatchDiscriminator`, hinge loss) judges the patches that see the hole, the net's
output inside the mask and the intact strip outside it: L1 alone draws the mean of the characters a wholly erased
glyph might have been, a gray smudge (or bare paper) that OCR reads as a wrong character or none; the critic asks
for a character. It trains from the first step, the net takes its term after `--gan-start` of the run.

`--task symbols` trains the symbol restorer (`vision.glyph.redraw` with `symbol_window`) the same way on
`SYMBOL_SIDE`-square windows round the drawings' component symbols (`symbol_windows`), holes and cuts aimed at the
symbol.

`--task damage` trains the text-damage finder instead (`GlyphNet` with `output="damage"`, used by
`vision.glyph.find_text_damage`): the same strips and given masks, and the net learns the true mask from them
(binary cross-entropy plus Dice). `--init` then takes the glyph restorer's weights as its start (a fresh head).

The checkpoint (safetensors, `vision.train_inpaint.save_checkpoint`) is written every `--save-every` seconds;
running again with the same `--ckpt` resumes. The shipped weights (int8 kernels, see `GlyphNet.save`) go to
`--weights`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from vision.damage_net import STRIDE, DamageNet, damage_mask
from vision.glyph import (
    FINDER_WEIGHTS,
    LINE_HEIGHT,
    PRESETS,
    SYMBOL_SIDE,
    SYMBOL_WEIGHTS,
    WEIGHTS,
    GlyphNet,
    strip_for,
)
from vision.inpaint import PatchDiscriminator
from vision.synth.damage import DamageAim, apply_damage_by_kind
from vision.train_inpaint import critic_weights, load_checkpoint, save_checkpoint, sobel

STRIP_WIDTH = 128  # training strips are this wide (labels up to ~100 px fit with context)
FIRST_SEED = 600_000_000  # training drawings; the evaluations use seeds 900,000+ and 900,000,000+


@dataclass(frozen=True)
class Cut:
    """A training crop of a drawing: crop pixel = drawing pixel × scale − origin, `size` (width, height) pixels."""

    scale: float
    ox: float
    oy: float
    size: tuple[int, int]


def _drawing(seed: int, salt: int) -> tuple[np.random.Generator, Any, float, float]:
    """A synthetic drawing to cut training crops from: the crops' random stream (`salt` tells the kinds of crop
    apart), the rendered sample, its shorter side (the page damage is sized to) and its paper level."""
    from vision.synth.render import render_sample

    rng = np.random.default_rng([seed, salt])
    sample = render_sample(seed)
    return rng, sample, float(min(sample.image.shape[:2])), float(np.percentile(sample.image, 90))


def damaged_copies(
    image: np.ndarray,
    paper: float,
    box: list[float],
    cut: Cut,
    page: float,
    rng: np.random.Generator,
    copies: int,
    keep_clean: float,
) -> list[tuple[np.ndarray, ...]]:
    """The crop `cut` of a drawing (`paper`: its paper level, beyond its edge) damaged `copies` times by the
    simulator, holes and gap cuts aimed at the pixels of `box` (drawing pixels) with chance 0.8 and damage sized to the
    whole `page`; a copy whose damage missed `box` is kept with chance `keep_clean`.

    Returns:
        (damaged, mask, intact) uint8 arrays of `cut.size` (gray; mask 0/255).
    """
    m = np.array([[cut.scale, 0.0, -cut.ox], [0.0, cut.scale, -cut.oy]], np.float32)
    crop = cv2.warpAffine(image, m, cut.size, flags=cv2.INTER_LINEAR, borderValue=(paper,) * 3)
    (w, h), (x0, y0, x1, y1) = cut.size, box
    where = np.zeros((h, w), np.float32)
    gx0, gy0 = max(0, int(x0 * cut.scale - cut.ox)), max(0, int(y0 * cut.scale - cut.oy))
    gx1, gy1 = min(w, int(math.ceil(x1 * cut.scale - cut.ox))), min(h, int(math.ceil(y1 * cut.scale - cut.oy)))
    where[gy0:gy1, gx0:gx1] = 1.0
    intact = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    out = []
    for _ in range(copies):
        damaged, mask, _ = apply_damage_by_kind(crop, rng, aim=DamageAim(where, 0.8, page * cut.scale))
        if not mask[gy0:gy1, gx0:gx1].any() and rng.random() >= keep_clean:
            continue
        if damaged.ndim == 3:
            damaged = cv2.cvtColor(damaged, cv2.COLOR_RGB2GRAY)
        out.append((damaged, mask, intact))
    return out


def label_strips(seed: int, copies: int = 2, keep_clean: float = 0.1) -> list[tuple[np.ndarray, ...]]:
    """Damaged training strips of one synthetic drawing's labels.

    Returns:
        (damaged, mask, intact) uint8 arrays of (LINE_HEIGHT, STRIP_WIDTH) each; mask is 0/255.
    """
    rng, sample, page, paper = _drawing(seed, 17)
    image = sample.image
    out = []
    for label in sample.truth["labels"]:
        x0, y0, x1, y1 = label["bbox"]
        # A detector's box is a little off the true one: jitter the box the strip is cut around.
        jit = rng.uniform(-2.0, 2.0, 4)
        box = (x0 + jit[0], y0 + jit[1], x1 + jit[2], y1 + jit[3])
        strip = strip_for(box)
        scale = strip.scale * rng.uniform(0.85, 1.2)
        if (x1 - x0) * scale > STRIP_WIDTH - 8:
            continue
        cx, cy = (x0 + x1) / 2 * scale, (y0 + y1) / 2 * scale
        ox, oy = cx - STRIP_WIDTH / 2 + rng.uniform(-8, 8), cy - LINE_HEIGHT / 2 + rng.uniform(-4, 4)
        cut = Cut(scale, ox, oy, (STRIP_WIDTH, LINE_HEIGHT))
        out += damaged_copies(image, paper, label["bbox"], cut, page, rng, copies, keep_clean)
    return out


def symbol_windows(seed: int, copies: int = 2, keep_clean: float = 0.1) -> list[tuple[np.ndarray, ...]]:
    """Damaged training windows (`SYMBOL_SIDE` square, as `vision.glyph.symbol_window` reads them) of one synthetic
    drawing's component symbols, each centred near its symbol at the drawing's own scale or one near it.

    Returns:
        (damaged, mask, intact) uint8 arrays of (SYMBOL_SIDE, SYMBOL_SIDE) each; mask is 0/255.
    """
    rng, sample, page, paper = _drawing(seed, 29)
    image = sample.image
    side = SYMBOL_SIDE
    out = []
    for part in sample.truth["components"]:
        x0, y0, x1, y1 = part["bbox"]
        # Half the windows are cut as `symbol_window` cuts them, pixel for pixel (a net that only ever saw the blur
        # of resampling takes crisp strokes for damage), the rest resampled a little larger or smaller.
        exact = rng.random() < 0.5
        scale = 1.0 if exact else rng.uniform(0.85, 1.2)
        ox = (x0 + x1) / 2 * scale - side / 2 + rng.uniform(-12, 12)
        oy = (y0 + y1) / 2 * scale - side / 2 + rng.uniform(-12, 12)
        ox, oy = (round(ox), round(oy)) if exact else (ox, oy)
        cut = Cut(scale, ox, oy, (side, side))
        out += damaged_copies(image, paper, part["bbox"], cut, page, rng, copies, keep_clean)
    return out


def false_alarms(mask: np.ndarray, intact: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The mask with one to three blots (radius 1-6 px, centred within 2 px of sound ink) added, where a damage net
    misreads a decimal point or a serif as damage: the net must learn to keep the glyph it sees under such a mask."""
    ys, xs = np.nonzero((intact < 128) & (mask == 0))
    out = mask.copy()
    for k in rng.integers(0, len(ys), int(rng.integers(1, 4))) if len(ys) else []:
        dx, dy = rng.integers(-2, 3, 2)
        cv2.circle(out, (int(xs[k] + dx), int(ys[k] + dy)), int(rng.integers(1, 7)), 255, -1)
    return out


def predicted_like(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The true mask spoilt the ways a predicted one is: some damaged pieces missed, the rest shrunk or grown."""
    n, pieces = cv2.connectedComponents((mask > 0).astype(np.uint8), connectivity=8)
    keep = rng.random(n) >= 0.35
    keep[0] = False
    out = keep[pieces].astype(np.uint8)
    radius = int(rng.integers(-2, 3))
    if radius:
        kernel = np.ones((2 * abs(radius) + 1,) * 2, np.uint8)
        out = cv2.dilate(out, kernel) if radius > 0 else cv2.erode(out, kernel)
    return out * 255


def partly_found(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The mask with each damaged piece, with chance one half, cut by a random line through it and only one side
    kept: the damage net finds a cut's ragged edge and misses the part that took a stroke away cleanly."""
    n, pieces = cv2.connectedComponents((mask > 0).astype(np.uint8), connectivity=8)
    out = mask > 0
    for i in range(1, n):
        if rng.random() >= 0.5:
            continue
        ys, xs = np.nonzero(pieces == i)
        k = int(rng.integers(len(ys)))
        angle = rng.uniform(0.0, 2.0 * np.pi)
        side = (xs - xs[k]) * np.cos(angle) + (ys - ys[k]) * np.sin(angle) < 0
        out[ys[side], xs[side]] = False
    return out.astype(np.uint8) * 255


def net_hint(net: DamageNet, damaged: np.ndarray) -> np.ndarray:
    """The shipped damage net's mask (0/255) of a damaged strip, read with a margin of paper around it (the net
    sees a drawing, not a strip's edge)."""
    pad = STRIDE
    paper = float(np.percentile(damaged, 90))
    framed = cv2.copyMakeBorder(damaged, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=paper)
    return damage_mask(net, framed)[pad:-pad, pad:-pad].astype(np.uint8) * 255


class DamagedLabels(IterableDataset):
    """An endless stream of damaged label strips (or with `symbols` symbol windows, `symbol_windows`); worker `i` of
    `n` renders seeds first + i, first + i + n, …
    Each strip comes with the mask the net is given: with chance `net_hints` the shipped damage net's (`net_hint`),
    else the true one or with chance `spoil` one spoilt by `predicted_like` and with chance `partial` `partly_found`
    after that; then with chance `alarms` `false_alarms` on top. `keep_clean` is the share of strips whose glyphs
    the damage missed that are kept."""

    def __init__(
        self,
        first_seed: int,
        spoil: float = 0.0,
        alarms: float = 0.0,
        keep_clean: float = 0.1,
        partial: float = 0.0,
        net_hints: float = 0.0,
        symbols: bool = False,
    ) -> None:
        self.first_seed, self.spoil, self.alarms, self.keep_clean = first_seed, spoil, alarms, keep_clean
        self.partial, self.net_hints, self.symbols = partial, net_hints, symbols

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        cv2.setNumThreads(1)
        hinter = None
        if self.net_hints > 0:
            torch.set_num_threads(1)
            hinter = DamageNet.load()
        seed = self.first_seed + worker
        while True:
            rng = np.random.default_rng([seed, 23])
            examples = symbol_windows if self.symbols else label_strips
            for damaged, mask, intact in examples(seed, keep_clean=self.keep_clean):
                if hinter is not None and rng.random() < self.net_hints:
                    given = net_hint(hinter, damaged)
                else:
                    given = predicted_like(mask, rng) if rng.random() < self.spoil else mask
                    given = partly_found(given, rng) if rng.random() < self.partial else given
                given = false_alarms(given, intact, rng) if rng.random() < self.alarms else given
                arrays = (damaged, mask, intact, given)
                yield tuple(torch.from_numpy(np.ascontiguousarray(a))[None] for a in arrays)
            seed += workers


def glyph_loss(pred: torch.Tensor, intact: torch.Tensor, hole: torch.Tensor) -> dict[str, torch.Tensor]:
    """L1 over the strip, and L1 and Sobel-edge L1 inside the hole (the damage, and the mask the net was given)
    with the intact ink weighted three times."""
    weight = hole * (1.0 + 2.0 * (intact < 0.55).float())
    norm = weight.sum().clamp_min(1.0)
    return {
        "all": F.l1_loss(pred, intact),
        "hole": ((pred - intact).abs() * weight).sum() / norm,
        "edge": ((sobel(pred) - sobel(intact)).abs() * weight).sum() / norm,
    }


@torch.no_grad()
def finder_masks(
    finder: GlyphNet, damaged: torch.Tensor, given: torch.Tensor, share: float, generator: torch.Generator
) -> torch.Tensor:
    """`given` (N, 1, H, W) with, on a `share` of the strips, the text-damage finder's verdict from it (probability
    over 0.5, as `vision.glyph.find_text_damage` takes it) in its place."""
    verdict = (torch.sigmoid(finder(damaged, given).float()) > 0.5).float()
    pick = (torch.rand(given.shape[0], generator=generator) < share).to(given.device)[:, None, None, None]
    return torch.where(pick, verdict, given)


def finder_loss(logits: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Binary cross-entropy and soft Dice (over the batch) of the text-damage finder against the true mask."""
    prob = torch.sigmoid(logits)
    dice = 1.0 - (2.0 * (prob * mask).sum() + 1.0) / (prob.sum() + mask.sum() + 1.0)
    return {"bce": F.binary_cross_entropy_with_logits(logits, mask), "dice": dice}


def build_net(args: argparse.Namespace, resuming: bool) -> GlyphNet:
    """The net to train: a preset, or the config (and, unless `resuming`, the weights) of `--init`; with `--task
    damage` a finder, whose head starts fresh when the start is a glyph restorer."""
    output = "damage" if args.task == "damage" else "glyphs"
    start = GlyphNet.load(Path(args.init)) if args.init else None
    config = replace(start.config if start is not None else PRESETS[args.preset], output=output)
    net = GlyphNet(config)
    if start is not None and not resuming:
        net.load_state_dict(start.state_dict())
        print(f"started from the weights in {args.init}")
        if start.config.output != output:
            nn.init.zeros_(net.head.weight)
            nn.init.constant_(net.head.bias, -3.0)  # most of a strip is sound
    return net


def train(args: argparse.Namespace) -> None:
    """Train for `args.minutes` of wall time (or `args.steps`), resuming from `args.ckpt`."""
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    torch.manual_seed(args.seed)
    ckpt = Path(args.ckpt)
    resuming = (ckpt / "state.json").is_file()
    net = build_net(args, resuming).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    parts_saved: dict[str, nn.Module | torch.optim.Optimizer] = {"net": net, "opt": opt}
    critic = None
    if args.adv > 0 and args.task != "damage":
        critic = PatchDiscriminator().to(device)
        critic_lr = args.critic_lr or args.lr * 0.5
        opt_d = torch.optim.AdamW(critic.parameters(), lr=critic_lr, weight_decay=0.0, betas=(0.5, 0.99))
        parts_saved.update(critic=critic, opt_d=opt_d)
    state: dict[str, object] = {"step": 0, "seconds": 0.0, "first_seed": args.first_seed}
    if resuming:
        with safe_open(str(ckpt / "models.safetensors"), framework="pt") as f:
            has_critic = any(k.startswith("critic.") for k in f.keys())
        kept = parts_saved if has_critic else {"net": net, "opt": opt}
        state = load_checkpoint(ckpt, kept)
        print(f"resumed {ckpt} at step {state['step']}")
        if critic is not None and not has_critic:
            print("the checkpoint holds no critic: it starts fresh")
    step, trained = int(state["step"]), float(state["seconds"])  # type: ignore[arg-type]
    # A resumed run renders new drawings: seeds move on by the steps already taken.
    first = int(state.get("first_seed", args.first_seed)) + step * args.batch  # type: ignore[call-overload]
    loader = DataLoader(
        DamagedLabels(
            first, args.spoil, args.alarms, args.keep_clean, args.partial, args.net_hints, args.task == "symbols"
        ),
        batch_size=args.batch,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers > 0 else None,
    )
    finder = None
    if args.finder_masks > 0 and args.task == "glyphs":
        finder = GlyphNet.load(Path(args.finder)).to(device)  # frozen, eval mode
        picks = torch.Generator().manual_seed(args.seed + step)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    budget = args.minutes * 60.0
    total = args.total_minutes * 60.0 if args.total_minutes else budget
    start, last_log, last_save = time.time(), 0.0, 0.0
    net.train()
    for damaged, mask, intact, given in loader:
        elapsed = time.time() - start
        if (args.steps and step >= args.steps) or (not args.steps and elapsed >= budget):
            break
        progress = min(1.0, (trained + elapsed) / total) if not args.steps else step / args.steps
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * 0.5 * (1 + math.cos(math.pi * progress))
        for group in opt.param_groups:
            group["lr"] = lr
        damaged = damaged.to(device, non_blocking=True).float() / 255.0
        mask = mask.to(device, non_blocking=True).float() / 255.0
        intact = intact.to(device, non_blocking=True).float() / 255.0
        given = given.to(device, non_blocking=True).float() / 255.0
        if finder is not None:
            with amp:
                given = finder_masks(finder, damaged, given, args.finder_masks, picks)
        grow = int(np.random.default_rng([args.seed, step]).integers(0, 3))
        hole = F.max_pool2d(given, 2 * grow + 1, 1, grow) if grow else given
        with amp:
            pred = net(damaged, hole).float()
        if args.task == "damage":
            parts = finder_loss(pred, mask)
            loss = parts["bce"] + parts["dice"]
        else:
            judged = torch.maximum(hole, mask)
            parts = glyph_loss(pred, intact, judged)
            loss = parts["all"] + 4.0 * parts["hole"] + 2.0 * parts["edge"]
            if critic is not None:
                comp = torch.where(judged > 0.5, pred, intact)
                if progress >= args.gan_start:
                    with amp:
                        d_gen = critic(comp, judged).float()
                    parts["adv"] = -(d_gen * critic_weights(judged, d_gen.shape, True)).sum((1, 2, 3)).mean()
                    loss = loss + args.adv * parts["adv"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        if critic is not None:
            with amp:
                d_real = critic(intact, judged).float()
                d_fake = critic(comp.detach(), judged).float()
            w = critic_weights(judged, d_real.shape, True)
            parts["critic"] = ((F.relu(1 - d_real) + F.relu(1 + d_fake)) * w).sum((1, 2, 3)).mean()
            opt_d.zero_grad(set_to_none=True)
            parts["critic"].backward()
            opt_d.step()
        step += 1
        if elapsed - last_log >= args.log_every:
            last_log = elapsed
            rec = {
                "step": step,
                "sec": round(trained + elapsed, 1),
                "lr": lr,
                **{k: float(v.detach()) for k, v in parts.items()},
            }
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()), flush=True)
            ckpt.mkdir(parents=True, exist_ok=True)
            with (ckpt / "train_log.jsonl").open("a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
        if elapsed - last_save > args.save_every:
            last_save = elapsed
            save_checkpoint(
                ckpt,
                {"step": step, "seconds": trained + elapsed, "first_seed": args.first_seed},
                parts_saved,
            )
    seconds = trained + time.time() - start
    save_checkpoint(ckpt, {"step": step, "seconds": seconds, "first_seed": args.first_seed}, parts_saved)
    defaults = {"glyphs": WEIGHTS, "damage": FINDER_WEIGHTS, "symbols": SYMBOL_WEIGHTS}
    weights = Path(args.weights) if args.weights else defaults[args.task]
    net.cpu().save(weights, int8=True)
    print(f"done: {step} steps in {seconds:.0f} s; weights in {weights}")


def main(argv: list[str] | None = None) -> None:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m vision.train_glyph", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--task",
        choices=("glyphs", "damage", "symbols"),
        default="glyphs",
        help="damage: the text-damage finder; symbols: the symbol restorer",
    )
    parser.add_argument("--ckpt", default="runs/glyph")
    parser.add_argument(
        "--weights",
        help=f"where to write the weights (default {WEIGHTS.name}, with --task damage {FINDER_WEIGHTS.name}, with "
        f"--task symbols {SYMBOL_WEIGHTS.name}, in {WEIGHTS.parent})",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="base")
    parser.add_argument("--init", help="shipped glyph weights to start from (a fresh optimizer; ignored on resume)")
    parser.add_argument("--minutes", type=float, default=8.0, help="wall-time budget of this run (0: use --steps)")
    parser.add_argument(
        "--total-minutes",
        type=float,
        default=0.0,
        help="the learning-rate schedule's length over resumed runs (default: --minutes)",
    )
    parser.add_argument("--steps", type=int, default=0)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers rendering drawings")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=FIRST_SEED)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spoil", type=float, default=0.0, help="share of strips given a spoilt mask (predicted_like)")
    parser.add_argument("--partial", type=float, default=0.0, help="share of given masks only partly found")
    parser.add_argument("--net-hints", type=float, default=0.0, help="share of given masks made by the damage net")
    parser.add_argument("--alarms", type=float, default=0.0, help="share of strips given false alarms on sound ink")
    parser.add_argument(
        "--finder-masks", type=float, default=0.0, help="share of given masks replaced by the finder's verdict"
    )
    parser.add_argument("--finder", default=str(FINDER_WEIGHTS), help="the text-damage finder for --finder-masks")
    parser.add_argument(
        "--adv", type=float, default=0.0, help="weight of the PatchGAN critic's term (0: no critic; not with damage)"
    )
    parser.add_argument("--critic-lr", type=float, default=0.0, help="the critic's learning rate (default: half --lr)")
    parser.add_argument("--gan-start", type=float, default=0.1, help="share of the run before the net takes --adv")
    parser.add_argument("--keep-clean", type=float, default=0.1, help="share of strips with undamaged glyphs kept")
    parser.add_argument("--log-every", type=float, default=15.0)
    parser.add_argument("--save-every", type=float, default=60.0)
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even with a GPU")
    train(parser.parse_args(argv))


if __name__ == "__main__":
    main()
