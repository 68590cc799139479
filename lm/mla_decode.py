"""Absorbed MLA decode attention as one pass over the latent cache (Triton, split-KV "flash decoding").

The plain absorbed path (:meth:`lm.mla.MLA._absorbed`) takes scores against the cache with one batched GEMM,
a softmax, then the weighted latent sum with a second GEMM: the cache is read twice and the scores make a round
trip through memory. At decode batch sizes the cache dominates what attention reads (batch 32 x 1k tokens x 576
values x 27 layers of a V2-Lite-shaped model is ~1 GB a step), so here every program streams a slice of one row's
cache once, keeps scores and an online softmax in registers, and a second kernel merges the slices.

Every query row of a batch row (heads, and the new tokens of a multi-token step) shares that row's cache, as in
multi-query attention, so one program serves all of them: its matrix products are [rows, C + R] x [C + R, slots]
and [rows, slots] x [slots, C].

The kernels are checked against the plain path on first use (outside CUDA graph capture) and, should they fail
or disagree, not used again.
"""

from __future__ import annotations

import functools
import os

import torch

from lm.kernels import max_diff_check, run_checked, tl, triton

MAX_ROWS = 64  # query rows (heads x new tokens) one program holds; more take the plain path
# Launch settings of the split kernel: cache slots per inner step, warps (for up to 16 rows; more rows take 8),
# software-pipelining stages, and programs per SM the split count aims at (tests/benchmarks/bench_lm.py sweeps them).
TILES = {"BLOCK_N": 32, "num_warps": 4, "num_stages": 3, "programs_per_sm": 1}
_STATE = {"usable": triton is not None, "checked": False}

