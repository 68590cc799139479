"""Questions over a parsed document: table-aware lookups, extractive answers, figure/table lookups, follow-ups.

`ChatSession(workspace, doc).ask(question)` answers one turn of a conversation; `ask_command` is the one-shot
form the CLI uses. Every answer cites the blocks (page + block id + quoted text) it comes from, and says
"Not found in this document." when the best evidence does not cover the question well enough (a threshold
calibrated on synthetic datasheet questions, see `tests/benchmarks/eval_qa.py --calibrate`).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from pipelines.document import Block, Document
from pipelines.retrieval import (
    STOPWORDS,
    DocIndex,
    Hit,
    Retriever,
    TableRow,
    TableView,
    content_terms,
    normalise,
    tokens,
)
from pipelines.store import Workspace

NOT_FOUND = "Not found in this document."
# Minimum evidence score (IDF-weighted coverage of the question's terms plus half the embedding cosine) for an
# answer. `eval_qa.py --pages 30 --seed 1 --calibrate` (a different datasheet from the one reported) gives the
# same accuracy for every threshold from 0.52 to 0.96 (unanswerable questions score below 0.52); 0.58 keeps a
# margin above them while answering paraphrased questions whose words the document only partly uses.
FOUND_THRESHOLD = 0.58


class QAError(ValueError):
    """A question the engine cannot take (empty, or about a document that does not exist)."""


# ---------------------------------------------------------------- quantities and conditions

_PREFIX = {"p": 1e-12, "n": 1e-9, "µ": 1e-6, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}
_BASE_UNITS = ("V", "A", "Ω", "Hz", "F", "H", "W", "s", "S", "ohm", "Ohm")
_NUM = r"[-+]?\d+(?:[.,]\d+)?"
_UNIT = r"°C|°F|%|[pnuµmkMG]?(?:V|A|Ω|Hz|F|H|W|s|S|ohms?|Ohms?)|K"
QUANTITY_RE = re.compile(rf"(?<![\w.])({_NUM})\s*({_UNIT})(?![A-Za-z])")
RANGE_RE = re.compile(rf"(?<![\w.])({_NUM})\s*({_UNIT})?\s*(?:to|\.\.\.|…|–|-)\s*({_NUM})\s*({_UNIT})(?![A-Za-z])")


@dataclass(frozen=True)
class Quantity:
    """A number with a unit, in base units (`12 mA` → 0.012, "A")."""

    value: float
    unit: str

    @classmethod
    def parse(cls, number: str, unit: str) -> Quantity:
        num = float(number.replace(",", "."))
        if unit in ("°C", "°F", "%", "K"):
            return cls(num, unit)
        unit = unit.replace("ohms", "Ω").replace("Ohms", "Ω").replace("ohm", "Ω").replace("Ohm", "Ω")
        for base in sorted(_BASE_UNITS, key=len, reverse=True):
            if unit.endswith(base) and unit[: -len(base)] in _PREFIX:
                return cls(num * _PREFIX[unit[: -len(base)]], base)
        return cls(num, unit)

    def close_to(self, other: Quantity) -> bool:
        return self.unit == other.unit and abs(self.value - other.value) <= 1e-9 + 1e-6 * abs(other.value)


def quantities(text: str) -> list[Quantity]:
    """Every number-with-unit in a text."""
    text = normalise(text).replace("°c", "°C")
    text = re.sub(r"(?<=\d)\s*(k|m|µ|u|n|p|M)?(ohms?)\b", r" \1Ω", text)
    return [Quantity.parse(n, u) for n, u in QUANTITY_RE.findall(_units_case(text))]


def _units_case(text: str) -> str:
    """Undo lower-casing of unit letters after numbers (`4.5 v` → `4.5 V`, `100 khz` → `100 kHz`)."""

    def fix(m: re.Match[str]) -> str:
        unit = m.group(2)
        table = {"v": "V", "a": "A", "hz": "Hz", "f": "F", "h": "H", "w": "W", "s": "s", "ω": "Ω"}
        prefixes = {"m": "m", "k": "k", "µ": "µ", "u": "µ", "n": "n", "p": "p", "g": "G"}
        if unit in table:
            prefix, base = "", unit
        elif len(unit) > 1 and unit[0] in prefixes and unit[1:] in table:
            prefix, base = prefixes[unit[0]], unit[1:]
        else:
            return m.group(0)  # "2aa" names a compound; it is not a quantity
        if prefix == "m" and base == "hz":
            prefix = "M"  # "mhz" is always megahertz in a datasheet question
        return f"{m.group(1)} {prefix}{table[base]}"

    return re.sub(rf"({_NUM})\s*([a-zµω]{{1,3}})(?![a-zµω])", fix, text)


def ranges(text: str) -> list[tuple[Quantity, Quantity]]:
    """Ranges such as `–40 °C to 125 °C` or `4.5 V to 36 V` in a text."""
    text = _units_case(normalise(text).replace("°c", "°C"))
    out = []
    for a, ua, b, ub in RANGE_RE.findall(text):
        lo, hi = Quantity.parse(a, ua or ub), Quantity.parse(b, ub)
        if lo.unit == hi.unit and lo.value <= hi.value:
            out.append((lo, hi))
    return out


def condition_score(asked: list[Quantity], condition: str) -> float:
    """How well a row's test condition fits the quantities a question names (1 exact, 0.7 in range, −0.6 other)."""
    if not asked:
        return 0.0
    points = quantities(condition)
    spans = ranges(condition)
    total = 0.0
    for q in asked:
        if any(p.close_to(q) for p in points):
            total += 1.0
        elif any(lo.unit == q.unit and lo.value - 1e-9 <= q.value <= hi.value + 1e-9 for lo, hi in spans):
            total += 0.7
        elif any(p.unit == q.unit for p in points):
            total -= 0.6
    return total / len(asked)


