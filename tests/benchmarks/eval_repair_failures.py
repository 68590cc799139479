"""Why repaired drawings read back wrong: a failure table for `eval_repair.py --netlist`'s drawings.

The same held-out drawings and damage as `eval_repair.py` (seeds 900000+). Each drawing is read intact, damaged,
repaired with the predicted damage mask (the end-to-end setting; the "predicted mask" below is the one the repair
used, the damage net's corrected in the text boxes) and repaired with the true mask. For every
repaired drawing that reads wrong while the intact one reads right, the failure is put into the categories of
`eval_schematic_failures.py` (missed/extra/wrong-class part, value, pin role, net split, net merge). Net splits
are then located: every stretch of a true wire that the reader's own ink map (paper-normalised, Otsu) holds in
the intact drawing but not in the repaired one is a break, placed inside the predicted mask, inside the true
mask only, or in neither, with the damage kinds under it. For gap damage: how many of the cuts the predicted
mask covers (at least half of the cut's pixels).

    python tests/benchmarks/eval_repair_failures.py --n 100      # writes results/repair_failures.{json,md}
    python tests/benchmarks/eval_repair_failures.py --n 100 --baseline OLD.json --out NEW   # reuse OLD's intact reads
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from eval_repair import FIRST_SEED, RESULTS  # noqa: E402
from eval_schematic_failures import categorise, greedy_pairs  # noqa: E402

from pipelines.repair import detect_damage, repair_gray  # noqa: E402
from pipelines.schematic import (  # noqa: E402
    binarize,
    canonical_value,
    drawn_ink,
    read_schematic,
    same_netlist,
    truth_circuit,
)
from vision.detect import normalize_paper  # noqa: E402
from vision.synth import NET_SYMBOLS  # noqa: E402
from vision.synth.damage import apply_damage_by_kind  # noqa: E402
from vision.synth.render import render_sample  # noqa: E402


def reader_ink(gray: np.ndarray) -> np.ndarray:
    """The ink map the schematic reader traces wires on."""
    return binarize(normalize_paper(gray))


def wire_breaks(
    truth: dict[str, Any],
    intact_ink: np.ndarray,
    out_ink: np.ndarray,
    masks: dict[str, np.ndarray],
    by_kind: dict[str, np.ndarray],
) -> list[dict[str, Any]]:
    """Places where a true wire is one ink piece in the intact drawing and not in `out_ink`, and where they lie.

    Within a band of a few pixels round each true wire, the ink is cut into 8-connected pieces; walking along the
    wire, a break is a step where the ink across the wire (a one-pixel cross-section) is missing or shares no piece
    with the step before.

    Returns:
        One entry per break: its length in pixels, `where` ("pred", "true_only" or "neither"), the damage kinds
        that changed pixels under it, and its first pixel (x, y).
    """
    h, w = intact_ink.shape
    r = int(math.ceil(truth["line_width"] / 2)) + 1
    out = []
    for (x0, y0), (x1, y1) in truth["wires"]:
        n = int(max(abs(x1 - x0), abs(y1 - y0)))
        if n < 2:
            continue
        ya, xa = max(0, int(min(y0, y1)) - 2 * r), max(0, int(min(x0, x1)) - 2 * r)
        yb, xb = min(h, int(max(y0, y1)) + 2 * r + 2), min(w, int(max(x0, x1)) + 2 * r + 2)
        band = np.zeros((h, w), np.uint8)
        cv2.line(band, (round(x0), round(y0)), (round(x1), round(y1)), 1, 2 * r + 1)
        labels = {}
        for name, ink in (("intact", intact_ink), ("out", out_ink)):
            lab = np.zeros((h, w), np.int32)
            piece = (ink[ya:yb, xa:xb] & (band[ya:yb, xa:xb] > 0)).astype(np.uint8)
            lab[ya:yb, xa:xb] = cv2.connectedComponents(piece, connectivity=8)[1]
            labels[name] = lab
        prev: dict[str, set[int]] = {}
        run: list[tuple[int, int]] = []
        for k in range(n + 1):
            x, y = int(round(x0 + (x1 - x0) * k / n)), int(round(y0 + (y1 - y0) * k / n))
            # the ink across the wire, one pixel thick: speckles along a faded wire do not join up
            if abs(x1 - x0) >= abs(y1 - y0):
                win = (slice(max(0, y - r), min(h, y + r + 1)), slice(x, x + 1))
            else:
                win = (slice(y, y + 1), slice(max(0, x - r), min(w, x + r + 1)))
            now = {name: set(np.unique(lab[win]).tolist()) - {0} for name, lab in labels.items()}
            whole = bool(now["intact"]) and (not prev or bool(now["intact"] & prev["intact"]))
            broken = whole and (not now["out"] or (bool(prev) and not (now["out"] & prev["out"])))
            if broken:
                run.append((y, x))
            if run and (not broken or k == n):
                out.append(_place(run, r, masks, by_kind))
                run = []
            if now["out"] or not broken:
                prev = now
    return out


def _place(
    run: list[tuple[int, int]], r: int, masks: dict[str, np.ndarray], by_kind: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Where a break lies: in the predicted mask, in the true mask only, or in neither."""
    ys, xs = np.array(run).T
    y0, y1, x0, x1 = max(0, ys.min() - r), ys.max() + r + 1, max(0, xs.min() - r), xs.max() + r + 1
    where = "neither"
    if masks["pred"][y0:y1, x0:x1].any():
        where = "pred"
    elif masks["true"][y0:y1, x0:x1].any():
        where = "true_only"
    kinds = sorted(k for k, m in by_kind.items() if m[y0:y1, x0:x1].any())
    return {"length": len(run), "where": where, "kinds": kinds, "at": [int(xs[0]), int(ys[0])]}


