"""Question answering over a small hand-built datasheet: tables, conditions, lookups, follow-ups, not found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pipelines.document import Block, Cell, Document, Link, Table
from pipelines.qa import NOT_FOUND, ChatSession, QAError, ask_command
from pipelines.retrieval import Embedder, Retriever, document_units, table_view
from pipelines.store import Workspace


def _grid(rows: list[list[str | tuple[str, int, int]]], header_rows: int = 1) -> Table:
    """A table from rows of texts; a (text, row_span, col_span) tuple spans."""
    cells = []
    n_cols = 0
    taken: set[tuple[int, int]] = set()
    for r, row in enumerate(rows):
        c = 0
        for item in row:
            while (r, c) in taken:
                c += 1
            text, rs, cs = item if isinstance(item, tuple) else (item, 1, 1)
            cells.append(Cell(r, c, text, rs, cs, header=r < header_rows))
            for dr in range(rs):
                for dc in range(cs):
                    taken.add((r + dr, c + dc))
            c += cs
        n_cols = max(n_cols, c)
    return Table(len(rows), n_cols, cells)


def qa_document() -> Document:
    """Three pages: ratings and electrical characteristics (split over pages 2–3), figures, prose."""
    ec1 = _grid(
        [
            ["PARAMETER", "TEST CONDITIONS", "MIN", "TYP", "MAX", "UNIT"],
            [("SUPPLY", 1, 6)],
            ["Input voltage range", "", "2.7", "", "5.5", "V"],
            [("Quiescent current", 2, 1), "No load", "", "35", "50", "µA"],
            ["TJ = 125 °C", "", "42", "70", "µA"],
            [("Feedback voltage", 2, 1), "TJ = 25 °C", "0.594", "0.6", "0.606", "V"],
            ["TJ = –40 °C to 125 °C", "0.588", "0.6", "0.612", "V"],
        ]
    )
    ec2 = _grid(
        [
            ["PARAMETER", "TEST CONDITIONS", "MIN", "TYP", "MAX", "UNIT"],
            ["Switching frequency", "RT = 100 kΩ", "450", "500", "550", "kHz"],
            ["Thermal shutdown threshold", "", "150", "165", "", "°C"],
        ]
    )
    ec2.continues = "p2-b3"
    regs = _grid([["ADDRESS", "NAME", "RESET"], ["0x00", "CTRL", "0x1F"], ["0x01", "STATUS", "0x00"]])
    b = [
        Block("p1-b1", "heading", 1, (72, 60, 400, 80), "1 Features", level=1),
        Block("p1-b2", "paragraph", 1, (72, 90, 540, 130), "1 Features — The TPS999 is a 1-A buck converter."),
        Block(
            "p1-b3",
            "paragraph",
            1,
            (72, 140, 540, 200),
            "Soft start limits the inrush current. A capacitor on the SS pin sets the soft-start time. "
            "The device enters shutdown when EN is low.",
        ),
        Block("p1-b4", "figure", 1, (72, 220, 400, 420), "", label="Figure 1"),
        Block("p1-b5", "caption", 1, (72, 425, 400, 440), "Figure 1. Pin Configuration (Top View)", label="Figure 1"),
        Block("p2-b1", "heading", 2, (72, 60, 400, 80), "6 Specifications", level=1),
        Block("p2-b2", "caption", 2, (72, 90, 400, 105), "Table 2. Electrical Characteristics", label="Table 2"),
        Block("p2-b3", "table", 2, (72, 110, 540, 400), table=ec1, label="Table 2"),
        Block("p2-b4", "figure", 2, (72, 420, 400, 600), "", label="Figure 2"),
        Block("p2-b5", "caption", 2, (72, 605, 400, 620), "Figure 2. Efficiency vs Load Current", label="Figure 2"),
        Block("p3-b1", "table", 3, (72, 60, 540, 200), table=ec2, label="Table 2"),
        Block("p3-b2", "caption", 3, (72, 210, 400, 225), "Table 3. Register Summary", label="Table 3"),
        Block("p3-b3", "table", 3, (72, 230, 540, 300), table=regs, label="Table 3"),
    ]
    links = [
        Link("p1-b5", "p1-b4", "caption"),
        Link("p2-b2", "p2-b3", "caption"),
        Link("p2-b5", "p2-b4", "caption"),
        Link("p3-b2", "p3-b3", "caption"),
        Link("p3-b1", "p2-b3", "continues"),
    ]
    return Document("cd" * 32, "tps999.pdf", [(612.0, 792.0)] * 3, b, links)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run faster on one thread than on two contended ones (the CI machine has two cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def session_factory(tmp_path_factory: pytest.TempPathFactory):
    ws = Workspace(tmp_path_factory.mktemp("qa-ws"))
    doc = qa_document()
    ws.add(doc)
    retriever = Retriever(ws)
    retriever.index(doc)
    return lambda: ChatSession(ws, doc, retriever, persist=False)


def test_table_view_fills_spans_groups_and_continued_parts() -> None:
    doc = qa_document()
    view = table_view(doc, doc.block("p3-b1"))  # from the continuation part, the whole table comes back
    assert view is not None and view.block_id == "p2-b3"
    assert view.title == "Table 2. Electrical Characteristics"
    assert view.roles == ["label", "condition", "min", "typ", "max", "unit"]
    quiescent = [r for r in view.rows if view.row_label(r) == "Quiescent current"]
    assert [r.cells[1] for r in quiescent] == ["No load", "TJ = 125 °C"]  # the spanning name fills both rows
    assert quiescent[0].group == "SUPPLY"
    last = view.rows[-1]
    assert (last.block_id, last.page, last.cells[0]) == ("p3-b1", 3, "Thermal shutdown threshold")
    units = {u.id: u for u in document_units(doc)}
    row = units["p3-b1#r2"]
    assert row.kind == "table_row" and row.page == 3
    assert "Electrical Characteristics" in row.text and "MIN: 150" in row.text  # reads on its own
    assert "150" not in row.embed_text  # values are not embedded


@pytest.mark.parametrize(
    ("question", "value", "page"),
    [
        ("What is the maximum input voltage?", "5.5 V", 2),
        ("What is the typical quiescent current at 125 °C?", "42 µA", 2),
        ("max feedback voltage at 85 °C", "0.612 V", 2),  # 85 °C lies in the –40…125 °C row
        ("What is the maximum feedback voltage at TJ = 25 °C?", "0.606 V", 2),
        ("What is the minimum switching frequency with RT = 100 kΩ?", "450 kHz", 3),  # header on page 2
        ("What is the reset value of STATUS?", "0x00", 3),
    ],
)
def test_table_answers_with_units_conditions_and_pages(session_factory, question: str, value: str, page: int) -> None:
    answer = session_factory().ask(question)
    assert answer.found and answer.kind == "table"
    assert answer.value == value
    assert answer.citations[0].page == page


def test_follow_ups_keep_the_subject_and_conditions(session_factory) -> None:
    chat = session_factory()
    assert chat.ask("What is the maximum quiescent current?").value == "50 µA"
    second = chat.ask("and at 125 °C?")
    assert second.value == "70 µA" and "quiescent current" in second.question.lower()
    assert chat.ask("and the typical?").value == "42 µA"  # condition kept, stat replaced
    assert chat.ask("what about the thermal shutdown threshold?").value == "165 °C"
    assert len(chat.history) == 4


def test_lookups_labels_sentences_and_not_found(session_factory) -> None:
    chat = session_factory()
    pinout = chat.ask("Which figure shows the pin-out?")
    assert pinout.kind == "lookup" and pinout.value == "Figure 1" and pinout.citations[0].block_id == "p1-b4"
    assert chat.ask("Which table lists the register summary?").value == "Table 3"
    where = chat.ask("On which page is Figure 2?")
    assert where.found and "page 2" in where.answer
    how = chat.ask("How is the soft-start time set?")
    assert how.kind == "sentence" and "capacitor on the SS pin" in how.value and how.citations[0].page == 1
    for question in ("What is the maximum HDMI clock frequency?", "Which figure shows the eye diagram?"):
        missing = chat.ask(question)
        assert not missing.found and missing.answer == NOT_FOUND and missing.citations == []


def test_ask_command_json_history_and_bad_input(tmp_path: Path, text_pdf: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    answer = ask_command(str(text_pdf), "What is the typical quiescent current?", [], ws)
    data = answer.to_json()
    assert set(data) == {"answer", "found", "citations"} and data["found"]
    assert "35 uA" in data["answer"]
    assert data["citations"][0]["page"] == 1 and data["citations"][0]["block_id"].startswith("p1-")
    json.dumps(data)
    stored = ws.documents()[0][0]
    again = ask_command(stored[:10], "and the load current?", ["What is the typical quiescent current?"], ws)
    assert again.found and "600 mA" in again.answer
    with pytest.raises(QAError, match="no such document"):
        ask_command("missing.pdf", "What?", [], ws)
    chat = ChatSession.open(stored[:10], ws)
    assert chat.ask("What is the typical quiescent current?").found
    assert ws.chat_turns(chat.session_id)[0][1] == "What is the typical quiescent current?"  # turns are kept
    with pytest.raises(QAError, match="no such document"):
        ChatSession.open("nowhere", ws)
    with pytest.raises(QAError, match="empty"):
        ask_command(str(text_pdf), "  ", [], ws)


def test_index_is_stored_and_only_new_texts_are_encoded(tmp_path: Path) -> None:
    class Counting(Embedder):
        encoded = 0

        def encode(self, texts: list[str], batch_size: int = 64):
            Counting.encoded += len(texts)
            return super().encode(texts, batch_size)

    ws = Workspace(tmp_path / "ws")
    doc = qa_document()
    ws.add(doc)
    Retriever(ws, Counting()).index(doc)
    first = Counting.encoded
    assert first > 10
    Retriever(ws, Counting()).index(doc)  # a new process: units and vectors come from the database
    assert Counting.encoded == first
    twin = qa_document()
    twin.id = "ef" * 32
    twin.blocks[1].text += " Now with a second sentence."
    ws.add(twin)
    Retriever(ws, Counting()).index(twin)
    assert Counting.encoded == first + 1  # only the changed paragraph is encoded again


def test_int8_onnx_embeddings_match_sentence_transformers() -> None:
    texts = ["Quiescent current; TEST CONDITIONS: TJ = 125 °C", "Which figure shows the pin-out?", "x " * 200]
    fast = Embedder().encode(texts)
    assert Embedder._sessions, "the ONNX Runtime path was not used"
    assert Embedder().name.endswith(":onnx-int8")  # its vectors are stored apart from float ones
    reference = Embedder.model().encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert fast.shape == (3, 384)
    assert float((fast * reference).sum(1).min()) > 0.97
    assert float((fast[0] * fast[1]).sum()) < 0.9  # unrelated texts stay apart
