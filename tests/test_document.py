"""The document model: JSON round trip, version check, renderers, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.document import (
    SCHEMA_VERSION,
    Block,
    Cell,
    Circuit,
    Component,
    Document,
    DocumentFormatError,
    Link,
    Pin,
    Table,
    to_html,
    to_markdown,
    write_atomic,
)


def sample_document() -> Document:
    table = Table(
        n_rows=2,
        n_cols=2,
        cells=[
            Cell(0, 0, "Parameter", header=True),
            Cell(0, 1, "Max", header=True),
            Cell(1, 0, "VCC | supply"),
            Cell(1, 1, "6 V"),
        ],
    )
    circuit = Circuit(
        components=[Component("R1", "resistor", "10k", (1, 2, 3, 4), [Pin("1", (1.0, 2.0), "N1")])],
        nets=["N1"],
    )
    return Document(
        id="ab" * 32,
        source="x.pdf",
        page_sizes=[(612.0, 792.0)],
        blocks=[
            Block("p1-b1", "heading", 1, (72, 72, 300, 90), "1 Overview", level=1),
            Block("p1-b2", "caption", 1, (72, 100, 300, 110), "Table 1. Ratings", label="Table 1"),
            Block("p1-b3", "table", 1, (72, 110, 300, 200), table=table, label="Table 1"),
            Block("p1-b4", "paragraph", 1, (72, 210, 300, 230), "See Table 1 <b>now</b>."),
            Block("p1-b5", "schematic", 1, (72, 240, 300, 400), circuit=circuit, image="c.png"),
        ],
        links=[Link("p1-b4", "p1-b3", "xref", "Table 1"), Link("p1-b2", "p1-b3", "caption")],
    )


def test_round_trip_keeps_everything() -> None:
    doc = sample_document()
    again = Document.from_json(doc.to_json())
    assert again == doc
    assert again.block("p1-b3").table.grid() == [["Parameter", "Max"], ["VCC | supply", "6 V"]]


def test_streamed_json_is_the_same_text_as_one_dump(tmp_path: Path) -> None:
    doc = sample_document()
    doc.links.append(Link("p1-b2", None, "xref", "see Table 9", 0.0))
    assert "".join(doc.iter_json()) == json.dumps(doc.to_dict(), ensure_ascii=False)
    doc.save(tmp_path / "d.json")
    assert Document.load(tmp_path / "d.json") == doc


def test_json_exposes_cells_on_table_blocks_for_scorers() -> None:
    data = json.loads(sample_document().to_json())
    table = next(b for b in data["blocks"] if b["kind"] == "table")
    assert data["schema_version"] == SCHEMA_VERSION
    assert {"row", "col", "row_span", "col_span", "text", "header"} <= set(table["cells"][0])
    assert table["page"] == 1 and len(table["bbox"]) == 4


@pytest.mark.parametrize("version", [None, 0, SCHEMA_VERSION + 1])
def test_unknown_versions_are_refused(version) -> None:
    data = sample_document().to_dict()
    data["schema_version"] = version
    with pytest.raises(DocumentFormatError, match="schema version"):
        Document.from_dict(data)


def test_malformed_json_is_a_clear_error() -> None:
    with pytest.raises(DocumentFormatError, match="not JSON"):
        Document.from_json("{nope")
    data = sample_document().to_dict()
    data["blocks"][0]["kind"] = "poem"
    with pytest.raises(DocumentFormatError, match="unknown block kind"):
        Document.from_dict(data)


def test_markdown_renders_headings_tables_and_escapes_pipes() -> None:
    md = to_markdown(sample_document())
    assert "# 1 Overview" in md
    assert "| Parameter | Max |" in md
    assert "VCC \\| supply" in md
    assert "![Table 1]" not in md and "![schematic](c.png)" in md


def test_html_escapes_text_and_marks_headers() -> None:
    html = to_html(sample_document())
    assert "&lt;b&gt;now&lt;/b&gt;" in html
    assert "<th>Parameter</th>" in html
    assert 'id="p1-b3"' in html


def test_write_atomic_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    write_atomic(target, "old")
    write_atomic(target, "new content")
    assert target.read_text() == "new content"
    assert target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]
    write_atomic(target, (piece for piece in ("streamed ", "in ", "pieces")))
    assert target.read_text() == "streamed in pieces"
