"""The document model every pipeline stage reads and writes.

A `Document` serialises to a versioned JSON object. Table blocks carry `cells` as
`{row, col, row_span, col_span, text, header}` and every block a 1-based `page` and a `bbox`
`[x0, y0, x1, y1]` in PDF points with a top-left origin, so the reference scorers read the JSON as is.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

SCHEMA_VERSION = 1

BlockKind = Literal[
    "heading",
    "paragraph",
    "list_item",
    "table",
    "figure",
    "caption",
    "formula",
    "code",
    "page_header",
    "page_footer",
    "schematic",
]
BLOCK_KINDS: frozenset[str] = frozenset(BlockKind.__args__)  # type: ignore[attr-defined]
LinkKind = Literal["xref", "caption", "continues", "semantic"]
LINK_KINDS: frozenset[str] = frozenset(LinkKind.__args__)  # type: ignore[attr-defined]

BBox = tuple[float, float, float, float]


class DocumentFormatError(ValueError):
    """A serialised document that this version cannot read."""


@dataclass
class Cell:
    """One table cell; `row`/`col` are 0-based grid positions of its top-left corner."""

    row: int
    col: int
    text: str
    row_span: int = 1
    col_span: int = 1
    header: bool = False
    bbox: BBox | None = None


@dataclass
class Table:
    """A table grid. `continues` names the block id of the previous part of a split table."""

    n_rows: int
    n_cols: int
    cells: list[Cell] = field(default_factory=list)
    continues: str | None = None

    def grid(self) -> list[list[str]]:
        """Rows of cell texts; a spanning cell's text sits in its top-left slot, the rest stay empty."""
        rows = [["" for _ in range(self.n_cols)] for _ in range(self.n_rows)]
        for c in self.cells:
            if c.row < self.n_rows and c.col < self.n_cols:
                rows[c.row][c.col] = c.text
        return rows

    def header_rows(self) -> int:
        """How many leading rows are header rows."""
        flagged = {c.row for c in self.cells if c.header}
        n = 0
        while n in flagged:
            n += 1
        return n


@dataclass
class Pin:
    """A component terminal: its name, location in image pixels and the net it joins."""

    name: str
    xy: tuple[float, float]
    net: str | None = None


@dataclass
class Component:
    """One schematic symbol."""

    id: str
    type: str
    value: str = ""
    bbox: BBox = (0.0, 0.0, 0.0, 0.0)
    pins: list[Pin] = field(default_factory=list)
    score: float = 1.0


