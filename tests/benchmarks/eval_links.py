"""Link quality on the synthetic datasheet: cross-references, caption attachment, split tables, implicit links.

    python tests/benchmarks/eval_links.py [--pages 120] [--seed 0] [--out tests/benchmarks/results/links.json]

Generates the datasheet (samples.make_datasheet), then scores two runs against its ground truth:

- `pipeline`: the full `pipelines.ingest.parse_pdf` (text, layout, tables, OCR, then `link_document`) — what a
  user gets;
- `oracle`: `link_document` on the gold blocks with their labels and links removed — the linker alone, as the
  anchor that separates linker errors from ingest errors.

Matching is geometric, so block ids and segmentation may differ from the truth: a predicted xref is correct
when its source block contains the gold mention (same page, mention bbox centre inside the block), its text
is the mention, and its target block overlaps the gold target (IoU ≥ 0.5 or one box's centre inside the
other; for page references the page alone). Precision counts links that name a target; mentions listed with
no target are reported apart (correct for references into other documents).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pipelines.document import Block, Document  # noqa: E402
from pipelines.links import link_document  # noqa: E402
from samples.make_datasheet import make_datasheet  # noqa: E402

BBox = tuple[float, float, float, float]


def norm_text(s: str) -> str:
    s = re.sub("[\u2010\u2011\u2012\u2013\u2014\u2212]", "-", s)
    return re.sub(r"\s+", " ", s).strip()


def iou(a: BBox, b: BBox) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def center_in(a: BBox, b: BBox, slack: float = 2.0) -> bool:
    cx, cy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    return b[0] - slack <= cx <= b[2] + slack and b[1] - slack <= cy <= b[3] + slack


def same_region(a: BBox, b: BBox) -> bool:
    return iou(a, b) >= 0.5 or center_in(a, b) or center_in(b, a)


def oracle_document(truth: dict[str, Any]) -> Document:
    """The gold blocks with every label and link removed: the linker's input under a perfect ingest."""
    doc = Document.from_dict(truth)
    doc.links = []
    for b in doc.blocks:
        b.label = None
    return doc


