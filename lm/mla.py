"""Multi-head Latent Attention (MLA) with decoupled, YaRN-scaled rotary embeddings.

Notation (DeepSeek-V2/V3 papers): ``C`` = kv_lora_rank, ``R`` = qk_rope_head_dim, ``dn`` = qk_nope_head_dim,
``dv`` = v_head_dim, ``H`` heads. Each token is cached as ``C + R`` numbers per layer: the normalised joint KV
latent ``c_kv`` and the RoPE key ``k_pe`` shared by all heads.

Two ways to attend:

* expanded (prefill, training): ``kv_b_proj`` turns latents into per-head keys/values and
  ``scaled_dot_product_attention`` does the rest;
* absorbed (decode): ``W_UK`` is folded into the query so scores are taken against the latent cache directly, the
  weighted latent sum is taken once, and ``W_UV`` is applied afterwards. Nothing per-head is ever materialised for
  cached tokens. On CUDA the scores, softmax and latent sum are one pass over the cache (:mod:`lm.mla_decode`).

The rotary dimensions use the interleaved-pair layout of the released checkpoints: ``(x0, x1), (x2, x3), ...`` are
rotated by one frequency each.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.bias import causal_lower_right

from lm import mla_decode
from lm.config import LMConfig, yarn_get_mscale
from lm.layers import Float32Module, RMSNorm

# Pad V up to the query/key width so PyTorch's flash kernel (equal head dims only) can run MLA prefill on CUDA.
# Off by default: on an H200 (torch 2.11) the unpadded call was faster (tests/benchmarks/results/lm_h200.json).
PAD_V_FOR_FLASH = False
# SDPA backends to restrict prefill attention to (None = PyTorch's choice); benchmarks set this to compare.
SDPA_BACKENDS: list[SDPBackend] | None = None


# ---------------------------------------------------------------------- rotary embedding
def yarn_inv_freq(config: LMConfig) -> tuple[torch.Tensor, float]:
    """Inverse frequencies [R/2] and the cos/sin attention factor, as ``transformers``' YaRN for DeepSeek."""
    dim = config.qk_rope_head_dim
    base = config.rope_theta
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    if config.rope_scaling is None:
        return 1.0 / pos_freqs, 1.0
    rs = config.rope_scaling
    original = int(rs.get("original_max_position_embeddings", config.max_position_embeddings))
    factor = rs.get("factor") or config.max_position_embeddings / original
    factor = float(factor)
    mscale, mscale_all_dim = rs.get("mscale"), rs.get("mscale_all_dim")
    attention_factor = rs.get("attention_factor")
    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = yarn_get_mscale(factor, float(mscale)) / yarn_get_mscale(factor, float(mscale_all_dim))
        else:
            attention_factor = yarn_get_mscale(factor)
    beta_fast = rs.get("beta_fast") or 32
    beta_slow = rs.get("beta_slow") or 1

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if rs.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    extrapolation = 1 - ramp  # 1 = keep the original frequency (high-frequency dims)
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation
    return inv_freq, float(attention_factor)