@dataclass
class Circuit:
    """A schematic read into a graph: components whose pins join named nets."""

    components: list[Component] = field(default_factory=list)
    nets: list[str] = field(default_factory=list)
    junctions: list[tuple[float, float]] = field(default_factory=list)
    wires: list[list[tuple[float, float]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Block:
    """One piece of page content; `id` is stable across runs (`p12-b7`)."""

    id: str
    kind: str
    page: int
    bbox: BBox
    text: str = ""
    level: int | None = None  # heading level, 1 = top
    label: str | None = None  # "Table 3", "Figure 7-2" when a caption names it
    table: Table | None = None
    image: str | None = None  # crop file, relative to the document's output folder
    circuit: Circuit | None = None
    ocr: bool = False  # text came from OCR of a scanned page

    @property
    def cells(self) -> list[Cell]:
        """The table's cells (empty for non-table blocks)."""
        return self.table.cells if self.table else []


@dataclass
class Link:
    """A directed relation between two blocks (or an unresolved mention when `target` is None)."""

    source: str
    target: str | None
    kind: str
    text: str = ""
    score: float = 1.0


@dataclass
class OutlineEntry:
    """One heading in the document outline."""

    title: str
    level: int
    page: int
    block: str | None = None


@dataclass
class Document:
    """A parsed document: blocks in reading order, links between them, and the outline."""

    id: str  # sha256 of the source file
    source: str  # source file name (never a path from an upload)
    page_sizes: list[tuple[float, float]] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    outline: list[OutlineEntry] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # pages or stages that failed, one line each

    @property
    def page_count(self) -> int:
        return len(self.page_sizes)

    def block(self, block_id: str) -> Block:
        """The block with this id.

        Raises:
            KeyError: no such block.
        """
        index = self.__dict__.setdefault("_index", {})
        if len(index) != len(self.blocks):
            index.clear()
            index.update({b.id: b for b in self.blocks})
        return index[block_id]

    def blocks_on(self, page: int) -> list[Block]:
        """Blocks of one 1-based page in reading order."""
        return [b for b in self.blocks if b.page == page]

    def tables(self) -> list[Block]:
        return [b for b in self.blocks if b.kind == "table"]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with the schema version."""
        data = asdict(self)
        data.pop("_index", None)
        for b in data["blocks"]:
            _cells_on_block(b)
        return {"schema_version": SCHEMA_VERSION, **data}

    def to_json(self, indent: int | None = None) -> str:
        if indent is None:
            return "".join(self.iter_json())
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def iter_json(self) -> Iterator[str]:
        """The text of `to_json()` in pieces, one block or link at a time: a 2,000-page document is written
        out without first being copied whole into dicts and one string."""
        head = {"schema_version": SCHEMA_VERSION, "id": self.id, "source": self.source, "page_sizes": self.page_sizes}
        yield json.dumps(head, ensure_ascii=False)[:-1]  # left open: the lists follow
        for name, items, to_dict in (("blocks", self.blocks, _block_dict), ("links", self.links, asdict)):
            yield f', "{name}": ['
            for i, item in enumerate(items):
                yield (", " if i else "") + json.dumps(to_dict(item), ensure_ascii=False)
            yield "]"
        tail = {"outline": [asdict(o) for o in self.outline], "metadata": self.metadata, "problems": self.problems}
        yield ", " + json.dumps(tail, ensure_ascii=False)[1:]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Document:
        """Rebuild a document; refuses other schema versions.

        Raises:
            DocumentFormatError: wrong or missing schema version, or malformed content.
        """
        version = data.get("schema_version") if isinstance(data, dict) else None
        if version != SCHEMA_VERSION:
            raise DocumentFormatError(
                f"unsupported document schema version {version!r} (this ohmlens reads version {SCHEMA_VERSION})"
            )
        try:
            blocks = [_block_from_dict(b) for b in data["blocks"]]
            return cls(
                id=data["id"],
                source=data["source"],
                page_sizes=[tuple(s) for s in data["page_sizes"]],
                blocks=blocks,
                links=[Link(**lk) for lk in data.get("links", [])],
                outline=[OutlineEntry(**o) for o in data.get("outline", [])],
                metadata=data.get("metadata", {}),
                problems=data.get("problems", []),
            )
        except (KeyError, TypeError) as exc:
            raise DocumentFormatError(f"malformed document JSON: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> Document:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DocumentFormatError(f"not JSON: {exc}") from exc
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write JSON atomically, streamed block by block."""
        write_atomic(Path(path), self.iter_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Document:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def _cells_on_block(b: dict[str, Any]) -> dict[str, Any]:
    if b["table"] is not None:
        b["cells"] = b["table"]["cells"]  # scorers read `cells` on the block itself
    return b


def _block_dict(block: Block) -> dict[str, Any]:
    return _cells_on_block(asdict(block))


def _block_from_dict(b: dict[str, Any]) -> Block:
    kind = b["kind"]
    if kind not in BLOCK_KINDS:
        raise DocumentFormatError(f"unknown block kind {kind!r}")
    table = None
    if b.get("table"):
        t = b["table"]
        table = Table(
            n_rows=t["n_rows"],
            n_cols=t["n_cols"],
            cells=[Cell(**{**c, "bbox": tuple(c["bbox"]) if c.get("bbox") else None}) for c in t["cells"]],
            continues=t.get("continues"),
        )
    circuit = None
    if b.get("circuit"):
        c = b["circuit"]
        circuit = Circuit(
            components=[
                Component(
                    **{
                        **comp,
                        "bbox": tuple(comp["bbox"]),
                        "pins": [Pin(p["name"], tuple(p["xy"]), p.get("net")) for p in comp["pins"]],
                    }
                )
                for comp in c["components"]
            ],
            nets=c["nets"],
            junctions=[tuple(j) for j in c["junctions"]],
            wires=[[tuple(p) for p in w] for w in c["wires"]],
            warnings=c.get("warnings", []),
        )
    return Block(
        id=b["id"],
        kind=kind,
        page=b["page"],
        bbox=tuple(b["bbox"]),
        text=b.get("text", ""),
        level=b.get("level"),
        label=b.get("label"),
        table=table,
        image=b.get("image"),
        circuit=circuit,
        ocr=b.get("ocr", False),
    )


def write_atomic(path: Path, content: str | bytes | Iterable[str] | Iterable[bytes]) -> None:
    """Write a file so that readers see either the old or the whole new content, never a part.

    `content` may be an iterable of pieces, written as they come (a large document never has to
    exist as one string).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes owner-only files; outputs are ordinary files
        with os.fdopen(fd, "wb") as f:
            pieces = [content] if isinstance(content, (str, bytes)) else content
            for piece in pieces:
                f.write(piece.encode("utf-8") if isinstance(piece, str) else piece)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _md_escape_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table_to_markdown(table: Table) -> str:
    """A pipe table; the first row is the header row."""
    rows = table.grid()
    if not rows:
        return ""
    lines = ["| " + " | ".join(_md_escape_cell(t) for t in rows[0]) + " |"]
    lines.append("|" + "---|" * table.n_cols)
    lines += ["| " + " | ".join(_md_escape_cell(t) for t in r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def to_markdown(doc: Document) -> str:
    """Render the document as Markdown (headers/footers dropped)."""
    out: list[str] = []
    for b in doc.blocks:
        if b.kind in ("page_header", "page_footer"):
            continue
        if b.kind == "heading":
            out.append("#" * min(max(b.level or 1, 1), 6) + " " + b.text)
        elif b.kind == "list_item":
            out.append("- " + b.text.lstrip("•·-–* "))
        elif b.kind == "table" and b.table:
            out.append(table_to_markdown(b.table))
        elif b.kind in ("figure", "schematic"):
            alt = b.label or b.kind
            out.append(f"![{alt}]({b.image})" if b.image else f"*[{alt}]*")
        elif b.kind == "code":
            out.append("```\n" + b.text + "\n```")
        elif b.kind == "formula":
            out.append("$$\n" + b.text + "\n$$")
        elif b.kind == "caption":
            out.append(f"*{b.text}*")
        else:
            out.append(b.text)
    return "\n\n".join(out) + "\n"


def _table_to_html(table: Table) -> str:
    rows: dict[int, list[Cell]] = {}
    for c in sorted(table.cells, key=lambda c: (c.row, c.col)):
        rows.setdefault(c.row, []).append(c)
    parts = ["<table>"]
    for r in sorted(rows):
        parts.append("<tr>")
        for c in rows[r]:
            tag = "th" if c.header else "td"
            span = (f' rowspan="{c.row_span}"' if c.row_span > 1 else "") + (
                f' colspan="{c.col_span}"' if c.col_span > 1 else ""
            )
            parts.append(f"<{tag}{span}>{html.escape(c.text)}</{tag}>")
        parts.append("</tr>")
    parts.append("</table>")
    return "".join(parts)


def to_html(doc: Document) -> str:
    """Render the document as a standalone HTML page; blocks carry their ids as anchors."""
    body: list[str] = []
    for b in doc.blocks:
        if b.kind in ("page_header", "page_footer"):
            continue
        anchor = f' id="{html.escape(b.id)}" data-page="{b.page}"'
        text = html.escape(b.text)
        if b.kind == "heading":
            n = min(max(b.level or 1, 1), 6)
            body.append(f"<h{n}{anchor}>{text}</h{n}>")
        elif b.kind == "list_item":
            body.append(f"<ul><li{anchor}>{text}</li></ul>")
        elif b.kind == "table" and b.table:
            body.append(f"<div{anchor}>{_table_to_html(b.table)}</div>")
        elif b.kind in ("figure", "schematic"):
            src = html.escape(b.image or "")
            body.append(f'<figure{anchor}><img src="{src}" alt="{html.escape(b.label or b.kind)}"></figure>')
        elif b.kind == "caption":
            body.append(f"<figcaption{anchor}>{text}</figcaption>")
        elif b.kind in ("code", "formula"):
            body.append(f"<pre{anchor}>{text}</pre>")
        else:
            body.append(f"<p{anchor}>{text}</p>")
    title = html.escape(doc.source)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>\n<body>\n'
        + "\n".join(body)
        + "\n</body></html>\n"
    )
