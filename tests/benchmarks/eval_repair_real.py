"""What the repair does to clean real drawings: the circuits-real validation split, none of them damaged.

A repair that leaves a clean drawing alone marks (almost) nothing and changes no pixel; one that takes real line art
for damage fills dashed lines, thickens hairlines and costs the schematic detector parts. Each validation drawing is
taken as it is, and repaired end to end (`repair_gray` with the predicted mask) twice, side by side in one run:
- `synthetic net`: the damage net alone (trained on synthetic drawings only), as before session 12;
- `confirmed`: the shipped path, where each piece it marks must be confirmed by the net trained with real drawings
  among its crops (`vision.damage_net.CONFIRM_WEIGHTS`; those drawings are the set's training split only).
Per setting: the share of pixels marked as damage, the share of pixels the repair changed, and the schematic
detector's micro F1 on the 15 classes it shares with the set (as `eval_schematic.py`'s real-set figure), against
the drawing as it is. Writes results/repair_real.{json,md}.

    python tests/benchmarks/eval_repair_real.py            # all validation drawings
    python tests/benchmarks/eval_repair_real.py --count 40 # the first 40
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from eval_schematic import DATA, RESULTS, f1, match, real_detections, real_val_drawings  # noqa: E402

from pipelines.document import write_atomic  # noqa: E402
from pipelines.repair import MAX_DAMAGE, detect_damage, repair_gray  # noqa: E402
from pipelines.schematic import _Models  # noqa: E402


def detection_counts(detector: object, gray: np.ndarray, ann: dict) -> tuple[int, int, int]:
    preds, gts = real_detections(detector, gray, ann)
    tp = len(match(preds, gts))
    return tp, len(preds) - tp, len(gts) - tp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=0, help="the first COUNT validation drawings (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"error: {DATA} not found (the circuits-real set of ../shared/data)")
    torch.set_num_threads(args.threads)
    detector, _ = _Models.get()
    settings = ("as it is", "synthetic net", "confirmed")
    counts = {k: [0, 0, 0] for k in settings}
    marked: dict[str, list[float]] = {k: [] for k in settings[1:]}
    changed: dict[str, list[float]] = {k: [] for k in settings[1:]}
    t0, n = time.time(), 0
    for gray, ann in real_val_drawings():
        n += 1
        versions = {"as it is": gray}
        for setting in settings[1:]:
            mask = detect_damage(gray, confirmed=setting == "confirmed")
            marked[setting].append(float(mask.mean()))
            # As `repair_drawing` does: a drawing the mask covers too much of is refused, not repaired.
            out = repair_gray(gray, mask, predicted=True)[0] if mask.any() and mask.mean() <= MAX_DAMAGE else gray
            changed[setting].append(float((out != gray).mean()))
            versions[setting] = out
        for setting, image in versions.items():
            for i, v in enumerate(detection_counts(detector, image, ann)):
                counts[setting][i] += v
        if args.count and n >= args.count:
            break
    result = {
        "machine": {"node": platform.node(), "cpu": platform.processor() or platform.machine()},
        "drawings": n,
        "seconds": round(time.time() - t0, 1),
        "settings": {
            k: {
                "marked_share": float(np.mean(marked[k])) if k in marked else 0.0,
                "drawings_marked_over_1pct": int(sum(m > 0.01 for m in marked[k])) if k in marked else 0,
                "changed_share": float(np.mean(changed[k])) if k in changed else 0.0,
                "detector": f1(*counts[k]),
                "counts": counts[k],
            }
            for k in settings
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_atomic(RESULTS / "repair_real.json", json.dumps(result, indent=2))
    lines = [
        f"# Repair of clean real drawings (circuits-real validation split, {n} drawings)",
        "",
        f"Machine: {result['machine']}; {result['seconds']} s",
        "",
        "| setting | marked as damage | drawings marked > 1 % | pixels changed | detector micro F1 | tp / fp / fn |",
        "|---|---|---|---|---|---|",
    ]
    for k, v in result["settings"].items():
        lines.append(
            f"| {k} | {100 * v['marked_share']:.2f} % | {v['drawings_marked_over_1pct']} | "
            f"{100 * v['changed_share']:.2f} % | {v['detector']['f1']:.3f} | {' / '.join(map(str, v['counts']))} |"
        )
    write_atomic(RESULTS / "repair_real.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