def score(doc: Document, truth: dict[str, Any]) -> dict[str, Any]:
    """Link precision/recall, caption accuracy, split-table merges and implicit-link recall against the truth."""
    ann = truth["truth"]
    gold = {b["id"]: b for b in truth["blocks"]}
    blocks = {b.id: b for b in doc.blocks}

    def gold_box(bid: str) -> BBox:
        return tuple(gold[bid]["bbox"])  # type: ignore[return-value]

    # ---- cross-references
    pairs = []  # (xref, target) gold pairs that name a target in this document
    for x in ann["xrefs"]:
        for t in x["targets"]:
            pairs.append((x, t))
    used: set[int] = set()
    tp = fp = 0
    by_kind: dict[str, dict[str, int]] = {}
    unresolved_ok = unresolved_missed = 0
    fp_examples: list[str] = []
    predicted = [lk for lk in doc.links if lk.kind == "xref"]
    for lk in predicted:
        src = blocks.get(lk.source)
        if src is None:
            continue
        cands = [
            i
            for i, (x, _t) in enumerate(pairs)
            if i not in used
            and x["page"] == src.page
            and norm_text(x["text"]) == norm_text(lk.text)
            and center_in(tuple(x["bbox"]), src.bbox, 3.0)
        ]
        if lk.target is None:
            ext = [
                x
                for x in ann["xrefs"]
                if x["external"]
                and x["page"] == src.page
                and norm_text(x["text"]) == norm_text(lk.text)
                and center_in(tuple(x["bbox"]), src.bbox, 3.0)
            ]
            if ext:
                unresolved_ok += 1
            elif cands:
                unresolved_missed += 1
            continue
        tgt = blocks.get(lk.target)
        hit = None
        for i in cands:
            x, t = pairs[i]
            if tgt is None:
                break
            if x["kind"] == "page":
                ok = tgt.page == t["page"]
            else:
                ok = tgt.page == t["page"] and same_region(tgt.bbox, gold_box(t["block"]))
            if ok:
                hit = i
                break
        kind = _kind_of(lk.text)
        slot = by_kind.setdefault(kind, {"tp": 0, "fp": 0, "gold": 0})
        if hit is None:
            fp += 1
            slot["fp"] += 1
            if len(fp_examples) < 15:
                where = f"{tgt.kind} p{tgt.page}" if tgt else "?"
                fp_examples.append(f"p{src.page} {lk.text!r} -> {where}")
        else:
            used.add(hit)
            tp += 1
            slot["tp"] += 1
    for x, _t in pairs:
        by_kind.setdefault(x["kind"], {"tp": 0, "fp": 0, "gold": 0})["gold"] += 1
    fn_examples = [
        f"p{x['page']} {x['text']!r} ({x['kind']}{', ocr' if x['ocr'] else ''})"
        for i, (x, _t) in enumerate(pairs)
        if i not in used
    ][:15]
    ocr_pairs = [i for i, (x, _t) in enumerate(pairs) if x["ocr"]]
    n_pred = tp + fp
    xref = {
        "gold_links": len(pairs),
        "predicted_links": n_pred,
        "true_positives": tp,
        "precision": round(tp / n_pred, 4) if n_pred else 0.0,
        "recall": round(tp / len(pairs), 4) if pairs else 0.0,
        "recall_text_layer": _ratio(
            sum(1 for i, (x, _) in enumerate(pairs) if i in used and not x["ocr"]),
            sum(1 for x, _ in pairs if not x["ocr"]),
        ),
        "recall_ocr_pages": _ratio(sum(1 for i in ocr_pairs if i in used), len(ocr_pairs)),
        "external_mentions": sum(1 for x in ann["xrefs"] if x["external"]),
        "external_listed_unresolved": unresolved_ok,
        "resolvable_left_unresolved": unresolved_missed,
        "by_kind": {
            k: {**v, "precision": _ratio(v["tp"], v["tp"] + v["fp"]), "recall": _ratio(v["tp"], v["gold"])}
            for k, v in sorted(by_kind.items())
        },
        "false_positive_examples": fp_examples,
        "missed_examples": fn_examples,
    }

    # ---- captions
    cap_links = [lk for lk in doc.links if lk.kind == "caption"]
    correct = 0
    cap_missed = []
    for c in ann["captions"]:
        ok = False
        for lk in cap_links:
            s, t = blocks.get(lk.source), blocks.get(lk.target or "")
            if s is None or t is None or s.page != c["page"] or not same_region(s.bbox, tuple(c["bbox"])):
                continue
            tb = gold[c["target"]]
            if t.page == tb["page"] and same_region(t.bbox, tuple(tb["bbox"])):
                ok = True
                break
        correct += ok
        if not ok and len(cap_missed) < 10:
            cap_missed.append(f"p{c['page']} {c['text'][:50]!r}")
    captions = {
        "gold": len(ann["captions"]),
        "predicted_links": len(cap_links),
        "correct": correct,
        "accuracy": _ratio(correct, len(ann["captions"])),
        "missed_examples": cap_missed,
    }

    # ---- split tables
    tables = [b for b in doc.blocks if b.kind == "table"]
    merged = 0
    split_detail = []
    for group in ann["split_tables"]:
        ok = all(
            _continued(doc, tables, gold[group["parts"][k - 1]], gold[group["parts"][k]])
            for k in range(1, len(group["parts"]))
        )
        merged += ok
        split_detail.append({"label": group["label"], "pages": group["pages"], "merged": ok})
    splits = {"gold": len(ann["split_tables"]), "merged": merged, "tables": split_detail}

    # ---- implicit links
    sem = [lk for lk in doc.links if lk.kind == "semantic"]
    found = 0
    for im in ann["implicit_links"]:
        src_box, tgt = tuple(gold[im["source"]]["bbox"]), gold[im["target"]]
        for lk in sem:
            s, t = blocks.get(lk.source), blocks.get(lk.target or "")
            if (
                s
                and t
                and s.page == im["page"]
                and same_region(s.bbox, src_box)
                and t.page == tgt["page"]
                and same_region(t.bbox, tuple(tgt["bbox"]))
            ):
                found += 1
                break
    implicit = {
        "gold": len(ann["implicit_links"]),
        "found": found,
        "recall": _ratio(found, len(ann["implicit_links"])),
        "predicted": len(sem),
        "precision": _ratio(found, len(sem)),
    }
    return {"xrefs": xref, "captions": captions, "split_tables": splits, "implicit_links": implicit}


