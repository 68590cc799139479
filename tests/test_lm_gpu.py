"""CUDA paths of the language backbone: graph-captured decode, bf16 grouped expert GEMMs (skip without a GPU)."""

from __future__ import annotations

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
def test_bf16_grouped_experts_match_loop(split_min_pairs):
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
        torch.testing.assert_close(
            experts(x, w, idx).float(), experts.forward_loop(x, w, idx).float(), rtol=2e-2, atol=2e-2
        )


@pytest.mark.skipif(moe.triton is None, reason="needs Triton")
def test_fused_swiglu_kernel_matches_pytorch():
    torch.manual_seed(0)
    h = torch.randn(1000, 2 * 80, device="cuda", dtype=torch.bfloat16)
    scale = torch.rand(1000, device="cuda")
    got = moe.swiglu_rows(h, scale, 80)
    assert moe._FUSED_SWIGLU["usable"]  # the kernel ran and passed its own first-call check
    gate, up = h.float().split(80, dim=-1)
    torch.testing.assert_close(got.float(), torch.nn.functional.silu(gate) * up * scale[:, None], rtol=1e-2, atol=1e-2)
