"""Schematic reader quality and speed.

Held-out synthetic drawings (seeds never used in training) in three conditions: clean, scanned
(scan simulator) and damaged (damage simulator, read without repair). Per condition:
- component detection precision / recall / F1 (IoU >= 0.5 and the same class),
- label reading accuracy (reference designators and values read and assigned to the right part),
- net F1 over pin pairs that share a net,
- netlist exact match (part/net graph isomorphism with types, values and pin roles).
The anchor measured in the same run is the oracle reader: the same wire tracing and label logic fed
with the true boxes, pins and texts; the ratio reader/oracle says what the models lose.
On the circuits-real validation split: class-aware detection F1 per shared class. CPU latency per
1500 x 1500 drawing with 2 threads.

    python tests/benchmarks/eval_schematic.py --n 500
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pipelines.document import Circuit, write_atomic  # noqa: E402
from pipelines.schematic import (  # noqa: E402
    _Models,
    assemble_circuit,
    canonical_value,
    detection_side,
    read_schematic,
    same_netlist,
    truth_circuit,
)
from vision.detect import Detection, PinPoint, detect, normalize_paper, to_gray  # noqa: E402
from vision.synth import NET_SYMBOLS, TYPE_PINS  # noqa: E402
from vision.synth.render import Sample, render_sample  # noqa: E402
from vision.synth.scan import scan  # noqa: E402
from vision.train_detector import REAL_CLASS_MAP  # noqa: E402

HELD_OUT_SEED = 900_000_000  # training draws seeds below 100 million
DATA = ROOT / ".." / "shared" / "data" / "circuits-real"
RESULTS = ROOT / "tests" / "benchmarks" / "results"
ROLES = {(t, n): r for t, pins in TYPE_PINS.items() for n, r in pins}
# The classes the detector shares with circuits-real (the real-set figures count these)
REAL_SHARED = set(REAL_CLASS_MAP.values())


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(
    preds: list[tuple[str, tuple[float, ...]]], gts: list[tuple[str, tuple[float, ...]]]
) -> list[tuple[int, int]]:
    """Greedy one-to-one matching by IoU >= 0.5 with equal class: (pred index, truth index) pairs."""
    cands = sorted(
        ((iou(p[1], g[1]), i, j) for i, p in enumerate(preds) for j, g in enumerate(gts) if p[0] == g[0]),
        reverse=True,
    )
    used_p, used_g, out = set(), set(), []
    for v, i, j in cands:
        if v < 0.5:
            break
        if i not in used_p and j not in used_g:
            used_p.add(i)
            used_g.add(j)
            out.append((i, j))
    return out


def f1(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4)}


def oracle_read(sample: Sample) -> Circuit:
    """The reader's assembly stage fed with the true boxes, pins, dots and texts."""
    tr = sample.truth
    comps = [Detection(c["type"], 1.0, tuple(c["bbox"])) for c in tr["components"]]
    texts = [Detection("text", 1.0, tuple(lb["bbox"])) for lb in tr["labels"]]
    r = float(tr["style"]["dot_radius"]) * float(tr["px_per_unit"])
    juncs = [Detection("junction", 1.0, (x - r, y - r, x + r, y + r)) for x, y in tr["junctions"]]
    pins = [PinPoint(ROLES[(c["type"], k)], 1.0, tuple(v)) for c in tr["components"] for k, v in c["pins"].items()]
    norm = normalize_paper(to_gray(sample.image))
    return assemble_circuit(norm, comps, texts, [lb["text"] for lb in tr["labels"]], juncs, pins)


