"""The workspace store: documents, blocks, links, full-text search, reuse by file hash."""

from __future__ import annotations

from pathlib import Path

from pipelines.store import Workspace
from tests.test_document import sample_document


def test_add_get_find_and_search(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    doc = sample_document()
    ws.add(doc)
    assert ws.get(doc.id) == doc
    assert ws.find(doc.id[:10]).id == doc.id and ws.find("x.pdf").id == doc.id
    assert ws.find("missing") is None
    hits = ws.search("supply voltage", doc_id=doc.id)
    assert hits and hits[0].block_id == "p1-b3"  # the table row text is indexed
    assert ws.documents() == [(doc.id, "x.pdf", 1)]
    ws.add(doc)  # replacing keeps one copy of everything
    assert len(ws.search("overview")) == 1
    ws.remove(doc.id)
    assert ws.get(doc.id) is None and ws.search("overview") == []


def test_document_json_is_stored_in_pieces_and_old_workspaces_still_read(tmp_path: Path, monkeypatch) -> None:
    import pipelines.store as store

    monkeypatch.setattr(store, "JSON_PIECE_CHARS", 200)
    ws = Workspace(tmp_path / "ws")
    doc = sample_document()
    ws.add(doc)
    pieces = ws._conn.execute("SELECT count(*) FROM document_json WHERE doc_id = ?", (doc.id,)).fetchone()[0]
    assert pieces > 1
    assert ws.get(doc.id) == doc and ws.find("x.pdf") == doc
    with ws._conn:  # a workspace written before the pieces table kept the JSON in documents.json
        ws._conn.execute("DELETE FROM document_json")
        ws._conn.execute("UPDATE documents SET json = ? WHERE id = ?", (doc.to_json(), doc.id))
    assert ws.get(doc.id) == doc


def test_parse_reuses_result_for_same_file(tmp_path: Path, text_pdf: Path, monkeypatch) -> None:
    import pipelines.ingest as ingest

    ws = Workspace(tmp_path / "ws")
    first = ws.parse(text_pdf)
    assert ws.source_file(first.id).exists()
    monkeypatch.setattr(ingest, "parse_pdf", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-parsed")))
    again = ws.parse(text_pdf)
    assert again == first
    assert Workspace(tmp_path / "ws").get(first.id) == first  # persisted on disk