# ---------------------------------------------------------------- question analysis

_STAT_WORDS = {
    "max": "max",
    "maximum": "max",
    "highest": "max",
    "largest": "max",
    "upper": "max",
    "most": "max",
    "min": "min",
    "minimum": "min",
    "lowest": "min",
    "smallest": "min",
    "least": "min",
    "lower": "min",
    "typ": "typ",
    "typical": "typ",
    "typically": "typ",
    "nominal": "typ",
    "nom": "typ",
    "normal": "typ",
}
_LOOKUP_KINDS = {
    "figure": "figure",
    "fig": "figure",
    "diagram": "figure",
    "graph": "figure",
    "plot": "figure",
    "drawing": "figure",
    "schematic": "figure",
    "chart": "figure",
    "curve": "figure",
    "waveform": "figure",
    "illustration": "figure",
    "picture": "figure",
    "image": "figure",
    "circuit": "figure",
    "table": "table",
    "section": "section",
    "chapter": "section",
    "page": "page",
}
_LOOKUP_RE = re.compile(r"^\s*(?:which|what)\s+(" + "|".join(_LOOKUP_KINDS) + r")s?\b", re.I)
_ON_PAGE_RE = re.compile(r"\b(?:on\s+)?(?:which|what)\s+page\b", re.I)
_SHOWN_RE = re.compile(
    r"\b(?:is|are)\s+(shown|drawn|plotted|illustrated|pictured|depicted|listed|tabulated|described)\b", re.I
)
_WHERE_RE = re.compile(r"^\s*where\b", re.I)
LABEL_RE = re.compile(
    r"\b(figure|fig\.?|table|tbl\.?|section|sect?\.?|§|equation|eq\.?)\s*(\d+(?:[-–.]\d+)*[a-z]?)\b", re.I
)
_FOLLOW_RE = re.compile(r"^\s*(?:and|also|what about|how about|and what about|same for|but)\b", re.I)
_PRONOUN_RE = re.compile(r"\b(it|its|it's|that|this|those|these|them|they|same)\b", re.I)
_LABEL_KIND = {
    "fig": "Figure",
    "figure": "Figure",
    "table": "Table",
    "tbl": "Table",
    "section": "Section",
    "sec": "Section",
    "sect": "Section",
    "§": "Section",
    "equation": "Equation",
    "eq": "Equation",
}

# Common electronics shorthand in questions, mapped to the words datasheets print (stemmed forms).
SYNONYMS: dict[str, set[str]] = {
    "supply": {"input", "vin", "vcc", "vdd", "vs"},
    "vcc": {"vin", "supply", "input"},
    "vdd": {"vin", "supply", "input"},
    "pinout": {"pin", "configuration"},
    "temp": {"temperature"},
    "freq": {"frequency"},
    "rdson": {"on-resistance", "resistance"},
    "resistance": {"on-resistance"},
    "uvlo": {"undervoltage"},
    "undervoltage": {"uvlo"},
    "current": {"curr"},
    "leakage": {"leak"},
    "efficiency": {"efficient"},
    "power-good": {"pg", "power", "good"},
    "pgood": {"pg", "power", "good"},
    "enable": {"en"},
    "en": {"enable"},
    "ic": {"device"},
    "chip": {"device"},
    "ambient": {"ta"},
    "junction": {"tj"},
    "share": {"percent", "%", "proportion", "fraction"},
    "percentage": {"percent", "%", "share", "proportion"},
    "proportion": {"percent", "share", "fraction"},
    "financially": {"financial"},
}
_QUESTION_NOISE = frozenset(
    {
        "what",
        "which",
        "figure",
        "fig",
        "table",
        "section",
        "chapter",
        "page",
        "diagram",
        "graph",
        "plot",
        "chart",
        "drawing",
        "picture",
        "image",
        "illustration",
    }
)


@dataclass
class Intent:
    """What a question asks, after follow-up context is applied."""

    question: str  # the effective, self-contained question
    stat: str | None = None  # min | typ | max
    asked: list[Quantity] = field(default_factory=list)  # conditions named in the question
    terms: list[str] = field(default_factory=list)  # stemmed content terms (no stat words, no quantities)
    lookup: str | None = None  # figure | table | section | page: the question asks *which* one
    label: str | None = None  # an explicit "Figure 7-2" / "Table 3" the question names
    subject: str = ""  # the question's words that name what it is about (reused by follow-ups)
    attribute: str = ""  # X in "what is the X of Y" (a column name, e.g. "reset value")
    key: str = ""  # Y in "what is the X of Y" (a row name, e.g. "CTRL1")
    acronyms: list[str] = field(default_factory=list)  # upper-case names in the question ("HDMI", "VIN")