def score_sample(sample: Sample, pred: Circuit) -> dict[str, Any]:
    """Counts for one drawing: detection, labels, net pairs and exact match."""
    tr = sample.truth
    gts = [(c["type"], tuple(c["bbox"])) for c in tr["components"]]
    prs = [(c.type, tuple(c.bbox)) for c in pred.components]
    pairs = match(prs, gts)
    tp = len(pairs)
    out: dict[str, Any] = {"tp": tp, "fp": len(prs) - tp, "fn": len(gts) - tp}
    by_gt = {j: i for i, j in pairs}
    # labels: every drawn ref/value text of a part must come back on the matched part
    lab_ok = lab_n = 0
    for j, c in enumerate(tr["components"]):
        for li in c["labels"]:
            lb = tr["labels"][li]
            lab_n += 1
            if j not in by_gt:
                continue
            p = pred.components[by_gt[j]]
            if lb["role"] == "ref":
                lab_ok += p.id.upper() == lb["text"].upper()
            elif c["type"] == "supply":
                lab_ok += canonical_value("supply", p.value) == canonical_value("supply", lb["text"])
            else:
                lab_ok += canonical_value(c["type"], p.value) == canonical_value(c["type"], lb["text"])
    out.update(lab_ok=lab_ok, lab_n=lab_n)
    # net pairs: pins of matched parts mapped to true pins by position
    true_net = {(r, p): n["name"] for n in tr["nets"] for r, p in n["pins"]}
    mapped: dict[tuple[str, str], str | None] = {}
    for i, j in pairs:
        c = tr["components"][j]
        if c["type"] in NET_SYMBOLS:
            continue
        for pin in pred.components[i].pins:
            name = min(c["pins"], key=lambda k: math.dist(c["pins"][k], pin.xy))
            if math.dist(c["pins"][name], pin.xy) <= 0.35 * max(
                c["bbox"][2] - c["bbox"][0], c["bbox"][3] - c["bbox"][1]
            ):
                mapped[(c["ref"], name)] = pin.net
    types = {c["ref"]: c["type"] for c in tr["components"]}
    keys = [k for k in true_net if types[k[0]] not in NET_SYMBOLS]
    t_pairs = {(a, b) for ai, a in enumerate(keys) for b in keys[ai + 1 :] if true_net[a] == true_net[b]}
    p_pairs = {
        (a, b)
        for ai, a in enumerate(keys)
        for b in keys[ai + 1 :]
        if mapped.get(a) is not None and mapped.get(a) == mapped.get(b)
    }
    out.update(net_tp=len(t_pairs & p_pairs), net_fp=len(p_pairs - t_pairs), net_fn=len(t_pairs - p_pairs))
    out["exact"] = bool(same_netlist(truth_circuit(tr), pred))
    return out


def make_sample(condition: str, seed: int) -> Sample:
    s = render_sample(seed)
    if condition == "scanned":
        return scan(s, seed, float(np.random.default_rng(seed).uniform(0.5, 1.5)))
    if condition == "damaged":
        from vision.synth.damage import apply_damage

        img, _ = apply_damage(s.image, np.random.default_rng(seed + 1))
        return Sample(img, s.truth)
    return s


def run_condition(condition: str, n: int, with_oracle: bool) -> dict[str, Any]:
    tot: dict[str, float] = {}
    ora_exact = 0
    per_template: dict[str, list[int]] = {}
    t0 = time.perf_counter()
    for k in range(n):
        seed = HELD_OUT_SEED + k
        s = make_sample(condition, seed)
        r = score_sample(s, read_schematic(s.image))
        for key, v in r.items():
            tot[key] = tot.get(key, 0) + v
        per_template.setdefault(s.truth["template"], []).append(int(r["exact"]))
        if with_oracle:
            ora_exact += same_netlist(truth_circuit(s.truth), oracle_read(s))
        if (k + 1) % 50 == 0:
            print(f"  {condition}: {k + 1}/{n} exact so far {tot['exact'] / (k + 1):.3f}", flush=True)
    det = f1(int(tot["tp"]), int(tot["fp"]), int(tot["fn"]))
    nets = f1(int(tot["net_tp"]), int(tot["net_fp"]), int(tot["net_fn"]))
    res = {
        "images": n,
        "detection": det,
        "label_accuracy": round(tot["lab_ok"] / max(1, tot["lab_n"]), 4),
        "net_f1": nets["f1"],
        "net_precision": nets["precision"],
        "net_recall": nets["recall"],
        "netlist_exact": round(tot["exact"] / n, 4),
        "exact_by_template": {k: round(sum(v) / len(v), 3) for k, v in sorted(per_template.items())},
        "seconds_per_image": round((time.perf_counter() - t0) / n, 3),
    }
    if with_oracle:
        res["oracle_netlist_exact"] = round(ora_exact / n, 4)
        res["ratio_exact_vs_oracle"] = round(res["netlist_exact"] / max(1e-9, res["oracle_netlist_exact"]), 3)
    return res


def real_val_drawings() -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """The circuits-real validation drawings (gray) with their annotations (`read_real_annotation`), in id order."""
    from vision.train_detector import read_real_annotation, real_split

    for js in sorted((DATA / "images").glob("*.json")):
        if real_split(js.stem) != "val":
            continue
        img = cv2.imread(str(js.with_suffix(".png")), cv2.IMREAD_GRAYSCALE)
        if img is not None:
            yield img, read_real_annotation(js)


