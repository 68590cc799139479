"""Question-answering quality and speed on the synthetic datasheet (questions from its truth) and real PDFs.

Usage:
    python tests/benchmarks/eval_qa.py [--pages 120] [--seed 0] [--oracle] [--limit N]
    python tests/benchmarks/eval_qa.py --calibrate [--pages 12 --seed 1]

1. Generates (or reuses) `samples/generated/datasheet-<pages>p-seed<seed>.pdf` and its truth, builds ≥ 300
   questions from the truth alone (table rows read straight from the gold cells, never through the QA code):
   spec lookups with min/typ/max and test conditions (including a temperature inside a condition's range),
   table-cell lookups, figure and table lookups by description, label → page questions, rows of tables that
   continue on another page (header on one page, answer on the next), follow-ups ("and the minimum?"), and
   unanswerable questions about things the document never mentions.
2. Parses the PDF into a fresh workspace (`--oracle` uses the gold document instead, to separate parsing
   errors from answering errors), indexes it (timed), and asks every question (timed, p50/p95).
3. Asks the hand-written questions over the real PDFs in ../shared/data (skipped when absent).
Scores: answer accuracy over answerable questions, citation page accuracy (first citation on a gold page)
over answered ones and over all answerable ones, share of unanswerable questions declined.
`--calibrate` prints accuracy against the not-found threshold instead (choose it on a different seed/size
than the one reported). Writes tests/benchmarks/results/qa.json and qa.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pipelines.document import Document  # noqa: E402
from pipelines.qa import ChatSession, QAEngine  # noqa: E402
from pipelines.retrieval import Retriever  # noqa: E402
from pipelines.store import Workspace  # noqa: E402

RESULTS = REPO / "tests" / "benchmarks" / "results"
GENERATED = REPO / "samples" / "generated"
SHARED_DATA = REPO.parent / "shared" / "data"

STAT_WORDS = {
    "min": ["minimum", "min", "lowest"],
    "typ": ["typical", "typ", "typical"],
    "max": ["maximum", "max", "highest"],
}
STAT_HEADERS = {"MIN": "min", "TYP": "typ", "NOM": "typ", "MAX": "max"}


@dataclass
class Question:
    """One evaluation question with what counts as a right answer."""

    id: str
    category: str
    question: str
    answers: list[str] = field(default_factory=list)  # any of these (normalised) in the answer value
    pages: list[int] = field(default_factory=list)  # gold pages for the first citation
    check: str = "value"  # value: answers in the short value | text: answers in the full answer | none: decline
    history: list[str] = field(default_factory=list)  # earlier turns of the same conversation
    source: str = ""  # which PDF (real-PDF questions)


# ---------------------------------------------------------------- gold tables, straight from the truth cells


@dataclass
class GoldRow:
    label: str
    condition: str
    stats: dict[str, str]
    unit: str
    cells: dict[str, str]  # column header → text
    page: int
    part: int


def _gold_tables(truth: dict) -> dict[str, tuple[str, list[str], list[GoldRow]]]:
    """label → (title, column headers, rows) for every table of the gold document."""
    blocks = {b["id"]: b for b in truth["blocks"]}
    captions = {c["target"]: c["text"] for c in truth["truth"]["captions"]}
    out: dict[str, tuple[str, list[str], list[GoldRow]]] = {}
    for t in truth["truth"]["tables"]:
        b = blocks[t["block"]]
        n_rows, n_cols = b["table"]["n_rows"], b["table"]["n_cols"]
        grid = [["" for _ in range(n_cols)] for _ in range(n_rows)]
        header_rows: set[int] = set()
        full_width: set[int] = set()
        for c in b["table"]["cells"]:
            for r in range(c["row"], c["row"] + c["row_span"]):
                for k in range(c["col"], c["col"] + c["col_span"]):
                    grid[r][k] = c["text"]
            if c["header"]:
                header_rows.add(c["row"])
            if c["col_span"] == n_cols and not c["header"]:
                full_width.add(c["row"])
        label = t["label"]
        if t["part"] == 0:
            heads = []
            for k in range(n_cols):
                names = list(dict.fromkeys(grid[r][k] for r in sorted(header_rows) if grid[r][k]))
                heads.append(" ".join(names))
            title = re.sub(r"^\S+ \S+\.\s*", "", captions.get(t["block"], label)).replace(" (continued)", "")
            out[label] = (title, heads, [])
        title, heads, rows = out[label]
        for r in range(n_rows):
            if r in header_rows or r in full_width or not any(grid[r]):
                continue
            cells = {heads[k] or f"col{k}": grid[r][k] for k in range(n_cols)}
            stats = {STAT_HEADERS[h]: v for h, v in cells.items() if h in STAT_HEADERS and v}
            cond = next((v for h, v in cells.items() if "CONDITION" in h), "")
            unit = cells.get("UNIT", "")
            names = [grid[r][k] for k in range(n_cols) if not heads[k] and grid[r][k]]
            label_text = " ".join(dict.fromkeys(names)) if names else grid[r][0]
            if heads[0] and heads[0] not in STAT_HEADERS:
                label_text = grid[r][0]
                if len(heads) > 1 and not heads[1] and grid[r][1]:
                    label_text += " " + grid[r][1]
            rows.append(GoldRow(label_text, cond, stats, unit, cells, t["page"], t["part"]))
    return out


# ---------------------------------------------------------------- question generation

ABSENT_PARAMETERS = [
    "Bluetooth transmit power",
    "ADC integral nonlinearity",
    "LVDS differential output voltage",
    "flash write endurance",
    "USB data rate",
    "DAC settling time",
    "gyroscope sensitivity",
    "audio THD+N",
    "CAN bus dominant voltage",
    "laser diode forward current",
    "Ethernet PHY link time",
    "RF output power",
    "HDMI clock frequency",
    "accelerometer noise density",
    "battery charge current",
    "LED string voltage",
    "motor stall current",
    "photodiode dark current",
    "SPI clock frequency",
    "EEPROM retention time",
    "PWM dimming ratio",
    "piezo drive voltage",
    "solar panel MPPT voltage",
    "antenna gain",
    "codec sample rate",
]
ABSENT_FIGURES = [
    "eye diagram",
    "antenna radiation pattern",
    "Bluetooth pairing sequence",
    "USB enumeration flow",
    "audio frequency response",
    "camera interface timing",
    "ADC code histogram",
    "motor commutation waveforms",
    "Smith chart of the RF input",
    "battery charge profile",
    "LED dimming curve",
    "touch sensor layout",
]
ABSENT_OTHER = [
    "What is the price of the device in 1,000-unit quantities?",
    "Which USB class does the device implement?",
    "What is the gyroscope full-scale range?",
    "How many ADC channels does the device have?",
    "What is the maximum Wi-Fi transmit power?",
    "Which Bluetooth version is supported?",
    "What is the audio codec sample rate?",
    "What is the LCD refresh rate?",
    "How many GPIO interrupts does the microcontroller core support?",
    "What is the flash memory size?",
    "What is the camera sensor resolution?",
    "Which Ethernet standard does the PHY support?",
    "What is the maximum HDMI pixel clock?",
    "What is the accelerometer bandwidth?",
]


def _absent(truth: dict, phrase: str) -> bool:
    """True when no word of the phrase's distinctive part occurs anywhere in the gold document's text."""
    text = " ".join(
        b.get("text", "") + " " + " ".join(c["text"] for c in (b.get("table") or {}).get("cells", []))
        for b in truth["blocks"]
    ).lower()
    key = [
        w
        for w in re.findall(r"[a-z][a-z+-]{2,}", phrase.lower())
        if w
        not in {
            "what",
            "which",
            "the",
            "maximum",
            "minimum",
            "typical",
            "does",
            "device",
            "how",
            "many",
            "figure",
            "shows",
            "show",
            "and",
            "for",
            "support",
            "supported",
            "implement",
            "time",
            "voltage",
            "current",
            "frequency",
            "power",
            "output",
            "input",
            "rate",
            "range",
            "size",
            "clock",
            "noise",
            "sequence",
            "flow",
            "layout",
            "response",
            "pattern",
            "interface",
            "timing",
            "profile",
            "curve",
            "waveforms",
            "chart",
            "quantities",
            "price",
            "core",
            "memory",
            "full-scale",
            "version",
            "standard",
            "sensor",
            "resolution",
            "drive",
            "gain",
            "data",
            "write",
            "forward",
            "string",
            "stall",
            "dark",
            "retention",
            "ratio",
            "panel",
            "link",
            "bus",
            "dominant",
            "settling",
            "differential",
            "sensitivity",
            "density",
            "charge",
            "transmit",
            "sample",
            "refresh",
            "channels",
            "interrupts",
            "bandwidth",
            "pixel",
            "class",
            "microcontroller",
            "gpio",
        }
    ]
    return bool(key) and not any(re.search(rf"\b{re.escape(w)}\b", text) for w in key)


def _phrase_condition(cond: str, rng: random.Random) -> str:
    if re.search(r"\d", cond) and "=" in cond and "," not in cond:
        return rng.choice([f" at {cond}", f" with {cond}", f" when {cond}"])
    return f" ({cond})"


def generate_questions(truth: dict, seed: int = 0) -> list[Question]:
    """Questions with gold answers and pages, from the truth annex and gold cells only."""
    rng = random.Random(seed)
    tables = _gold_tables(truth)
    qs: list[Question] = []
    spec_keys: dict[tuple[str, str], int] = {}
    for _label, (_title, _heads, rows) in tables.items():
        for row in rows:
            for stat in row.stats:
                spec_keys[(row.label.lower(), stat)] = spec_keys.get((row.label.lower(), stat), 0) + 1
    same_title: dict[str, list[tuple[str, list[str], list[GoldRow]]]] = {}
    for t in tables.values():
        same_title.setdefault(t[0], []).append(t)
    spec: list[Question] = []
    cond_range: list[Question] = []
    cells: list[Question] = []
    for title, heads, rows in tables.values():
        per_label: dict[str, list[GoldRow]] = {}
        for row in rows:
            per_label.setdefault(row.label, []).append(row)
        for row in rows:
            if not row.label or len(row.label) > 60:
                continue
            same = per_label[row.label]
            if len(same) > 1 and (not row.condition or len({r.condition for r in same}) < len(same)):
                continue  # rows this question could not tell apart
            where = f" in the {title}" if any(spec_keys[(row.label.lower(), s)] > 1 for s in row.stats) else ""
            for stat, value in row.stats.items():
                cond = _phrase_condition(row.condition, rng) if len(same) > 1 else ""
                word = rng.choice(STAT_WORDS[stat])
                name = row.label if rng.random() < 0.6 else row.label.lower()
                text = rng.choice(
                    [
                        f"What is the {word} {name}{cond}{where}?",
                        f"What is the {word} value of the {name}{cond}{where}?",
                        f"{word.capitalize()} {name}{cond}{where}?",
                    ]
                )
                cat = "cross_page" if row.part > 0 else "spec"
                spec.append(Question("", cat, text, [f"{value} {row.unit}".strip()], [row.page]))
            for lo, hi in _condition_ranges(row.condition):
                points = [_point(r.condition) for r in same if r is not row]
                inside = [v for v in range(int(lo) + 1, int(hi)) if v % 5 == 0 and all(v != p for p in points)]
                unit = re.search(r"°C|V\b|A\b", row.condition)
                if not inside or not unit or "max" not in row.stats:
                    continue
                for v in rng.sample(inside, min(2, len(inside))):
                    text = f"What is the maximum {row.label.lower()} at {v} {unit.group(0)}{where}?"
                    cond_range.append(
                        Question("", "spec_condition", text, [f"{row.stats['max']} {row.unit}".strip()], [row.page])
                    )
        if any(h in STAT_HEADERS for h in heads):
            continue
        key_col = _key_column(heads, rows)
        keys = [r.cells.get(key_col, "") for r in rows]
        for row, key in zip(rows, keys, strict=True):
            if not key or keys.count(key) > 1 or len(key) > 40:
                continue
            for col in heads:
                if col == key_col:
                    continue
                value = row.cells.get(col, "")
                if not col or not value or len(value) > 30 or col == "UNIT":
                    continue
                twins = [r for _t, _h, rs in same_title[title] for r in rs if r.cells.get(key_col) == key]
                if any(r.cells.get(col) != value for r in twins):
                    continue  # tables of the same title disagree: the question has no single answer
                pages = sorted({r.page for r in twins})
                text = rng.choice(
                    [
                        f"In the {title} table, what is the {col.lower()} of {key}?",
                        f"What is the {col.lower()} for {key} in the {title}?",
                    ]
                )
                unit = row.cells.get("UNIT", "")
                cat = "cross_page" if row.part > 0 else "cell"
                cells.append(Question("", cat, text, [f"{value} {unit}".strip() if unit else value], pages))
    rng.shuffle(cells)
    qs += spec + cond_range + cells[:90]

    ann = truth["truth"]
    titles: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for c in ann["captions"]:
        if c["continued"] or not c["label"]:
            continue
        kind = "figure" if c["label"].startswith("Figure") else "table"
        title = re.sub(r"^\S+ \S+\.\s*", "", c["text"])
        title = re.sub(r"\s*\(.*$", "", title) if kind == "figure" else title
        titles.setdefault((kind, title.lower()), []).append((c["label"], c["page"]))
    lookups: list[Question] = []
    for (kind, title), found in titles.items():
        if len(title) < 6:
            continue
        labels, pages = [lbl for lbl, _ in found], [p for _, p in found]
        if kind == "figure":
            text = rng.choice(
                [
                    f"Which figure shows the {title}?",
                    f"Which diagram shows the {title}?",
                    f"Where is the {title} shown?",
                ]
            )
        else:
            text = rng.choice([f"Which table lists the {title}?", f"Which table gives the {title}?"])
        lookups.append(Question("", f"{kind}_lookup", text, labels, pages))
    rng.shuffle(lookups)
    qs += lookups[:80]

    label_qs: list[Question] = []
    firsts = [c for c in ann["captions"] if not c["continued"] and c["label"]]
    for c in rng.sample(firsts, min(30, len(firsts))):
        text = rng.choice([f"On which page is {c['label']}?", f"Where is {c['label']}?"])
        label_qs.append(Question("", "label_page", text, [f"page {c['page']}"], [c["page"]], check="text"))
    qs += label_qs

    follow: list[Question] = []
    multi = [
        (r, label)
        for label, (_t, _h, rows) in tables.items()
        for r in rows
        if len(r.stats) >= 2
        and r.label
        and spec_keys[(r.label.lower(), next(iter(r.stats)))] == 1
        and r.part == 0
        and not r.condition
    ]
    for row, _label in rng.sample(multi, min(20, len(multi))):
        first, second = rng.sample(sorted(row.stats), 2)
        ask = f"What is the {STAT_WORDS[first][0]} {row.label.lower()}?"
        then = rng.choice([f"and the {STAT_WORDS[second][0]}?", f"What about the {STAT_WORDS[second][0]}?"])
        follow.append(
            Question("", "follow_up", then, [f"{row.stats[second]} {row.unit}".strip()], [row.page], history=[ask])
        )
    qs += follow

    unanswerable: list[Question] = []
    for p in ABSENT_PARAMETERS:
        if _absent(truth, p):
            word = rng.choice(["maximum", "minimum", "typical"])
            unanswerable.append(Question("", "unanswerable", f"What is the {word} {p}?", check="none"))
    for f in ABSENT_FIGURES:
        if _absent(truth, f):
            unanswerable.append(Question("", "unanswerable", f"Which figure shows the {f}?", check="none"))
    for q in ABSENT_OTHER:
        if _absent(truth, q):
            unanswerable.append(Question("", "unanswerable", q, check="none"))
    qs += unanswerable
    for i, q in enumerate(qs):
        q.id = f"s{i:03d}"
    return qs


def _key_column(heads: list[str], rows: list[GoldRow]) -> str:
    """The column that names rows best: unique values with words in them (NAME rather than ADDRESS or BIT)."""
    names = [h or f"col{k}" for k, h in enumerate(heads)]
    for name in names:
        values = [r.cells.get(name, "") for r in rows]
        if (
            all(values)
            and len(set(values)) == len(values)
            and max(map(len, values)) <= 25
            and not any(re.fullmatch(r"0x[0-9A-Fa-f]+|[\d.,:]+", v) for v in values)
        ):
            return name
    return names[0]


def _condition_ranges(cond: str) -> list[tuple[float, float]]:
    m = re.search(r"([–-]?\d+(?:\.\d+)?)\s*(?:°C|V|A)?\s+to\s+([–-]?\d+(?:\.\d+)?)", cond)
    if not m:
        return []
    lo, hi = (float(x.replace("–", "-")) for x in m.groups())
    return [(lo, hi)] if lo < hi else []


def _point(cond: str) -> float | None:
    if _condition_ranges(cond):
        return None
    m = re.search(r"=\s*([–-]?\d+(?:\.\d+)?)", cond)
    return float(m.group(1).replace("–", "-")) if m else None


# ---------------------------------------------------------------- hand-written questions over real PDFs


def _real(source: str, question: str, answers: list[str], pages: list[int]) -> Question:
    """A hand-written question; `answers` are checked in the whole answer text (sentence or table cell)."""
    return Question("", "real", question, answers, pages, check="text" if answers else "none", source=source)


D, P, E = "docling-dev/", "pymupdf4llm-dev/", "tables-icdar2013-eu/"
REAL_QUESTIONS: list[Question] = [
    _real(D + "2305.03393v1-pg9.pdf", "Which CPU were the inference timings measured on?", ["AMD EPYC 7763"], [1]),
    _real(D + "2305.03393v1-pg9.pdf", "How many samples does FinTabNet have?", ["113k"], [1]),
    _real(
        D + "2305.03393v1-pg9.pdf", "Which table presents the hyper parameter optimization results?", ["Table 1"], [1]
    ),
    _real(D + "amt_handbook_sample.pdf", "Which figure shows the self-locking nuts?", ["Figure 7-26"], [1]),
    _real(D + "amt_handbook_sample.pdf", "What are wing-type nuts made of?", ["anodized aluminum alloy"], [1]),
    _real(
        D + "amt_handbook_sample.pdf", "Which figure shows the stainless steel self-locking nut?", ["Figure 7-27"], [1]
    ),
    _real(D + "amt_handbook_sample.pdf", "What is the bellows type nut made of?", ["aluminum alloy only"], [1]),
    _real(D + "multi_page.pdf", "When was the typewriter patented?", ["1868"], [1]),
    _real(D + "multi_page.pdf", "Who patented the typewriter?", ["Christopher Latham Sholes"], [1]),
    _real(D + "multi_page.pdf", "Which operating system was WordStar developed for?", ["CP/M"], [1]),
    _real(D + "multi_page.pdf", "When was Google Docs introduced?", ["2006"], [2]),
    _real(D + "multi_page.pdf", "What does LaTeX focus on?", ["precise formatting"], [3]),
    _real(D + "multi_page.pdf", "Which program lets authors manage large projects such as novels?", ["Scrivener"], [4]),
    _real(D + "multi_page.pdf", "What is the maximum supply voltage?", [], []),
    _real(P + "test_370.pdf", "Which university is the author affiliated with?", ["Shimane University"], [1]),
    _real(P + "test_370.pdf", "In what yield was 2aa isolated in entry 3?", ["92%"], [2]),
    _real(P + "test_370.pdf", "Which foundation supported the work financially?", ["Tokuyama Science Foundation"], [4]),
    _real(P + "test_370.pdf", "What is the maximum output current of the regulator?", [], []),
    _real(P + "test_sce_150_1.pdf", "What is the MAX_PREMIUM?", ["$387.55"], [1]),
    _real(E + "eu-001.pdf", "How many E-PRTR pollutants are there?", ["91"], [1]),
    _real(E + "eu-001.pdf", "What is the threshold for releases of methane to air?", ["100 000"], [1]),
    _real(E + "eu-001.pdf", "What is the threshold for releases of carbon dioxide to air?", ["100 million"], [1]),
    _real(E + "eu-005.pdf", "What was the five firm concentration ratio of Finland in 1996?", ["89"], [2]),
    _real(E + "eu-017.pdf", "What share of campylobacteriosis cases in Austria were domestic?", ["92.9"], [2]),
    _real(
        E + "eu-017.pdf", "How many confirmed campylobacteriosis cases did Germany report in total?", ["66,107"], [2]
    ),
    _real(E + "eu-026.pdf", "What share of households kept the assets that lost in value?", ["75.2"], [3, 4]),
    _real(E + "eu-026.pdf", "What is the median relative loss of gross financial wealth?", ["9.5%"], [3]),
    _real(E + "eu-014.pdf", "What share of operating costs does the state subsidy cover?", ["45.3 %"], [2]),
    _real(E + "eu-014.pdf", "What was the average unit cost per student in 2004?", ["8 467"], [3]),
    _real(E + "eu-020.pdf", "What is the population size of the Humanities faculty cluster?", ["1168"], [2]),
    _real(E + "eu-020.pdf", "What is the Bluetooth transmit power?", [], []),
]
for _i, _q in enumerate(REAL_QUESTIONS):
    _q.id = f"r{_i:03d}"


# ---------------------------------------------------------------- scoring


def norm(text: str) -> str:
    text = text.replace("–", "-").replace("−", "-").replace("μ", "µ").lower()
    return re.sub(r"\s+", " ", text).strip()


def is_correct(q: Question, answer) -> bool:
    if q.check == "none":
        return not answer.found
    if not answer.found:
        return False
    hay = norm(answer.answer if q.check == "text" else answer.value)
    for a in q.answers:
        want = norm(a)
        if re.search(rf"(?<![\w.]){re.escape(want)}(?![\w]|\.\d)", hay):
            return True
    return False


def page_ok(q: Question, answer) -> bool:
    return bool(answer.found and answer.citations and answer.citations[0].page in q.pages)


def run_questions(
    workspace: Workspace,
    doc: Document,
    questions: list[Question],
    retriever: Retriever,
    threshold: float | None = None,
    reader=None,
) -> list[dict]:
    """Ask every question (with its history) and record the answer, correctness and latency."""
    engine = QAEngine(retriever, reader) if threshold is None else QAEngine(retriever, reader, threshold=threshold)
    out = []
    for q in questions:
        session = ChatSession(workspace, doc, persist=False, engine=engine)
        for earlier in q.history:
            session.ask(earlier)
        start = time.perf_counter()
        answer = session.ask(q.question)
        ms = (time.perf_counter() - start) * 1000
        out.append(
            {
                **asdict(q),
                "got": answer.answer,
                "value": answer.value,
                "found": answer.found,
                "score": round(answer.score, 3),
                "cited_pages": [c.page for c in answer.citations],
                "correct": is_correct(q, answer),
                "page_ok": page_ok(q, answer),
                "kind": answer.kind,
                "flags": answer.flags,
                "ms": ms,
            }
        )
    return out


def summarise(rows: list[dict]) -> dict:
    answerable = [r for r in rows if r["check"] != "none"]
    unanswerable = [r for r in rows if r["check"] == "none"]
    answered = [r for r in answerable if r["found"]]
    cats: dict[str, list[dict]] = {}
    for r in rows:
        cats.setdefault(r["category"], []).append(r)
    ms = [r["ms"] for r in rows]
    return {
        "questions": len(rows),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "answer_accuracy": _ratio(sum(r["correct"] for r in answerable), len(answerable)),
        "citation_page_accuracy_answered": _ratio(sum(r["page_ok"] for r in answered), len(answered)),
        "citation_page_accuracy_all": _ratio(sum(r["page_ok"] for r in answerable), len(answerable)),
        "unanswerable_declined": _ratio(sum(r["correct"] for r in unanswerable), len(unanswerable)),
        "false_not_found": sum(1 for r in answerable if not r["found"]),
        "by_category": {
            c: {"n": len(v), "accuracy": _ratio(sum(r["correct"] for r in v), len(v))} for c, v in sorted(cats.items())
        },
        "generated": sum(r["kind"] == "generated" for r in rows),
        "generated_flagged": sum(r["kind"] == "generated" and bool(r["flags"]) for r in rows),
        "latency_ms_p50": round(statistics.median(ms), 1) if ms else None,
        "latency_ms_p95": round(sorted(ms)[int(0.95 * (len(ms) - 1))], 1) if ms else None,
    }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


# ---------------------------------------------------------------- main


def datasheet(pages: int, seed: int) -> tuple[Path, dict]:
    pdf = GENERATED / f"datasheet-{pages}p-seed{seed}.pdf"
    truth_path = pdf.with_suffix(".truth.json")
    if not (pdf.exists() and truth_path.exists()):
        from samples.make_datasheet import make_datasheet

        print(f"generating {pdf.name} …", flush=True)
        make_datasheet(GENERATED, pages=pages, seed=seed)
    return pdf, json.loads(truth_path.read_text(encoding="utf-8"))


def load_doc(workspace: Workspace, pdf: Path, truth: dict, oracle: bool) -> tuple[Document, float]:
    start = time.perf_counter()
    if oracle:
        doc = Document.from_dict(truth)
        doc.id = "gold-" + doc.id  # never mistaken for our parse of the same file in a reused workspace
        workspace.add(doc)
    else:
        from pipelines.ingest import parse_pdf

        parsed = parse_pdf(pdf, crops_dir=workspace.crops_dir("eval"))
        # OCR boxes can come back as numpy floats, which the store's JSON refuses: make them plain numbers
        doc = Document.from_json(json.dumps(parsed.to_dict(), default=float))
        workspace.keep_file(pdf, doc.id)
        workspace.add(doc)
    return doc, time.perf_counter() - start


def calibrate(rows_by_threshold: dict[float, dict]) -> None:
    print("threshold  accuracy  declined  balanced")
    for t, s in sorted(rows_by_threshold.items()):
        acc, dec = s["answer_accuracy"] or 0, s["unanswerable_declined"] or 0
        print(f"{t:9.2f}  {acc:8.3f}  {dec:8.3f}  {(acc + dec) / 2:8.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--oracle", action="store_true", help="answer over the gold document instead of our parse")
    ap.add_argument("--calibrate", action="store_true", help="sweep the not-found threshold")
    ap.add_argument("--limit", type=int, default=0, help="ask only the first N synthetic questions")
    ap.add_argument("--no-real", action="store_true", help="skip the real-PDF questions")
    ap.add_argument("--show-wrong", type=int, default=0, help="print up to N wrong answers")
    ap.add_argument(
        "--lm",
        nargs="?",
        const="project",
        default=None,
        help="answer with the generative reader: a checkpoint folder, or the project's weights",
    )
    ap.add_argument("--workspace", default=None, help="reuse this workspace (embeddings stay cached between runs)")
    args = ap.parse_args(argv)

    pdf, truth = datasheet(args.pages, args.seed)
    questions = generate_questions(truth, args.seed)
    if args.limit:
        questions = questions[: args.limit]
    workspace = Workspace(args.workspace or tempfile.mkdtemp(prefix="ohmlens-eval-qa-"))
    doc, parse_s = load_doc(workspace, pdf, truth, args.oracle)
    retriever = Retriever(workspace)
    retriever.embedder.model()  # model loading is start-up, not indexing
    start = time.perf_counter()
    retriever.index(doc)
    index_s = time.perf_counter() - start
    print(
        f"{pdf.name}: {doc.page_count} pages, parse {parse_s:.1f} s, index {index_s:.1f} s, {len(questions)} questions",
        flush=True,
    )
    retriever.search(retriever.index(doc), "warm-up query")

    if args.calibrate:
        # answer everything once (threshold 0), then replay the not-found decision at each threshold
        rows = run_questions(workspace, doc, questions, retriever, threshold=0.0)
        sweep = {}
        for t in [x / 100 for x in range(30, 111, 2)]:
            replay = []
            for r in rows:
                declined = not r["found"] or r["score"] < t
                correct = declined if r["check"] == "none" else (r["correct"] and not declined)
                replay.append(
                    {**r, "found": not declined, "correct": correct, "page_ok": r["page_ok"] and not declined}
                )
            sweep[t] = summarise(replay)
        calibrate(sweep)
        return 0

    reader = None
    if args.lm:
        from pipelines.longdoc import LMReader, load_lm

        reader = LMReader(load_lm(None if args.lm == "project" else args.lm))
    rows = run_questions(workspace, doc, questions, retriever, reader=reader)
    synthetic = summarise(rows)
    synthetic.update(
        {
            "document": pdf.name,
            "pages": doc.page_count,
            "oracle": args.oracle,
            "parse_s": round(parse_s, 2),
            "index_s": round(index_s, 2),
        }
    )
    print(json.dumps(synthetic, indent=1))
    for r in [r for r in rows if r["correct"] and r["check"] != "none" and not r["page_ok"]][: args.show_wrong]:
        print(f"  ✗ page [{r['category']}] {r['question']} | want p{r['pages']} | cited p{r['cited_pages'][:3]}")
    for r in [r for r in rows if not r["correct"]][: args.show_wrong]:
        print(
            f"  ✗ [{r['category']}] {r['question']} | want {r['answers']} p{r['pages']} | got {r['got']!r} "
            f"p{r['cited_pages'][:1]} score {r['score']}"
        )

    real = {}
    real_rows: list[dict] = []
    if not args.no_real:
        real, real_rows = run_real(workspace, retriever, args.show_wrong)
    result = {
        "machine": f"{platform.node()} ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end)",
        "synthetic": synthetic,
        "real": real,
        "wrong": [r for r in rows + real_rows if not r["correct"]][:60],
        "wrong_page": [r for r in rows + real_rows if r["correct"] and r["check"] != "none" and not r["page_ok"]][:60],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = ("-oracle" if args.oracle else "") + ("-lm" if args.lm else "")
    (RESULTS / f"qa{suffix}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    return 0


def run_real(workspace: Workspace, retriever: Retriever, show_wrong: int) -> tuple[dict, list[dict]]:
    if not SHARED_DATA.exists():
        print(f"real data not found at {SHARED_DATA}: skipping the hand-written questions")
        return {}, []
    rows: list[dict] = []
    by_source: dict[str, list[Question]] = {}
    for q in REAL_QUESTIONS:
        by_source.setdefault(q.source, []).append(q)
    for source, qs in by_source.items():
        doc = workspace.parse(SHARED_DATA / source)
        rows += run_questions(workspace, doc, qs, retriever)
    summary = summarise(rows)
    print("real PDFs:", json.dumps(summary, indent=1))
    for r in [r for r in rows if not r["correct"]][:show_wrong]:
        print(
            f"  ✗ [{r['source']}] {r['question']} | want {r['answers']} p{r['pages']} | got {r['got']!r} "
            f"p{r['cited_pages'][:1]}"
        )
    return summary, rows


if __name__ == "__main__":
    raise SystemExit(main())
