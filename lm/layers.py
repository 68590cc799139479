"""Small layers shared by the attention, MoE and model files: RMSNorm and the SwiGLU feed-forward."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Float32Module(nn.Module):
    """A module whose own float32 parameters and buffers stay float32 when the model is cast (router, RoPE tables)."""

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        saved = {n: p.data for n, p in self._parameters.items() if p is not None}
        saved.update({n: b for n, b in self._buffers.items() if b is not None})
        super()._apply(fn, recurse)
        for name, old in saved.items():
            param = self._parameters.get(name)
            current = param if param is not None else self._buffers.get(name)
            if current is None or old.dtype != torch.float32 or current.dtype == torch.float32:
                continue
            # Re-derive from the float32 original (moved to the new device) instead of upcasting the rounded copy.
            fixed = old.to(current.device)
            if param is not None:
                param.data = fixed
            else:
                self._buffers[name] = fixed
        return self


class RMSNorm(nn.Module):
    """Root-mean-square norm, statistics in float32 (as the DeepSeek and Hugging Face implementations)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [..., dim] -> [..., dim]; F.rms_norm is one fused kernel on recent PyTorch.
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class MLP(nn.Module):
    """SwiGLU feed-forward ``down(silu(gate(x)) * up(x))``: the dense layers and the shared experts."""

    def __init__(self, dim: int, inter_dim: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, inter_dim, bias=False)
        self.up_proj = nn.Linear(dim, inter_dim, bias=False)
        self.down_proj = nn.Linear(inter_dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [..., dim] -> [..., dim]
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
