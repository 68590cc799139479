"""One-pass absorbed MLA decode attention (``lm.mla_decode``): the Triton kernels against the batched-GEMM path.

On the CPU the kernels run in Triton's interpreter, chosen before Triton is first imported, so those cases run in
one child process (as in tests/test_moe_fused.py) and the tests here check what it reports.
"""

from __future__ import annotations

import os

import pytest
import torch

triton = pytest.importorskip("triton", reason="the MLA decode kernels are written in Triton")

from lm import mla_decode  # noqa: E402
from lm.config import preset  # noqa: E402
from tests.conftest import run_interpreted  # noqa: E402

# name: (batch, query rows, cache slots, C, R, rows of the bias (1: shared by all rows), visible slots per batch row)
CASES = {
    # T not a multiple of the 64-slot block; 4 slices of 2 blocks for 5 blocks: the last slice sees no slot
    "two_rows_four_slices": (2, 16, 300, 32, 16, 1, (300, 137)),
    # rows not a power of two (3 heads x 4 tokens), a per-row bias; C and R padded up to 16-wide tiles
    "multi_token_rows_padded_dims": (3, 12, 96, 24, 8, 12, (96, 50, 70)),
    # one visible slot in a row: every other slice is empty
    "single_visible_slot": (1, 16, 200, 32, 16, 1, (1,)),
}


def _inputs(b: int, m: int, t: int, c: int, r: int, bias_rows: int, lengths: tuple[int, ...], seed: int):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, m, c + r, generator=g)
    latent = torch.randn(b, t, c + r, generator=g)
    last = torch.tensor(lengths)[:, None, None]  # [B, 1, 1] slots the last row sees
    if bias_rows > 1:  # earlier rows see one slot fewer each (a multi-token step's causal mask)
        last = last - bias_rows + 1 + torch.arange(bias_rows)[None, :, None]
    visible = torch.arange(t)[None, None, :] < last  # [B, rows, T]
    bias = torch.zeros(visible.shape).masked_fill(~visible, float("-inf"))
    return q, latent, bias


def _run_cases() -> dict[str, float]:
    """In the interpreting child: kernels vs the reference, float32, and a debug model's decode with and without."""
    out: dict[str, float] = {}
    for seed, (name, (b, m, t, c, r, bias_rows, lengths)) in enumerate(CASES.items()):
        q, latent, bias = _inputs(b, m, t, c, r, bias_rows, lengths, seed)
        exact = mla_decode.reference(q, latent, bias, 0.1, c)
        out[name] = (mla_decode.decode_attention_kernels(q, latent, bias, 0.1, c) - exact).abs().max().item()
    out["splits_two_rows"] = float(mla_decode._splits(2, 5, torch.device("cpu")))
    # A debug model's cached decode step through MLA._absorbed: kernels (CPU tensors, interpreted) vs GEMMs.
    from lm.generate import Generator
    from lm.model import LanguageModel

    torch.manual_seed(0)
    model = LanguageModel(preset("debug").replace(num_nextn_predict_layers=0)).eval()
    prompts = [[5, 9, 14, 3, 7, 21, 8], [4, 11, 2]]
    plain = Generator(model, use_cuda_graphs=False).generate(prompts, max_new_tokens=4, stop_token_ids=[])
    mla_decode.usable = lambda *args: True
    fused = Generator(model, use_cuda_graphs=False).generate(prompts, max_new_tokens=4, stop_token_ids=[])
    out["model_tokens_equal"] = float(plain.tokens == fused.tokens)
    out["checked_and_usable"] = float(mla_decode._STATE["checked"] and mla_decode._STATE["usable"])
    return out


@pytest.fixture(scope="module")
def interpreted() -> dict[str, float]:
    return run_interpreted("tests.test_mla_decode")


@pytest.mark.parametrize("case", list(CASES))
def test_kernels_float32_match_batched_gemms(interpreted, case: str):
    assert interpreted[case] <= 1e-5


def test_slices_and_model_decode(interpreted):
    assert interpreted["splits_two_rows"] == 4  # 8 "SMs" on the CPU, 5 blocks: the last slice is empty
    assert interpreted["model_tokens_equal"] == 1.0  # same greedy tokens as the GEMM path
    assert interpreted["checked_and_usable"] == 1.0  # and the first-use check passed


def test_op_has_a_fake_implementation_for_compiled_blocks():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        q, latent = torch.empty(4, 16, 576, dtype=torch.bfloat16), torch.empty(4, 256, 576, dtype=torch.bfloat16)
        out = torch.ops.ohmlens.mla_decode_attention(q, latent, torch.empty(4, 1, 256, dtype=torch.bfloat16), 0.1, 512)
    assert out.shape == (4, 16, 512) and out.dtype == torch.bfloat16


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="the interpreter replaces the compiled kernels")
def test_kernel_fits_hopper_shared_memory_at_v2_lite_shapes():
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernel = mla_decode._mla_split_kernel
    consts = {"C": 512, "R": 64, "CP": 512, "RP": 64, "ROWS": 16, "SPLITS": 4, "BLOCK": mla_decode.TILES["BLOCK_N"]}
    consts["IEEE"] = False
    types = {"q_ptr": "*bf16", "kv_ptr": "*bf16", "bias_ptr": "*bf16", "acc_ptr": "*fp32", "stats_ptr": "*fp32"}
    types["scale"] = "fp32"
    names = kernel.arg_names
    signature = {n: "constexpr" if n in consts else types.get(n, "i32") for n in names}
    fixed = {(names.index(n),): v for n, v in consts.items()}
    compiled = triton.compile(ASTSource(kernel, signature, fixed), target=GPUTarget("cuda", 90, 32))
    assert compiled.metadata.shared <= 227 * 1024  # an H200's limit per block (a launch beyond it fails)


def test_falls_back_when_its_first_check_fails(monkeypatch):
    monkeypatch.setitem(mla_decode._STATE, "usable", True)
    monkeypatch.setitem(mla_decode._STATE, "checked", False)
    monkeypatch.setattr(mla_decode, "usable", lambda *args: True)
    monkeypatch.setattr(mla_decode, "decode_attention_kernels", lambda q, latent, bias, scale, c: q[..., :c] * 0)
    q, latent, bias = _inputs(2, 16, 70, 32, 16, 1, (70, 20), 0)
    got = mla_decode.decode_attention(q, latent, bias, 0.1, 32)
    torch.testing.assert_close(got, mla_decode.reference(q, latent, bias, 0.1, 32))
    assert not mla_decode._STATE["usable"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_kernels_on_cuda_match_and_capture_in_a_graph():
    q, latent, bias = (t.cuda().bfloat16() for t in _inputs(32, 16, 1152, 512, 64, 1, (1100,) * 31 + (600,), 3))
    with torch.inference_mode():
        exact = mla_decode.reference(q.float(), latent.float(), bias.float(), 0.07, 512)
        got = mla_decode.decode_attention(q, latent, bias, 0.07, 512)
        assert mla_decode._STATE["usable"] and mla_decode._STATE["checked"]
        assert (got.float() - exact).abs().max() <= 2e-2 * exact.abs().max()
        graph = torch.cuda.CUDAGraph()
        static_q = q.clone()
        with torch.cuda.graph(graph):
            captured = mla_decode.decode_attention(static_q, latent, bias, 0.07, 512)
        static_q.copy_(q.flip(0))
        graph.replay()
        expected = mla_decode.reference(q.flip(0).float(), latent.float(), bias.float(), 0.07, 512)
        assert (captured.float() - expected).abs().max() <= 2e-2 * expected.abs().max()
