"""Table extraction on ICDAR-2013 EU (human ground truth): quality and speed against the anchors, in one run.

Usage: python tests/benchmarks/bench_tables.py [--out DIR] [--skip-pymupdf4llm] [--library-variants]

1. `extract` (our table extraction; swap in the full `parse_pdf` later) runs on every PDF of
   `../shared/data/tables-icdar2013-eu/` and writes one document JSON per PDF into DIR.
2. Table detection P/R/F1 (IoU >= 0.5, one-to-one, per page) and cell adjacency P/R/F1 (nearest right and
   lower neighbour of every non-empty cell, alphanumeric lower-cased text, pooled per document) are computed
   here by the reference scorers' rules, from the JSON files as written.
3. The reference scorers `../shared/tools/eval_tables.py` and `eval_cells.py` run on the same folder; their
   figures must equal ours.
4. Anchors in the same run: PyMuPDF's plain `page.find_tables()` (timed here, written as JSON and scored the
   same two ways) and pymupdf4llm (the reference `eval_cells.py --anchor pymupdf4llm`). With
   `--library-variants`, also PyMuPDF 2's `find_tables(union=True)` (its layout and table-grid ONNX models
   fused with the line finder) and `find_tables(use_layout=False)` (lines only).
5. Time per page, ours against `find_tables`: process CPU time and wall time.
6. If the synthetic datasheet `samples/generated/datasheet-120p-seed0.pdf` is there: tables found against its
   truth, adjacency, split tables linked, and the whole-file time of the table pass.
Writes tests/benchmarks/results/tables.json (and the per-PDF JSON into DIR).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pymupdf

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pipelines.document import Block, Document, write_atomic  # noqa: E402
from pipelines.ingest import parse_pdf  # noqa: E402
from pipelines.tables import extract_tables, merge_split_tables  # noqa: E402  (timing and split-table checks)

SHARED = REPO.parent / "shared"
ICDAR = SHARED / "data" / "tables-icdar2013-eu"
TOOLS = SHARED / "tools"
SYNTH = REPO / "samples" / "generated" / "datasheet-120p-seed0.pdf"
RESULTS = REPO / "tests" / "benchmarks" / "results"
ANCHORS_PUBLISHED = {"find_tables": (0.960, 0.858), "pymupdf4llm_adjacency": 0.855}

CellTuple = tuple[int, int, int, int, str]  # start row, start col, end row, end col, text


def extract(pdf: Path) -> Document:
    """Our output for one PDF: the full document parse, as `ohmlens parse` writes it."""
    return parse_pdf(pdf)


# ------------------------------------------------------------------ the reference scorers' rules


def gt_regions(reg_xml: Path, pdf: Path) -> list[tuple[int, tuple[float, float, float, float]]]:
    """Ground-truth table regions (page, bbox) in the displayed page frame, top-left origin."""
    with pymupdf.open(pdf) as doc:
        heights = [p.rect.height for p in doc]
    out = []
    for t in ET.parse(reg_xml).getroot().iter("table"):
        for r in t.iter("region"):
            p = int(r.get("page"))
            bb = r.find("bounding-box")
            x1, x2, y1, y2 = (float(bb.get(k)) for k in ("x1", "x2", "y1", "y2"))
            out.append((p, (x1, heights[p - 1] - y2, x2, heights[p - 1] - y1)))
    return out


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detection(gt: list[tuple[int, tuple]], pred: list[tuple[int, tuple]]) -> tuple[int, int, int]:
    """(tp, fp, fn): each ground-truth region takes its best unused prediction on its page at IoU >= 0.5."""
    tp = fn = 0
    used: set[int] = set()
    for page, g in gt:
        best = max(
            ((iou(g, q), j) for j, (pp, q) in enumerate(pred) if pp == page and j not in used), default=(0.0, None)
        )
        if best[0] >= 0.5:
            tp += 1
            used.add(best[1])
        else:
            fn += 1
    return tp, len(pred) - len(used), fn


def _norm(s: str | None) -> str:
    return re.sub(r"[^0-9a-z]", "", (s or "").lower())


def relations(cells: list[CellTuple]) -> collections.Counter:
    """Multiset of (text, right neighbour's text, "h") and (text, lower neighbour's text, "v")."""
    cells = [c for c in cells if _norm(c[4])]
    rel: collections.Counter = collections.Counter()
    for r0, c0, r1, c1, text in cells:
        right = [c for c in cells if c[1] > c1 and c[0] <= r0 <= c[2]]
        if right:
            rel[(_norm(text), _norm(min(right, key=lambda c: c[1])[4]), "h")] += 1
        down = [c for c in cells if c[0] > r1 and c[1] <= c0 <= c[3]]
        if down:
            rel[(_norm(text), _norm(min(down, key=lambda c: c[0])[4]), "v")] += 1
    return rel


def load_gt_cells(str_xml: Path) -> list[list[CellTuple]]:
    tables = []
    for t in ET.parse(str_xml).getroot().iter("table"):
        cells = []
        for c in t.iter("cell"):
            r0, c0 = int(c.get("start-row")), int(c.get("start-col"))
            r1, c1 = int(c.get("end-row", r0)), int(c.get("end-col", c0))
            cells.append((r0, c0, r1, c1, c.findtext("content") or ""))
        tables.append(cells)
    return tables


def adjacency(gt_tables: list[list[CellTuple]], pred_tables: list[list[CellTuple]]) -> tuple[int, int, int]:
    """(tp, fp, fn) of adjacency relations for one document, pooled over its tables."""
    g: collections.Counter = collections.Counter()
    p: collections.Counter = collections.Counter()
    for t in gt_tables:
        g.update(relations(t))
    for t in pred_tables:
        p.update(relations(t))
    inter = sum((g & p).values())
    return inter, sum(p.values()) - inter, sum(g.values()) - inter


def json_tables(path: Path) -> tuple[list[tuple[int, tuple]], list[list[CellTuple]]]:
    """Table boxes and cells from a written document JSON, read as the reference scorers read them."""
    data = json.loads(path.read_text(encoding="utf-8"))
    boxes, cells = [], []
    for b in data["blocks"]:
        if (b.get("kind") or b.get("type")) != "table":
            continue
        boxes.append((int(b["page"]), tuple(float(v) for v in b["bbox"])))
        t = b.get("table") if isinstance(b.get("table"), dict) else b
        if t.get("cells"):
            cells.append(
                [
                    (
                        int(c["row"]),
                        int(c["col"]),
                        int(c["row"]) + int(c.get("row_span", 1)) - 1,
                        int(c["col"]) + int(c.get("col_span", 1)) - 1,
                        c.get("text", ""),
                    )
                    for c in t["cells"]
                ]
            )
        elif t.get("rows"):
            cells.append([(r, c, r, c, s or "") for r, row in enumerate(t["rows"]) for c, s in enumerate(row)])
    return boxes, cells


def prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"P": round(p, 3), "R": round(r, 3), "F1": round(2 * p * r / (p + r) if p + r else 0.0, 3)}


def score_folder(folder: Path) -> dict[str, dict[str, float]]:
    """Detection and adjacency over all ICDAR PDFs, from the JSON files in `folder`."""
    det = [0, 0, 0]
    adj = [0, 0, 0]
    for reg in sorted(ICDAR.glob("*-reg.xml")):
        stem = reg.name[: -len("-reg.xml")]
        pdf = ICDAR / f"{stem}.pdf"
        if not pdf.exists():
            continue
        boxes, cells = json_tables(folder / f"{stem}.json")
        for k, v in enumerate(detection(gt_regions(reg, pdf), boxes)):
            det[k] += v
        for k, v in enumerate(adjacency(load_gt_cells(ICDAR / f"{stem}-str.xml"), cells)):
            adj[k] += v
    return {"detection": prf(*det), "adjacency": prf(*adj)}


def reference(script: str, *args: str) -> dict[str, float]:
    """Run one reference scorer and read back its P/R/F1 line."""
    out = subprocess.run(
        [sys.executable, str(TOOLS / script), str(ICDAR), *args], capture_output=True, text=True, timeout=3600
    ).stdout
    m = re.search(r"P=([\d.]+) R=([\d.]+) F1=([\d.]+)", out)
    if m is None:
        raise RuntimeError(f"{script} printed no figures: {out[-300:]}")
    return {"P": float(m.group(1)), "R": float(m.group(2)), "F1": float(m.group(3))}


# ------------------------------------------------------------------ runs


def _pdfs() -> list[Path]:
    return [ICDAR / f"{r.name[: -len('-reg.xml')]}.pdf" for r in sorted(ICDAR.glob("*-reg.xml"))]


def run_ours(folder: Path) -> dict[str, float]:
    """Extract every PDF, write its JSON; CPU and wall time per page of the table pass alone."""
    cpu = wall = 0.0
    pages = 0
    for pdf in _pdfs():
        if not pdf.exists():
            continue
        with pymupdf.open(pdf) as src:
            texts = [p.get_text("dict") for p in src]  # the ingest has this already: not counted
            c0, w0 = time.process_time(), time.perf_counter()
            for i, page in enumerate(src):
                extract_tables(page, i + 1, texts[i])
            cpu += time.process_time() - c0
            wall += time.perf_counter() - w0
            pages += len(src)
        doc = extract(pdf)  # the scored output is the full parse's, whatever the table pass alone found
        write_atomic(folder / f"{pdf.stem}.json", doc.to_json())
    return {"pages": pages, "cpu_ms_per_page": 1000 * cpu / pages, "wall_ms_per_page": 1000 * wall / pages}


def run_find_tables(folder: Path, **options: bool) -> dict[str, float]:
    """PyMuPDF's find_tables on every page (plain: the anchor), timed, written as JSON with its grids."""
    cpu = wall = 0.0
    pages = 0
    for pdf in _pdfs():
        if not pdf.exists():
            continue
        blocks = []
        with pymupdf.open(pdf) as src:
            for i, page in enumerate(src):
                c0, w0 = time.process_time(), time.perf_counter()
                found = page.find_tables(**options).tables
                rows = [t.extract() for t in found]
                cpu += time.process_time() - c0
                wall += time.perf_counter() - w0
                for k, (t, grid) in enumerate(zip(found, rows)):
                    blocks.append(
                        {"id": f"p{i + 1}-t{k}", "kind": "table", "page": i + 1, "bbox": list(t.bbox), "rows": grid}
                    )
            pages += len(src)
        write_atomic(folder / f"{pdf.stem}.json", json.dumps({"blocks": blocks}))
    return {"pages": pages, "cpu_ms_per_page": 1000 * cpu / pages, "wall_ms_per_page": 1000 * wall / pages}