def _strip_quantities(text: str) -> str:
    text = _units_case(normalise(text).replace("°c", "°C"))
    text = RANGE_RE.sub(" ", text)
    return QUANTITY_RE.sub(" ", text)


def _canonical_label(kind: str, number: str) -> str:
    return f"{_LABEL_KIND[kind.lower().rstrip('.').strip()]} {number.replace('–', '-')}"


def analyse(question: str) -> Intent:
    """Read the question's stat word, conditions, lookup form, label and subject terms."""
    q = question.strip()
    words = [w.lower() for w in re.findall(r"[A-Za-z]+", q)]
    stat = next((_STAT_WORDS[w] for w in words if w in _STAT_WORDS), None)
    if stat is None and re.search(r"\bat (?:most|least)\b", q, re.I):
        stat = "max" if re.search(r"\bat most\b", q, re.I) else "min"
    label = None
    m = LABEL_RE.search(q)
    if m:
        label = _canonical_label(m.group(1), m.group(2))
    lookup = None
    lm = _LOOKUP_RE.match(q)
    if lm:
        lookup = _LOOKUP_KINDS[lm.group(1).lower()]
    elif _ON_PAGE_RE.search(q):
        lookup = "page"
    elif _SHOWN_RE.search(q) or _WHERE_RE.match(q):
        verb = _SHOWN_RE.search(q).group(1).lower() if _SHOWN_RE.search(q) else ""
        lookup = "table" if verb in ("listed", "tabulated") else "section" if verb == "described" else "figure"
    subject_text = LABEL_RE.sub(" ", _strip_quantities(q))
    terms = [t for t in content_terms(subject_text) if t not in _STAT_WORDS]
    if lookup or label:
        terms = [t for t in terms if t not in _QUESTION_NOISE]
    attribute = key = ""
    m = _OF_RE.match(q)
    if m:
        attribute, key = m.group(1).strip(), m.group(2).strip()
    acronyms = [a for a in re.findall(r"\b[A-Z][A-Z0-9]{1,7}\b", LABEL_RE.sub(" ", q)) if not a.isdigit()]
    return Intent(q, stat, quantities(q), terms, lookup, label, _subject_words(subject_text), attribute, key, acronyms)


_OF_RE = re.compile(
    r"^\s*(?:in the .+? table,\s*)?(?:what|which)(?:'s| is| are| was)?\s+(?:the\s+)?(.+?)\s+(?:of|for)\s+(?:the\s+)?"
    r"(.+?)(?:\s+(?:in|from) the\s+.+?)?\s*\?*\s*$",
    re.I,
)


def _subject_words(text: str) -> str:
    words = re.findall(r"[\w/()-]+", text)
    keep = [
        w
        for w in words
        if w.lower() not in STOPWORDS
        and w.lower() not in _STAT_WORDS
        and w.lower() not in ("and", "what", "about", "how", "also", "but")
    ]
    return " ".join(keep)


_LONG_STAT = {"min": "minimum", "typ": "typical", "max": "maximum"}
_LOOKUP_FORM = {
    "figure": "Which figure shows the",
    "table": "Which table lists the",
    "section": "Which section covers",
    "page": "On which page is",
}


def is_elliptical(intent: Intent) -> bool:
    """A question that names nothing of its own ("and the minimum?", "what about at 85 °C?", "and its max?")."""
    if intent.label or intent.lookup:
        return False
    return not intent.terms or (bool(_PRONOUN_RE.search(intent.question)) and len(intent.terms) <= 1)


def resolve(intent: Intent, previous: Intent | None) -> Intent:
    """Make a follow-up self-contained with the previous turn's context.

    An elliptical follow-up keeps the previous subject, and its stat and conditions unless it names new ones
    ("and the minimum?", "and at 85 °C?"); "what about X?" asks about a new subject the way the previous
    question asked (same stat, same figure/table lookup, same column).
    """
    if previous is None:
        return intent
    if is_elliptical(intent):
        stat = intent.stat or previous.stat
        asked = intent.asked or previous.asked
        conditions = _conditions_phrase(intent.question if intent.asked else previous.question) if asked else ""
        if intent.terms:  # "what is its address?": a new attribute of the same thing
            question = f"What is the {intent.subject} of {previous.key or previous.subject} {conditions}"
            return analyse(_tidy(question))
        if previous.attribute and previous.key and not intent.stat:
            question = f"What is the {previous.attribute} of {previous.key} {conditions}"
        else:
            question = f"What is the {_LONG_STAT.get(stat or '', '')} {previous.subject} {conditions}"
        return Intent(
            _tidy(question),
            stat,
            asked,
            list(dict.fromkeys(previous.terms + intent.terms)),
            None,
            previous.label,
            previous.subject,
            previous.attribute,
            previous.key,
            previous.acronyms,
        )
    if not _FOLLOW_RE.match(intent.question) or intent.label or intent.lookup:
        return intent
    subject = re.sub(r"^(?:of|for|the)\s+", "", intent.subject, flags=re.I)
    conditions = _conditions_phrase(intent.question) if intent.asked else ""
    if previous.lookup in _LOOKUP_FORM:
        return replace(analyse(_tidy(f"{_LOOKUP_FORM[previous.lookup]} {subject}")), subject=subject)
    if previous.attribute and not intent.stat:
        return replace(analyse(_tidy(f"What is the {previous.attribute} of {subject} {conditions}")), subject=subject)
    if previous.stat and not intent.stat:
        return replace(
            analyse(_tidy(f"What is the {_LONG_STAT[previous.stat]} {subject} {conditions}")), subject=subject
        )
    return intent