if triton is not None:

    @triton.jit
    def _mla_split_kernel(
        q_ptr,
        kv_ptr,
        bias_ptr,
        acc_ptr,
        stats_ptr,
        rows_used,
        slots,
        scale,
        blocks_per_split,
        stride_qb,
        stride_qm,
        stride_kb,
        stride_kt,
        stride_bb,
        stride_bm,
        C: tl.constexpr,
        R: tl.constexpr,
        CP: tl.constexpr,
        RP: tl.constexpr,
        ROWS: tl.constexpr,
        SPLITS: tl.constexpr,
        BLOCK: tl.constexpr,
        IEEE: tl.constexpr,
    ):
        # Program (b, split): rows [ROWS] of batch row b over cache slots of blocks [split * bps, (split + 1) * bps).
        # Writes the unnormalised weighted latent sum acc [ROWS, C] and (running max, sum of exponentials).
        b = tl.program_id(0)
        split = tl.program_id(1)
        rows = tl.arange(0, ROWS)
        cc = tl.arange(0, CP)
        rr = tl.arange(0, RP)
        row_ok = rows < rows_used
        q_row = q_ptr + b * stride_qb + rows[:, None] * stride_qm
        q_c = tl.load(q_row + cc[None, :], mask=row_ok[:, None] & (cc[None, :] < C), other=0.0)  # [ROWS, CP]
        q_r = tl.load(q_row + C + rr[None, :], mask=row_ok[:, None] & (rr[None, :] < R), other=0.0)  # [ROWS, RP]
        m_i = tl.full([ROWS], -1e30, tl.float32)  # finite: a slice with every slot masked must not make NaNs
        l_i = tl.zeros([ROWS], tl.float32)
        acc = tl.zeros([ROWS, CP], tl.float32)
        first = split * blocks_per_split
        for blk in range(first, first + blocks_per_split):
            t = blk * BLOCK + tl.arange(0, BLOCK)
            t_ok = t < slots
            kv_row = kv_ptr + b * stride_kb + t[:, None] * stride_kt
            k_c = tl.load(kv_row + cc[None, :], mask=t_ok[:, None] & (cc[None, :] < C), other=0.0)  # [BLOCK, CP]
            k_r = tl.load(kv_row + C + rr[None, :], mask=t_ok[:, None] & (rr[None, :] < R), other=0.0)
            if IEEE:
                s = tl.dot(q_c.to(tl.float32), tl.trans(k_c.to(tl.float32)), input_precision="ieee")
                s = tl.dot(q_r.to(tl.float32), tl.trans(k_r.to(tl.float32)), s, input_precision="ieee")
            else:
                s = tl.dot(q_c, tl.trans(k_c))
                s = tl.dot(q_r, tl.trans(k_r), s)  # [ROWS, BLOCK] float32
            bias = tl.load(
                bias_ptr + b * stride_bb + rows[:, None] * stride_bm + t[None, :],
                mask=row_ok[:, None] & t_ok[None, :],
                other=float("-inf"),
            )
            s = s * scale + bias.to(tl.float32)
            m_new = tl.maximum(m_i, tl.max(s, 1))
            alpha = tl.exp(m_i - m_new)
            p = tl.exp(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            if IEEE:
                acc = tl.dot(p, k_c.to(tl.float32), acc * alpha[:, None], input_precision="ieee")
            else:
                acc = tl.dot(p.to(k_c.dtype), k_c, acc * alpha[:, None])
            m_i = m_new
        part = (b * SPLITS + split) * ROWS + rows
        tl.store(acc_ptr + part[:, None] * CP + cc[None, :], acc)
        tl.store(stats_ptr + part * 2, m_i)
        tl.store(stats_ptr + part * 2 + 1, l_i)

    @triton.jit
    def _mla_merge_kernel(
        acc_ptr,
        stats_ptr,
        out_ptr,
        stride_ob,
        stride_om,
        C: tl.constexpr,
        CP: tl.constexpr,
        ROWS: tl.constexpr,
        SPLITS: tl.constexpr,
    ):
        # Program (b, row): softmax-weighted merge of the row's SPLITS partial sums.
        b = tl.program_id(0)
        row = tl.program_id(1)
        splits = tl.arange(0, SPLITS)
        cc = tl.arange(0, CP)
        part = (b * SPLITS + splits) * ROWS + row
        m = tl.load(stats_ptr + part * 2)
        scale = tl.exp(m - tl.max(m, 0))  # [SPLITS]
        denom = tl.sum(scale * tl.load(stats_ptr + part * 2 + 1), 0)
        acc = tl.load(acc_ptr + part[:, None] * CP + cc[None, :])  # [SPLITS, CP]
        out = tl.sum(acc * scale[:, None], 0) / denom
        tl.store(out_ptr + b * stride_ob + row * stride_om + cc, out.to(out_ptr.dtype.element_ty), mask=cc < C)


def reference(q: torch.Tensor, latent: torch.Tensor, score_bias: torch.Tensor, scale: float, c: int) -> torch.Tensor:
    """The plain absorbed attention core: ``q`` [B, M, C + R], ``latent`` [B, T, C + R], ``score_bias`` (0/-inf)
    [B, M or 1, T] -> weighted latent sum [B, M, C]."""
    scores = torch.baddbmm(score_bias, q, latent.transpose(1, 2), beta=1.0, alpha=scale)
    return torch.bmm(scores.softmax(dim=-1), latent[..., :c])


@functools.cache
def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 8


def _splits(batch: int, blocks: int, device: torch.device) -> int:
    # Enough programs to fill the GPU as TILES asks; each merge slice costs a [rows, C] float32 write and read.
    sms = _sm_count(device)
    want = max(1, sms * TILES["programs_per_sm"] // max(batch, 1))
    splits = 1
    while splits * 2 <= min(want, blocks):
        splits *= 2
    return splits


def decode_attention_kernels(
    q: torch.Tensor, latent: torch.Tensor, score_bias: torch.Tensor, scale: float, c: int
) -> torch.Tensor:
    """:func:`reference` by the Triton kernels, unchecked (rows M <= ``MAX_ROWS``)."""
    bsz, m, width = q.shape
    slots = latent.shape[1]
    r = width - c
    rows = max(16, triton.next_power_of_2(m))  # tl.dot needs 16 rows
    cp, rp = max(16, triton.next_power_of_2(c)), max(16, triton.next_power_of_2(r))
    block_n = TILES["BLOCK_N"]
    blocks = triton.cdiv(slots, block_n)
    splits = _splits(bsz, blocks, q.device)
    per_split = triton.cdiv(blocks, splits)
    acc = torch.empty(bsz * splits * rows, cp, dtype=torch.float32, device=q.device)
    stats = torch.empty(bsz * splits * rows, 2, dtype=torch.float32, device=q.device)
    bias_rows = score_bias.stride(1) if score_bias.shape[1] > 1 else 0  # [B, 1, T] serves every row
    ieee = q.dtype == torch.float32 or os.environ.get("TRITON_INTERPRET") == "1"
    _mla_split_kernel[(bsz, splits)](
        q,
        latent,
        score_bias,
        acc,
        stats,
        m,
        slots,
        scale,
        per_split,
        q.stride(0),
        q.stride(1),
        latent.stride(0),
        latent.stride(1),
        score_bias.stride(0),
        bias_rows,
        C=c,
        R=r,
        CP=cp,
        RP=rp,
        ROWS=rows,
        SPLITS=splits,
        BLOCK=block_n,
        IEEE=ieee,
        num_warps=TILES["num_warps"] if rows <= 16 else 8,  # the [rows, C] float32 sum lives in registers
        num_stages=TILES["num_stages"],
    )
    out = torch.empty(bsz, m, c, dtype=q.dtype, device=q.device)
    _mla_merge_kernel[(bsz, m)](acc, stats, out, out.stride(0), out.stride(1), C=c, CP=cp, ROWS=rows, SPLITS=splits)
    return out


def usable(q: torch.Tensor, latent: torch.Tensor, score_bias: torch.Tensor) -> bool:
    """Whether :func:`decode_attention` takes the kernels for these inputs."""
    return (
        _STATE["usable"]
        and q.is_cuda
        and q.shape[1] <= MAX_ROWS
        and not torch.is_grad_enabled()  # the kernels have no backward
        and q.dtype == latent.dtype
        and all(t.stride(-1) == 1 for t in (q, latent, score_bias))
    )


def decode_attention(
    q: torch.Tensor, latent: torch.Tensor, score_bias: torch.Tensor, scale: float, c: int
) -> torch.Tensor:
    """:func:`reference` through the kernels when :func:`usable`, checked against it on first use."""
    if not usable(q, latent, score_bias):
        return reference(q, latent, score_bias, scale, c)
    return run_checked(
        _STATE,
        "checked",
        q.is_cuda and torch.cuda.is_current_stream_capturing(),
        lambda: decode_attention_kernels(q, latent, score_bias, scale, c),
        lambda: reference(q, latent, score_bias, scale, c),
        lambda out: max_diff_check(out, reference(q.float(), latent.float(), score_bias.float(), scale, c)),
        "MLA decode kernels",
    )


if triton is not None:
    # Compiled decode blocks (torch.compile) see the attention core as one opaque op (its first-call check and
    # the choice between kernels and GEMMs happen at run time).
    @torch.library.custom_op("ohmlens::mla_decode_attention", mutates_args=())
    def _decode_attention_op(
        q: torch.Tensor, latent: torch.Tensor, score_bias: torch.Tensor, scale: float, c: int
    ) -> torch.Tensor:
        return decode_attention(q, latent, score_bias, scale, c)

    @_decode_attention_op.register_fake
    def _(q: torch.Tensor, latent: torch.Tensor, score_bias: torch.Tensor, scale: float, c: int) -> torch.Tensor:
        return q.new_empty(q.shape[0], q.shape[1], c)