def run_synthetic() -> dict | None:
    """Our tables on the synthetic datasheet against its truth (detection, adjacency, split tables, time)."""
    truth_path = SYNTH.with_suffix("").with_suffix(".truth.json")
    if not SYNTH.exists() or not truth_path.exists():
        return None
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    with pymupdf.open(SYNTH) as src:
        texts = [p.get_text("dict") for p in src]
        c0, w0 = time.process_time(), time.perf_counter()
        ours = [b for i, page in enumerate(src) for b in extract_tables(page, i + 1, texts[i])]
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        sizes = [(p.rect.width, p.rect.height) for p in src]
    gold = [b for b in truth["blocks"] if b["kind"] == "table"]
    det = detection([(b["page"], tuple(b["bbox"])) for b in gold], [(b.page, b.bbox) for b in ours])

    def cells_of(cells: list) -> list[CellTuple]:
        return [
            (c["row"], c["col"], c["row"] + c["row_span"] - 1, c["col"] + c["col_span"] - 1, c["text"]) for c in cells
        ]

    adj = adjacency(
        [cells_of(b["table"]["cells"]) for b in gold],
        [[(c.row, c.col, c.row + c.row_span - 1, c.col + c.col_span - 1, c.text) for c in b.cells] for b in ours],
    )
    # the split-table stage needs the blocks between tables: take the truth's non-table blocks for them
    context = [
        Block(
            id=b["id"],
            kind=b["kind"],
            page=b["page"],
            bbox=tuple(b["bbox"]),
            text=b.get("text", ""),
            label=b.get("label"),
        )
        for b in truth["blocks"]
        if b["kind"] != "table"
    ]
    doc = Document(
        id="synthetic",
        source=SYNTH.name,
        page_sizes=sizes,
        blocks=sorted(ours + context, key=lambda b: (b.page, b.bbox[1], b.bbox[0])),
    )
    merge_split_tables(doc)
    found = {(doc.block(lk.source).page, doc.block(lk.target).page) for lk in doc.links if lk.kind == "continues"}
    wanted = {tuple(reversed(s["pages"][:2])) for s in truth["truth"]["split_tables"]}
    return {
        "pages": len(sizes),
        "tables_truth": len(gold),
        "detection": prf(*det),
        "adjacency": prf(*adj),
        "split_tables_truth": len(wanted),
        "split_tables_linked": len(found & wanted),
        "split_links_wrong": len(found - wanted),
        "table_pass_cpu_s": round(cpu, 3),
        "table_pass_wall_s": round(wall, 3),
        "note": "tables on OCR-only pages are not seen by the table pass (no text layer)",
    }