def label_damage(
    truth: dict[str, Any], read: Any, masks: dict[str, np.ndarray], by_kind: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    """For each part whose value reads wrong: the damage kinds over its value label and how much of it the
    predicted mask covers."""
    boxes = [tuple(c["bbox"]) for c in truth["components"]]
    out = []
    for i, j in greedy_pairs([tuple(c.bbox) for c in read.components], boxes, 0.2):
        c, p = truth["components"][j], read.components[i]
        if p.type != c["type"] or c["type"] in NET_SYMBOLS:
            continue
        if canonical_value(c["type"], p.value) == canonical_value(c["type"], c["value"]):
            continue
        for k in c["labels"]:
            lab = truth["labels"][k]
            if lab["role"] != "value":
                continue
            x0, y0, x1, y1 = (int(round(v)) for v in lab["bbox"])
            box = (slice(max(0, y0), y1 + 1), slice(max(0, x0), x1 + 1))
            kinds = sorted(name for name, m in by_kind.items() if m[box].any())
            true_px = masks["true"][box]
            out.append(
                {
                    "truth": c["value"],
                    "read": p.value,
                    "kinds": kinds or ["none"],
                    "pred_covers_damage": round(float((masks["pred"][box] & true_px).sum() / max(true_px.sum(), 1)), 2),
                }
            )
    return out


def gap_cuts(by_kind: dict[str, np.ndarray], pred: np.ndarray) -> tuple[int, int]:
    """(gap cuts, cuts at least half covered by the predicted mask)."""
    if "gap" not in by_kind:
        return 0, 0
    n, labels = cv2.connectedComponents(by_kind["gap"].astype(np.uint8), connectivity=8)
    found = 0
    for i in range(1, n):
        cut = labels == i
        found += int((pred & cut).sum() >= 0.5 * cut.sum())
    return n - 1, found


def failure(truth: dict[str, Any], read: Any) -> Counter:
    """The failure categories of a wrong read (`eval_schematic_failures.categorise`)."""
    boxes = [tuple(c["bbox"]) for c in truth["components"]]
    got = [tuple(c.bbox) for c in read.components]
    cats = categorise(truth, read, greedy_pairs(got, boxes, 0.2), set(greedy_pairs(got, boxes, 0.5)))
    return cats or Counter({"other": 1})


def diagnose(i: int, baseline: dict[str, bool] | None) -> dict[str, Any]:
    """Read drawing `i` in every setting and explain what its repaired reads get wrong."""
    sample = render_sample(FIRST_SEED + i)
    intact = sample.image if sample.image.ndim == 2 else cv2.cvtColor(sample.image, cv2.COLOR_RGB2GRAY)
    damaged_img, true_mask, by_kind = apply_damage_by_kind(sample.image, np.random.default_rng(FIRST_SEED + i))
    damaged = damaged_img if damaged_img.ndim == 2 else cv2.cvtColor(damaged_img, cv2.COLOR_RGB2GRAY)
    masks = {"pred": detect_damage(damaged), "true": true_mask > 0}
    want = truth_circuit(sample.truth)
    row: dict[str, Any] = {"seed": FIRST_SEED + i, "kinds": sorted(by_kind)}
    if baseline is None:
        for name, img in (("intact", intact), ("damaged", damaged)):
            row[name] = bool(same_netlist(read_schematic(img), want))
    else:
        row.update(baseline)
    intact_ink = reader_ink(intact)
    row["gap_cuts"], row["gap_cuts_found"] = gap_cuts(by_kind, masks["pred"])
    for setting, mask in list(masks.items()):
        out = damaged
        if mask.any():
            # What follows looks at the mask the repair used (a predicted one is corrected in the text boxes).
            out, masks[setting], _ = repair_gray(damaged, mask, predicted=setting == "pred")
        read = read_schematic(out, redrawn=drawn_ink(damaged, out, masks[setting]))
        ok = bool(same_netlist(read, want))
        row[f"ours_{setting}"] = ok
        if not ok and row["intact"]:
            row[f"why_{setting}"] = dict(failure(sample.truth, read))
            breaks = wire_breaks(sample.truth, intact_ink, reader_ink(out), masks, by_kind)
            row[f"breaks_{setting}"] = breaks
            row[f"labels_{setting}"] = label_damage(sample.truth, read, masks, by_kind)
    return row


def _joined(counts: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.most_common()) or "none"


def _setting_lines(rows: list[dict[str, Any]], setting: str) -> list[str]:
    """The failure table of one mask setting: categories, where the net splits break, what lies on bad labels."""
    failed = [r for r in rows if f"why_{setting}" in r]
    images, counts = Counter(), Counter()
    for r in failed:
        counts.update(r[f"why_{setting}"])
        images.update({c.split(":")[0] for c in r[f"why_{setting}"]})
    per_category = Counter()
    for k, v in counts.items():
        per_category[k.split(":")[0]] += v
    lines = ["", f"## Repaired with the {setting} mask: {len(failed)} drawings read wrong, the intact one right"]
    lines += ["", "| category | drawings | count |", "|---|---|---|"]
    lines += [f"| {c} | {v} | {per_category[c]} |" for c, v in images.most_common()]
    lines += ["", f"Detail: {_joined(counts)}"]
    split = [r for r in failed if any(c.startswith("net_split") for c in r[f"why_{setting}"])]
    breaks = [b for r in split for b in r[f"breaks_{setting}"]]
    where = Counter(b["where"] for b in breaks)
    kinds = Counter(f"{b['where']}:{k}" for b in breaks for k in b["kinds"] or ["none"])
    labels = [lab for r in failed for lab in r[f"labels_{setting}"]]
    under = Counter(k for lab in labels for k in lab["kinds"])
    covered = [lab["pred_covers_damage"] for lab in labels if lab["kinds"] != ["none"]]
    lines += [
        "",
        f"Net-split drawings: {len(split)}, with {len(breaks)} wire breaks (in the predicted mask / in the true mask "
        f"only / in neither): {_joined(where)}; split drawings with no break on a true wire: "
        f"{sum(not r[f'breaks_{setting}'] for r in split)}",
        f"Breaks by place and damage kind: {_joined(kinds)}",
        f"Wrong values by the damage kinds over their label: {_joined(under)}"
        + (f"; the predicted mask covers {np.mean(covered):.2f} of the damage on those labels" if covered else ""),
    ]
    return lines


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """The failure tables as Markdown lines."""
    n = len(rows)
    lines = [f"# Why repaired drawings read wrong ({n} drawings, seeds {rows[0]['seed']}–{rows[-1]['seed']})", ""]
    rate = {k: sum(r[k] for r in rows) / n for k in ("intact", "damaged", "ours_pred", "ours_true")}
    lines += ["| input | exact match |", "|---|---|"] + [f"| {k} | {v:.3f} |" for k, v in rate.items()]
    lines += _setting_lines(rows, "pred") + _setting_lines(rows, "true")
    cuts, found = sum(r["gap_cuts"] for r in rows), sum(r["gap_cuts_found"] for r in rows)
    lines += ["", f"Gap cuts: {cuts}, at least half covered by the predicted mask: {found}"]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--first", type=int, default=0, help="first drawing (offset from the first seed)")
    ap.add_argument("--baseline", help="JSON of an earlier run: reuse its intact and damaged reads")
    ap.add_argument("--out", default=str(RESULTS / "repair_failures"), help="writes OUT.json and OUT.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = {}
    if args.baseline:
        earlier = json.loads(Path(args.baseline).read_text())["rows"]
        base = {r["seed"]: {"intact": r["intact"], "damaged": r["damaged"]} for r in earlier}
    rows = []
    t0 = time.time()
    for i in range(args.first, args.first + args.n):
        rows.append(diagnose(i, base.get(FIRST_SEED + i)))
        print(f"{len(rows)}/{args.n} drawings, {time.time() - t0:.0f} s", flush=True)
    lines = summary(rows)
    Path(args.out + ".json").write_text(json.dumps({"rows": rows}, indent=1))
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