class RotaryEmbedding(Float32Module):
    """Precomputed rotations: a complex table [max_position_embeddings, R/2] = (cos + i sin) * attention factor."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        inv_freq, attention_factor = yarn_inv_freq(config)
        t = torch.arange(config.max_position_embeddings, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq.to(t.device))
        table = torch.stack((freqs.cos(), freqs.sin()), dim=-1) * attention_factor  # [P, R/2, 2] float32
        self.register_buffer("table", table, persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # positions: [B, S] long -> (complex rotations [B, S, 1, R/2], the same as float pairs [B, S, 1, R/2, 2])
        rows = self.table[positions].unsqueeze(2)
        return torch.view_as_complex(rows), rows


def apply_rope(x: torch.Tensor, rot: torch.Tensor, pairs: torch.Tensor, interleave: bool = True) -> torch.Tensor:
    """Rotate ``x`` [B, S, H, R] by position; pairs are adjacent (interleaved) or split in halves.

    ``rot`` and ``pairs`` are the two views :class:`RotaryEmbedding` returns. The interleaved layout is one complex
    multiply (as DeepSeek's reference code); the half-split layout rotates ``(x[i], x[i + R/2])`` pairs.
    """
    if interleave and torch.compiler.is_compiling():
        # Compilers generate no code for complex numbers: the same rotation in real arithmetic, one fused kernel.
        x0, x1 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
        cos, sin = pairs[..., 0], pairs[..., 1]
        return torch.stack((x0 * cos - x1 * sin, x1 * cos + x0 * sin), dim=-1).flatten(-2).to(x.dtype)
    if interleave:
        xc = torch.view_as_complex(x.float().contiguous().unflatten(-1, (-1, 2)))
        return torch.view_as_real(xc * rot).flatten(-2).to(x.dtype)
    cos, sin = pairs[..., 0], pairs[..., 1]
    half = x.shape[-1] // 2
    x1, x2 = x.float()[..., :half], x.float()[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)


# ---------------------------------------------------------------------- attention metadata
@dataclass
class AttentionMeta:
    """What every layer of one forward pass needs to know about the batch (built once per forward).

    Attributes:
        start: [B] long, tokens already in the cache per row (None without a cache).
        write_index: [B, S] long, cache slot of each new token (None without a cache).
        kv_len: number of cache slots attended (>= every row's length after this step).
        past: host-side upper bound of ``start`` (0 means no cached tokens: plain causal attention).
        absorb: use the absorbed (latent-space) attention.
        mask: bool [B, S, T] True where query s may attend slot t (None for plain causal).
        uniform: every row has the same cached length (expanded attention can then use lower-right causal
            alignment and keep the fused SDPA kernels instead of an explicit mask).
    """

    start: torch.Tensor | None = None
    write_index: torch.Tensor | None = None
    kv_len: int = 0
    past: int = 0
    absorb: bool = False
    mask: torch.Tensor | None = None
    uniform: bool = False
    _score_bias: torch.Tensor | None = None
    _rows: torch.Tensor | None = None

    def rows(self) -> torch.Tensor:
        """Row index [B, 1] of each cache write (pairs with ``write_index``), built once per forward."""
        if self._rows is None:
            assert self.write_index is not None
            self._rows = torch.arange(self.write_index.shape[0], device=self.write_index.device)[:, None]
        return self._rows

    def materialise(self, heads: int, dtype: torch.dtype) -> AttentionMeta:
        """Build the lazily made tensors now (traced code must find them built: it guards on what it saw)."""
        if self.write_index is not None:
            self.rows()
        if self.mask is not None and self.absorb:
            self.score_bias(heads, dtype)
        return self

    def score_bias(self, heads: int, dtype: torch.dtype) -> torch.Tensor:
        """Additive mask (0 / -inf) for absorbed scores [B, S*H, T] (or [B, 1, T] when S == 1), built once."""
        if self._score_bias is None or self._score_bias.dtype != dtype:
            assert self.mask is not None
            bias = torch.zeros(self.mask.shape, dtype=dtype, device=self.mask.device).masked_fill(
                ~self.mask, float("-inf")
            )
            if bias.shape[1] > 1:
                bias = bias.repeat_interleave(heads, dim=1)  # row s*H + h belongs to query s
            self._score_bias = bias
        return self._score_bias


def build_meta(
    start: torch.Tensor | None,
    seq_len: int,
    kv_len: int,
    past: int,
    absorb: bool,
    device: torch.device,
    uniform: bool = False,
) -> AttentionMeta:
    """Attention metadata for ``seq_len`` new tokens written after ``start`` tokens of each cached row."""
    if start is None:
        return AttentionMeta()
    offsets = torch.arange(seq_len, device=device)
    write_index = start[:, None] + offsets  # [B, S]
    mask = None
    if past > 0 or absorb:
        slots = torch.arange(kv_len, device=device)
        mask = slots[None, None, :] <= write_index[:, :, None]  # [B, S, T]: causal w.r.t. each row's own length
    return AttentionMeta(start, write_index, kv_len, past, absorb, mask, uniform and kv_len == past + seq_len)


# ---------------------------------------------------------------------- MLA
class MLA(nn.Module):
    """Multi-head Latent Attention of one decoder layer (Hugging Face ``DeepseekV3Attention`` parameter names)."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.n_heads = config.num_attention_heads
        self.q_lora_rank = config.q_lora_rank
        self.kv_lora_rank = config.kv_lora_rank
        self.nope_dim = config.qk_nope_head_dim
        self.rope_dim = config.qk_rope_head_dim
        self.qk_dim = config.qk_head_dim
        self.v_dim = config.v_head_dim
        self.interleave = config.rope_interleave
        self.softmax_scale = config.softmax_scale()
        self.dropout = config.attention_dropout
        d, h, bias = config.hidden_size, self.n_heads, config.attention_bias
        if self.q_lora_rank is None:
            self.q_proj = nn.Linear(d, h * self.qk_dim, bias=False)
        else:
            self.q_a_proj = nn.Linear(d, self.q_lora_rank, bias=bias)
            self.q_a_layernorm = RMSNorm(self.q_lora_rank)
            self.q_b_proj = nn.Linear(self.q_lora_rank, h * self.qk_dim, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(d, self.kv_lora_rank + self.rope_dim, bias=bias)
        self.kv_a_layernorm = RMSNorm(self.kv_lora_rank)
        self.kv_b_proj = nn.Linear(self.kv_lora_rank, h * (self.nope_dim + self.v_dim), bias=False)
        self.o_proj = nn.Linear(h * self.v_dim, d, bias=bias)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, S, D] -> q: [B, S, H, dn + R]
        if self.q_lora_rank is None:
            q = self.q_proj(x)
        else:
            q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
        return q.unflatten(-1, (self.n_heads, self.qk_dim))

    def _latent(self, x: torch.Tensor, rot: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        # x: [B, S, D] -> [B, S, C + R]: normalised latent ++ rotated shared RoPE key (exactly what is cached)
        kv = self.kv_a_proj_with_mqa(x)
        c_kv, k_pe = kv.split([self.kv_lora_rank, self.rope_dim], dim=-1)
        k_pe = apply_rope(k_pe.unsqueeze(2), rot, pairs, self.interleave).squeeze(2)
        return torch.cat((self.kv_a_layernorm(c_kv), k_pe), dim=-1)

    def forward(
        self,
        x: torch.Tensor,
        rot: torch.Tensor,
        pairs: torch.Tensor,
        meta: AttentionMeta,
        kv_cache: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend ``x`` [B, S, D] (new tokens) over the cache and itself; returns [B, S, D].

        Args:
            x: hidden states of the new tokens.
            rot: rotations of the new tokens' positions, complex [B, S, 1, R/2] (from :class:`RotaryEmbedding`).
            pairs: the same as float (cos, sin) pairs [B, S, 1, R/2, 2].
            meta: batch-wide attention metadata (see :class:`AttentionMeta`).
            kv_cache: this layer's latent cache [B, capacity, C + R], updated in place; None to attend only ``x``.
        """
        q = self._query(x)  # [B, S, H, dn + R]
        q_pe = apply_rope(q[..., self.nope_dim :], rot, pairs, self.interleave)  # [B, S, H, R]
        latent = self._latent(x, rot, pairs)  # [B, S, C + R]
        if kv_cache is not None:
            if meta.uniform:  # every row appends at the same slot: one contiguous copy
                kv_cache[:, meta.past : meta.past + x.shape[1]] = latent.to(kv_cache.dtype)
            else:
                kv_cache[meta.rows(), meta.write_index] = latent.to(kv_cache.dtype)
            if meta.past > 0 or meta.absorb:
                latent = kv_cache[:, : meta.kv_len]  # [B, T, C + R]
        if meta.absorb:
            out = self._absorbed(q[..., : self.nope_dim], q_pe, latent, meta.score_bias(self.n_heads, latent.dtype))
        else:
            q[..., self.nope_dim :] = q_pe  # in place: SDPA then takes q as it is (no concatenated copy)
            out = self._expanded(q, latent, None if meta.uniform else meta.mask)
        return self.o_proj(out.flatten(2))  # [B, S, H * dv] -> [B, S, D]

    def _expanded(self, q: torch.Tensor, latent: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # q: [B, S, H, dn + R] (RoPE part rotated); latent: [B, T, C + R]; mask: [B, S, T] or None (causal, T == S)
        # -> [B, S, H, dv]
        bsz, t = latent.shape[:2]
        c_kv, k_pe = latent.split([self.kv_lora_rank, self.rope_dim], dim=-1)
        kv = self.kv_b_proj(c_kv).view(bsz, t, self.n_heads, self.nope_dim + self.v_dim)
        k_nope, v = kv.split([self.nope_dim, self.v_dim], dim=-1)
        k = torch.cat((k_nope, k_pe[:, :, None, :].expand(-1, -1, self.n_heads, -1)), dim=-1)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, *, d]
        pad = PAD_V_FOR_FLASH and q.is_cuda and mask is None and self.v_dim < self.qk_dim
        if pad:
            v = F.pad(v, (0, self.qk_dim - self.v_dim))
        if mask is not None:
            attn_mask = mask[:, None]  # rows of different cached lengths: explicit mask
        elif q.shape[2] != k.shape[2]:
            attn_mask = causal_lower_right(q.shape[2], k.shape[2])  # same cached length on every row
        else:
            attn_mask = None
        restrict = SDPA_BACKENDS and attn_mask is None  # masked calls keep PyTorch's choice (not all kernels mask)
        with sdpa_kernel(SDPA_BACKENDS) if restrict else nullcontext():
            out = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=attn_mask,
                dropout_p=self.dropout if self.training else 0.0,
                is_causal=attn_mask is None,
                scale=self.softmax_scale,
            )
        if pad:
            out = out[..., : self.v_dim]
        return out.transpose(1, 2)

    def _absorbed(
        self, q_nope: torch.Tensor, q_pe: torch.Tensor, latent: torch.Tensor, score_bias: torch.Tensor
    ) -> torch.Tensor:
        # q_*: [B, S, H, *]; latent: [B, T, C + R] (the cache itself); score_bias: 0/-inf [B, S*H or 1, T]
        # -> [B, S, H, dv]
        bsz, seqlen, h, _ = q_nope.shape
        w = self.kv_b_proj.weight.view(h, self.nope_dim + self.v_dim, self.kv_lora_rank)
        w_uk, w_uv = w[:, : self.nope_dim], w[:, self.nope_dim :]  # [H, dn, C], [H, dv, C]
        # Fold W_UK into the query: q_lat[b, s, h] = q_nope[b, s, h] @ W_UK[h]  -> [H, B*S, C]
        q_lat = torch.bmm(q_nope.permute(2, 0, 1, 3).reshape(h, bsz * seqlen, self.nope_dim), w_uk)
        q_lat = q_lat.view(h, bsz, seqlen, self.kv_lora_rank).permute(1, 2, 0, 3)  # [B, S, H, C]
        q_cat = torch.cat((q_lat, q_pe.to(q_lat.dtype)), dim=-1).reshape(bsz, seqlen * h, -1)  # [B, S*H, C + R]
        # Scores against latent ++ rope key, softmax, weighted latent sum: [B, S*H, C] (one pass over the cache on
        # CUDA, batched GEMMs elsewhere; compiled blocks call the kernels as one opaque op)
        compiled_op = torch.compiler.is_compiling() and mla_decode.usable(q_cat, latent, score_bias)
        attend = torch.ops.ohmlens.mla_decode_attention if compiled_op else mla_decode.decode_attention
        o_lat = attend(q_cat, latent, score_bias, self.softmax_scale, self.kv_lora_rank)
        # Apply W_UV per head: [H, B*S, C] @ [H, C, dv] -> [H, B*S, dv]
        o_lat = o_lat.view(bsz * seqlen, h, self.kv_lora_rank).transpose(0, 1)
        out = torch.bmm(o_lat, w_uv.transpose(1, 2))
        return out.view(h, bsz, seqlen, self.v_dim).permute(1, 2, 0, 3)