def machine() -> dict[str, object]:
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_avg_at_start": os.getloadavg(),
        "pymupdf": pymupdf.VersionBind,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def _line(name: str, s: dict[str, float]) -> str:
    return f"P={s['P']:.3f} R={s['R']:.3f} F1={s['F1']:.3f}  {name}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="folder for the per-PDF JSON (default: a temporary folder)")
    ap.add_argument("--skip-pymupdf4llm", action="store_true", help="leave out the slow pymupdf4llm anchor")
    ap.add_argument(
        "--library-variants",
        action="store_true",
        help="also score PyMuPDF 2's find_tables(union=True) and (use_layout=False), its layout-model modes",
    )
    args = ap.parse_args(argv)
    if not ICDAR.exists():
        print(f"data set not found: {ICDAR}", file=sys.stderr)
        return 2
    info = machine()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-tables-"))
    ours_dir, ft_dir = out / "ours", out / "find_tables"
    print(f"machine: {info['host']} {info['cores']} cores, load {info['load_avg_at_start']}")
    print(f"writing JSON under {out}")

    t_ours = run_ours(ours_dir)
    s_ours = score_folder(ours_dir)
    r_ours = {
        "detection": reference("eval_tables.py", str(ours_dir)),
        "adjacency": reference("eval_cells.py", str(ours_dir)),
    }
    t_ft = run_find_tables(ft_dir)
    s_ft = score_folder(ft_dir)
    r_ft = {"detection": reference("eval_tables.py", str(ft_dir)), "adjacency": reference("eval_cells.py", str(ft_dir))}
    r_llm = None if args.skip_pymupdf4llm else reference("eval_cells.py", "--anchor", "pymupdf4llm")
    agree = all(s_ours[k] == r_ours[k] and s_ft[k] == r_ft[k] for k in ("detection", "adjacency"))
    variants = {}
    if args.library_variants:
        for name, options in (("union", {"union": True}), ("no_layout", {"use_layout": False})):
            timing = run_find_tables(out / f"find_tables_{name}", **options)
            variants[name] = {**score_folder(out / f"find_tables_{name}"), "time": timing}
    synth = run_synthetic()

    print(f"\nICDAR-2013 EU, {t_ours['pages']} pages, {sum(1 for p in _pdfs() if p.exists())} PDFs")
    print("table detection (IoU >= 0.5)")
    print("  " + _line("ours (this benchmark)", s_ours["detection"]))
    print("  " + _line("ours (reference eval_tables.py)", r_ours["detection"]))
    print("  " + _line("find_tables (this benchmark)", s_ft["detection"]))
    print("  " + _line("find_tables (reference eval_tables.py)", r_ft["detection"]))
    print("cell adjacency")
    print("  " + _line("ours (this benchmark)", s_ours["adjacency"]))
    print("  " + _line("ours (reference eval_cells.py)", r_ours["adjacency"]))
    print("  " + _line("find_tables (this benchmark)", s_ft["adjacency"]))
    print("  " + _line("find_tables (reference eval_cells.py)", r_ft["adjacency"]))
    if r_llm:
        print("  " + _line("pymupdf4llm (reference eval_cells.py --anchor pymupdf4llm)", r_llm))
    for name, v in variants.items():
        print(
            f"  find_tables {name}: detection F1 {v['detection']['F1']:.3f}, adjacency F1 {v['adjacency']['F1']:.3f}, "
            f"{v['time']['cpu_ms_per_page']:.0f} ms CPU/page"
        )
    print(f"benchmark and reference scorers agree: {agree}")
    ratio_det = s_ours["detection"]["F1"] / max(s_ft["detection"]["F1"], 1e-9)
    ratio_adj = s_ours["adjacency"]["F1"] / max(s_ft["adjacency"]["F1"], 1e-9)
    print(f"ours / find_tables: detection F1 x{ratio_det:.3f}, adjacency F1 x{ratio_adj:.3f}")
    print("time per page (table pass only; text dict given)")
    print(f"  ours        {t_ours['cpu_ms_per_page']:7.1f} ms CPU  {t_ours['wall_ms_per_page']:7.1f} ms wall")
    print(f"  find_tables {t_ft['cpu_ms_per_page']:7.1f} ms CPU  {t_ft['wall_ms_per_page']:7.1f} ms wall")
    speed = t_ft["cpu_ms_per_page"] / max(t_ours["cpu_ms_per_page"], 1e-9)
    print(f"  ours is {speed:.1f}x faster (CPU)")
    if synth:
        print(f"synthetic datasheet ({synth['pages']} pages, {synth['tables_truth']} tables in its truth)")
        print("  " + _line("detection", synth["detection"]))
        print("  " + _line("adjacency", synth["adjacency"]))
        print(
            f"  split tables linked {synth['split_tables_linked']}/{synth['split_tables_truth']}, "
            f"wrong links {synth['split_links_wrong']}"
        )
        print(f"  table pass {synth['table_pass_cpu_s']:.2f} s CPU, {synth['table_pass_wall_s']:.2f} s wall")

    result = {
        "machine": info,
        "dataset": str(ICDAR.relative_to(SHARED.parent)),
        "ours": {**s_ours, "reference_scorers": r_ours, "time": t_ours},
        "find_tables": {**s_ft, "reference_scorers": r_ft, "time": t_ft},
        "pymupdf4llm": {"adjacency_reference": r_llm},
        "find_tables_variants": variants,
        "published_anchors": ANCHORS_PUBLISHED,
        "benchmark_equals_reference": agree,
        "speedup_cpu_vs_find_tables": round(speed, 2),
        "synthetic_datasheet": synth,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_atomic(RESULTS / "tables.json", json.dumps(result, indent=2))
    print(f"wrote {RESULTS / 'tables.json'}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
