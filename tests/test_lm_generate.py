"""Generation: greedy equals full recompute, speculative equals greedy, sampling, stop strings, streaming, reuse."""

from __future__ import annotations

import pytest
import torch

from lm.cache import LatentCache
from lm.generate import GenerationError, Generator, SamplingParams, sample
from lm.tokenizer import Tokenizer
from tests.test_lm_model import one_thread, random_model  # noqa: F401  (autouse fixture)
from tests.test_lm_train import trained_model


def greedy_by_recompute(model, prompt: list[int], n: int) -> list[int]:
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt) :]


def test_batched_greedy_equals_full_recompute():
    model = random_model(seed=11)
    gen = Generator(model)
    prompts = [[3, 4, 5, 6, 7], [8, 9, 10], [11, 12, 13, 14, 15, 16, 17]]
    result = gen.generate(prompts, max_new_tokens=10, stop_token_ids=[])
    assert result.finish_reasons == ["length"] * 3
    for prompt, tokens in zip(prompts, result.tokens, strict=True):
        assert tokens == greedy_by_recompute(model, prompt, 10)


@pytest.fixture(scope="module")
def learned():
    return trained_model()


def test_speculative_decoding_is_exactly_greedy(learned):
    gen = Generator(learned)
    prompt = [3, 4, 5, 6, 7, 8]
    greedy = gen.generate(prompt, max_new_tokens=30, stop_token_ids=[])
    spec = gen.generate_speculative(prompt, max_new_tokens=30, stop_token_ids=[])
    assert spec.tokens == greedy.tokens
    assert spec.acceptance_rate is not None and spec.acceptance_rate > 0.7
    assert spec.steps < 30  # accepted drafts saved main-model steps
    random = Generator(random_model(seed=12))
    assert (
        random.generate_speculative(prompt, max_new_tokens=12, stop_token_ids=[]).tokens
        == random.generate(prompt, max_new_tokens=12, stop_token_ids=[]).tokens
    )


def test_overlapped_steps_give_the_same_tokens(learned):
    """The GPU loop queues step k+1 before reading step k; the same loop, forced on here, changes no token."""
    plain, ahead = Generator(learned), Generator(learned)
    ahead.overlap_steps = True
    prompts = [[3, 4, 5, 6], [9, 10, 11, 12, 13, 14]]
    for n in (1, 2, 17):
        expected = plain.generate(prompts, max_new_tokens=n, stop_token_ids=[])
        got = ahead.generate(prompts, max_new_tokens=n, stop_token_ids=[])
        assert got.tokens == expected.tokens and got.finish_reasons == expected.finish_reasons
        for p, tokens in zip(prompts, expected.tokens, strict=True):
            assert ahead.generate_speculative(p, max_new_tokens=n, stop_token_ids=[]).tokens == [tokens]
    stop = expected.tokens[1][5]
    cut = ahead.generate(prompts[1], max_new_tokens=17, stop_token_ids=[stop])
    assert cut.tokens[0] == expected.tokens[1][: expected.tokens[1].index(stop)]
    spec = ahead.generate_speculative(prompts[1], max_new_tokens=17, stop_token_ids=[stop])
    assert spec.tokens == cut.tokens and spec.finish_reasons == ["stop_token"]


def test_sampling_controls():
    logits = torch.tensor([[0.0, 3.0, 1.0, -2.0], [5.0, 0.0, 0.0, 4.9]])
    greedy = sample(logits, SamplingParams())
    assert greedy.tolist() == [1, 0]
    assert sample(logits, SamplingParams(temperature=1.0, top_k=1)).tolist() == [1, 0]
    assert sample(logits, SamplingParams(temperature=1.0, top_p=1e-6)).tolist() == [1, 0]
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([sample(logits, SamplingParams(temperature=1.0, top_p=0.9), gen) for _ in range(200)])
    assert set(draws[:, 1].tolist()) == {0, 3}  # the nucleus of row 1 holds its two near-equal tokens
    model = random_model(seed=13)
    g = Generator(model)
    a = g.generate([3, 4, 5], max_new_tokens=8, temperature=0.9, top_p=0.9, seed=5, stop_token_ids=[])
    b = g.generate([3, 4, 5], max_new_tokens=8, temperature=0.9, top_p=0.9, seed=5, stop_token_ids=[])
    assert a.tokens == b.tokens


def test_stop_token_and_invalid_arguments():
    model = random_model(seed=14)
    gen = Generator(model)
    first = gen.generate([3, 4, 5], max_new_tokens=6, stop_token_ids=[]).tokens[0]
    stopped = gen.generate([3, 4, 5], max_new_tokens=6, stop_token_ids=[first[2]])
    assert stopped.tokens[0] == first[: first.index(first[2])] and stopped.finish_reasons == ["stop_token"]
    with pytest.raises(GenerationError, match="top_p"):
        gen.generate([3], top_p=0.0)
    with pytest.raises(GenerationError, match="at least one token"):
        gen.generate([[3], []])
    with pytest.raises(GenerationError, match="tokenizer"):
        gen.generate("text prompt")
    with pytest.raises(GenerationError, match="tokenizer"):
        gen.generate([3], stop_strings=["x"])
    with pytest.raises(GenerationError, match="vocab|\\[0"):
        gen.generate([10_000])


def test_stop_strings_and_streaming_with_tokenizer():
    tok = Tokenizer.train(["resistor capacitor inductor diode transistor " * 20], vocab_size=300)
    cfg = random_model().config.replace(vocab_size=tok.vocab_size)
    model = random_model(cfg, seed=15)
    gen = Generator(model, tokenizer=tok)
    free = gen.generate("resistor", max_new_tokens=12, stop_token_ids=[])
    text = free.texts[0]
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    assert stop and stop in text
    cut = gen.generate("resistor", max_new_tokens=12, stop_token_ids=[], stop_strings=[stop])
    assert cut.texts[0] == text[: text.index(stop)] and cut.finish_reasons == ["stop_string"]
    events = list(gen.stream("resistor", max_new_tokens=12, stop_token_ids=[]))
    assert [e.token for e in events] == free.tokens[0]
    assert "".join(e.text for e in events) == text


def test_document_cache_reuse_equals_full_prompt(tmp_path):
    model = random_model(seed=16)
    gen = Generator(model)
    doc = [5, 6, 7, 8, 9, 10, 11, 12]
    cache = gen.prefill(doc)
    cache.save(tmp_path / "doc.safetensors")
    loaded = LatentCache.load(tmp_path / "doc.safetensors", config=model.config)
    questions = [[20, 21], [22, 23, 24]]
    reused = gen.generate(questions, cache=loaded, max_new_tokens=6, stop_token_ids=[])
    for q, tokens in zip(questions, reused.tokens, strict=True):
        assert tokens == greedy_by_recompute(model, doc + q, 6)
    assert loaded.host_lengths == [len(doc)]  # the caller's cache is not modified
