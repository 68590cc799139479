"""Generate a synthetic electronics datasheet PDF with exact ground truth beside it.

    python -m samples.make_datasheet --pages 120 --seed 0 --out samples/generated

writes `DIR/NAME.pdf` and `DIR/NAME.truth.json`. The truth file is a document JSON in the project's schema
(`pipelines.document.Document.from_dict` reads it): every block with its 1-based page and bbox in PDF points
(top-left origin), tables with cells, captions with labels, and the gold links (caption, continues, xref, and
`semantic` for paragraphs that discuss a table or figure without naming it). Its extra `truth` object lists the
cross-references (mention text, bbox, targets), implicit links, captions, tables, split tables, figures,
sections, equations, and the OCR, two-column and table-of-contents pages.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from pipelines.document import Block, Cell, Document, Link, OutlineEntry, Table, write_atomic
from samples import _ds_content as content
from samples._ds_layout import (
    PAGE_H,
    PAGE_W,
    FigureEl,
    Formula,
    Heading,
    Layout,
    Placed,
    Ref,
    Renderer,
    format_ref,
)

FOOTER = "Copyright © 2026 Ohmlens Instruments Incorporated · Submit Document Feedback"


class DatasheetError(ValueError):
    """Arguments the generator cannot honour."""


def _layout(flow: list[Any]) -> tuple[Layout, dict[int, int]]:
    """Lay out until page numbers quoted in the text (mentions, TOC) agree with where things land."""
    page_of: dict[int, int] = {}
    for _ in range(6):
        lay = Layout(page_of, (content.PART, "OLVS3521A – MARCH 2026 – REVISED NOVEMBER 2026"), FOOTER)
        for el in flow:
            lay.place(el)
        if lay.page_of == page_of:
            return lay, page_of
        page_of = lay.page_of
    raise RuntimeError("page numbers did not settle after 6 layout passes")


def _r(v: float) -> float:
    return round(v, 2)


def _bbox(b: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    return (_r(b[0]), _r(b[1]), _r(b[2]), _r(b[3]))


def _truth(lay: Layout, page_of: dict[int, int], name: str, pdf: bytes, seed: int) -> dict[str, Any]:
    """The gold document and the `truth` annex, from what the layout placed."""
    blocks: list[Block] = []
    placed_id: dict[int, str] = {}
    first_body: dict[int, str] = {}
    for page in lay.pages:
        for i, p in enumerate(page.blocks):
            bid = f"p{page.number}-b{i}"
            placed_id[id(p)] = bid
            if p.kind not in ("page_header", "page_footer"):
                first_body.setdefault(page.number, bid)
            table = None
            if p.cells is not None:
                table = Table(
                    p.n_rows,
                    p.n_cols,
                    [
                        Cell(c["row"], c["col"], c["text"], c["row_span"], c["col_span"], c["header"], tuple(c["bbox"]))
                        for c in p.cells
                    ],
                )
            blocks.append(Block(bid, p.kind, p.page, _bbox(p.bbox), p.text, p.level, p.label, table, None, None, p.ocr))
    all_placed = [p for page in lay.pages for p in page.blocks]
    by_el: dict[int, list[Placed]] = {}
    for p in all_placed:
        if p.element is not None and p.kind != "caption":
            by_el.setdefault(id(p.element), []).append(p)

    def target_of(el: Any) -> str:
        return placed_id[id(by_el[id(el)][0])]

    links: list[Link] = []
    ann: dict[str, Any] = {
        k: []
        for k in ("xrefs", "implicit_links", "captions", "tables", "split_tables", "figures", "sections", "equations")
    }
    block_of = {b.id: b for b in blocks}
    # tables and their split parts
    for parts in by_el.values():
        if parts[0].kind != "table":
            continue
        ids = [placed_id[id(p)] for p in parts]
        for k in range(1, len(parts)):
            assert block_of[ids[k]].table is not None
            block_of[ids[k]].table.continues = ids[k - 1]
            links.append(Link(ids[k], ids[k - 1], "continues"))
        el = parts[0].element
        for k, p in enumerate(parts):
            ann["tables"].append(
                {
                    "block": ids[k],
                    "label": el.label,
                    "page": p.page,
                    "bbox": _bbox(p.bbox),
                    "style": p.style,
                    "part": k,
                    "continues": ids[k - 1] if k else None,
                    "n_rows": p.n_rows,
                    "n_cols": p.n_cols,
                }
            )
        if len(parts) > 1:
            ann["split_tables"].append({"label": el.label, "parts": ids, "pages": [p.page for p in parts]})
    # captions
    for p in all_placed:
        if p.kind != "caption":
            continue
        el = p.caption_of
        target = placed_id[id(by_el[id(el)][p.caption_part])]
        cid = placed_id[id(p)]
        links.append(Link(cid, target, "caption", p.label or ""))
        ann["captions"].append(
            {
                "block": cid,
                "page": p.page,
                "bbox": _bbox(p.bbox),
                "label": p.label,
                "text": p.text,
                "target": target,
                "continued": p.caption_part > 0,
            }
        )
    # figures, sections, equations
    for p in all_placed:
        pid = placed_id[id(p)]
        if isinstance(p.element, FigureEl):
            ann["figures"].append(
                {
                    "block": pid,
                    "label": p.element.label,
                    "kind": p.kind,
                    "page": p.page,
                    "bbox": _bbox(p.bbox),
                    "vector": p.style == "svg",
                    "art": p.element.art.kind if p.style == "svg" else "raster",
                }
            )
        elif isinstance(p.element, Heading):
            h = p.element
            ann["sections"].append(
                {
                    "block": pid,
                    "number": h.number if h.numbered else None,
                    "title": h.title,
                    "level": h.level,
                    "page": p.page,
                }
            )
        elif isinstance(p.element, Formula):
            ann["equations"].append({"block": pid, "label": p.element.label, "page": p.page})
    # cross-references and implicit links
    n = 0
    for p in all_placed:
        src = placed_id[id(p)]
        for m in p.mentions:
            ref: Ref = m["ref"]
            expect = format_ref(ref, page_of)
            if expect != m["text"]:
                raise RuntimeError(f"mention {m['text']!r} does not match the final layout ({expect!r})")
            targets = []
            if not ref.external:
                for el in ref.targets:
                    if ref.kind == "page":
                        pg = page_of[id(el)]
                        targets.append({"page": pg, "block": first_body[pg], "label": None})
                    else:
                        tid = target_of(el)
                        targets.append(
                            {
                                "page": block_of[tid].page,
                                "block": tid,
                                "label": getattr(el, "label", None) if ref.kind != "section" else None,
                                "section": el.number if ref.kind == "section" else None,
                            }
                        )
            n += 1
            ann["xrefs"].append(
                {
                    "id": f"x{n}",
                    "source": src,
                    "page": p.page,
                    "text": m["text"],
                    "bbox": _bbox(m["bbox"]),
                    "kind": ref.kind,
                    "external": ref.external,
                    "targets": targets,
                    "ocr": p.ocr,
                }
            )
            for t in targets or [{"block": None}]:
                links.append(Link(src, t["block"], "xref", m["text"]))
        el = p.element
        if getattr(el, "implicit", None) is not None and p.kind in ("paragraph", "list_item") and not p.toc:
            target = target_of(el.implicit)
            if ann["implicit_links"] and ann["implicit_links"][-1]["para"] == id(el):
                continue  # a paragraph split over two pages is linked once, from its first part
            ann["implicit_links"].append(
                {
                    "source": src,
                    "page": p.page,
                    "snippet": p.text[:120],
                    "target_label": el.implicit.label,
                    "target": target,
                    "para": id(el),
                }
            )
            links.append(Link(src, target, "semantic", p.text[:120]))
    for x in ann["implicit_links"]:
        del x["para"]
    outline = [
        OutlineEntry(
            s["title"] if s["number"] is None else f"{s['number']} {s['title']}", s["level"], s["page"], s["block"]
        )
        for s in ann["sections"]
    ]
    doc = Document(
        hashlib.sha256(pdf).hexdigest(), f"{name}.pdf", [(PAGE_W, PAGE_H)] * len(lay.pages), blocks, links, outline
    )
    pages = lay.pages
    ann["ocr_pages"] = [pg.number for pg in pages if pg.ocr]
    ann["two_column_pages"] = [pg.number for pg in pages if pg.columns == 2]
    ann["toc_pages"] = sorted({p.page for p in all_placed if p.toc})
    resolved = [x for x in ann["xrefs"] if x["targets"]]
    cross_page = [x for x in resolved if all(t["page"] != x["page"] for t in x["targets"])]
    figs = ann["figures"]
    doc.metadata = {
        "generator": "samples.make_datasheet",
        "seed": seed,
        "stats": {
            "pages": len(pages),
            "tables": len({t["label"] for t in ann["tables"]}),
            "table_blocks": len(ann["tables"]),
            "borderless_tables": len({t["label"] for t in ann["tables"] if t["style"] != "grid"}),
            "split_tables": len(ann["split_tables"]),
            "schematics": sum(f["kind"] == "schematic" for f in figs),
            "vector_figures": sum(f["vector"] for f in figs),
            "raster_figures": sum(not f["vector"] for f in figs),
            "captions": len(ann["captions"]),
            "xrefs": len(ann["xrefs"]),
            "xrefs_resolvable": len(resolved),
            "xrefs_cross_page": len(cross_page),
            "xref_links": sum(len(x["targets"]) for x in resolved),
            "implicit_links": len(ann["implicit_links"]),
            "equations": len(ann["equations"]),
            "headings": len(ann["sections"]),
            "ocr_pages": len(ann["ocr_pages"]),
            "two_column_pages": len(ann["two_column_pages"]),
        },
    }
    data = doc.to_dict()
    data["truth"] = ann
    return data


def make_datasheet(out_dir: str | Path, pages: int = 120, seed: int = 0, name: str | None = None) -> Path:
    """Write a synthetic datasheet of at least `pages` pages and its ground truth; returns the PDF path.

    Raises:
        DatasheetError: fewer than 8 pages asked for (too few to hold every kind of content).
    """
    if pages < 8:
        raise DatasheetError(f"--pages must be at least 8 (got {pages})")
    name = name or f"datasheet-{pages}p-seed{seed}"
    # element counts grow with the page count up to a realistic density, then text fills the rest
    scale = min(1.4, pages / 120 * 1.4)
    n_prose = 0
    art_cache: dict[str, Any] = {}
    for _ in range(10):
        flow, _ctx, sections = content.build(seed, scale, n_prose, art_cache)
        lay, page_of = _layout(flow)
        short = pages - len(lay.pages)
        if short <= 0:
            break
        n_prose += max(1, round(short * 1.1))
    else:
        raise RuntimeError(f"could not reach {pages} pages")
    renderer = Renderer()
    for page in lay.pages:
        renderer.add_page(page, seed * 100003 + page.number)
    toc = [[s.level, s.text, page_of[id(s)]] for s in sections]
    pdf = renderer.finish(toc, content.TITLE)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    truth = _truth(lay, page_of, name, pdf, seed)
    write_atomic(out / f"{name}.pdf", pdf)
    write_atomic(out / f"{name}.truth.json", json.dumps(truth, ensure_ascii=False, indent=1))
    return out / f"{name}.pdf"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=120, help="minimum page count (default 120)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="samples/generated", help="output folder")
    ap.add_argument("--name", default=None, help="file stem (default datasheet-<pages>p-seed<seed>)")
    args = ap.parse_args(argv)
    try:
        path = make_datasheet(args.out, args.pages, args.seed, args.name)
    except DatasheetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stats = json.loads(path.with_suffix(".truth.json").read_text(encoding="utf-8"))["metadata"]["stats"]
    print(f"{path}: " + ", ".join(f"{k}={v}" for k, v in stats.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
