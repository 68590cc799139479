"""The long-document pass: marked text, the saved latent cache, cached vs re-encoded first token, links, reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lm.tokenizer import Tokenizer
from pipelines.document import Block
from pipelines.longdoc import (
    LMReader,
    LongDocError,
    LongDocPass,
    block_text,
    cache_bytes_per_token,
    encode_document,
    load_lm,
    random_lm,
    semantic_links,
)
from pipelines.qa import QAEngine, analyse
from pipelines.retrieval import Retriever
from pipelines.store import Workspace
from tests.test_qa_answers import qa_document


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run faster on one thread than on two contended ones (the CI machine has two cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def debug_lm():
    doc = qa_document()
    tokenizer = Tokenizer.train([t for _, t in block_text(doc)] * 20, vocab_size=300, min_frequency=1)
    return random_lm("debug", tokenizer, max_positions=1024)


def test_marked_text_and_truncation(debug_lm) -> None:
    doc = qa_document()
    pieces = dict(block_text(doc))
    assert "Electrical Characteristics" in pieces["p2-b2"] and "Quiescent current | No load" in pieces["p2-b3"]
    enc = encode_document(doc, debug_lm.tokenizer, 10_000)
    assert not enc.truncated and enc.ids[0] == debug_lm.tokenizer.bos_id
    a, b = enc.spans["p1-b3"]
    assert debug_lm.tokenizer.decode(enc.ids[a:b]).startswith("[p1-b3] Soft start")
    short = encode_document(doc, debug_lm.tokenizer, b + 1)
    assert short.truncated and "p1-b3" in short.spans and "p1-b4" not in short.spans


def test_saved_cache_gives_the_same_first_token_as_re_encoding(debug_lm, tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    doc = qa_document()
    runner = LongDocPass(ws, debug_lm, chunk=128)  # several chunks: chunked prefill must equal one pass
    result = runner.run(doc)
    path = runner.cache_path(doc.id)
    assert path.exists() and path.suffix == ".safetensors"
    per_token = cache_bytes_per_token(debug_lm, dtype_bytes=4)
    assert path.stat().st_size >= result.tokens * per_token["mla_latent"]
    assert per_token["mla_latent"] < per_token["standard_kv"]
    assert set(result.block_vectors) == {b for w in result.windows for b in w.spans}
    for question, block in (("What is the maximum input voltage?", None), ("Which figure shows the pin-out?", "p1-b5")):
        cached, _ = runner.first_token(doc, question, use_cache=True, block_id=block)
        fresh, _ = runner.first_token(doc, question, use_cache=False, block_id=block)
        assert cached == fresh


def test_a_document_longer_than_the_model_is_read_in_windows(debug_lm, tmp_path: Path) -> None:
    doc = qa_document()
    small = random_lm("debug", debug_lm.tokenizer, max_positions=448)  # room for less than the whole document
    runner = LongDocPass(Workspace(tmp_path / "ws"), small, chunk=128, reserve=64)
    result = runner.run(doc)
    assert len(result.windows) >= 2 and all(len(w.ids) <= 448 - 64 for w in result.windows)
    assert result.cache.batch_size == len(result.windows)
    last_block = next(iter(result.windows[-1].spans))
    k = runner.window_of(doc.id, last_block)
    assert k == len(result.windows) - 1
    cached, _ = runner.first_token(doc, "What is the reset value?", use_cache=True, block_id=last_block)
    fresh, _ = runner.first_token(doc, "What is the reset value?", use_cache=False, block_id=last_block)
    assert cached == fresh
    other = qa_document()
    other.id = "00" * 32
    with pytest.raises(LongDocError, match="run the pass first"):
        runner.first_token(other, "What?", use_cache=True)


def test_semantic_links_pick_the_nearest_caption_on_nearby_pages() -> None:
    doc = qa_document()
    doc.blocks.append(Block("p2-b9", "paragraph", 2, (0, 0, 1, 1), "These limits hold over temperature."))
    doc.blocks.append(Block("p2-b10", "paragraph", 2, (0, 0, 1, 1), "As Table 2 shows, it is fine."))
    vectors = {
        "p2-b2": np.array([1.0, 0.0]),
        "p1-b5": np.array([0.0, 1.0]),
        "p2-b5": np.array([0.6, 0.8]),
        "p2-b9": np.array([0.9, 0.1]),
        "p2-b10": np.array([1.0, 0.0]),
        "p1-b2": np.array([-1.0, 0.0]),
    }
    links = semantic_links(doc, vectors, threshold=0.5, method="test")
    assert [(lk.source, lk.target, lk.kind) for lk in links] == [("p2-b9", "p2-b3", "semantic")]
    assert semantic_links(doc, vectors, threshold=0.999, method="test") == []


def test_generated_answers_must_cite_evidence_and_numbers_are_checked(tmp_path: Path, debug_lm) -> None:
    class Scripted:  # stands in for a reader whose output we choose, to test the checks
        def __init__(self, text: str) -> None:
            self.text = text

        def read(self, question: str, evidence: list[tuple[str, str]]) -> str:
            return self.text

    ws = Workspace(tmp_path / "ws")
    doc = qa_document()
    ws.add(doc)
    retriever = Retriever(ws)
    intent = analyse("What is the maximum input voltage?")
    good = QAEngine(retriever, Scripted("The maximum is 5.5 V [E1].")).answer(doc, intent)
    assert good.kind == "generated" and good.flags == [] and good.citations
    assert good.answer == "The maximum is 5.5 V."
    bad = QAEngine(retriever, Scripted("It is 7.5 V [E1].")).answer(doc, intent)
    assert bad.flags == ["number 7.5 is not in the cited evidence"]
    uncited = QAEngine(retriever, Scripted("5.5 V")).answer(doc, intent)
    assert uncited.kind == "table" and uncited.value == "5.5 V" and "cites no evidence" in uncited.flags[0]
    real = QAEngine(retriever, LMReader(debug_lm, max_new_tokens=8)).answer(doc, intent)
    assert real.found  # random weights write noise: it is either cited and checked, or replaced by the extract
    assert real.kind == "generated" or real.flags


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LongDocError, match="no language-model checkpoint"):
        load_lm(tmp_path)
