"""The workspace: one SQLite database (documents, blocks, links, FTS5 index) with crops beside it."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipelines.document import Document, write_atomic

DEFAULT_WORKSPACE = Path.home() / ".ohmlens"
JSON_PIECE_CHARS = 1 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,          -- sha256 of the source file
    source TEXT NOT NULL,
    pages INTEGER NOT NULL,
    json TEXT NOT NULL,           -- '' since the JSON moved to document_json (kept so old workspaces still read)
    created REAL NOT NULL
);
-- the document JSON in pieces of about a megabyte, in order: stored and read back without one huge string
CREATE TABLE IF NOT EXISTS document_json (
    doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (doc_id, seq)
);
CREATE TABLE IF NOT EXISTS blocks (
    doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    block_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    page INTEGER NOT NULL,
    label TEXT,
    text TEXT NOT NULL,
    PRIMARY KEY (doc_id, block_id)
);
CREATE TABLE IF NOT EXISTS links (
    doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    target TEXT,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    score REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS links_doc ON links(doc_id, source);
CREATE VIRTUAL TABLE IF NOT EXISTS blocks_fts USING fts5(
    text, doc_id UNINDEXED, block_id UNINDEXED, tokenize = 'unicode61 remove_diacritics 2'
);
-- question answering: retrieval units (paragraphs, table rows with headers, captions, netlists) per document,
-- their stemmed full-text index, sentence embeddings keyed by model and text hash, and chat turns
CREATE TABLE IF NOT EXISTS units (
    doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    unit_id TEXT NOT NULL,
    block_id TEXT NOT NULL,
    page INTEGER NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (doc_id, unit_id)
);
CREATE VIRTUAL TABLE IF NOT EXISTS units_fts USING fts5(
    text, doc_id UNINDEXED, unit_id UNINDEXED, tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS embeddings (
    model TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model, text_hash)
);
CREATE TABLE IF NOT EXISTS chats (
    session TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    turn INTEGER NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (session, turn)
);
"""


@dataclass
class SearchHit:
    """One full-text match."""

    doc_id: str
    block_id: str
    page: int
    kind: str
    text: str
    score: float  # bm25 rank: lower is better


