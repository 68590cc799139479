"""The web UI (Gradio Blocks): Document, Schematic, Repair and Chat tabs. Thin: all work is in `pipelines`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from app.settings import Settings
from app.ui_chat import build_chat_tab
from app.ui_repair import build_repair_tab
from app.ui_schematic import build_schematic_tab
from pipelines.batch import write_outputs
from pipelines.document import Document
from pipelines.ingest import PdfError
from pipelines.render import render_page
from pipelines.store import Workspace

LINK_HEADERS = ["from page", "mention", "kind", "to", "to page", "target block"]


def _outline_markdown(doc: Document) -> str:
    if not doc.outline:
        return "*No headings found.*"
    return "\n".join(f"{'  ' * (o.level - 1)}- {o.title} *(p. {o.page})*" for o in doc.outline)


def _link_rows(doc: Document) -> list[list]:
    rows = []
    for lk in doc.links:
        if lk.kind not in ("xref", "continues", "semantic"):
            continue
        src = doc.block(lk.source)
        if lk.target:
            tgt = doc.block(lk.target)
            rows.append([src.page, lk.text, lk.kind, tgt.label or tgt.text[:40], tgt.page, tgt.id])
        else:
            rows.append([src.page, lk.text, lk.kind, "unresolved", "", ""])
    return rows


def _summary(doc: Document) -> str:
    xrefs = [lk for lk in doc.links if lk.kind == "xref"]
    resolved = sum(1 for lk in xrefs if lk.target)
    figures = sum(1 for b in doc.blocks if b.kind in ("figure", "schematic"))
    text = (
        f"**{doc.source}**: {doc.page_count} pages, {len(doc.blocks)} blocks, {len(doc.tables())} tables, "
        f"{figures} figures, {resolved}/{len(xrefs)} cross-references resolved"
    )
    if doc.problems:
        text += "\n\n" + "\n".join(f"- ⚠ {p}" for p in doc.problems)
    return text


def build_document_tab(workspace: Workspace) -> None:
    """Upload a PDF, watch progress, browse outline, pages with boxes, tables, figures and links."""
    doc_state = gr.State(None)  # document id
    with gr.Row():
        upload = gr.File(label="PDF", file_types=[".pdf"], elem_id="doc-upload")
        with gr.Column():
            parse_btn = gr.Button("Parse", variant="primary", elem_id="doc-parse")
            summary = gr.Markdown(elem_id="doc-summary")
            downloads = gr.File(label="Downloads", file_count="multiple", elem_id="doc-downloads")
    with gr.Row():
        with gr.Column(scale=1):
            outline = gr.Markdown(label="Outline", elem_id="doc-outline")
        with gr.Column(scale=2):
            with gr.Row():
                prev_btn = gr.Button("◀ previous", size="sm", elem_id="doc-prev")
                page_no = gr.Number(value=1, precision=0, minimum=1, label="Page", elem_id="doc-page")
                next_btn = gr.Button("next ▶", size="sm", elem_id="doc-next")
            page_img = gr.Image(label="Page", type="pil", elem_id="doc-page-image")
    with gr.Tab("Tables"):
        table_pick = gr.Dropdown(label="Table", choices=[], elem_id="doc-table-pick")
        table_grid = gr.Dataframe(type="array", interactive=False, wrap=True, elem_id="doc-table-grid")
    with gr.Tab("Figures"):
        gallery = gr.Gallery(label="Figures", columns=3, elem_id="doc-figures")
    with gr.Tab("Links"):
        links = gr.Dataframe(headers=LINK_HEADERS, type="array", interactive=False, elem_id="doc-links", wrap=True)

    def do_parse(file, progress=gr.Progress()):  # noqa: B008 (Gradio injects progress this way)
        if file is None:
            raise gr.Error("Upload a PDF first.")
        path = Path(file if isinstance(file, str) else file.name)
        progress(0, desc="parsing")
        try:
            doc = workspace.parse(path, progress=lambda d, t: progress(d / t, desc=f"page {d}/{t}"))
        except PdfError as exc:
            raise gr.Error(str(exc)) from None
        out = Path(tempfile.mkdtemp(prefix="ohmlens-"))
        stem = Path(Path(doc.source).stem or "document")
        files = [str(p) for p in write_outputs(Document.from_dict(doc.to_dict()), out, stem, ("md", "json"))]
        tables = [f"{b.label or 'Table'} (p. {b.page}) {b.id}" for b in doc.tables()]
        figures = [
            (str(workspace.crops_dir(doc.id) / b.image), f"{b.label or b.kind} (p. {b.page})")
            for b in doc.blocks
            if b.kind in ("figure", "schematic") and b.image and (workspace.crops_dir(doc.id) / b.image).exists()
        ]
        first_table = tables[0] if tables else None
        return (
            doc.id,
            _summary(doc),
            files,
            _outline_markdown(doc),
            gr.Number(value=1, maximum=doc.page_count),
            _page(doc.id, 1),
            gr.Dropdown(choices=tables, value=first_table),
            _table(doc.id, first_table),
            figures,
            _link_rows(doc),
        )

    def _page(doc_id: str | None, page: int, highlight: set[str] | None = None):
        if not doc_id:
            return None
        doc = workspace.get(doc_id)
        page = int(min(max(page, 1), doc.page_count))
        return render_page(workspace.source_file(doc_id), page, doc.blocks_on(page), highlight)

    def _table(doc_id: str | None, choice: str | None):
        if not doc_id or not choice:
            return gr.Dataframe(value=[], headers=None)
        table = workspace.get(doc_id).block(choice.rsplit(" ", 1)[-1]).table
        rows = table.grid() if table else []
        if not rows:
            return gr.Dataframe(value=[], headers=None)
        # The grid widget needs distinct, non-empty column names: number the blanks and repeats.
        names: list[str] = []
        for i, name in enumerate(rows[0] if table.header_rows() else [""] * len(rows[0])):
            names.append(name if name and name not in names else f"{name or 'col'} {i + 1}".strip())
        return gr.Dataframe(value=rows[1:] if table.header_rows() else rows, headers=names)

    def jump_to_link(doc_id: str | None, evt: gr.SelectData):
        doc = workspace.get(doc_id) if doc_id else None
        if doc is None:
            return gr.Number(), None
        row = _link_rows(doc)[evt.index[0]]
        if not row[5]:
            return row[0], _page(doc_id, row[0])
        return row[4], _page(doc_id, row[4], {row[5]})

    def step(doc_id: str | None, page: float, delta: int):
        if not doc_id:
            return 1, None
        count = workspace.get(doc_id).page_count
        page = int(min(max((page or 1) + delta, 1), count))
        return page, _page(doc_id, page)

    parse_btn.click(
        do_parse,
        inputs=[upload],
        outputs=[doc_state, summary, downloads, outline, page_no, page_img, table_pick, table_grid, gallery, links],
    )
    page_no.submit(lambda d, p: step(d, p, 0), inputs=[doc_state, page_no], outputs=[page_no, page_img])
    prev_btn.click(lambda d, p: step(d, p, -1), inputs=[doc_state, page_no], outputs=[page_no, page_img])
    next_btn.click(lambda d, p: step(d, p, 1), inputs=[doc_state, page_no], outputs=[page_no, page_img])
    table_pick.change(_table, inputs=[doc_state, table_pick], outputs=[table_grid])
    links.select(jump_to_link, inputs=[doc_state], outputs=[page_no, page_img])


def build_ui(settings: Settings) -> gr.Blocks:
    """The whole app; each tab's content comes from its own builder."""
    workspace = Workspace(settings.workspace)
    with gr.Blocks(title="ohmlens") as ui:
        gr.Markdown("# ohmlens\nRead datasheets, schematics and damaged drawings.")
        with gr.Tab("Document", elem_id="tab-document"):
            build_document_tab(workspace)
        with gr.Tab("Schematic", elem_id="tab-schematic"):
            build_schematic_tab()
        with gr.Tab("Repair", elem_id="tab-repair"):
            build_repair_tab()
        with gr.Tab("Chat", elem_id="tab-chat"):
            build_chat_tab(workspace)
    return ui