def _tidy(question: str) -> str:
    return re.sub(r"\s+", " ", question).strip(" ?") + "?"


def _conditions_phrase(question: str) -> str:
    m = re.search(r"\b(at|with|when|for|under)\b.*$", question.rstrip("?"), re.I)
    return m.group(0) if m else ""


# ---------------------------------------------------------------- answers


@dataclass
class Citation:
    """Evidence for an answer: the block (on its page) and the quoted text."""

    page: int
    block_id: str
    text: str


@dataclass
class Answer:
    """A short answer with its evidence; `value` is the bare answer (a number with unit, a label, a sentence)."""

    answer: str
    found: bool
    citations: list[Citation] = field(default_factory=list)
    value: str = ""
    kind: str = "none"  # table | sentence | lookup | label | generated | none
    score: float = 0.0
    flags: list[str] = field(default_factory=list)  # e.g. a generated number absent from the evidence
    question: str = ""  # the effective question (after follow-up context)

    def to_json(self) -> dict[str, Any]:
        """`{answer, found, citations: [{page, block_id, text}]}` (plus `flags` when there are any)."""
        data: dict[str, Any] = {
            "answer": self.answer,
            "found": self.found,
            "citations": [{"page": c.page, "block_id": c.block_id, "text": c.text} for c in self.citations],
        }
        if self.flags:
            data["flags"] = self.flags
        return data


def not_found(question: str, score: float = 0.0) -> Answer:
    return Answer(NOT_FOUND, False, [], "", "none", score, [], question)


class Reader(Protocol):
    """A generative reader: writes an answer from numbered evidence, citing evidence ids in brackets."""

    def read(self, question: str, evidence: list[tuple[str, str]]) -> str: ...


@dataclass
class _Candidate:
    rank: float
    answer: Answer


