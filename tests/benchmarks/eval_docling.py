"""Agreement with docling's regression output on ../shared/data/docling-dev/ (a machine reference).

Usage: python tests/benchmarks/eval_docling.py [DATA_DIR]

Reports per file and pooled:
- tables: docling tables matched by ours (same page, IoU >= 0.5) and cell agreement on matched tables
  (the ICDAR adjacency relations of both grids, F1);
- captions: docling tables/pictures that carry a caption, for which we link a caption block with the
  same text to a block overlapping docling's item (IoU >= 0.3);
- headings: docling section headers whose text we also classify as a heading.
Writes tests/benchmarks/results/docling.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench_tables import _norm, relations  # noqa: E402  (the ICDAR scorers' rules, shared)

from pipelines.ingest import parse_pdf  # noqa: E402

norm = _norm


def box_of(prov: dict, page_height: float) -> tuple[float, float, float, float]:
    b = prov["bbox"]
    if b.get("coord_origin") == "BOTTOMLEFT":
        return (b["l"], page_height - b["t"], b["r"], page_height - b["b"])
    return (b["l"], b["t"], b["r"], b["b"])


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def evaluate(pdf: Path) -> dict:
    gt = json.loads(pdf.with_suffix(".gt.json").read_text())
    doc = parse_pdf(pdf)
    heights = {int(k): v["size"]["height"] for k, v in gt["pages"].items()}
    texts = {t["self_ref"]: t for t in gt["texts"]}
    ours_tables = doc.tables()
    t_match = 0
    tp = fp = fn = 0
    for t in gt["tables"]:
        prov = t["prov"][0]
        box = box_of(prov, heights[prov["page_no"]])
        cands = [b for b in ours_tables if b.page == prov["page_no"] and iou(b.bbox, box) >= 0.5]
        g = relations(
            [
                (
                    c["start_row_offset_idx"],
                    c["start_col_offset_idx"],
                    c["end_row_offset_idx"] - 1,
                    c["end_col_offset_idx"] - 1,
                    c["text"],
                )
                for c in t["data"]["table_cells"]
            ]
        )
        if not cands:
            fn += sum(g.values())
            continue
        t_match += 1
        ours = cands[0].table
        p = relations([(c.row, c.col, c.row + c.row_span - 1, c.col + c.col_span - 1, c.text) for c in ours.cells])
        inter = sum((g & p).values())
        tp += inter
        fp += sum(p.values()) - inter
        fn += sum(g.values()) - inter
    captioned = 0
    caption_ok = 0
    caption_links = [lk for lk in doc.links if lk.kind == "caption" and lk.target]
    for item in gt["tables"] + gt["pictures"]:
        if not item["captions"]:
            continue
        captioned += 1
        cap_text = norm(texts[item["captions"][0]["$ref"]]["text"])
        prov = item["prov"][0]
        box = box_of(prov, heights[prov["page_no"]])
        for lk in caption_links:
            cap, target = doc.block(lk.source), doc.block(lk.target)
            same_text = norm(cap.text)[:40] == cap_text[:40]
            if same_text and target.page == prov["page_no"] and iou(target.bbox, box) >= 0.3:
                caption_ok += 1
                break
    headers = [norm(t["text"]) for t in gt["texts"] if t["label"] in ("section_header", "title")]
    ours_headings = {norm(b.text) for b in doc.blocks if b.kind == "heading"}
    return {
        "file": pdf.name,
        "docling_tables": len(gt["tables"]),
        "tables_matched": t_match,
        "cell_tp": tp,
        "cell_fp": fp,
        "cell_fn": fn,
        "captioned_items": captioned,
        "captions_matched": caption_ok,
        "headings": len(headers),
        "headings_matched": sum(1 for h in headers if h in ours_headings),
    }


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "data" / "docling-dev"
    if not data.exists():
        sys.exit(f"docling-dev data not found at {data}")
    rows = [evaluate(p) for p in sorted(data.glob("*.pdf"))]
    total = {k: sum(r[k] for r in rows) for k in rows[0] if k != "file"}
    for r in rows:
        print(
            f"{r['file']:40s} tables {r['tables_matched']}/{r['docling_tables']}  "
            f"captions {r['captions_matched']}/{r['captioned_items']}  headings {r['headings_matched']}/{r['headings']}"
        )
    p = total["cell_tp"] / max(1, total["cell_tp"] + total["cell_fp"])
    r = total["cell_tp"] / max(1, total["cell_tp"] + total["cell_fn"])
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    print(
        f"tables found: {total['tables_matched']}/{total['docling_tables']}; cell agreement (adjacency) "
        f"P={p:.3f} R={r:.3f} F1={f1:.3f}"
    )
    print(
        f"captions matched: {total['captions_matched']}/{total['captioned_items']}; "
        f"headings matched: {total['headings_matched']}/{total['headings']}"
    )
    out = REPO / "tests" / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "docling.json").write_text(
        json.dumps({"files": rows, "total": total, "cell_f1": f1, "cell_precision": p, "cell_recall": r}, indent=2)
        + "\n"
    )


if __name__ == "__main__":
    main()