def _continued(doc: Document, tables: list[Block], first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Whether the predicted tables at two gold parts are joined (a `continues` link or field, or one merged block)."""
    a = [t for t in tables if t.page == first["page"] and same_region(t.bbox, tuple(first["bbox"]))]
    b = [t for t in tables if t.page == second["page"] and same_region(t.bbox, tuple(second["bbox"]))]
    if a and b:
        ids_a = {t.id for t in a}
        for t in b:
            if t.table and t.table.continues in ids_a:
                return True
            if any(lk.kind == "continues" and lk.source == t.id and lk.target in ids_a for lk in doc.links):
                return True
        return False
    if a and not b:  # merged into the first part: its cells must hold the second part's body text
        body = {norm_text(c["text"]) for c in second["cells"] if not c["header"] and c["text"]}
        have = {norm_text(c.text) for t in a for c in t.cells}
        return bool(body) and len(body & have) >= 0.8 * len(body)
    return False


def _ratio(a: int, b: int) -> float:
    return round(a / b, 4) if b else 0.0


def _kind_of(text: str) -> str:
    t = text.lower()
    for prefix, kind in (
        ("tab", "table"),
        ("fig", "figure"),
        ("sec", "section"),
        ("chap", "section"),
        ("\u00a7", "section"),
        ("eq", "equation"),
        ("p", "page"),
    ):
        if t.startswith(prefix):
            return kind
    return "other"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=str(ROOT / "tests" / "benchmarks" / "_work" / "links"))
    ap.add_argument("--out", default=str(ROOT / "tests" / "benchmarks" / "results" / "links.json"))
    ap.add_argument("--no-pipeline", action="store_true", help="score the oracle run only")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    pdf = make_datasheet(args.work, pages=args.pages, seed=args.seed)
    gen_s = time.perf_counter() - t0
    truth = json.loads(pdf.with_suffix(".truth.json").read_text(encoding="utf-8"))
    stats = truth["metadata"]["stats"]
    print(
        f"generated {pdf.name}: {stats['pages']} pages in {gen_s:.1f} s; {stats['xref_links']} gold xref links, "
        f"{stats['captions']} captions, {stats['split_tables']} split tables"
    )

    results: dict[str, Any] = {
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "datasheet": {"pages": stats["pages"], "seed": args.seed, "generate_s": round(gen_s, 2), "stats": stats},
        "goals": {"xref_precision": 0.98, "xref_recall": 0.95, "caption_accuracy": 0.95, "split_tables_merged": "all"},
    }
    t0 = time.perf_counter()
    oracle = link_document(oracle_document(truth))
    results["oracle"] = {"link_s": round(time.perf_counter() - t0, 3), **score(oracle, truth)}
    _print("oracle (gold blocks → link_document)", results["oracle"])

    if not args.no_pipeline:
        try:
            from pipelines.ingest import parse_pdf
        except ImportError as exc:
            print(f"pipeline run skipped: {exc}")
        else:
            t0 = time.perf_counter()
            doc = parse_pdf(pdf)
            parse_s = time.perf_counter() - t0
            results["pipeline"] = {"parse_s": round(parse_s, 2), "problems": doc.problems[:10], **score(doc, truth)}
            _print(f"pipeline (parse_pdf, {parse_s:.1f} s)", results["pipeline"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


def _print(title: str, r: dict[str, Any]) -> None:
    x, c, s, i = r["xrefs"], r["captions"], r["split_tables"], r["implicit_links"]
    print(f"== {title}")
    print(
        f"  xref links: precision {x['precision']:.3f} (goal 0.98)  recall {x['recall']:.3f} (goal 0.95)  "
        f"[{x['true_positives']}/{x['predicted_links']} predicted, {x['gold_links']} gold; "
        f"text-layer recall {x['recall_text_layer']:.3f}, OCR-page recall {x['recall_ocr_pages']:.3f}]"
    )
    print(
        f"  external mentions listed unresolved: {x['external_listed_unresolved']}/{x['external_mentions']}; "
        f"resolvable left unresolved: {x['resolvable_left_unresolved']}"
    )
    for k, v in x["by_kind"].items():
        print(f"    {k:9s} P {v['precision']:.3f} R {v['recall']:.3f} (gold {v['gold']})")
    print(f"  caption attachment accuracy {c['accuracy']:.3f} (goal 0.95) [{c['correct']}/{c['gold']}]")
    print(f"  split tables merged {s['merged']}/{s['gold']}")
    print(f"  implicit links found {i['found']}/{i['gold']} (recall {i['recall']:.3f}, precision {i['precision']:.3f})")
    for e in x["false_positive_examples"][:8]:
        print("    FP", e)
    for e in x["missed_examples"][:8]:
        print("    FN", e)
    for e in c["missed_examples"][:5]:
        print("    caption missed", e)


if __name__ == "__main__":
    raise SystemExit(main())