class QAEngine:
    """Answers intents over a document's hybrid index."""

    def __init__(self, retriever: Retriever, reader: Reader | None = None, threshold: float = FOUND_THRESHOLD) -> None:
        self.retriever = retriever
        self.reader = reader
        self.threshold = threshold

    # -- scoring helpers

    @staticmethod
    def coverage(index: DocIndex, terms: list[str], text: str) -> float:
        """IDF-weighted share of the question's terms (or a synonym of each) that occur in the text."""
        if not terms:
            return 0.0
        have = set(tokens(text))
        have |= {t.replace("-", "") for t in have}
        total = got = 0.0
        for t in terms:
            w = index.idf(t)
            total += w
            flat = t.replace("-", "")
            if t in have or flat in have or (SYNONYMS.get(t, set()) | SYNONYMS.get(flat, set())) & have:
                got += w
        return got / total if total else 0.0

    # -- answer kinds

    def answer(self, doc: Document, intent: Intent) -> Answer:
        """The best answer to an intent, or a "not found" answer below the threshold."""
        index = self.retriever.index(doc)
        if intent.label and (intent.lookup or not intent.terms or _asks_about_label(intent)):
            labelled = self._label_answer(index, intent)
            if labelled is not None:
                return labelled
        if self._unknown_names(index, intent):
            return not_found(intent.question)
        if intent.lookup in ("figure", "table", "section", "page"):
            found = self._lookup_answer(index, intent)
            if found is not None:
                return found
        query = intent.question
        hits = self.retriever.search(index, query, k=40)
        if not hits:
            return not_found(intent.question)
        candidates = self._table_candidates(index, intent, hits) + self._sentence_candidates(index, intent, hits)
        if not candidates:
            return not_found(intent.question)
        best = max(candidates, key=lambda c: c.rank)
        if best.answer.score < self.threshold:
            return not_found(intent.question, best.answer.score)
        if self.reader is not None:
            return self._generate(index, intent, hits, best.answer)
        return best.answer

    @staticmethod
    def _unknown_names(index: DocIndex, intent: Intent) -> list[str]:
        """Upper-case names in the question ("HDMI", "SPI") that the document never uses, not even as a synonym:
        a question about something the document does not name is not answered from look-alike evidence."""
        words = re.findall(r"[A-Za-z]+", intent.question)
        if len(intent.acronyms) * 2 > len(words):
            return []  # a question typed in capitals
        unknown = []
        for name in intent.acronyms:
            t = tokens(name)[0] if tokens(name) else name.lower()
            if t in _STAT_WORDS or index.df.get(t, 0) or any(index.df.get(x, 0) for x in SYNONYMS.get(t, ())):
                continue
            unknown.append(name)
        return unknown

    def _evidence_score(self, index: DocIndex, intent: Intent, text: str, cosine: float) -> float:
        return self.coverage(index, intent.terms, text) + 0.5 * max(cosine, 0.0)

    def _table_candidates(self, index: DocIndex, intent: Intent, hits: list[Hit]) -> list[_Candidate]:
        rows: dict[tuple[str, str, int], tuple[TableView, TableRow, Hit | None]] = {}
        for h in hits:
            if h.unit.kind != "table_row":
                continue
            view = index.tables.get(h.unit.block_id)
            if view is None:
                continue
            row = next((r for r in view.rows if f"{r.block_id}#r{r.index}" == h.unit.id), None)
            if row is None:
                continue
            rows[(view.block_id, row.block_id, row.index)] = (view, row, h)
            label = view.row_label(row)
            for sib in view.rows:  # rows of the same parameter under other conditions compete too
                key = (view.block_id, sib.block_id, sib.index)
                if key not in rows and view.row_label(sib) == label:
                    rows[key] = (view, sib, None)
        if intent.key:  # "the reset value of CTRL1": rows named exactly so, wherever retrieval ranked them
            for view, row in self._rows_named(index).get(_norm_text(intent.key), []):
                rows.setdefault((view.block_id, row.block_id, row.index), (view, row, None))
        out = []
        if intent.label and intent.label.startswith("Table"):
            wanted = {v.block_id for v in index.tables.values() if v.label == intent.label}
            if wanted:
                rows = {k: v for k, v in rows.items() if k[0] in wanted}
        for view, row, hit in rows.values():
            cand = self._row_answer(index, intent, view, row, hit)
            if cand is None:
                continue
            siblings = [r for r in view.rows if view.row_label(r) == view.row_label(row)]
            if len(siblings) > 1 and not intent.asked:
                # no condition asked: the parameter's first row (its base conditions) answers, the others follow
                cand.rank -= 0.05 * siblings.index(row)
                if siblings.index(row) == 0:
                    others = [self._condition_value(view, r, intent) for r in siblings[1:]]
                    extra = "; ".join(o for o in others if o)
                    if extra:
                        cand.answer.answer += f" — also {extra}"
            out.append(cand)
        return out

    def _rows_named(self, index: DocIndex) -> dict[str, list[tuple[TableView, TableRow]]]:
        """Every table row under each of its naming cells' normalised texts (built once per document index)."""
        cache = self.__dict__.setdefault("_named", {})
        if cache.get("index") is not index:
            named: dict[str, list[tuple[TableView, TableRow]]] = {}
            for view in {id(v): v for v in index.tables.values()}.values():
                for row in view.rows:
                    for c, role in enumerate(view.roles):
                        if role == "label" and row.cells[c]:
                            named.setdefault(_norm_text(row.cells[c]), []).append((view, row))
            cache.update(index=index, named=named)
        return cache["named"]

    @staticmethod
    def _condition_value(view: TableView, row: TableRow, intent: Intent) -> str:
        """ "55 µA at TJ = 125 °C": a sibling row's value for the asked stat, with its condition."""
        condition = " ".join(row.cells[c] for c, r in enumerate(view.roles) if r == "condition")
        stats = {r: row.cells[c] for c, r in enumerate(view.roles) if r in ("min", "typ", "max", "value")}
        value = stats.get(intent.stat or "", "") or ", ".join(f"{k} {v}" for k, v in stats.items() if v)
        return f"{value} {view.unit_of(row)} at {condition}".strip() if value and condition else ""

    def _row_answer(
        self, index: DocIndex, intent: Intent, view: TableView, row: TableRow, hit: Hit | None
    ) -> _Candidate | None:
        name = view.row_label(row)
        condition = " ".join(row.cells[c] for c, r in enumerate(view.roles) if r == "condition")
        about = " ".join([view.title, row.group, name, condition])
        cosine = hit.cosine if hit else 0.0
        if hit is None:
            unit_id = f"{row.block_id}#r{row.index}"
            if unit_id in index.by_id:
                cosine = float(index.matrix[index.by_id[unit_id]] @ self._qvec(intent))
        cond = condition_score(intent.asked, about)
        stats = {r: row.cells[c] for c, r in enumerate(view.roles) if r in ("min", "typ", "max", "value")}
        unit = view.unit_of(row)
        asked_col = self._asked_column(intent, view, row)
        described = max(
            ((self.coverage(index, intent.terms, t), c) for c, t in enumerate(row.cells) if len(t) > 40), default=None
        )
        fit = 0.0
        if intent.stat and any(stats.values()):
            chosen = stats.get(intent.stat) or (stats.get("value", "") if intent.stat == "typ" else "")
            if chosen:
                value = f"{chosen} {unit}".strip()
                fit = 0.25
            else:
                given = ", ".join(f"{k} {v} {unit}".strip() for k, v in stats.items() if v)
                value = f"no {intent.stat} value is given ({given})"
                fit = -0.15
        elif asked_col is not None and row.cells[asked_col]:
            value = row.cells[asked_col]
            if view.roles[asked_col] in ("min", "typ", "max", "value") and unit:
                value = f"{value} {unit}"
            fit = 0.15
        elif any(stats.values()) and not (described and described[0] >= 0.5):
            value = ", ".join(
                f"{k} {v} {unit}".strip() if k != "value" else f"{v} {unit}".strip() for k, v in stats.items() if v
            )
        else:
            if described and described[0] > 0.3:  # a description cell that answers a how/what-for question
                value = row.cells[described[1]]
            else:
                value = "; ".join(
                    f"{view.columns[c]}: {t}" if view.columns[c] else t for c, t in enumerate(row.cells) if t and c > 0
                )
            fit = -0.1  # a whole row answers "what is X" less surely than a matched cell
        if not value:
            return None
        asked_name = view.columns[asked_col] if asked_col is not None else ""
        evidence = self._evidence_score(index, intent, f"{about} {asked_name}", cosine)
        # rows whose naming cells the question names completely beat rows that only contain its words
        label_terms = set(content_terms(name))
        precision = len(label_terms & set(intent.terms)) / len(label_terms) if label_terms else 0.0
        keyed = bool(intent.key) and any(
            _same_text(intent.key, row.cells[c])
            for c, r in enumerate(view.roles)
            if r in ("label", "condition") and row.cells[c]
        )
        # "entry 3", "pin 7": the question names a column and this row's cell in it
        asked_text = f" {_norm_text(intent.question)} "
        keyed = keyed or any(
            f" {_norm_text(f'{view.columns[c]} {row.cells[c]}')} " in asked_text
            for c, r in enumerate(view.roles)
            if r == "label" and row.cells[c] and view.columns[c]
        )
        named = self.coverage(index, intent.terms, f"{name} {condition}")  # the row itself, not its table
        title_terms = set(content_terms(_strip_label(view.title, view.label)))
        title_fit = len(title_terms & set(intent.terms)) / len(title_terms) if title_terms else 0.0
        rank = evidence + fit + 0.3 * cond + 0.2 * precision + 0.2 * named + 0.15 * title_fit + 0.5 * keyed
        detail = f"{name}, {condition}" if condition else name
        where = view.title or view.label or "table"
        stat_word = f"{intent.stat}, " if intent.stat and fit > 0 else ""
        text = f"{value} ({stat_word}{detail}; {where}, page {row.page})"
        quote = view.row_text(row).replace(" || ", " — ")
        answer = Answer(
            text, True, [Citation(row.page, row.block_id, quote)], value, "table", evidence, question=intent.question
        )
        return _Candidate(rank, answer)

    @staticmethod
    def _asked_column(intent: Intent, view: TableView, row: TableRow) -> int | None:
        """The column a question names: X in "what is the X of Y" when X names one, else the question's words
        that name neither the table nor the row."""
        if intent.attribute:
            wanted = set(content_terms(intent.attribute)) - set(_STAT_WORDS)
            scored = [(len(set(content_terms(col)) & wanted), c) for c, col in enumerate(view.columns)]
            best = max(scored, default=(0, None))
            if best[0] and list(zip(*scored, strict=True))[0].count(best[0]) == 1:
                return best[1]
        named = set(tokens(view.title)) | set(
            tokens(" ".join(row.cells[c] for c, r in enumerate(view.roles) if r in ("label", "condition")))
        )
        asked = set(intent.terms) - named
        best, best_overlap = None, 0
        for c, column in enumerate(view.columns):
            overlap = len(set(content_terms(column)) & asked)
            if overlap > best_overlap:
                best, best_overlap = c, overlap
        return best

    def _sentence_candidates(self, index: DocIndex, intent: Intent, hits: list[Hit]) -> list[_Candidate]:
        out = []
        for rank, h in enumerate(hits[:20]):
            if h.unit.kind not in (
                "paragraph",
                "list_item",
                "caption",
                "heading",
                "formula",
                "code",
                "figure",
                "schematic",
            ):
                continue
            context, _, body = (
                h.unit.text.rpartition(" — ") if h.unit.kind in ("paragraph", "list_item") else ("", "", h.unit.text)
            )
            sentences = split_sentences(body)
            counting = bool(_COUNT_RE.match(intent.question))
            for k, sentence in enumerate(sentences):
                before = sentences[k - 1] if k else ""  # the sentence before often names what this one quantifies
                cov = self.coverage(index, intent.terms, f"{sentence} {before} {context}")
                own = self.coverage(index, intent.terms, sentence)
                evidence = 0.7 * cov + 0.3 * own + 0.5 * max(h.cosine, 0.0)
                ranked = evidence - 0.004 * rank
                if intent.stat or intent.asked:
                    ranked -= 0.1  # a spec question is better answered by a table row when one fits
                if h.unit.kind == "heading":
                    ranked -= 0.1  # a heading names a topic; it rarely answers a question about it
                if counting and re.search(r"\d", sentence):
                    ranked += 0.1  # "how many …?" wants a sentence with a number in it
                answer = Answer(
                    sentence,
                    True,
                    [Citation(h.unit.page, h.unit.block_id, sentence)],
                    sentence,
                    "sentence",
                    evidence,
                    question=intent.question,
                )
                out.append(_Candidate(ranked, answer))
        return out

    def _qvec(self, intent: Intent):
        return self.retriever.query_vector(intent.question)

    def _lookup_answer(self, index: DocIndex, intent: Intent) -> Answer | None:
        """ "Which figure shows …?" / "Which table lists …?" / "Which section …?" / "On which page …?"."""
        kinds = {
            "figure": {"caption", "figure", "schematic"},
            "table": {"caption", "table"},
            "section": {"heading"},
            "page": None,
        }[intent.lookup or "page"]
        hits = self.retriever.search(index, intent.question, k=30, kinds=kinds)
        best: tuple[float, Answer] | None = None
        for rank, h in enumerate(hits):
            target = self._lookup_target(index, h.unit.block_id)
            block, label, caption = target if target else (index.doc.block(h.unit.block_id), None, h.unit.text)
            # a caption block holding several captions (figures side by side) is scored caption by caption
            for seg_label, text in _caption_segments(caption, label):
                if intent.lookup in ("figure", "table"):
                    want = "Figure" if intent.lookup == "figure" else "Table"
                    if not (seg_label or "").startswith(want):
                        continue
                evidence = self._evidence_score(index, intent, text, h.cosine)
                title_terms = set(content_terms(_strip_label(text, seg_label)))
                precision = len(title_terms & set(intent.terms)) / len(title_terms) if title_terms else 0.0
                score = evidence + 0.2 * precision - 0.003 * rank
                if best is not None and score <= best[0]:
                    continue
                if seg_label:
                    value, answer = seg_label, f"{seg_label} (page {block.page}): {_strip_label(text, seg_label)}"
                elif intent.lookup == "section":
                    value, answer = h.unit.text, f"Section {h.unit.text} (page {block.page})"
                else:
                    value, answer = f"page {block.page}", f"Page {block.page}: {text[:200]}"
                cite = [Citation(block.page, block.id, text[:300])]
                best = (score, Answer(answer, True, cite, value, "lookup", evidence, question=intent.question))
        if best is None:
            return None
        if best[1].score < self.threshold:
            return not_found(intent.question, best[1].score)
        return best[1]

    def _lookup_target(self, index: DocIndex, block_id: str) -> tuple[Block, str | None, str] | None:
        """The figure/table a caption (or the object itself) names: (object block, label, caption text)."""
        block = index.doc.block(block_id)
        if block.kind == "caption":
            for obj_id, cap in index.captions.items():
                if cap.id == block.id:
                    obj = index.doc.block(obj_id)
                    return obj, cap.label or obj.label, cap.text
            return block, block.label, block.text
        cap = index.captions.get(block.id)
        if cap is not None:
            return block, cap.label or block.label, cap.text
        if block.label:
            return block, block.label, block.text or block.label
        return None

    def _label_answer(self, index: DocIndex, intent: Intent) -> Answer | None:
        """What Figure 7-2 shows / where Table 3 is."""
        label = intent.label or ""
        if label.startswith("Section"):
            number = label.split(" ", 1)[1]
            for b in index.doc.blocks:
                if b.kind == "heading" and re.match(rf"{re.escape(number)}\.?\s", b.text):
                    return Answer(
                        f"Section {b.text} (page {b.page})",
                        True,
                        [Citation(b.page, b.id, b.text)],
                        b.text,
                        "label",
                        1.0,
                        question=intent.question,
                    )
            return not_found(intent.question)
        targets = [
            (obj, cap)
            for obj, cap in ((index.doc.block(o), c) for o, c in index.captions.items())
            if _same_label(cap.label or obj.label, label)
        ]
        if not targets:  # the label may sit inside a caption merged with its neighbour's
            for obj_id, cap in index.captions.items():
                for seg_label, text in _caption_segments(cap.text, cap.label):
                    if seg_label and _same_label(seg_label, label):
                        return _label_answer(label, index.doc.block(obj_id), text, intent.question)
        if not targets:
            objs = [b for b in index.doc.blocks if _same_label(b.label, label) and b.kind != "caption"]
            caps = [b for b in index.doc.blocks if b.kind == "caption" and _same_label(b.label, label)]
            targets = [(o, caps[0] if caps else o) for o in objs[:1]] or [(c, c) for c in caps[:1]]
        if not targets:
            return not_found(intent.question)
        obj, cap = targets[0]
        return _label_answer(label, obj, cap.text.strip(), intent.question)

    # -- generative reader

    def _generate(self, index: DocIndex, intent: Intent, hits: list[Hit], extractive: Answer) -> Answer:
        """Let the reader write the answer over numbered evidence; check its citations and numbers."""
        evidence = [(f"E{i + 1}", h.unit.text.replace(" || ", " — ")) for i, h in enumerate(hits[:6])]
        text = self.reader.read(intent.question, evidence).strip() if self.reader else ""
        cited = {m for m in re.findall(r"\[(E\d+)\]", text)}
        by_id = {eid: hits[i] for i, (eid, _) in enumerate(evidence)}
        citations = [
            Citation(by_id[e].unit.page, by_id[e].unit.block_id, dict(evidence)[e]) for e in sorted(cited) if e in by_id
        ]
        flags = []
        if not citations:
            flags.append("the generated answer cites no evidence; the extractive answer is shown instead")
            return replace(extractive, flags=flags)
        quoted = " ".join(c.text for c in citations)
        have = {n for n in re.findall(r"\d+(?:\.\d+)?", normalise(quoted))}
        for n in re.findall(r"\d+(?:\.\d+)?", normalise(re.sub(r"\[E\d+\]", "", text))):
            if n not in have:
                flags.append(f"number {n} is not in the cited evidence")
        clean = re.sub(r"\s*\[E\d+\]", "", text).strip()
        return Answer(clean, True, citations, clean, "generated", extractive.score, flags, intent.question)


