"""The DeepSeek-V3 decoder: embeddings, dense then MoE blocks, final norm, LM head and MTP modules.

Parameter names follow the Hugging Face ``DeepseekV3ForCausalLM`` module tree (``embed_tokens``, ``layers.{i}.
self_attn.*``, ``layers.{i}.mlp.*``, ``norm``, ``lm_head``) minus the ``model.`` prefix; the MTP modules live in
``mtp.{k}`` and are mapped to checkpoint layer ``num_hidden_layers + k`` by :mod:`lm.checkpoint`.

Multi-token prediction (DeepSeek-V3 section 2.2): depth ``k`` combines the (normalised) hidden state of depth
``k-1`` at position ``i`` with the embedding of token ``i+k`` (``eh_proj([enorm(emb) ; hnorm(h)])``), runs one
decoder block and predicts token ``i+k+1`` through the shared LM head after its own norm (``shared_head.norm``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from lm.config import LMConfig
from lm.layers import MLP, RMSNorm
from lm.mla import MLA, AttentionMeta, RotaryEmbedding
from lm.moe import Gate, MoE

if TYPE_CHECKING:
    from lm.cache import LatentCache


class InputError(ValueError):
    """The tokens or embeddings passed to the model do not fit it."""


@dataclass
class LMOutput:
    """Result of :meth:`LanguageModel.forward`.

    Attributes:
        logits: [B, S', V] next-token logits (S' = S, or ``logits_to_keep``).
        hidden: [B, S, D] final normalised hidden states (the LM head's input and the MTP modules' input).
        loss: total training loss (main + weighted MTP + balance), when labels were given.
        main_loss: next-token cross-entropy.
        mtp_loss: mean cross-entropy over the MTP depths (None without MTP modules).
        aux_loss: sum of the sequence-wise balance losses (None when disabled).
        mtp_logits: per MTP depth k (1-based), logits [B, S-k, V] predicting token i+k+1 at slot i.
    """

    logits: torch.Tensor
    hidden: torch.Tensor
    loss: torch.Tensor | None = None
    main_loss: torch.Tensor | None = None
    mtp_loss: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None
    mtp_logits: list[torch.Tensor] = field(default_factory=list)


BlockFn = Callable[..., torch.Tensor]


class Block(nn.Module):
    """Pre-norm decoder block: MLA then a dense or MoE feed-forward, each with a residual."""

    def __init__(self, config: LMConfig, moe: bool) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = MLA(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp: nn.Module = MoE(config) if moe else MLP(config.hidden_size, config.intermediate_size)

    def forward(
        self,
        x: torch.Tensor,
        rot: torch.Tensor,
        pairs: torch.Tensor,
        meta: AttentionMeta,
        kv_cache: torch.Tensor | None,
    ) -> torch.Tensor:
        # x: [B, S, D] -> [B, S, D]; rot/pairs: rotary views of the positions (see RotaryEmbedding)
        x = x + self.self_attn(self.input_layernorm(x), rot, pairs, meta, kv_cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class MTPModule(nn.Module):
    """One multi-token-prediction depth; it shares the embedding and LM head with the main model."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.enorm = RMSNorm(d, config.rms_norm_eps)
        self.hnorm = RMSNorm(d, config.rms_norm_eps)
        self.eh_proj = nn.Linear(2 * d, d, bias=False)
        self.block = Block(config, moe=True)
        self.norm = RMSNorm(d, config.rms_norm_eps)  # checkpoint name: shared_head.norm

    def forward(
        self,
        emb: torch.Tensor,
        hidden: torch.Tensor,
        rot: torch.Tensor,
        pairs: torch.Tensor,
        meta: AttentionMeta,
        kv_cache: torch.Tensor | None,
    ) -> torch.Tensor:
        # emb (of token i+k), hidden (depth k-1 at i): [B, S, D] -> normalised depth-k hidden [B, S, D]
        x = self.eh_proj(torch.cat((self.enorm(emb), self.hnorm(hidden)), dim=-1))
        return self.norm(self.block(x, rot, pairs, meta, kv_cache))


