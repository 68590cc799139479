"""DeepSeekMoE: fine-grained routed experts plus always-on shared experts.

Routing (``Gate``), in float32:
  1. scores ``s`` = sigmoid (V3) or softmax (V2) of ``x @ W_gate^T``;
  2. ``noaux_tc``: experts are *chosen* on ``s + e_score_correction_bias`` (the bias steers load, never weights);
     groups are ranked by the sum of their two best biased scores, all but ``topk_group`` groups are masked with
     -inf, then the top-k experts are taken; ``group_limited_greedy`` ranks groups by their best score; ``greedy``
     ignores groups;
  3. gate weights are the *unbiased* scores of the chosen experts, normalised to sum 1 if ``norm_topk_prob``, times
     ``routed_scaling_factor``.
Steps 1-3 after the gate GEMM are :func:`lm.moe_route.select`; inference on CUDA runs them as one Triton kernel
(:mod:`lm.moe_route`).

Dispatch (``Experts``): the (token, expert) pairs are sorted by expert, each expert runs on its contiguous slice
through grouped GEMMs (``torch._grouped_mm``) for gate+up and for down, and results are un-permuted and summed with
the gate weights (long prefills take a variant that moves less memory, see :func:`grouped_experts`). Decode steps on
CUDA (a few tokens per expert) take fused Triton kernels instead (:func:`fused_experts`: each expert's weights are
read once for all its tokens, SwiGLU and the gate weights in the epilogues; the shared experts join the same launches
as pseudo-experts that every token visits). A per-expert loop (``forward_loop``) is kept as the reference and the
fallback.

Training-time balancing: the gate counts how many tokens each expert received (``expert_load``); after each optimiser
step :meth:`Gate.update_bias` moves the correction bias by ``gamma`` against the load imbalance (aux-loss-free
balancing of DeepSeek-V3), and an optional small sequence-wise balance loss is computed when ``seq_aux`` is set.
"""

from __future__ import annotations

import functools
import logging
import os

import torch
import torch.nn.functional as F
from torch import nn

from lm import moe_route
from lm.config import LMConfig
from lm.kernels import max_diff_check, run_checked, tl, triton
from lm.layers import MLP, Float32Module

log = logging.getLogger(__name__)
_GROUPED_MM = getattr(F, "grouped_mm", None) or getattr(torch, "_grouped_mm", None)


