"""Why schematic reads fail: a failure table for the oracle path and the detector path.

For held-out synthetic drawings (the seeds of `eval_schematic.py`), every read whose netlist does
not match the truth is put into categories:
- detection (detector path only): `det_missed:TYPE` (no box of IoU >= 0.2), `det_extra:TYPE`,
  `det_loose_box:TYPE` (matched only below IoU 0.5), `det_class:TRUE->READ`;
- labels: `value:missing` / `value:wrong` (the part's value compared as in the exact match);
- pins: `pin_missing:TYPE` (no read pin near a true pin), `pin_role:TYPE` (a pin of another role there);
- nets: `net_split` (pins of one true net read on several nets; `:equal_supply_rails` when the
  pieces are supply symbols of one name), `net_merge` (true nets read as one; `:ground` with net 0);
- `other` when none of these explains the mismatch.
The oracle path is the reader's assembly fed with the true boxes, pins, dots and texts (what wire
tracing, pin assignment and net building lose by themselves); the detector path is `read_schematic`.

    python tests/benchmarks/eval_schematic_failures.py --n 60 --conditions clean,scanned
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_schematic import HELD_OUT_SEED, RESULTS, iou, make_sample, oracle_read  # noqa: E402

from pipelines.document import Circuit  # noqa: E402
from pipelines.schematic import canonical_value, read_schematic, same_netlist, truth_circuit  # noqa: E402
from vision.synth import NET_SYMBOLS, TYPE_PINS  # noqa: E402


def greedy_pairs(
    preds: list[tuple[float, ...]], truths: list[tuple[float, ...]], threshold: float
) -> list[tuple[int, int]]:
    """One-to-one (pred, truth) box pairs by falling IoU, class-blind, down to `threshold`."""
    cands = sorted(((iou(p, t), i, j) for i, p in enumerate(preds) for j, t in enumerate(truths)), reverse=True)
    used_p: set[int] = set()
    used_t: set[int] = set()
    out = []
    for v, i, j in cands:
        if v < threshold:
            break
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            out.append((i, j))
    return out


def categorise(
    truth: dict[str, Any], read: Circuit, pairs: list[tuple[int, int]], strict: set[tuple[int, int]]
) -> Counter:
    """Failure categories of one read (see the module docstring); `pairs` map read parts to true ones."""
    cats: Counter = Counter()
    comps = truth["components"]
    by_truth = {j: i for i, j in pairs}
    for j, c in enumerate(comps):
        if j not in by_truth:
            cats["det_missed:" + c["type"]] += 1
    matched = {i for i, _ in pairs}
    for i, p in enumerate(read.components):
        if i not in matched:
            cats["det_extra:" + p.type] += 1
    for i, j in pairs:
        p, c = read.components[i], comps[j]
        if (i, j) not in strict:
            cats["det_loose_box:" + c["type"]] += 1
        if p.type != c["type"]:
            cats[f"det_class:{c['type']}->{p.type}"] += 1
        elif c["type"] not in NET_SYMBOLS and canonical_value(c["type"], p.value) != canonical_value(
            c["type"], c["value"]
        ):
            cats["value:" + ("missing" if not p.value else "wrong")] += 1
    true_net = {(r, pin): n["name"] for n in truth["nets"] for r, pin in n["pins"]}
    read_net: dict[tuple[str, str], str | None] = {}
    for i, j in pairs:
        c, p = comps[j], read.components[i]
        size = max(c["bbox"][2] - c["bbox"][0], c["bbox"][3] - c["bbox"][1])
        roles = dict(TYPE_PINS[c["type"]])
        for name, xy in c["pins"].items():
            near = min(p.pins, key=lambda q: math.dist(q.xy, xy), default=None)
            if near is None or math.dist(near.xy, xy) > 0.35 * size:
                cats["pin_missing:" + c["type"]] += 1
                continue
            if p.type == c["type"] and roles.get(near.name) != roles[name]:
                cats["pin_role:" + c["type"]] += 1
            read_net[(c["ref"], name)] = near.net
    per_true: dict[str, set[str | None]] = defaultdict(set)
    per_read: dict[str | None, set[str]] = defaultdict(set)
    for key, net in read_net.items():
        per_true[true_net[key]].add(net)
        per_read[net].add(true_net[key])
    types = {c["ref"]: c["type"] for c in comps}
    for name, nets in per_true.items():
        if len(nets) > 1:
            rails = [k for k in read_net if true_net[k] == name and types[k[0]] == "supply"]
            split_rails = len(rails) >= 2 and len({read_net[k] for k in rails}) > 1
            cats["net_split" + (":equal_supply_rails" if split_rails else "")] += 1
    for names in per_read.values():
        if len(names) > 1:
            cats["net_merge" + (":ground" if "0" in names else "")] += 1
    return cats


def run(condition: str, n: int, detector: bool) -> dict[str, Any]:
    """Exact-match rates and failure tables of both paths over `n` drawings."""
    paths = ["oracle"] + (["detector"] if detector else [])
    exact = Counter()
    images: dict[str, Counter] = {p: Counter() for p in paths}
    counts: dict[str, Counter] = {p: Counter() for p in paths}
    for k in range(n):
        sample = make_sample(condition, HELD_OUT_SEED + k)
        tr = sample.truth
        want = truth_circuit(tr)
        boxes = [tuple(c["bbox"]) for c in tr["components"]]
        for path in paths:
            read = oracle_read(sample) if path == "oracle" else read_schematic(sample.image)
            if same_netlist(want, read):
                exact[path] += 1
                continue
            got = [tuple(c.bbox) for c in read.components]
            if path == "oracle":  # the same parts in the same order
                pairs = [(i, i) for i in range(len(boxes))]
                strict = set(pairs)
            else:
                pairs = greedy_pairs(got, boxes, 0.2)
                strict = set(greedy_pairs(got, boxes, 0.5))
            cats = categorise(tr, read, pairs, strict) or Counter({"other": 1})
            counts[path].update(cats)
            images[path].update({c.split(":")[0] for c in cats})
    return {
        p: {
            "images": n,
            "netlist_exact": round(exact[p] / n, 4),
            "images_by_category": dict(images[p].most_common()),
            "counts": dict(counts[p].most_common()),
        }
        for p in paths
    }


def print_table(condition: str, res: dict[str, Any]) -> None:
    cats = sorted({c for r in res.values() for c in r["images_by_category"]})
    paths = list(res)
    print(f"\n{condition}: netlist exact " + ", ".join(f"{p} {res[p]['netlist_exact']:.3f}" for p in paths))
    print(f"  {'category':<16}" + "".join(f"{p + ' imgs':>16}" for p in paths))
    for c in cats:
        print(f"  {c:<16}" + "".join(f"{res[p]['images_by_category'].get(c, 0):>16}" for p in paths))
    for p in paths:
        print(f"  {p} detail: " + ", ".join(f"{k} {v}" for k, v in list(res[p]["counts"].items())[:14]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60, help="drawings per condition")
    ap.add_argument("--conditions", default="clean,scanned")
    ap.add_argument("--oracle-only", action="store_true", help="skip the detector path (fast)")
    ap.add_argument("--out", default=str(RESULTS / "schematic_failures.json"))
    args = ap.parse_args()
    out: dict[str, Any] = {"machine": {"node": platform.node(), "python": platform.python_version()}}
    t0 = time.perf_counter()
    for cond in args.conditions.split(","):
        out[cond] = run(cond, args.n, not args.oracle_only)
        print_table(cond, out[cond])
    out["seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.out).write_text(json.dumps(out, indent=1), encoding="utf-8")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