def _norm_text(text: str) -> str:
    """Lower case, single spaces, plain dashes, no leading article or trailing punctuation."""
    return re.sub(r"^(?:the|a|an)\s+", "", re.sub(r"\s+", " ", normalise(text)).strip(" .?"))


def _same_text(a: str, b: str) -> bool:
    return _norm_text(a) == _norm_text(b)


def _asks_about_label(intent: Intent) -> bool:
    return (
        bool(
            re.search(
                r"\b(what|where|which page|show|shows|contain|list|lists|describe|about)\b", intent.question, re.I
            )
        )
        and len(intent.terms) <= 2
    )


def _same_label(a: str | None, b: str) -> bool:
    if not a:
        return False
    norm = lambda s: re.sub(r"\s+", " ", s.replace("–", "-").replace("Fig.", "Figure").strip().lower())  # noqa: E731
    return norm(a) == norm(b)


_CAPTION_START_RE = re.compile(r"\b(Figure|Fig\.|Table)\s+(\d+(?:[-–.]\d+)*[a-z]?)[.:]\s", re.I)


def _caption_segments(text: str, label: str | None) -> list[tuple[str | None, str]]:
    """(label, caption) pairs of a caption text; several when captions of neighbouring figures were merged."""
    starts = list(_CAPTION_START_RE.finditer(text))
    if len(starts) < 2:
        return [(label, text.strip())]
    out = []
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        out.append((_canonical_label(m.group(1), m.group(2)), text[m.start() : end].strip()))
    return out