class Gate(Float32Module):
    """Top-k router with group limiting and the auxiliary-loss-free correction bias."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.n_experts = config.n_routed_experts
        self.routing = moe_route.Routing(
            config.num_experts_per_tok,
            config.n_group,
            config.topk_group,
            config.scoring_func,
            config.topk_method,
            config.norm_topk_prob,
            config.routed_scaling_factor,
        )
        self.seq_aux_alpha = config.aux_loss_alpha if config.seq_aux else 0.0
        # Router weights and bias stay float32 whatever the model dtype (Float32Module).
        self.weight = nn.Parameter(torch.empty(self.n_experts, config.hidden_size, dtype=torch.float32))
        self.register_buffer("e_score_correction_bias", torch.zeros(self.n_experts, dtype=torch.float32))
        self.register_buffer("expert_load", torch.zeros(self.n_experts, dtype=torch.float32), persistent=False)
        self.track_load = False
        self.aux_loss: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, batch_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Route ``x`` [N, D]; returns gate weights [N, K] (float32) and expert indices [N, K]."""
        if not torch.is_autocast_enabled(x.device.type):  # (entering the context costs host time per layer)
            return self._route(x, batch_size)
        with torch.autocast(x.device.type, enabled=False):  # the gate is float32 even under mixed precision
            return self._route(x, batch_size)

    def _route(self, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        logits = F.linear(x.float(), self.weight)  # [N, E]
        r = self.routing
        if not self.training and moe_route.usable(logits, r):  # CUDA inference: one kernel
            self.aux_loss = None
            if torch.compiler.is_compiling():
                return torch.ops.ohmlens.moe_route(logits, self.e_score_correction_bias, *r)
            return moe_route.route(logits, self.e_score_correction_bias, r)
        weights, indices, scores = moe_route.select(logits, self.e_score_correction_bias, r)
        if self.training and self.track_load:
            self.expert_load.scatter_add_(0, indices.flatten(), torch.ones_like(indices.flatten(), dtype=torch.float32))
        self.aux_loss = None
        if self.training and self.seq_aux_alpha > 0:
            self.aux_loss = self._sequence_balance_loss(scores, indices, batch_size)
        return weights, indices

    def _sequence_balance_loss(self, scores: torch.Tensor, indices: torch.Tensor, batch_size: int) -> torch.Tensor:
        # DeepSeek-V3 eq. 17-20: alpha * sum_i f_i * P_i per sequence, averaged over sequences.
        n_tok = scores.shape[0] // batch_size
        probs = (scores / scores.sum(dim=-1, keepdim=True)).view(batch_size, n_tok, -1)  # normalised s'_{i,t}
        idx = indices.view(batch_size, -1)
        counts = torch.zeros(batch_size, self.n_experts, device=scores.device)
        counts.scatter_add_(1, idx, torch.ones_like(idx, dtype=counts.dtype))
        f = counts * self.n_experts / (self.routing.top_k * n_tok)
        return self.seq_aux_alpha * (f * probs.mean(dim=1)).sum(dim=-1).mean()

    @torch.no_grad()
    def update_bias(self, gamma: float) -> torch.Tensor:
        """Move the correction bias by ``gamma`` toward balanced load; returns and resets the load counts."""
        load = self.expert_load.clone()
        if gamma:
            # Overloaded experts get a lower bias, underloaded a higher one (no change when nothing was routed).
            self.e_score_correction_bias += gamma * torch.sign(load.mean() - load)
        self.expert_load.zero_()
        return load


def grouped_mm(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """``out[rows of group g] = x[rows of group g] @ w[g]``; ``x`` [M, K] sorted by group, ``w`` [G, K, N].

    ``offsets`` [G] int32 holds the cumulative end row of each group. Uses PyTorch's grouped GEMM when the
    inputs qualify (bf16 on CUDA; 16-byte aligned strides on CPU) and a per-group loop otherwise.
    """
    global _GROUPED_MM
    if torch.compiler.is_compiling():  # traced code (the compiled decode step) cannot run the pointer checks below
        if _GROUPED_MM is not None and x.is_cuda and x.dtype == w.dtype == torch.bfloat16:
            return _GROUPED_MM(x, w, offs=offsets)
        # Elsewhere (CPU, float32) each row takes its group's weight: meant for the few rows of a decode step.
        rows = torch.arange(x.shape[0], device=x.device, dtype=offsets.dtype)
        group = torch.searchsorted(offsets, rows, right=True)
        return torch.bmm(x.unsqueeze(1), w[group]).squeeze(1)
    if _GROUPED_MM is not None and _grouped_mm_ok(x, w):
        try:
            return _GROUPED_MM(x, w, offs=offsets)
        except RuntimeError as exc:
            if x.is_cuda and torch.cuda.is_current_stream_capturing():
                raise
            # An unsupported shape/alignment on this PyTorch build: use the loop from now on, loudly.
            log.warning("grouped GEMM kernel unavailable (%s); falling back to a per-expert loop", exc)
            _GROUPED_MM = None
    parts, start = [], 0
    for g, end in enumerate(offsets.tolist()):  # one host sync; differentiable
        if end > start:
            parts.append(x[start:end] @ w[g])
        start = end
    return torch.cat(parts) if parts else x.new_zeros(0, w.shape[-1])


def _grouped_mm_ok(x: torch.Tensor, w: torch.Tensor) -> bool:
    if x.dtype != w.dtype:
        return False
    if x.is_cuda:
        return x.dtype == torch.bfloat16 and _capability(x.device) >= (8, 0)
    if x.device.type != "cpu" or (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad)):
        return False  # PyTorch's CPU grouped GEMM has no working backward: train through the loop
    item = x.element_size()
    strides_ok = all(s * item % 16 == 0 for s in (*x.stride(), *w.stride()) if s != 1)
    return strides_ok and x.data_ptr() % 16 == 0 and w.data_ptr() % 16 == 0


if triton is not None:

    @triton.jit
    def _swiglu_rows_kernel(h_ptr, scale_ptr, out_ptr, numel, inter, BLOCK: tl.constexpr):
        # out[p, i] = silu(h[p, i]) * h[p, inter + i] * scale[p], h [P, 2 * inter] and out [P, inter] contiguous
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < numel
        row = offs // inter
        src = offs + row * inter  # row * 2 * inter + column
        gate = tl.load(h_ptr + src, mask=mask).to(tl.float32)
        up = tl.load(h_ptr + src + inter, mask=mask).to(tl.float32)
        scale = tl.load(scale_ptr + row, mask=mask)
        out = gate * tl.sigmoid(gate) * up * scale
        tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


_FUSED_SWIGLU = {"usable": triton is not None, "checked": False}


def swiglu_rows(h: torch.Tensor, scale: torch.Tensor, inter: int) -> torch.Tensor:
    """``silu(gate) * up * scale[:, None]`` of ``h`` [P, 2I] = [gate | up] rows; ``scale`` [P] float32.

    On CUDA one fused Triton kernel reads the two strided halves once and rounds once (PyTorch would run three
    elementwise kernels, two of them on strided halves through its non-vectorised path). The compiled kernel is
    compared against the PyTorch formula on its first call and, should they differ, not used again.
    """
    if _FUSED_SWIGLU["usable"] and h.is_cuda and h.is_contiguous() and h.numel() > 0:
        try:
            out = torch.empty(h.shape[0], inter, dtype=h.dtype, device=h.device)
            block = 2048
            grid = (triton.cdiv(out.numel(), block),)
            _swiglu_rows_kernel[grid](h, scale.float().contiguous(), out, out.numel(), inter, BLOCK=block)
            if not _FUSED_SWIGLU["checked"]:
                _FUSED_SWIGLU["checked"] = True
                rows = slice(0, min(h.shape[0], 256))
                expected = _swiglu_reference(h[rows].float(), scale[rows].float(), inter)
                if not torch.allclose(out[rows].float(), expected, rtol=2e-2, atol=1e-2):
                    raise RuntimeError("fused kernel disagrees with the PyTorch formula")
            return out
        except Exception as exc:  # a Triton/driver mismatch: keep correct results on the PyTorch path
            log.warning("fused SwiGLU kernel unusable (%s); using PyTorch elementwise ops", exc)
            _FUSED_SWIGLU["usable"] = False
    return _swiglu_reference(h, scale.to(h.dtype), inter)


def _swiglu_reference(h: torch.Tensor, scale: torch.Tensor, inter: int) -> torch.Tensor:
    gate, up = h.split(inter, dim=-1)
    return F.silu(gate) * up * scale[:, None]


def grouped_experts(
    x: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    weights: torch.Tensor,
    indices: torch.Tensor,
    split_min_pairs: int = 16384,
) -> torch.Tensor:
    """Grouped-GEMM dispatch: ``x`` [N, D], ``w13`` [E, 2I, D], ``w2`` [E, D, I], ``weights``/``indices`` [N, K].

    From ``split_min_pairs`` (token, expert) pairs on (inference only), the memory-lean variant of long prefills.
    """
    n, k = indices.shape
    n_experts, inter = w13.shape[0], w13.shape[1] // 2
    # Sort the (token, slot) pairs by expert. Expert ids fit in one byte, and a radix sort over 8-bit keys is
    # one pass where int64 keys take eight.
    keys = indices.flatten().to(torch.uint8 if n_experts <= 256 else torch.int32)
    sorted_keys, order = keys.sort(stable=True)
    experts = torch.arange(n_experts, dtype=keys.dtype, device=x.device)
    offsets = torch.searchsorted(sorted_keys, experts, right=True, out_int32=True)  # cumulative group ends
    xs = x[order // k]  # [N*K, D] rows grouped by expert
    if n * k < split_min_pairs or torch.is_grad_enabled():  # the fused kernel below has no backward
        h = grouped_mm(xs, w13.transpose(1, 2), offsets)  # [N*K, 2I]
        gate, up = h.split(inter, dim=-1)
        ys = grouped_mm(F.silu(gate) * up, w2.transpose(1, 2), offsets)  # [N*K, D]
        y = torch.empty_like(ys)
        y[order] = ys  # back to (token, slot) order
        # Gate-weighted sum over the k slots as one batched GEMV (float32 accumulation): [N, 1, K] @ [N, K, D]
        return torch.bmm(weights.to(y.dtype)[:, None, :], y.view(n, k, -1)).squeeze(1)
    # Inference on many pairs (long prefills): the gate weights are folded into the activations (the down
    # projection is linear; one fused kernel on CUDA, see swiglu_rows), and rows return to token order by a
    # gather through the inverse permutation and a plain sum over the k slots, instead of a scatter (slow
    # non-vectorised indexing kernel) and a batched GEMV.
    h = grouped_mm(xs, w13.transpose(1, 2), offsets)  # [N*K, 2I]
    act = swiglu_rows(h, weights.flatten()[order], inter)  # [N*K, I]
    ys = grouped_mm(act, w2.transpose(1, 2), offsets)  # [N*K, D]
    inverse = torch.empty_like(order).scatter_(0, order, torch.arange(n * k, device=x.device))
    return ys[inverse].view(n, k, -1).sum(dim=1)


# ---------------------------------------------------------------------- fused small-batch dispatch (decode)
# A decode step routes a few tokens to almost every expert, so its cost is reading the expert weights once. Three
# Triton launches, in the spirit of vLLM's fused_moe: (1) align: the (token, slot) pairs are sorted by expert into
# blocks of FUSED_BLOCK_M rows, each block one expert's (padded with a sentinel pair); (2) one program per (block,
# column tile): the expert's gate and up tiles are read once, multiplied with the block's token rows, and
# silu(gate) * up is written per pair; (3) the same GEMM kernel for the down projection, scaled by the pair's gate
# weight, written per pair in float32; (4) a sum over each token's slots, rounded once. The shared experts ride along
# as extra slots of weight 1 (see fused_experts_kernels). All sizes derive from the shapes (the worst-case padding is
# pairs + experts * (FUSED_BLOCK_M - 1) rows), so a step is CUDA-graph capturable: no host sync, no data-dependent
# shape.
FUSED_BLOCK_M = 16
# Column tile, reduction tile, warps and pipeline stages of the gate/up and the down kernel (vLLM's tuned H100 table
# for these shapes at 32 tokens uses N 32 / K 128 / 4 warps; the gate/up kernel reads two tiles of N per step).
FUSED_TILES: dict[str, dict[str, int]] = {
    "up": {"BLOCK_N": 32, "BLOCK_K": 128, "num_warps": 4, "num_stages": 4},
    "down": {"BLOCK_N": 32, "BLOCK_K": 128, "num_warps": 4, "num_stages": 5},
}
_FUSED_MOE = {"usable": triton is not None, "checked": False, "checked_shared": False}

if triton is not None:

    @triton.jit
    def _moe_align_kernel(
        idx_ptr,
        sorted_ptr,
        block_expert_ptr,
        num_tokens,
        num_rows,
        num_blocks,
        num_routed,
        PAIRS: tl.constexpr,
        EXPERTS: tl.constexpr,
        TOKENS: tl.constexpr,
        BLOCKS: tl.constexpr,
        BLOCK_M: tl.constexpr,
        FILL: tl.constexpr,
        TOP_K: tl.constexpr,
        SHARED: tl.constexpr,
    ):
        # One program. sorted[r] = the pair in padded row r (the pair count where r is padding); block_expert[b] =
        # the expert of rows [b * BLOCK_M, (b + 1) * BLOCK_M), or num_routed + SHARED past the last used block.
        # Pair p is slot p % (TOP_K + SHARED) of token p // (TOP_K + SHARED): the first TOP_K slots are the routed
        # choices idx[token, slot], sorted by expert here; slot TOP_K + j is shared pseudo-expert num_routed + j,
        # which takes every token: its rows come first, in token order, at a place known without sorting.
        slots = TOP_K + SHARED
        routed_pairs = num_tokens * TOP_K
        shared_blocks = tl.cdiv(num_tokens, BLOCK_M)  # per shared pseudo-expert
        shared_rows = SHARED * shared_blocks * BLOCK_M
        pairs = tl.arange(0, PAIRS)  # routed pairs
        experts = tl.arange(0, EXPERTS)
        key = tl.load(idx_ptr + pairs, mask=pairs < routed_pairs, other=-1)
        onehot = (key[:, None] == experts[None, :]).to(tl.int32)  # [PAIRS, EXPERTS]
        counts = tl.sum(onehot, axis=0)
        rank = tl.sum((tl.cumsum(onehot, axis=0) - 1) * onehot, axis=1)  # order of the pair within its expert
        padded = (counts + BLOCK_M - 1) // BLOCK_M * BLOCK_M
        ends = tl.cumsum(padded, axis=0)
        dest = shared_rows + tl.sum((ends - padded)[None, :] * onehot, axis=1) + rank
        for start in range(0, num_rows, FILL):
            rows = start + tl.arange(0, FILL)
            tl.store(sorted_ptr + rows, tl.zeros([FILL], tl.int32) + num_tokens * slots, mask=rows < num_rows)
        tl.debug_barrier()  # the sentinel fill lands before the pairs overwrite it
        tl.store(sorted_ptr + dest, pairs // TOP_K * slots + pairs % TOP_K, mask=pairs < routed_pairs)
        tokens = tl.arange(0, TOKENS)
        for j in tl.static_range(SHARED):
            dest_shared = sorted_ptr + j * shared_blocks * BLOCK_M + tokens
            tl.store(dest_shared, tokens * slots + TOP_K + j, mask=tokens < num_tokens)
        blocks = tl.arange(0, BLOCKS)
        first_row = blocks * BLOCK_M - shared_rows
        owner = tl.sum((ends[None, :] <= first_row[:, None]).to(tl.int32), axis=1)
        owner = tl.where(owner < num_routed, owner, num_routed + SHARED)
        if SHARED > 0:
            owner = tl.where(blocks < SHARED * shared_blocks, num_routed + blocks // shared_blocks, owner)
        tl.store(block_expert_ptr + blocks, owner, mask=blocks < num_blocks)

    @triton.jit
    def _moe_dot(a, w, acc, IEEE: tl.constexpr):
        if IEEE:
            return tl.dot(a.to(tl.float32), w.to(tl.float32), acc, input_precision="ieee")
        return tl.dot(a, w, acc)

    @triton.jit
    def _moe_gemm_kernel(
        a_ptr,
        w_ptr,
        ws_ptr,
        us_ptr,
        out_ptr,
        scale_ptr,
        sorted_ptr,
        block_expert_ptr,
        num_pairs,
        num_routed,
        num_experts,
        K,
        N,
        stride_am,
        stride_we,
        stride_wn,
        stride_se,
        stride_sn,
        stride_om,
        ROWS_PER_A: tl.constexpr,
        SWIGLU: tl.constexpr,
        TOP_K: tl.constexpr,
        SHARED: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
        EVEN_K: tl.constexpr,
        IEEE: tl.constexpr,
    ):
        # For the pairs of one expert block and one tile of N output columns, with a = a[pair // ROWS_PER_A]:
        # SWIGLU: out[pair, n] = silu(a . w[e, n]) * (a . w[e, N + n])  (w13: gate rows, then up rows);
        # else:   out[pair, n] = scale[pair] * (a . w[e, n]).
        # Experts from num_routed on are the shared pseudo-experts (see fused_experts_kernels): their weight rows
        # start at ws (gate or down) and us (up) plus j * stride_se, rows stride_sn apart; their pairs' scale is 1.
        expert = tl.load(block_expert_ptr + tl.program_id(0))
        if expert >= num_experts:
            return
        w_base = w_ptr + expert.to(tl.int64) * stride_we
        u_base = w_base + N * stride_wn
        stride_n = stride_wn
        if SHARED > 0:
            if expert >= num_routed:
                j = (expert - num_routed).to(tl.int64)
                w_base = ws_ptr + j * stride_se
                u_base = us_ptr + j * stride_se
                stride_n = stride_sn
        pair = tl.load(sorted_ptr + tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M))
        valid = pair < num_pairs
        offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_k = tl.arange(0, BLOCK_K)
        a_ptrs = a_ptr + (pair // ROWS_PER_A).to(tl.int64)[:, None] * stride_am + offs_k[None, :]
        # Columns past N wrap around (reads stay in bounds and unmasked; their results are not stored).
        w_offs = (offs_n % N)[None, :] * stride_n + offs_k[:, None]
        w_ptrs = w_base + w_offs
        u_ptrs = u_base + w_offs
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        acc_up = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k in range(0, tl.cdiv(K, BLOCK_K)):
            k_mask = offs_k < K - k * BLOCK_K
            if EVEN_K:
                a = tl.load(a_ptrs, mask=valid[:, None], other=0.0)
                w = tl.load(w_ptrs)
            else:
                a = tl.load(a_ptrs, mask=valid[:, None] & k_mask[None, :], other=0.0)
                w = tl.load(w_ptrs, mask=k_mask[:, None], other=0.0)
            acc = _moe_dot(a, w, acc, IEEE)
            if SWIGLU:
                if EVEN_K:
                    up = tl.load(u_ptrs)
                else:
                    up = tl.load(u_ptrs, mask=k_mask[:, None], other=0.0)
                acc_up = _moe_dot(a, up, acc_up, IEEE)
                u_ptrs += BLOCK_K
            a_ptrs += BLOCK_K
            w_ptrs += BLOCK_K
        if SWIGLU:
            out = acc * tl.sigmoid(acc) * acc_up
        elif SHARED > 0:  # scale [tokens, TOP_K] holds the routed slots only
            slot = pair % (TOP_K + SHARED)
            routed = slot < TOP_K
            scale = tl.load(scale_ptr + pair // (TOP_K + SHARED) * TOP_K + slot, mask=valid & routed, other=1.0)
            out = acc * scale[:, None]
        else:
            out = acc * tl.load(scale_ptr + pair, mask=valid, other=0.0)[:, None]
        o_ptrs = out_ptr + pair.to(tl.int64)[:, None] * stride_om + offs_n[None, :]
        tl.store(o_ptrs, out.to(out_ptr.dtype.element_ty), mask=valid[:, None] & (offs_n[None, :] < N))

    @triton.jit
    def _moe_sum_kernel(rows_ptr, out_ptr, D, SLOTS: tl.constexpr, BLOCK: tl.constexpr):
        # out[t, :] = sum over s of rows[t, s, :] (float32), rounded once to out's dtype; rows [T, SLOTS, D]
        tok = tl.program_id(0).to(tl.int64)
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < D
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for s in tl.static_range(SLOTS):
            acc += tl.load(rows_ptr + (tok * SLOTS + s) * D + offs, mask=mask, other=0.0)
        tl.store(out_ptr + tok * D + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)


def fused_experts_kernels(
    x: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    weights: torch.Tensor,
    indices: torch.Tensor,
    shared: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The fused dispatch's kernels (routing, gate/up, down, sum), unchecked: ``x`` [N, D], ``w13`` [E, 2I, D],
    ``w2`` [E, D, I], ``weights`` [N, K] (float32 gate weights), ``indices`` [N, K] -> [N, D] in ``x``'s dtype.

    ``shared``: the shared experts' gate [S*I, D], up [S*I, D] and down [D, S*I] weights, added to the output in
    the same launches. SwiGLU is elementwise over the intermediate dimension, so their MLP is the sum of S
    pseudo-experts of width I (pseudo-expert j: gate/up rows and down columns j*I to (j+1)*I); every token gets S
    more pairs of weight 1 on them, read in place (no copy of any weight).
    """
    n, top_k = indices.shape
    n_routed, two_inter, d = w13.shape
    inter = two_inter // 2
    if shared is None:
        n_shared = 0
        sg, su, sd = w13, w13, w2  # unused by the kernels (SHARED = 0)
        stride_s = ((0, 0), (0, 0))
    else:
        sg, su, sd = shared
        n_shared = sg.shape[0] // inter
        # (stride between pseudo-experts, stride between weight rows): gate/up rows; down columns
        stride_s = ((inter * sg.stride(0), sg.stride(0)), (inter, sd.stride(0)))
    n_experts, slots = n_routed + n_shared, top_k + n_shared
    pairs = n * slots
    bm = FUSED_BLOCK_M
    # The shared pseudo-experts take whole blocks of every token; every used routed expert is padded by at most
    # bm - 1 rows.
    max_rows = n_shared * triton.cdiv(n, bm) * bm + n * top_k + min(n_routed, n * top_k) * (bm - 1)
    max_blocks = triton.cdiv(max_rows, bm)
    max_rows = max_blocks * bm
    dev = x.device
    sorted_ids = torch.empty(max_rows, dtype=torch.int32, device=dev)
    block_expert = torch.empty(max_blocks, dtype=torch.int32, device=dev)
    p2_pairs, p2_experts = triton.next_power_of_2(max(n * top_k, 16)), triton.next_power_of_2(max(n_routed, 16))
    _moe_align_kernel[(1,)](
        indices.contiguous(),
        sorted_ids,
        block_expert,
        n,
        max_rows,
        max_blocks,
        n_routed,
        PAIRS=p2_pairs,
        EXPERTS=p2_experts,
        TOKENS=triton.next_power_of_2(max(n, 16)),
        BLOCKS=triton.next_power_of_2(max(max_blocks, 16)),
        BLOCK_M=bm,
        FILL=1024,
        TOP_K=top_k,
        SHARED=n_shared,
        num_warps=8 if p2_pairs * p2_experts >= 8192 else 4,  # its [pairs, experts] one-hot lives in registers
    )
    # Float32 models multiply in float32 (tl.dot would use TF32). Triton's CPU interpreter (tests) multiplies bf16
    # operands as raw bits, so there all operands go through float32 (the same products: bf16 ones are exact there).
    ieee = x.dtype == torch.float32 or os.environ.get("TRITON_INTERPRET") == "1"
    act = torch.empty(pairs, inter, dtype=x.dtype, device=dev)
    rows = torch.empty(pairs, d, dtype=torch.float32, device=dev)
    scale = weights.float().contiguous()
    for a, w, ws, us, (stride_se, stride_sn), out, k, width, tiles in (
        (x, w13, sg, su, stride_s[0], act, d, inter, FUSED_TILES["up"]),
        (act, w2, sd, sd, stride_s[1], rows, inter, d, FUSED_TILES["down"]),
    ):
        _moe_gemm_kernel[(max_blocks, triton.cdiv(width, tiles["BLOCK_N"]))](
            a,
            w,
            ws,
            us,
            out,
            scale,
            sorted_ids,
            block_expert,
            pairs,
            n_routed,
            n_experts,
            k,
            width,
            a.stride(0),
            w.stride(0),
            w.stride(1),
            stride_se,
            stride_sn,
            out.stride(0),
            ROWS_PER_A=slots if a is x else 1,
            SWIGLU=a is x,
            TOP_K=top_k,
            SHARED=n_shared,
            BLOCK_M=bm,
            EVEN_K=k % tiles["BLOCK_K"] == 0,
            IEEE=ieee,
            **tiles,
        )
    y = torch.empty(n, d, dtype=x.dtype, device=dev)
    block = min(1024, triton.next_power_of_2(d))
    _moe_sum_kernel[(n, triton.cdiv(d, block))](rows, y, d, SLOTS=slots, BLOCK=block)
    return y


def fused_experts(
    x: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    weights: torch.Tensor,
    indices: torch.Tensor,
    *shared_w: torch.Tensor | None,
) -> torch.Tensor:
    """Small-batch dispatch through :func:`fused_experts_kernels`, checked against :func:`grouped_experts` (plus
    the shared MLP when its gate, up and down weights are given as ``shared_w``) on its first call with and without
    shared experts (outside graph capture) and, should it differ or fail, not used again. Same contract as the
    kernels.
    """
    shared = tuple(shared_w) if shared_w and all(w is not None for w in shared_w) else None
    return run_checked(
        _FUSED_MOE,
        "checked" if shared is None else "checked_shared",
        x.is_cuda and torch.cuda.is_current_stream_capturing(),
        lambda: fused_experts_kernels(x, w13, w2, weights, indices, shared),
        lambda: _unfused_experts(x, w13, w2, weights, indices, shared),
        lambda out: max_diff_check(out, _unfused_experts(x, w13, w2, weights, indices, shared).float()),
        "fused MoE kernels",
    )


def _unfused_experts(
    x: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    weights: torch.Tensor,
    indices: torch.Tensor,
    shared: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
) -> torch.Tensor:
    out = grouped_experts(x, w13, w2, weights, indices)
    if shared is None:
        return out
    gate, up, down = shared
    return out + F.linear(F.silu(F.linear(x, gate)) * F.linear(x, up), down)  # what MLP computes


if triton is not None:
    # Compiled decode blocks (torch.compile) see the fused dispatch as one opaque op: Dynamo does not trace its
    # first-call check, and the op decides at run time between the kernels and the grouped path.
    @torch.library.custom_op("ohmlens::fused_experts", mutates_args=())
    def _fused_experts_op(
        x: torch.Tensor,
        w13: torch.Tensor,
        w2: torch.Tensor,
        weights: torch.Tensor,
        indices: torch.Tensor,
        shared_gate: torch.Tensor | None = None,
        shared_up: torch.Tensor | None = None,
        shared_down: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return fused_experts(x, w13, w2, weights, indices, shared_gate, shared_up, shared_down)

    @_fused_experts_op.register_fake
    def _(x: torch.Tensor, *args: torch.Tensor | None) -> torch.Tensor:
        return torch.empty_like(x)


@functools.cache
def _capability(device: torch.device) -> tuple[int, int]:
    return torch.cuda.get_device_capability(device)


class Experts(nn.Module):
    """All routed experts of a layer as two stacked weights (the in-memory layout ``transformers`` uses).

    ``gate_up_proj`` [E, 2I, D] holds each expert's gate rows then up rows; ``down_proj`` is [E, D, I]. On disk
    they are split into per-expert ``experts.{e}.{gate,up,down}_proj.weight`` (see :mod:`lm.checkpoint`).
    """

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.n_experts = config.n_routed_experts
        self.inter = config.moe_intermediate_size
        d = config.hidden_size
        self.gate_up_proj = nn.Parameter(torch.empty(self.n_experts, 2 * self.inter, d))
        self.down_proj = nn.Parameter(torch.empty(self.n_experts, d, self.inter))
        # From this many (token, expert) pairs on, dispatch takes the memory-lean path of long prefills (see
        # forward); below it, the path with fewer kernels (decode steps, short prompts) is faster.
        self.split_min_pairs = 16384
        # Up to this many pairs, inference on CUDA takes the fused small-batch kernels (their routing kernel runs
        # as one program over all pairs, meant for decode steps: 32 tokens x top-6 = 192 pairs).
        self.fused_max_pairs = 256

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor, shared: MLP | None = None
    ) -> torch.Tensor:
        """Dispatch ``x`` [N, D] with gate ``weights``/``indices`` [N, K] -> [N, D], plus ``shared(x)`` if given.

        Small inference batches on CUDA (decode steps: at most ``fused_max_pairs`` (token, expert) pairs, the
        shared experts counting as one pair per token each) take the fused Triton kernels (:func:`fused_experts`,
        the shared experts in the same launches), everything else the grouped GEMMs (:func:`grouped_experts`) and
        the shared MLP on its own.
        """
        w13, w2 = self.gate_up_proj, self.down_proj
        autocast = torch.is_autocast_enabled(x.device.type)
        if autocast:  # grouped GEMMs are not autocast ops: cast explicitly
            dtype = torch.get_autocast_dtype(x.device.type)
            x, w13, w2 = x.to(dtype), w13.to(dtype), w2.to(dtype)
        shared_w = ()
        if shared is not None:
            shared_w = (shared.gate_proj.weight, shared.up_proj.weight, shared.down_proj.weight)
            if autocast:
                shared_w = tuple(w.to(x.dtype) for w in shared_w)
        pairs = indices.numel() + x.shape[0] * (shared_w[0].shape[0] // self.inter if shared_w else 0)
        if self._fused_ok(x, w13, w2, pairs, shared_w):
            if torch.compiler.is_compiling():
                return torch.ops.ohmlens.fused_experts(x, w13, w2, weights, indices, *shared_w)
            return fused_experts(x, w13, w2, weights, indices, *shared_w)
        out = grouped_experts(x, w13, w2, weights, indices, self.split_min_pairs)
        return out if shared is None else out + shared(x)

    def _fused_ok(
        self, x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, pairs: int, shared: tuple[torch.Tensor, ...] = ()
    ) -> bool:
        return (
            _FUSED_MOE["usable"]
            and x.is_cuda
            and 0 < pairs <= self.fused_max_pairs
            and not torch.is_grad_enabled()  # the kernels have no backward
            and all(w.dtype == x.dtype and w.stride(-1) == 1 for w in (w13, w2, *shared))
            and x.stride(-1) == 1
            # whole pseudo-experts of width I; gate and up rows equally far apart (one stride in the kernel)
            and (not shared or (shared[0].shape[0] % self.inter == 0 and shared[0].stride() == shared[1].stride()))
        )

    def forward_loop(self, x: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Reference dispatch: one masked GEMM pair per expert that received tokens. Same contract as forward."""
        out = torch.zeros(x.shape[0], x.shape[1], dtype=torch.float32, device=x.device)
        for e in torch.unique(indices).tolist():
            tok, slot = torch.where(indices == e)
            gate, up = F.linear(x[tok], self.gate_up_proj[e]).split(self.inter, dim=-1)
            y = F.linear(F.silu(gate) * up, self.down_proj[e])
            out.index_add_(0, tok, y.float() * weights[tok, slot, None])
        return out.to(x.dtype)


class MoE(nn.Module):
    """Routed experts + shared experts of one layer (Hugging Face ``DeepseekV3MoE`` parameter names)."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.gate = Gate(config)
        self.experts = Experts(config)
        self.shared_experts = (
            MLP(config.hidden_size, config.moe_intermediate_size * config.n_shared_experts)
            if config.n_shared_experts > 0
            else None
        )
        self.use_loop = False  # switch to the per-expert reference dispatch (benchmarks, debugging)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, S, D] -> [B, S, D]
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        weights, indices = self.gate(flat, batch_size=shape[0])
        if not self.use_loop:  # the shared experts join the routed ones' kernels where the fused dispatch runs
            return self.experts(flat, weights, indices, self.shared_experts).view(shape)
        out = self.experts.forward_loop(flat, weights, indices).view(shape)
        if self.shared_experts is not None:
            out = out + self.shared_experts(x)
        return out
