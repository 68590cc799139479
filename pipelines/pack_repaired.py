"""Pack damaged synthetic drawings as the repair pipeline leaves them, for the schematic detector's training.

The reader meets a repaired drawing after `--repair auto`: symbols the inpainter redrew a little off, a blot it
filled with a stroke, labels the glyph net redrew. `vision.train_detector train --repaired DIR` mixes these in, so
the detector learns to read what it is given. Each drawing is rendered (`vision.synth.render.render_sample`),
damaged by the simulator the repair benchmark uses (`apply_damage_by_kind`, seeded by the drawing's seed), repaired
with the predicted mask (`repair_gray`), shrunk to about the training scale and written with its ground truth moved
onto the shrunk image:

    python -m pipelines.pack_repaired --out .schemdata/repaired --first-seed 110000000 --count 4000 --workers 15

Files are written atomically per drawing (`SEED.png`, then `SEED.json`), so an interrupted run resumes where it
stopped.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch

from pipelines.document import write_atomic
from pipelines.repair import detect_damage, repair_gray
from vision.detect import to_gray
from vision.synth.damage import apply_damage_by_kind
from vision.synth.render import render_sample
from vision.synth.scan import transform_truth

# The stored drawing's longer side, as SynthDataset shrinks a drawing before its simulators (training side 768).
STORED_SIDE = 845


def pack_one(seed: int, out: Path, side: int = STORED_SIDE) -> bool:
    """Render, damage, repair and store one drawing; False when it was stored already."""
    if (out / f"{seed}.json").exists():
        return False
    sample = render_sample(seed)
    damaged, _, _ = apply_damage_by_kind(sample.image, np.random.default_rng(seed))
    gray = to_gray(damaged)
    predicted = detect_damage(gray)
    repaired = repair_gray(gray, predicted, predicted=True)[0] if predicted.any() else gray
    h, w = repaired.shape
    k = min(1.0, side / max(h, w))
    size = (int(round(w * k)), int(round(h * k)))
    small = cv2.resize(repaired, size, interpolation=cv2.INTER_AREA) if k < 1 else repaired
    truth = transform_truth(sample.truth, np.diag([k, k, 1.0]), size)
    ok, png = cv2.imencode(".png", small)
    if not ok:
        raise RuntimeError(f"cannot encode drawing {seed}")
    write_atomic(out / f"{seed}.png", png.tobytes())
    write_atomic(out / f"{seed}.json", json.dumps(truth).encode("utf-8"))
    return True


def _init_worker() -> None:
    torch.set_num_threads(1)  # one drawing per core: the repair nets are small


def pack_repaired(out: Path, first_seed: int, count: int, workers: int = 1, minutes: float = 0.0) -> int:
    """Store drawings `first_seed` ... `first_seed + count - 1` under `out`.

    Args:
        minutes: Stop after this long (0: no limit); drawings under way are dropped, and a later call resumes.

    Returns:
        How many were stored by this call (the rest were there already).
    """
    out.mkdir(parents=True, exist_ok=True)
    seeds = range(first_seed, first_seed + count)
    deadline = time.monotonic() + minutes * 60 if minutes > 0 else float("inf")
    stored = 0
    if workers <= 1:
        _init_worker()
        for seed in seeds:
            if time.monotonic() > deadline:
                break
            stored += pack_one(seed, out)
        return stored
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        for done in pool.imap_unordered(partial(pack_one, out=out), seeds, chunksize=2):
            stored += done
            if time.monotonic() > deadline:
                break  # leaving the block terminates the workers
    return stored


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--first-seed", type=int, default=110_000_000)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=0.0, help="stop after this long (0: no limit); resumable")
    args = ap.parse_args(argv)
    if args.count < 1 or args.workers < 1:
        ap.error("--count and --workers must be at least 1")
    if args.out.exists() and not args.out.is_dir():
        ap.error(f"--out {args.out} is a file, not a folder")
    t0 = time.time()
    stored = pack_repaired(args.out, args.first_seed, args.count, args.workers, args.minutes)
    print(json.dumps({"stored": stored, "count": args.count, "seconds": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    main()