def _strip_label(text: str, label: str | None) -> str:
    if label and text.lower().startswith(label.lower()):
        return text[len(label) :].lstrip(" .:–-").strip()
    return text.strip()


_COUNT_RE = re.compile(
    r"^\s*(?:how (?:many|much|long|often|large|high|low)|what (?:number|percentage|share|fraction))\b", re.I
)
_SENT_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")


def split_sentences(text: str) -> list[str]:
    """Sentences of a paragraph (abbreviations such as "Fig. 3" and "e.g." do not end one)."""
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        return []
    parts = _SENT_RE.split(text)
    out: list[str] = []
    for p in parts:
        if out and re.search(r"\b(?:Fig|Figs|Eq|Eqs|No|Sec|e\.g|i\.e|approx|vs|Ref|etc)\.$", out[-1]):
            out[-1] += " " + p
        else:
            out.append(p)
    return out


# ---------------------------------------------------------------- sessions and the CLI entry


class ChatSession:
    """A conversation about one document: keeps the history so follow-ups ("and the minimum?") make sense."""

    def __init__(
        self,
        workspace: Workspace,
        doc: Document,
        retriever: Retriever | None = None,
        reader: Reader | None = None,
        session_id: str | None = None,
        persist: bool = True,
        engine: QAEngine | None = None,
    ) -> None:
        self.workspace = workspace
        self.doc = doc
        self.engine = engine or QAEngine(retriever or Retriever(workspace), reader)
        self.session_id = session_id or uuid.uuid4().hex
        self.persist = persist
        self.history: list[tuple[str, Answer]] = []
        self._last: Intent | None = None

    @classmethod
    def open(cls, doc: str, workspace: Workspace, reader: Reader | None = None) -> ChatSession:
        """A session about DOC: a PDF path (parsed into the workspace when new) or a stored document's reference.

        Raises:
            QAError: neither an existing PDF nor a stored document (PdfError for an unreadable PDF).
        """
        return cls(workspace, open_document(doc, workspace), reader=reader)

    def ask(self, question: str) -> Answer:
        """Answer one turn.

        Raises:
            QAError: the question is empty.
        """
        if not question or not question.strip():
            raise QAError("the question is empty")
        intent = resolve(analyse(question), self._last)
        answer = self.engine.answer(self.doc, intent)
        answer.question = intent.question
        if intent.terms or intent.label:
            self._last = intent
        self.history.append((question, answer))
        if self.persist:
            self.workspace.add_chat_turn(self.session_id, self.doc.id, question, json.dumps(answer.to_json()))
        return answer

    def remember(self, question: str) -> None:
        """Take an earlier question as context without answering it (for `ask --history`)."""
        if question.strip():
            intent = resolve(analyse(question), self._last)
            if intent.terms or intent.label:
                self._last = intent