class LanguageModel(nn.Module):
    """DeepSeek-V3 causal language model with optional MTP modules.

    Args:
        config: architecture.
        init: draw random initial weights (skip when weights are loaded right after).
    """

    def __init__(self, config: LMConfig, init: bool = True) -> None:
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.embed_tokens = nn.Embedding(config.vocab_size, d)
        self.layers = nn.ModuleList(Block(config, config.is_moe_layer(i)) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(d, config.rms_norm_eps)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.mtp = nn.ModuleList(MTPModule(config) for _ in range(config.num_nextn_predict_layers))
        self.rotary = RotaryEmbedding(config)
        if init:
            self.init_weights()

    # ------------------------------------------------------------------ weights
    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Normal(0, initializer_range) for projections, embeddings, experts and router; ones for norms."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.normal_(0.0, std, generator=generator)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif isinstance(module, RMSNorm):
                module.weight.fill_(1.0)
            elif isinstance(module, Gate):
                module.weight.normal_(0.0, std, generator=generator)
                module.e_score_correction_bias.zero_()
        for name, p in self.named_parameters():
            if name.endswith(("experts.gate_up_proj", "experts.down_proj")):
                p.normal_(0.0, std, generator=generator)

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_tokens.weight.dtype

    def gates(self) -> list[Gate]:
        """All MoE routers (main layers, then MTP blocks)."""
        return [m for m in self.modules() if isinstance(m, Gate)]

    # ------------------------------------------------------------------ forward
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings [B, S, D] of ``input_ids`` [B, S] (checked against the vocabulary)."""
        if input_ids.dtype not in (torch.int32, torch.int64):
            raise InputError(f"input_ids must be integer token ids, got {input_ids.dtype}")
        return self.embed_tokens(input_ids)

    def run_layers(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        meta: AttentionMeta,
        kv_layers: list[torch.Tensor] | None = None,
        block_fn: BlockFn | None = None,
    ) -> torch.Tensor:
        """Decoder stack on embeddings ``x`` [B, S, D] at ``positions`` [B, S]; returns the normalised hidden.

        ``block_fn(block, x, rot, pairs, meta, kv_cache)`` runs each block instead of calling it directly (the
        generator passes compiled decode code here, see :class:`lm.generate.CompiledBlocks`).
        """
        rot, pairs = self.rotary(positions)
        for i, layer in enumerate(self.layers):
            kv = None if kv_layers is None else kv_layers[i]
            x = layer(x, rot, pairs, meta, kv) if block_fn is None else block_fn(layer, x, rot, pairs, meta, kv)
        return self.norm(x)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        *,
        cache: LatentCache | None = None,
        labels: torch.Tensor | None = None,
        logits_to_keep: int = 0,
        absorb: bool | None = None,
        mtp_loss_weight: float = 0.3,
    ) -> LMOutput:
        """Run the model on new tokens (``input_ids`` [B, S]) or embeddings (``inputs_embeds`` [B, S, D]).

        Args:
            input_ids: token ids; exactly one of ``input_ids`` / ``inputs_embeds`` is required.
            inputs_embeds: precomputed input embeddings (e.g. image features spliced in by a multimodal front end).
            cache: latent KV cache; the tokens are appended after each row's cached length and the cache advances.
            labels: [B, S] target ids aligned with the inputs (``labels[:, i]`` is the token after position i,
                -100 to ignore); enables the losses, including the MTP losses when the model has MTP modules.
            logits_to_keep: compute logits only for the last this-many positions (0 = all).
            absorb: force (True) or forbid (False) absorbed attention; default: absorbed for short cached steps.
            mtp_loss_weight: lambda, the weight of the mean MTP loss in ``loss``.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("pass exactly one of input_ids or inputs_embeds")
        if input_ids is not None:
            if input_ids.dim() != 2:
                raise InputError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}")
            x = self.embed(input_ids)
        else:
            assert inputs_embeds is not None
            if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.config.hidden_size:
                raise InputError(
                    f"inputs_embeds must be [batch, seq, {self.config.hidden_size}], got {tuple(inputs_embeds.shape)}"
                )
            x = inputs_embeds.to(self.dtype)
        bsz, seqlen = x.shape[:2]
        if cache is None:
            if seqlen > self.config.max_position_embeddings:
                raise InputError(f"sequence of {seqlen} tokens exceeds max_position_embeddings")
            positions = torch.arange(seqlen, device=x.device).expand(bsz, seqlen)
            meta, kv_layers = AttentionMeta(), None
        else:
            positions, meta = cache.prepare(seqlen, absorb)
            kv_layers = cache.layers()
        hidden = self.run_layers(x, positions, meta, kv_layers)
        if cache is not None:
            cache.advance(seqlen)
        head_in = hidden[:, -logits_to_keep:] if logits_to_keep else hidden
        out = LMOutput(logits=self.lm_head(head_in), hidden=hidden)
        if labels is not None:
            self._losses(out, labels, positions, mtp_loss_weight)
        return out

    # ------------------------------------------------------------------ MTP
    def mtp_forward(
        self,
        depth: int,
        hidden: torch.Tensor,
        next_ids: torch.Tensor,
        positions: torch.Tensor,
        meta: AttentionMeta | None = None,
        kv_cache: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run MTP depth ``depth`` (0-based) on slots with previous-depth ``hidden`` [B, S, D] and the ids
        ``next_ids`` [B, S] of the tokens one step ahead; returns (depth hidden [B, S, D], logits [B, S, V])."""
        rot, pairs = self.rotary(positions)
        h = self.mtp[depth](self.embed(next_ids), hidden, rot, pairs, meta or AttentionMeta(), kv_cache)
        return h, self.lm_head(h)

    def _losses(self, out: LMOutput, labels: torch.Tensor, positions: torch.Tensor, mtp_weight: float) -> None:
        out.main_loss = F.cross_entropy(out.logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        total = out.main_loss
        if self.mtp:
            hidden = out.hidden
            ids = labels.clamp(min=0)  # ignored targets still need a valid embedding row
            mtp_losses = []
            for k, module in enumerate(self.mtp, start=1):
                n = labels.shape[1] - k  # slots with a target k tokens further ahead
                if n <= 0:
                    break
                rot, pairs = self.rotary(positions[:, :n])
                emb = self.embed(ids[:, k - 1 : k - 1 + n])
                hidden = module(emb, hidden[:, :n], rot, pairs, AttentionMeta(), None)
                logits = self.lm_head(hidden)
                out.mtp_logits.append(logits)
                target = labels[:, k : k + n]
                mtp_losses.append(F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=-100))
            if mtp_losses:
                out.mtp_loss = torch.stack(mtp_losses).mean()
                total = total + mtp_weight * out.mtp_loss
        aux = [g.aux_loss for g in self.gates() if g.aux_loss is not None]
        if aux:
            out.aux_loss = torch.stack(aux).sum()
            total = total + out.aux_loss
        out.loss = total
