"""CUDA paths of the language backbone: graph-captured decode, bf16 grouped expert GEMMs (skip without a GPU)."""

from __future__ import annotations

import pytest
import torch

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


def test_bf16_grouped_experts_match_loop():
    cfg = preset("debug")
    torch.manual_seed(0)
    experts = Experts(cfg).to("cuda", torch.bfloat16)
    with torch.no_grad():
        experts.gate_up_proj.normal_(0, 0.2)
        experts.down_proj.normal_(0, 0.2)
    x = torch.randn(256, cfg.hidden_size, device="cuda", dtype=torch.bfloat16)
    idx = torch.randint(0, cfg.n_routed_experts, (256, cfg.num_experts_per_tok), device="cuda")
    w = torch.rand(256, cfg.num_experts_per_tok, device="cuda")
    torch.testing.assert_close(
        experts(x, w, idx).float(), experts.forward_loop(x, w, idx).float(), rtol=2e-2, atol=2e-2
    )
