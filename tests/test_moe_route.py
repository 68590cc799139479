"""The router's selection kernel (``lm.moe_route``) against the plain PyTorch selection.

On the CPU the kernel runs in Triton's interpreter, chosen before Triton is first imported, so those cases run in
one child process (as in tests/test_moe_fused.py) and the tests here check what it reports.
"""

from __future__ import annotations

import os

import pytest
import torch

triton = pytest.importorskip("triton", reason="the routing kernel is written in Triton")

from lm import moe_route  # noqa: E402
from tests.conftest import run_interpreted  # noqa: E402

# name: (tokens, experts, top_k, n_group, topk_group, scoring_func, topk_method, norm_topk_prob, routed_scaling_factor)
CASES = {
    "v2_lite_shape_v3_rule": (32, 64, 6, 1, 1, "sigmoid", "noaux_tc", True, 1.0),
    "v3_groups_two_best": (8, 256, 8, 8, 4, "sigmoid", "noaux_tc", True, 2.5),
    "v2_group_limited_softmax": (5, 64, 6, 8, 3, "softmax", "group_limited_greedy", False, 16.0),
    "greedy_softmax_top1": (3, 16, 1, 1, 1, "softmax", "greedy", True, 1.0),
}


def _inputs(n: int, e: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, e, generator=g), torch.randn(e, generator=g) * 0.1


def _run_cases() -> dict[str, float]:
    """In the interpreting child: same experts and weights as the plain selection, and a tie accepted."""
    out: dict[str, float] = {}
    for seed, (name, (n, e, *settings)) in enumerate(CASES.items()):
        logits, bias = _inputs(n, e, seed)
        r = moe_route.Routing(*settings)
        ref_w, ref_i, _ = moe_route.select(logits, bias, r)
        w, i = moe_route.route_kernel(logits, bias, r)
        same = torch.equal(i.sort(1)[0], ref_i.sort(1)[0])
        dense = torch.zeros(n, e).scatter_(1, i, w)
        ref_dense = torch.zeros(n, e).scatter_(1, ref_i, ref_w)
        out[name] = (dense - ref_dense).abs().max().item() if same else float("inf")
    # Two experts with exactly the same logit competing for the last slot: either answer is accepted.
    logits, bias = _inputs(4, 16, 9)
    bias.zero_()
    logits[:, 3] = logits[:, 7] = logits.sort(1, descending=True)[0][:, 1]  # 2nd and 3rd best tie; top-2 splits them
    r = moe_route.Routing(2, 1, 1, "sigmoid", "noaux_tc", True, 1.0)
    got = moe_route.route_kernel(logits, bias, r)

    def agrees(w: torch.Tensor, i: torch.Tensor) -> float:
        return float(moe_route._disagreement((w, i), logits, bias, r) is None)

    out["tie_accepted"] = agrees(*got)
    swapped = torch.where(got[1] == 3, 7, torch.where(got[1] == 7, 3, got[1]))
    out["tie_swap_accepted"] = agrees(got[0], swapped)
    out["wrong_rejected"] = 1.0 - agrees(got[0], (got[1] + 1) % 16)
    out["wrong_weight_rejected"] = 1.0 - agrees(got[0] * 1.01, got[1])
    return out


@pytest.fixture(scope="module")
def interpreted() -> dict[str, float]:
    return run_interpreted("tests.test_moe_route")


@pytest.mark.parametrize("case", list(CASES))
def test_kernel_picks_the_same_experts_and_weights(interpreted, case: str):
    assert interpreted[case] <= 1e-6  # 0.0 (False) would mean other experts; else the largest weight difference


def test_check_accepts_exact_ties_only(interpreted):
    checks = ("tie_accepted", "tie_swap_accepted", "wrong_rejected", "wrong_weight_rejected")
    assert [interpreted[c] for c in checks] == [1.0] * 4


def test_op_has_a_fake_implementation_for_compiled_blocks():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        w, i = torch.ops.ohmlens.moe_route(
            torch.empty(32, 64), torch.empty(64), 6, 1, 1, "sigmoid", "noaux_tc", True, 1.0
        )
    assert w.shape == i.shape == (32, 6) and w.dtype == torch.float32 and i.dtype == torch.long


def test_falls_back_when_its_first_check_fails(monkeypatch):
    monkeypatch.setitem(moe_route._STATE, "usable", True)
    monkeypatch.setitem(moe_route._STATE, "checked", False)
    monkeypatch.setattr(moe_route, "usable", lambda *args: True)
    monkeypatch.setattr(moe_route, "route_kernel", lambda logits, bias, r: (torch.ones(len(logits), r.top_k),) * 2)
    logits, bias = _inputs(4, 64, 0)
    r = moe_route.Routing(*CASES["v2_lite_shape_v3_rule"][2:])
    w, i = moe_route.route(logits, bias, r)
    ref_w, ref_i, _ = moe_route.select(logits, bias, r)
    assert torch.equal(i, ref_i) and torch.equal(w, ref_w) and not moe_route._STATE["usable"]


def test_cpu_and_training_keep_the_plain_selection():
    logits = torch.randn(4, 64)
    r = moe_route.Routing(*CASES["v2_lite_shape_v3_rule"][2:])
    assert not moe_route.usable(logits, r)  # CPU
    if torch.cuda.is_available():
        with torch.no_grad():
            assert moe_route.usable(logits.cuda(), r) == moe_route._STATE["usable"]
            assert not moe_route.usable(torch.randn(4, 160, device="cuda"), r)  # V2's 160 experts
        assert not moe_route.usable(logits.cuda(), r)  # gradients on


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_kernel_on_cuda_matches_and_captures_in_a_graph():
    logits, bias = (t.cuda() for t in _inputs(32, 64, 5))
    r = moe_route.Routing(*CASES["v2_lite_shape_v3_rule"][2:])
    with torch.inference_mode():
        w, i = moe_route.route(logits, bias, r)
        assert moe_route._STATE["usable"] and moe_route._STATE["checked"]
        assert moe_route._disagreement((w, i), logits, bias, r) is None
        graph = torch.cuda.CUDAGraph()
        static = logits.clone()
        with torch.cuda.graph(graph):
            cw, ci = moe_route.route(static, bias, r)
        static.copy_(logits.flip(0))
        graph.replay()
        assert moe_route._disagreement((cw, ci), logits.flip(0), bias, r) is None


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="the interpreter replaces the compiled kernels")
@pytest.mark.parametrize("case", ["v2_lite_shape_v3_rule", "v3_groups_two_best", "v2_group_limited_softmax"])
def test_kernel_compiles_for_hopper(case: str):
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    _, e, k, n_group, topk_group, scoring, method, norm, _ = CASES[case]
    kernel = moe_route._route_kernel
    consts = {"E": e, "K": k, "KP": triton.next_power_of_2(k), "GROUPS": n_group, "TOPK_GROUP": topk_group}
    consts |= {"SIGMOID": scoring == "sigmoid", "NOAUX": method == "noaux_tc", "TWO_BEST": method == "noaux_tc"}
    consts["NORM"] = norm
    types = {"logits_ptr": "*fp32", "bias_ptr": "*fp32", "weights_ptr": "*fp32", "idx_ptr": "*i64"}
    types["route_scale"] = "fp32"
    names = kernel.arg_names
    signature = {n: "constexpr" if n in consts else types[n] for n in names}
    fixed = {(names.index(n),): v for n, v in consts.items()}
    compiled = triton.compile(ASTSource(kernel, signature, fixed), target=GPUTarget("cuda", 90, 32))
    assert "ld.global" in compiled.asm["ptx"]
