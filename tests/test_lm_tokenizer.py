"""Byte-level BPE tokenizer: round trips any text and loads in transformers' PreTrainedTokenizerFast."""

from __future__ import annotations

import pytest

from lm.tokenizer import Tokenizer, TokenizerError

CORPUS = [
    "The LM317 is an adjustable three-terminal positive voltage regulator.",
    "Absolute maximum ratings: V_IN - V_OUT = 40 V, T_J = 150 °C.",
    "def regulate(v_in: float) -> float:\n    return min(v_in - 1.25, 37.0)\n",
    "Résistance 10 kΩ ±1 %, capacité 100 nF — voir Tableau 3.",
] * 50


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train(CORPUS, vocab_size=400)


def test_roundtrip_and_specials(tokenizer):
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 1, 2)
    for text in [*CORPUS[:4], "unseen: 漢字 🙂 \x00 tabs\tand\r\nnewlines"]:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    ids = tokenizer.encode(CORPUS[0])
    assert len(ids) < len(CORPUS[0].encode()) // 2  # merges learned
    assert tokenizer.encode_batch(CORPUS[:2]) == [tokenizer.encode(CORPUS[0]), tokenizer.encode(CORPUS[1])]


def test_saved_tokenizer_loads_in_transformers(tokenizer, tmp_path):
    transformers = pytest.importorskip("transformers")
    tokenizer.save(tmp_path)
    hf = transformers.PreTrainedTokenizerFast.from_pretrained(tmp_path)
    text = CORPUS[1] + " 漢字"
    assert hf(text, add_special_tokens=False)["input_ids"] == tokenizer.encode(text)
    assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id) == (1, 2, 0)
    assert hf.decode(tokenizer.encode(text)) == text
    assert Tokenizer.load(tmp_path).encode(text) == tokenizer.encode(text)


def test_bad_files(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer.json"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="cannot read"):
        Tokenizer.load(tmp_path)
    with pytest.raises(TokenizerError, match="vocab_size"):
        Tokenizer.train(["abc"], vocab_size=100)
