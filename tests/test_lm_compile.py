"""Compiled decode blocks (``Generator(compile_decode=True)``): same tokens as the plain blocks, one graph per block.

The fast tests trace with ``aot_eager`` (Dynamo + AOTAutograd, the same graphs Inductor receives, no code
generation); the slow one runs Inductor itself on the CPU.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from lm import moe
from lm.cache import LatentCache
from lm.generate import CompiledBlocks, GenerationError, Generator
from lm.mla import RotaryEmbedding, apply_rope, build_meta
from tests.test_lm_model import one_thread, random_model  # noqa: F401  (autouse fixture)

PROMPTS = [[3, 4, 5, 6, 7], [8, 9, 10]]


def compiled_generator(model, backend: str) -> Generator:  # type: ignore[no-untyped-def]
    gen = Generator(model, compile_decode=True)
    gen.blocks = CompiledBlocks(backend=backend)
    return gen


def step_logits(model, blocks: CompiledBlocks | None) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Logits of one absorbed decode step after a 2-row prompt of different lengths."""
    cache = LatentCache.for_model(model.config, 2, 32, model.dtype, model.device)
    ids = torch.tensor([[3, 4, 5, 6, 7], [8, 9, 10, 0, 0]])
    with torch.inference_mode():
        model(ids, cache=cache)
        cache.set_lengths([5, 3])
        meta = build_meta(cache.lengths, 1, 16, 1, True, ids.device).materialise(4, model.dtype)
        hidden = model.run_layers(model.embed(ids[:, :1]), meta.write_index, meta, cache.layers(), blocks)
        return model.lm_head(hidden)


def test_traced_blocks_have_no_graph_breaks_and_match_plain():
    model = random_model(seed=3)
    torch._dynamo.reset()
    counters.clear()
    blocks = CompiledBlocks(backend="aot_eager")
    torch.testing.assert_close(step_logits(model, blocks), step_logits(model, None), rtol=1e-5, atol=1e-5)
    assert blocks.usable
    assert not counters["graph_break"], dict(counters["graph_break"])
    # One graph for the dense block, one for the MoE blocks (parameters are inputs: no per-layer recompiles).
    assert counters["stats"]["unique_graphs"] == 2


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_generation_equals_plain(backend: str):
    model = random_model(seed=5)
    expected = Generator(model).generate(PROMPTS, max_new_tokens=6, stop_token_ids=[])
    gen = compiled_generator(model, backend)
    got = gen.generate(PROMPTS, max_new_tokens=6, stop_token_ids=[])
    assert gen.blocks is not None and gen.blocks.usable
    assert got.tokens == expected.tokens


def _failing_backend(gm, example_inputs):  # type: ignore[no-untyped-def]
    raise RuntimeError("no compiler here")


def test_compile_failure_falls_back_to_plain_blocks():
    model = random_model(seed=5)
    expected = Generator(model).generate(PROMPTS, max_new_tokens=4, stop_token_ids=[])
    gen = Generator(model, compile_decode=True)
    gen.blocks = CompiledBlocks(backend=_failing_backend)
    assert gen.generate(PROMPTS, max_new_tokens=4, stop_token_ids=[]).tokens == expected.tokens
    assert not gen.blocks.usable


def test_modes_with_their_own_cuda_graphs_are_refused():
    with pytest.raises(GenerationError, match="CUDA graphs"):
        CompiledBlocks(mode="reduce-overhead")


def test_traced_rope_equals_complex_rope():
    model = random_model(seed=1)
    rotary: RotaryEmbedding = model.rotary
    rot, pairs = rotary(torch.tensor([[0, 5, 17], [3, 200, 511]]))
    x = torch.randn(2, 3, 4, model.config.qk_rope_head_dim)
    traced = torch.compile(apply_rope, backend="eager", fullgraph=True)
    torch.testing.assert_close(traced(x, rot, pairs), apply_rope(x, rot, pairs), rtol=1e-6, atol=1e-6)


def test_traced_grouped_mm_equals_loop():
    torch.manual_seed(0)
    x = torch.randn(10, 16)
    w = torch.randn(4, 16, 8)
    offsets = torch.tensor([3, 3, 7, 10], dtype=torch.int32)  # group 1 is empty
    traced = torch.compile(moe.grouped_mm, backend="eager", fullgraph=True)
    expected = torch.cat([x[0:3] @ w[0], x[3:7] @ w[2], x[7:10] @ w[3]])
    with torch.no_grad():
        torch.testing.assert_close(traced(x, w, offsets), expected, rtol=1e-5, atol=1e-5)
