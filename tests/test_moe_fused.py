"""Fused small-batch MoE dispatch (``lm.moe.fused_experts``): the Triton kernels against the reference dispatch.

On the CPU the kernels run in Triton's interpreter, which must be chosen before Triton is first imported
(``TRITON_INTERPRET=1``; other test modules import it through ``lm.moe``), so those cases run in one child process
and the tests here check what it reports. The CUDA test runs the compiled kernels, also under graph capture.
"""

from __future__ import annotations

import os
import re

import pytest
import torch

triton = pytest.importorskip("triton", reason="the fused MoE kernels are written in Triton")

from lm import moe  # noqa: E402
from lm.config import preset  # noqa: E402
from lm.moe import Experts, MoE  # noqa: E402
from tests.conftest import run_interpreted  # noqa: E402

# Tiles of at least 16 (tl.dot's minimum) that leave partial tiles on the shapes below.
SMALL_TILES = {
    "up": {"BLOCK_N": 16, "BLOCK_K": 32, "num_warps": 4, "num_stages": 2},
    "down": {"BLOCK_N": 16, "BLOCK_K": 32, "num_warps": 4, "num_stages": 2},
}


def _weights(n_experts: int, d: int, inter: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w13 = torch.randn(n_experts, 2 * inter, d, generator=g) * 0.2
    w2 = torch.randn(n_experts, d, inter, generator=g) * 0.2
    return w13, w2


def _routing(n: int, k: int, n_experts: int, used: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct experts per token drawn from the first ``used`` (the rest receive nothing), random gate weights."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randperm(used, generator=g)[:k] for _ in range(n)])
    return torch.rand(n, k, generator=g), idx


def _loop(x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, w: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """The per-expert reference loop (``Experts.forward_loop``) on the given weights."""
    n_experts, two_inter, d = w13.shape
    cfg = preset("debug").replace(n_routed_experts=n_experts, hidden_size=d, moe_intermediate_size=two_inter // 2)
    experts = Experts(cfg).to(x.device, x.dtype)
    with torch.no_grad():
        experts.gate_up_proj.copy_(w13)
        experts.down_proj.copy_(w2)
        return experts.forward_loop(x, w, idx)


# name: (tokens, top_k, experts, experts used, hidden, intermediate)
CASES = {
    "tiny_unused_experts": (5, 2, 8, 5, 64, 32),
    # 20 tokens on 3 experts with top-2: every used expert spans two row blocks; K and N leave partial tiles.
    "multi_block_partial_tiles": (20, 2, 8, 3, 48, 40),
    "decode_like_32_experts_top6": (16, 6, 32, 30, 32, 16),
}


# name: (tokens, top_k, experts, experts used, hidden, intermediate, shared experts)
SHARED_CASES = {
    "shared1_unused_experts": (5, 2, 8, 5, 64, 32, 1),
    # each shared pseudo-expert gets all 20 tokens: two row blocks, as the 3 used routed experts
    "shared2_multi_block_partial_tiles": (20, 2, 8, 3, 48, 40, 2),
    "shared2_decode_like_32_experts_top6": (16, 6, 32, 30, 32, 16, 2),
}


def _moe_layer(n: int, k: int, n_experts: int, used: int, d: int, inter: int, n_shared: int, seed: int) -> MoE:
    """A MoE layer with random weights whose router never picks expert 1 nor the experts from ``used`` on."""
    cfg = preset("debug").replace(
        n_routed_experts=n_experts,
        num_experts_per_tok=k,
        hidden_size=d,
        moe_intermediate_size=inter,
        n_shared_experts=n_shared,
        n_group=1,
        topk_group=1,
    )
    layer = MoE(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in layer.parameters():
            param.copy_(torch.randn(param.shape, generator=g) * 0.2)
        layer.gate.e_score_correction_bias[used:] = -1e3  # the bias steers the choice only
        layer.gate.e_score_correction_bias[1] = -1e3  # and one between used experts
    return layer


def _run_shared_cases() -> dict[str, dict[str, float]]:
    """In the interpreting child: MoE.forward taking the fused dispatch with its shared experts (as on CUDA)
    against the reference forward (per-expert loop, then the shared MLP)."""
    moe.Experts._fused_ok = lambda self, *args: True  # CPU tensors: the interpreter runs the kernels
    out: dict[str, dict[str, float]] = {}
    for seed, (name, (n, k, n_experts, used, d, inter, n_shared)) in enumerate(SHARED_CASES.items()):
        layer = _moe_layer(n, k, n_experts, used, d, inter, n_shared, seed)
        x = torch.randn(1, n, d, generator=torch.Generator().manual_seed(seed))
        with torch.inference_mode():
            idx = layer.gate(x[0])[1]
            res = {"unused_experts": float(n_experts - idx.unique().numel())}
            layer.use_loop = True
            exact = layer(x)
            layer.use_loop = False
            res["scale"] = exact.abs().max().item()
            # the forward (which would fall back to the grouped path should its first check fail) and the kernels
            shared = (layer.shared_experts.gate_proj.weight, layer.shared_experts.up_proj.weight)
            shared += (layer.shared_experts.down_proj.weight,)
            w13, w2 = layer.experts.gate_up_proj, layer.experts.down_proj
            kernels = moe.fused_experts_kernels(x[0], w13, w2, *layer.gate(x[0]), shared)
            res["fp32_fused"] = max((layer(x) - exact).abs().max().item(), (kernels - exact[0]).abs().max().item())
            layer.to(torch.bfloat16)  # the router stays float32
            xb = x.bfloat16()
            layer.use_loop = True
            res["bf16_loop"] = layer(xb).float()
            layer.to(torch.float32)  # float32 math on the bf16 values
            exact_b = layer(xb.float())
            layer.to(torch.bfloat16)
            layer.use_loop = False
            res["bf16_scale"] = exact_b.abs().max().item()
            fused_b = layer(xb)
            res["bf16_dtype_ok"] = float(fused_b.dtype == torch.bfloat16)
            res["bf16_fused"] = (fused_b.float() - exact_b).abs().max().item()
            res["bf16_loop"] = (res["bf16_loop"] - exact_b).abs().max().item()
        res["checked_and_usable"] = float(moe._FUSED_MOE["checked_shared"] and moe._FUSED_MOE["usable"])
        out[name] = res
    return out


def _run_cases() -> dict[str, dict[str, float]]:
    """Runs in the interpreting child process: fused vs loop (float32) and vs float32 math (bfloat16)."""
    moe.FUSED_TILES.update(SMALL_TILES)
    out: dict[str, dict[str, float]] = {}
    for seed, (name, (n, k, n_experts, used, d, inter)) in enumerate(CASES.items()):
        w13, w2 = _weights(n_experts, d, inter, seed)
        w, idx = _routing(n, k, n_experts, used, seed)
        x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
        with torch.inference_mode():
            exact = _loop(x, w13, w2, w, idx)
            res = {"scale": exact.abs().max().item()}
            res["fp32_fused"] = (moe.fused_experts_kernels(x, w13, w2, w, idx) - exact).abs().max().item()
            xb, w13b, w2b = x.bfloat16(), w13.bfloat16(), w2.bfloat16()
            exact_b = _loop(xb.float(), w13b.float(), w2b.float(), w, idx)  # float32 math on the bf16 values
            res["bf16_scale"] = exact_b.abs().max().item()
            fused_b = moe.fused_experts_kernels(xb, w13b, w2b, w, idx)
            res["bf16_dtype_ok"] = float(fused_b.dtype == torch.bfloat16)
            res["bf16_fused"] = (fused_b.float() - exact_b).abs().max().item()
            res["bf16_loop"] = (_loop(xb, w13b, w2b, w, idx).float() - exact_b).abs().max().item()
        out[name] = res
    return out | _run_shared_cases()


@pytest.fixture(scope="module")
def interpreted() -> dict[str, dict[str, float]]:
    return run_interpreted("tests.test_moe_fused")


@pytest.mark.parametrize("case", [*CASES, *SHARED_CASES])
def test_fused_kernels_float32_match_loop(interpreted, case: str):
    res = interpreted[case]
    assert res["fp32_fused"] <= 1e-5 * res["scale"] + 1e-6, res


@pytest.mark.parametrize("case", list(SHARED_CASES))
def test_fused_moe_forward_with_shared_experts_passed_its_check_with_unused_experts(interpreted, case: str):
    res = interpreted[case]
    assert res["checked_and_usable"] == 1.0, res
    assert res["unused_experts"] > 0, res


@pytest.mark.parametrize("case", [*CASES, *SHARED_CASES])
def test_fused_kernels_bf16_as_close_as_the_loop(interpreted, case: str):
    # bf16 keeps 8 significant bits and the fused path rounds at other points than the loop: each must stay
    # within ~1% of the output scale of float32 math on the same bf16 values (a misrouted row is off by ~100%).
    res = interpreted[case]
    assert res["bf16_dtype_ok"] == 1.0
    assert res["bf16_loop"] <= 1.5e-2 * res["bf16_scale"], res
    assert res["bf16_fused"] <= 1.5e-2 * res["bf16_scale"], res


def test_fused_op_has_a_fake_implementation_for_compiled_blocks():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():  # what Dynamo runs while tracing a compiled decode block
        x = torch.empty(5, 64, dtype=torch.bfloat16)
        w13, w2 = torch.empty(8, 64, 64, dtype=torch.bfloat16), torch.empty(8, 64, 32, dtype=torch.bfloat16)
        w, idx = torch.empty(5, 2), torch.empty(5, 2, dtype=torch.long)
        out = torch.ops.ohmlens.fused_experts(x, w13, w2, w, idx)
        shared = (torch.empty(64, 64, dtype=torch.bfloat16),) * 2 + (torch.empty(64, 64, dtype=torch.bfloat16),)
        out_shared = torch.ops.ohmlens.fused_experts(x, w13, w2, w, idx, *shared)
    assert out.shape == out_shared.shape == (5, 64) and out.dtype == out_shared.dtype == torch.bfloat16


def _compile_for_hopper(kernel, types: dict[str, str], consts: dict[str, object], **options: int):  # type: ignore[no-untyped-def]
    """Compiles ``kernel`` for sm_90 (no GPU needed) as a launch would specialise it: the pointers 16-byte aligned
    and the integers multiples of 16, as with V2-Lite shapes."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = kernel.arg_names
    signature = {name: "constexpr" if name in consts else types.get(name, "i32") for name in names}
    aligned = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(names) if name not in consts}
    fixed = {(names.index(name),): value for name, value in consts.items()}
    source = ASTSource(kernel, signature, fixed, aligned)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="the interpreter replaces the compiled kernels")
def test_kernels_compile_for_hopper_with_pipelined_weight_loads():
    pointers = {"idx_ptr": "*i64", "sorted_ptr": "*i32", "block_expert_ptr": "*i32"}
    consts = {"PAIRS": 256, "EXPERTS": 64, "TOKENS": 32, "BLOCKS": 128, "BLOCK_M": 16, "FILL": 1024}
    consts |= {"TOP_K": 6, "SHARED": 2}
    _compile_for_hopper(moe._moe_align_kernel, pointers, consts, num_warps=8)
    wide_copies = {}  # 16-byte asynchronous copies: the shared experts' weight pointers keep their alignment
    for shared in (0, 2):  # V2-Lite: 2 shared experts join the routed ones
        for swiglu, tiles in ((True, moe.FUSED_TILES["up"]), (False, moe.FUSED_TILES["down"])):
            pointers = {"a_ptr": "*bf16", "w_ptr": "*bf16", "ws_ptr": "*bf16", "us_ptr": "*bf16"}
            pointers |= {"out_ptr": "*bf16" if swiglu else "*fp32", "scale_ptr": "*fp32"}
            pointers |= {"sorted_ptr": "*i32", "block_expert_ptr": "*i32"}
            consts = {"ROWS_PER_A": 6 + shared if swiglu else 1, "SWIGLU": swiglu, "TOP_K": 6, "SHARED": shared}
            consts |= {"BLOCK_M": 16, "EVEN_K": True, "IEEE": False}
            consts |= {"BLOCK_N": tiles["BLOCK_N"], "BLOCK_K": tiles["BLOCK_K"]}
            options = {"num_warps": tiles["num_warps"], "num_stages": tiles["num_stages"]}
            kernel = _compile_for_hopper(moe._moe_gemm_kernel, pointers, consts, **options)
            # Loads of the next K tiles are issued while the current one is multiplied (software pipelining).
            assert "async_copy_global_to_local" in kernel.asm["ttgir"], f"K loop not pipelined ({swiglu=} {shared=})"
            wide_copies[swiglu, shared] = len(
                re.findall(r"cp\.async\.cg\.shared\.global[^,]*,[^,]*, 0x10", kernel.asm["ptx"])
            )
    assert wide_copies[True, 0] == wide_copies[True, 2] > 0 and wide_copies[False, 0] == wide_copies[False, 2] > 0
    _compile_for_hopper(moe._moe_sum_kernel, {"rows_ptr": "*fp32", "out_ptr": "*bf16"}, {"SLOTS": 8, "BLOCK": 1024})


def test_fused_dispatch_falls_back_when_its_first_check_fails(monkeypatch):
    monkeypatch.setitem(moe._FUSED_MOE, "usable", True)
    monkeypatch.setitem(moe._FUSED_MOE, "checked", False)
    monkeypatch.setattr(moe, "fused_experts_kernels", lambda x, *args: torch.zeros_like(x))  # a broken build
    w13, w2 = _weights(8, 64, 32, 0)
    w, idx = _routing(5, 2, 8, 5, 0)
    x = torch.randn(5, 64)
    with torch.inference_mode():
        got = moe.fused_experts(x, w13, w2, w, idx)
        torch.testing.assert_close(got, _loop(x, w13, w2, w, idx), rtol=1e-5, atol=1e-5)
    assert not moe._FUSED_MOE["usable"]


def test_cpu_and_training_keep_the_grouped_path():
    experts = Experts(preset("debug"))
    x = torch.randn(4, 64)
    with torch.no_grad():
        assert not experts._fused_ok(x, experts.gate_up_proj, experts.down_proj, 8)  # CPU
    if torch.cuda.is_available():
        xc, w13, w2 = x.cuda(), experts.gate_up_proj.cuda(), experts.down_proj.cuda()
        with torch.no_grad():
            assert experts._fused_ok(xc, w13, w2, 8) == moe._FUSED_MOE["usable"]
            assert not experts._fused_ok(xc, w13, w2, experts.fused_max_pairs + 1)
        assert not experts._fused_ok(xc, w13, w2, 8)  # gradients on: the kernels have no backward


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fused_kernels_on_cuda_match_loop_and_capture_in_a_graph():
    w13, w2 = (t.cuda().bfloat16() for t in _weights(64, 256, 96, 1))
    w, idx = (t.cuda() for t in _routing(32, 6, 64, 60, 1))
    x = torch.randn(32, 256, device="cuda", dtype=torch.bfloat16)
    with torch.inference_mode():
        exact = _loop(x.float(), w13.float(), w2.float(), w, idx)
        got = moe.fused_experts(x, w13, w2, w, idx)
        assert moe._FUSED_MOE["usable"] and moe._FUSED_MOE["checked"]  # the kernels passed their own check
        assert (got.float() - exact).abs().max() <= 1.5e-2 * exact.abs().max()
        graph = torch.cuda.CUDAGraph()
        static_idx = idx.clone()
        with torch.cuda.graph(graph):
            captured = moe.fused_experts(x, w13, w2, w, static_idx)
        static_idx.copy_(idx.flip(0))  # new routing, same shapes: the replay re-sorts on the device
        graph.replay()
        expected = _loop(x.float(), w13.float(), w2.float(), w, idx.flip(0))
        assert (captured.float() - expected).abs().max() <= 1.5e-2 * expected.abs().max()
        # two shared experts in the same launches: pseudo-experts 64 and 65 take all 32 tokens
        g = torch.Generator().manual_seed(2)
        shared = [torch.randn(*shape, generator=g).mul(0.2).cuda().bfloat16() for shape in ((192, 256),) * 2]
        shared.append(torch.randn(256, 192, generator=g).mul(0.2).cuda().bfloat16())
        sg, su, sd = (t.float() for t in shared)
        mlp = torch.nn.functional.linear(torch.nn.functional.silu(x.float() @ sg.T) * (x.float() @ su.T), sd)
        got = moe.fused_experts(x, w13, w2, w, idx, *shared)
        assert moe._FUSED_MOE["usable"] and moe._FUSED_MOE["checked_shared"]
        expected = exact + mlp
        assert (got.float() - expected).abs().max() <= 1.5e-2 * expected.abs().max()
        graph = torch.cuda.CUDAGraph()
        static_idx.copy_(idx)
        with torch.cuda.graph(graph):
            captured = moe.fused_experts(x, w13, w2, w, static_idx, *shared)
        static_idx.copy_(idx.flip(0))
        graph.replay()
        expected = _loop(x.float(), w13.float(), w2.float(), w, idx.flip(0)) + mlp
        assert (captured.float() - expected).abs().max() <= 1.5e-2 * expected.abs().max()
