"""The workspace tables behind question answering: retrieval units, embeddings and chat turns."""

from __future__ import annotations

from pathlib import Path

from pipelines.store import Workspace
from tests.test_document import sample_document


def test_units_are_indexed_replaced_and_removed_with_their_document(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    doc = sample_document()
    ws.add(doc)
    assert ws.units(doc.id) == (None, [])
    units = [
        ("p1-b1", "p1-b1", 1, "paragraph", "The regulators switch at 500 kHz.", "h1"),
        ("p1-b3#r1", "p1-b3", 1, "table_row", "Supply voltage | MAX: 5.5 | UNIT: V", "h2"),
    ]
    ws.put_units(doc.id, 3, units)
    assert ws.units(doc.id) == (3, units)
    hits = ws.search_units(["regulator"], doc.id)  # porter stemming: "regulator" finds "regulators"
    assert [h[0] for h in hits] == ["p1-b1"]
    assert ws.search_units(['"'], doc.id) == []
    ws.put_units(doc.id, 4, units[1:])
    assert ws.units(doc.id) == (4, units[1:]) and ws.search_units(["regulator"], doc.id) == []
    ws.add(doc)  # re-adding a document drops its stale units
    assert ws.units(doc.id) == (None, []) and ws.search_units(["supply"], doc.id) == []
    ws.put_units(doc.id, 4, units)
    ws.remove(doc.id)
    assert ws.units(doc.id) == (None, []) and ws.search_units(["supply"], doc.id) == []


def test_vectors_and_chat_turns_persist(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    ws.put_vectors("m", {f"h{i}": i.to_bytes(4, "little") for i in range(700)})
    got = ws.vectors("m", [f"h{i}" for i in range(0, 800, 7)])
    assert got == {f"h{i}": i.to_bytes(4, "little") for i in range(0, 700, 7)}
    assert ws.vectors("other", ["h1"]) == {}
    assert ws.add_chat_turn("s1", "d", "q1", '{"answer": "a1"}') == 0
    assert ws.add_chat_turn("s1", "d", "q2", '{"answer": "a2"}') == 1
    again = Workspace(tmp_path / "ws")
    assert again.chat_turns("s1") == [("d", "q1", '{"answer": "a1"}'), ("d", "q2", '{"answer": "a2"}')]
    assert again.chat_turns("s2") == []