class Workspace:
    """A folder holding `ohmlens.db` and `crops/<doc id>/`; safe to share between threads."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else DEFAULT_WORKSPACE
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "ohmlens.db"
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.db_path, check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(_SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._conn:
            yield self._conn

    def close(self) -> None:
        self._conn.close()

    def crops_dir(self, doc_id: str) -> Path:
        return self.root / "crops" / doc_id

    def add(self, doc: Document) -> None:
        """Store (or replace) a document with its blocks, links and full-text index."""
        with self._tx() as c:
            c.execute("DELETE FROM blocks_fts WHERE doc_id = ?", (doc.id,))
            c.execute("DELETE FROM units_fts WHERE doc_id = ?", (doc.id,))
            c.execute("DELETE FROM documents WHERE id = ?", (doc.id,))
            c.execute(
                "INSERT INTO documents VALUES (?, ?, ?, ?, ?)", (doc.id, doc.source, doc.page_count, "", time.time())
            )
            # generators: rows are made as SQLite takes them, so memory does not grow with the document
            c.executemany(
                "INSERT INTO document_json VALUES (?, ?, ?)",
                ((doc.id, seq, part) for seq, part in enumerate(_pieces(doc.iter_json(), JSON_PIECE_CHARS))),
            )
            c.executemany(
                "INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?)",
                ((doc.id, b.id, b.kind, b.page, b.label, _index_text(b)) for b in doc.blocks),
            )
            c.executemany(
                "INSERT INTO blocks_fts (text, doc_id, block_id) VALUES (?, ?, ?)",
                ((_index_text(b), doc.id, b.id) for b in doc.blocks if b.kind not in ("page_header", "page_footer")),
            )
            c.executemany(
                "INSERT INTO links VALUES (?, ?, ?, ?, ?, ?)",
                ((doc.id, lk.source, lk.target, lk.kind, lk.text, lk.score) for lk in doc.links),
            )

    def get(self, doc_id: str) -> Document | None:
        with self._lock:
            row = self._conn.execute("SELECT json FROM documents WHERE id = ?", (doc_id,)).fetchone()
            if row is None:
                return None
            parts = self._conn.execute("SELECT text FROM document_json WHERE doc_id = ? ORDER BY seq", (doc_id,))
            text = "".join(part for (part,) in parts) or row[0]
        return Document.from_json(text)

    def find(self, ref: str) -> Document | None:
        """A stored document by id, id prefix (≥ 8 characters) or source file name."""
        with self._lock:
            row = self._conn.execute(
                "SELECT id FROM documents WHERE id = ? OR (length(?) >= 8 AND id LIKE ? || '%') OR source = ? "
                "ORDER BY created DESC LIMIT 1",
                (ref, ref, ref, ref),
            ).fetchone()
        return self.get(row[0]) if row else None

    def documents(self) -> list[tuple[str, str, int]]:
        """(id, source, pages) of every stored document, newest first."""
        with self._lock:
            return self._conn.execute("SELECT id, source, pages FROM documents ORDER BY created DESC").fetchall()

    def remove(self, doc_id: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM blocks_fts WHERE doc_id = ?", (doc_id,))
            c.execute("DELETE FROM units_fts WHERE doc_id = ?", (doc_id,))
            c.execute("DELETE FROM documents WHERE id = ?", (doc_id,))

    def search(self, query: str, doc_id: str | None = None, limit: int = 20) -> list[SearchHit]:
        """BM25-ranked blocks whose text matches any of the query's words."""
        terms = [t for t in re.findall(r"\w+", query.lower()) if len(t) > 1 or t.isdigit()]
        if not terms:
            return []
        match = " OR ".join(f'"{t}"' for t in terms)
        sql = (
            "SELECT f.doc_id, f.block_id, b.page, b.kind, b.text, bm25(blocks_fts) AS s FROM blocks_fts f "
            "JOIN blocks b ON b.doc_id = f.doc_id AND b.block_id = f.block_id WHERE blocks_fts MATCH ?"
        )
        args: list = [match]
        if doc_id:
            sql += " AND f.doc_id = ?"
            args.append(doc_id)
        sql += " ORDER BY s LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [SearchHit(*r) for r in rows]

    # -- question-answering index (built and read by pipelines.retrieval) and chat history

    def put_units(self, doc_id: str, version: int, units: list[tuple[str, str, int, str, str, str]]) -> None:
        """Replace a document's retrieval units, given as (unit id, block id, page, kind, text, text hash)."""
        with self._tx() as c:
            c.execute("DELETE FROM units WHERE doc_id = ?", (doc_id,))
            c.execute("DELETE FROM units_fts WHERE doc_id = ?", (doc_id,))
            c.executemany("INSERT INTO units VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [(doc_id, *u, version) for u in units])
            c.executemany(
                "INSERT INTO units_fts (text, doc_id, unit_id) VALUES (?, ?, ?)", [(u[4], doc_id, u[0]) for u in units]
            )

    def units(self, doc_id: str) -> tuple[int | None, list[tuple[str, str, int, str, str, str]]]:
        """(index version, units in stored order) of a document; version is None when it has none."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT unit_id, block_id, page, kind, text, text_hash, version FROM units WHERE doc_id = ? "
                "ORDER BY rowid",
                (doc_id,),
            ).fetchall()
        return (rows[0][6] if rows else None), [r[:6] for r in rows]

    def search_units(self, terms: list[str], doc_id: str, limit: int = 50) -> list[tuple[str, float]]:
        """(unit id, bm25) of a document's units matching any of the terms, best first (lower bm25 is better)."""
        terms = [t.replace('"', "") for t in terms if t.replace('"', "")]
        if not terms:
            return []
        match = " OR ".join(f'"{t}"' for t in terms)
        with self._lock:
            return self._conn.execute(
                "SELECT unit_id, bm25(units_fts) AS s FROM units_fts WHERE units_fts MATCH ? AND doc_id = ? "
                "ORDER BY s LIMIT ?",
                (match, doc_id, limit),
            ).fetchall()

    def vectors(self, model: str, hashes: list[str]) -> dict[str, bytes]:
        """Stored embeddings of these text hashes (those missing are left out)."""
        out: dict[str, bytes] = {}
        with self._lock:
            for i in range(0, len(hashes), 500):
                chunk = hashes[i : i + 500]
                marks = ",".join("?" * len(chunk))
                out.update(
                    self._conn.execute(
                        f"SELECT text_hash, vector FROM embeddings WHERE model = ? AND text_hash IN ({marks})",
                        (model, *chunk),
                    ).fetchall()
                )
        return out

    def put_vectors(self, model: str, vectors: dict[str, bytes]) -> None:
        with self._tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)", [(model, h, v) for h, v in vectors.items()]
            )

    def add_chat_turn(self, session: str, doc_id: str, question: str, answer_json: str) -> int:
        """Append a turn to a chat session; returns its 0-based turn number."""
        with self._tx() as c:
            turn = c.execute("SELECT COUNT(*) FROM chats WHERE session = ?", (session,)).fetchone()[0]
            c.execute(
                "INSERT INTO chats VALUES (?, ?, ?, ?, ?, ?)",
                (session, doc_id, turn, question, answer_json, time.time()),
            )
        return turn

    def chat_turns(self, session: str) -> list[tuple[str, str, str]]:
        """(document id, question, answer JSON) of a session's turns in order."""
        with self._lock:
            return self._conn.execute(
                "SELECT doc_id, question, answer FROM chats WHERE session = ? ORDER BY turn", (session,)
            ).fetchall()

    def parse(self, path: str | Path, **parse_kwargs) -> Document:
        """Parse a PDF into the workspace, reusing the stored result when the same file was parsed before."""
        from pipelines.ingest import file_sha256, parse_pdf

        path = Path(path)
        digest = file_sha256(path) if path.is_file() else ""
        if digest and not parse_kwargs.get("pages"):
            stored = self.get(digest)
            if stored is not None:
                return stored
        doc = parse_pdf(path, crops_dir=self.crops_dir(digest or "unknown"), **parse_kwargs)
        if not parse_kwargs.get("pages"):
            self.keep_file(path, doc.id)
            self.add(doc)
        return doc

    def source_file(self, doc_id: str) -> Path:
        """Where the workspace keeps a document's PDF: named by its hash, never by an upload's name."""
        return self.root / "files" / f"{doc_id}.pdf"

    def keep_file(self, path: Path, doc_id: str) -> Path:
        """Copy a parsed PDF into the workspace so pages can be shown later."""
        target = self.source_file(doc_id)
        if not target.exists():
            write_atomic(target, _file_chunks(path))
        return target


def _pieces(chunks: Iterable[str], size: int) -> Iterator[str]:
    """Regroup text chunks into pieces of about `size` characters."""
    buffer: list[str] = []
    held = 0
    for chunk in chunks:
        buffer.append(chunk)
        held += len(chunk)
        if held >= size:
            yield "".join(buffer)
            buffer, held = [], 0
    if buffer:
        yield "".join(buffer)


def _file_chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(size):
            yield chunk


def _index_text(block) -> str:
    """Searchable text of a block: tables contribute their cell texts row by row."""
    if block.table is not None:
        return "\n".join(" | ".join(row) for row in block.table.grid())
    return " ".join(filter(None, [block.label, block.text]))