def real_detections(
    detector: Any, gray: np.ndarray, ann: dict[str, Any]
) -> tuple[list[tuple[str, tuple[float, ...]]], list[tuple[str, tuple[float, ...]]]]:
    """The detector's parts of the shared classes on a circuits-real drawing (at the reader's input side, none in an
    ignored region) and the annotated parts, as (class, box) lists for `match`."""
    norm = normalize_paper(gray)
    dets, _ = detect(detector, norm, box_threshold=0.35, side=detection_side(norm, detector.config.input_side))
    preds = [
        (d.cls, d.box) for d in dets if d.cls in REAL_SHARED and not any(iou(d.box, ig) > 0.3 for ig in ann["ignore"])
    ]
    return preds, [(c, tuple(b)) for c, *b in ann["boxes"]]


def run_real() -> dict[str, Any]:
    """Per-class detection F1 on the circuits-real validation split (detector only, at the reader's input side)."""
    if not DATA.is_dir():
        return {"skipped": f"{DATA} not found"}
    detector, _ = _Models.get()
    counts: dict[str, list[int]] = {}
    n_img = 0
    for img, ann in real_val_drawings():
        n_img += 1
        preds, gts = real_detections(detector, img, ann)
        pairs = match(preds, gts)
        mp = {i for i, _ in pairs}
        mg = {j for _, j in pairs}
        for i, p in enumerate(preds):
            counts.setdefault(p[0], [0, 0, 0])[0 if i in mp else 1] += 1
        for j, g in enumerate(gts):
            if j not in mg:
                counts.setdefault(g[0], [0, 0, 0])[2] += 1
    per = {c: {**f1(*v), "support": v[0] + v[2]} for c, v in sorted(counts.items())}
    tp, fp, fn = (sum(v[i] for v in counts.values()) for i in range(3))
    macro = statistics.mean(v["f1"] for v in per.values() if v["support"] > 0) if per else 0.0
    return {"images": n_img, "per_class": per, "micro": f1(tp, fp, fn), "macro_f1": round(macro, 4)}


def run_latency(n: int) -> dict[str, Any]:
    """Whole reader on 1500 x 1500 drawings, torch and ONNX Runtime limited to 2 threads."""
    import torch

    torch.set_num_threads(2)
    times, cpu = [], []
    for k in range(n + 1):
        s = render_sample(HELD_OUT_SEED + 50_000 + k, {"px_per_unit": 70.0})
        img = s.image if s.image.ndim == 2 else cv2.cvtColor(s.image, cv2.COLOR_RGB2GRAY)
        h, w = img.shape
        canvas = np.full((1500, 1500), 255, np.uint8)
        k2 = min(1500 / h, 1500 / w)
        small = cv2.resize(img, (int(w * k2), int(h * k2)))
        canvas[: small.shape[0], : small.shape[1]] = small
        t, c = time.perf_counter(), time.process_time()
        read_schematic(canvas)
        if k:  # the first call loads the models
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    return {
        "images": n,
        "median_s": round(statistics.median(times), 3),
        "p90_s": round(sorted(times)[int(0.9 * (len(times) - 1))], 3),
        # CPU seconds summed over threads: on two otherwise idle cores the wall time is at least half of this
        "median_cpu_s": round(statistics.median(cpu), 3),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="images per synthetic condition")
    ap.add_argument("--conditions", default="clean,scanned,damaged")
    ap.add_argument("--latency", type=int, default=10, help="images for the latency run (0: skip)")
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--no-oracle", action="store_true")
    ap.add_argument("--only-latency", action="store_true", help="skip the accuracy runs")
    ap.add_argument("--only-real", action="store_true", help="only the circuits-real validation split")
    ap.add_argument("--out", default=str(RESULTS / "schematic.json"))
    ap.add_argument(
        "--merge", action="store_true", help="keep the parts of an existing --out file that this run does not measure"
    )
    args = ap.parse_args()
    _Models.get()
    results: dict[str, Any] = {
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "weights": "vision/weights/detector.safetensors",
    }
    for cond in [] if args.only_latency or args.only_real else args.conditions.split(","):
        print(f"{cond} ...", flush=True)
        results[cond] = run_condition(cond, args.n, not args.no_oracle)
        print(json.dumps(results[cond]), flush=True)
    if not args.no_real and not args.only_latency:
        results["real_val"] = run_real()
        print(json.dumps(results["real_val"]), flush=True)
    if args.latency and not args.only_real:
        results["latency_1500px"] = run_latency(args.latency)
        print(json.dumps(results["latency_1500px"]), flush=True)
    out = Path(args.out)
    if args.merge and out.is_file():
        results = {**json.loads(out.read_text(encoding="utf-8")), **results}
    write_atomic(out, json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
