"""CUDA paths of the language backbone: graph-captured decode, bf16 grouped expert GEMMs (skip without a GPU)."""

from __future__ import annotations

import copy

import pytest
import torch

from lm import moe
from lm.config import preset
from lm.generate import Generator
from lm.moe import Experts
from tests.test_lm_model import one_thread  # noqa: F401  (autouse fixture)
from tests.test_lm_train import trained_model

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def cuda_model():
    return trained_model().to("cuda", torch.bfloat16)  # the router stays float32


def test_graph_decode_and_speculation_match_eager(cuda_model):
    prompts = [[3, 4, 5, 6], [9, 10, 11, 12, 13, 14]]
    graphed = Generator(cuda_model, use_cuda_graphs=True)
    eager = Generator(cuda_model, use_cuda_graphs=False)
    a = graphed.generate(prompts, max_new_tokens=24, stop_token_ids=[])
    assert graphed.use_graphs  # capture worked, no fallback
    assert a.tokens == eager.generate(prompts, max_new_tokens=24, stop_token_ids=[]).tokens
    spec = graphed.generate_speculative(prompts[1], max_new_tokens=24, stop_token_ids=[])
    assert spec.tokens == [a.tokens[1]] and spec.acceptance_rate > 0.5


@pytest.mark.parametrize("split_min_pairs", [16384, 0])  # decode/short-prompt path, long-prefill path
def test_bf16_grouped_experts_match_float32_reference(split_min_pairs):
    cfg = preset("debug")
    torch.manual_seed(0)
    experts = Experts(cfg).to("cuda", torch.bfloat16)
    experts.split_min_pairs = split_min_pairs
    with torch.no_grad():
        experts.gate_up_proj.normal_(0, 0.2)
        experts.down_proj.normal_(0, 0.2)
    x = torch.randn(256, cfg.hidden_size, device="cuda", dtype=torch.bfloat16)
    idx = torch.randint(0, cfg.n_routed_experts, (256, cfg.num_experts_per_tok), device="cuda")
    w = torch.rand(256, cfg.num_experts_per_tok, device="cuda")
    with torch.inference_mode():
        got = experts(x, w, idx).float()
        loop = experts.forward_loop(x, w, idx).float()
        exact = copy.deepcopy(experts).float().forward_loop(x.float(), w, idx)  # same weights, float32 math
    # bf16 keeps 8 significant bits, and the two dispatch paths round at different points than the bf16 loop
    # does: each must stay within ~1% of the output scale of the exact result (a misrouted row is off by ~100%).
    scale = exact.abs().max()
    assert (loop - exact).abs().max() <= 1.5e-2 * scale
    assert (got - exact).abs().max() <= 1.5e-2 * scale


@pytest.mark.skipif(moe.triton is None, reason="needs Triton")
def test_fused_swiglu_kernel_matches_pytorch():
    torch.manual_seed(0)
    h = torch.randn(1000, 2 * 80, device="cuda", dtype=torch.bfloat16)
    scale = torch.rand(1000, device="cuda")
    got = moe.swiglu_rows(h, scale, 80)
    assert moe._FUSED_SWIGLU["usable"]  # the kernel ran and passed its own first-call check
    gate, up = h.float().split(80, dim=-1)
    torch.testing.assert_close(got.float(), torch.nn.functional.silu(gate) * up * scale[:, None], rtol=1e-2, atol=1e-2)
