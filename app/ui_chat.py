"""The Chat tab: ask a stored or uploaded document questions; citations open the page with the evidence marked."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import gradio as gr

from pipelines.ingest import PdfError
from pipelines.qa import Answer, ChatSession, QAError
from pipelines.render import render_page
from pipelines.retrieval import Retriever
from pipelines.store import Workspace

CITATION_HEADERS = ["#", "page", "block", "evidence"]


def _doc_choices(workspace: Workspace) -> list[tuple[str, str]]:
    return [(f"{source} ({pages} p., {doc_id[:8]})", doc_id) for doc_id, source, pages in workspace.documents()]


def format_answer(answer: Answer) -> str:
    """The assistant's message: the short answer, then each quoted piece of evidence with its page."""
    if not answer.found:
        return answer.answer
    lines = [answer.answer]
    for i, c in enumerate(answer.citations, start=1):
        quote = c.text if len(c.text) <= 300 else c.text[:297] + "…"
        lines.append(f"> [{i}] page {c.page}: {quote}")
    lines += [f"⚠ {flag}" for flag in answer.flags]
    return "\n\n".join(lines)


def build_chat_tab(workspace: Workspace) -> None:
    """Contents of the Chat tab: document picker or PDF upload, the conversation, citations and the cited page."""
    retriever = Retriever(workspace)
    sessions: dict[str, ChatSession] = {}  # per-browser conversations, keyed by the id kept in gr.State
    lock = threading.Lock()
    session_key = gr.State(None)
    with gr.Row():
        with gr.Column(scale=2):
            doc_pick = gr.Dropdown(
                label="Document", choices=_doc_choices(workspace), value=None, elem_id="chat-doc", interactive=True
            )
            refresh = gr.Button("Refresh list", size="sm", elem_id="chat-refresh")
        with gr.Column(scale=2):
            upload = gr.File(label="…or upload a PDF", file_types=[".pdf"], elem_id="chat-upload")
            load = gr.Button("Use this PDF", elem_id="chat-load")
        status = gr.Markdown(elem_id="chat-status")
    with gr.Row():
        with gr.Column(scale=3):
            bot = gr.Chatbot(label="Conversation", height=460, elem_id="chat-bot")
            with gr.Row():
                question = gr.Textbox(
                    label="Question",
                    placeholder="What is the maximum supply voltage? · Which figure shows the pin-out? · and at 85 °C?",
                    scale=5,
                    elem_id="chat-question",
                )
                send = gr.Button("Ask", variant="primary", scale=1, elem_id="chat-send")
            clear = gr.Button("New conversation", size="sm", elem_id="chat-clear")
        with gr.Column(scale=2):
            citations = gr.Dataframe(
                headers=CITATION_HEADERS, type="array", interactive=False, wrap=True, elem_id="chat-citations"
            )
            page_img = gr.Image(label="Cited page (evidence highlighted)", type="pil", elem_id="chat-page")

    def _page(doc_id: str, page: int, block_id: str):
        doc = workspace.get(doc_id)
        source = workspace.source_file(doc_id)
        if doc is None or not source.exists():
            return None
        return render_page(source, page, doc.blocks_on(page), {block_id})

    def use_pdf(file):
        if file is None:
            raise gr.Error("Choose a PDF first.")
        try:
            doc = workspace.parse(Path(file if isinstance(file, str) else file.name))
        except PdfError as exc:
            raise gr.Error(str(exc)) from None
        choices = _doc_choices(workspace)
        return gr.Dropdown(choices=choices, value=doc.id), f"**{doc.source}** is ready: ask away.", [], [], None, None

    def pick(doc_id: str | None):
        if not doc_id:
            return "", [], [], None, None
        doc = workspace.get(doc_id)
        return f"**{doc.source}** ({doc.page_count} pages)" if doc else "", [], [], None, None

    def ask(text: str, history: list, doc_id: str | None, key: str | None):
        if not doc_id:
            raise gr.Error("Pick a document or upload a PDF first.")
        with lock:
            session = sessions.get(key or "")
            if session is None or session.doc.id != doc_id:
                doc = workspace.get(doc_id)
                if doc is None:
                    raise gr.Error("That document is no longer in the workspace.")
                key = uuid.uuid4().hex
                session = sessions[key] = ChatSession(workspace, doc, retriever, session_id=key)
        try:
            answer = session.ask(text)
        except QAError as exc:
            raise gr.Error(str(exc)) from None
        history = [*history, {"role": "user", "content": text}, {"role": "assistant", "content": format_answer(answer)}]
        rows = [[i, c.page, c.block_id, c.text] for i, c in enumerate(answer.citations, start=1)]
        image = _page(doc_id, answer.citations[0].page, answer.citations[0].block_id) if answer.citations else None
        return "", history, rows, image, key

    def open_citation(doc_id: str | None, rows, evt: gr.SelectData):
        data = rows.values.tolist() if hasattr(rows, "values") else rows
        if not doc_id or not data:
            return None
        row = data[evt.index[0]]
        return _page(doc_id, int(row[1]), str(row[2]))

    outputs_reset = [status, bot, citations, page_img, session_key]
    load.click(use_pdf, inputs=[upload], outputs=[doc_pick, *outputs_reset])
    refresh.click(lambda: gr.Dropdown(choices=_doc_choices(workspace)), outputs=[doc_pick])
    doc_pick.change(pick, inputs=[doc_pick], outputs=outputs_reset)
    for trigger in (send.click, question.submit):
        trigger(
            ask,
            inputs=[question, bot, doc_pick, session_key],
            outputs=[question, bot, citations, page_img, session_key],
        )
    clear.click(lambda: ([], [], None, None), outputs=[bot, citations, page_img, session_key])
    citations.select(open_citation, inputs=[doc_pick, citations], outputs=[page_img])