def open_document(doc: str, workspace: Workspace) -> Document:
    """A PDF path (parsed into the workspace when new) or a stored document's id, id prefix or file name.

    Raises:
        QAError: neither an existing PDF nor a stored document.
    """
    path = Path(doc)
    if path.is_file():
        return workspace.parse(path)
    found = workspace.find(doc)
    if found is None:
        raise QAError(f"no such document: {doc!r} is neither a PDF file nor a document in the workspace")
    return found


def ask_command(
    doc: str, question: str, history: list[str], workspace: Workspace, reader: Reader | None = None
) -> Answer:
    """Answer one question about DOC with earlier questions as context (the `ohmlens ask` command).

    Raises:
        QAError: empty question or unknown document (PdfError for a PDF that cannot be read).
    """
    if not question or not question.strip():
        raise QAError("the question is empty")
    document = open_document(doc, workspace)
    session = ChatSession(workspace, document, reader=reader, persist=False)
    for earlier in history:
        session.remember(earlier)
    return session.ask(question)


def _label_answer(label: str, obj, caption_text: str, question: str) -> Answer:
    """Where a labelled table or figure is, quoting its caption."""
    value = _strip_label(caption_text, label) or label
    return Answer(
        f"{label} is on page {obj.page}: {value}",
        True,
        [Citation(obj.page, obj.id, caption_text)],
        value,
        "label",
        1.0,
        question=question,
    )
